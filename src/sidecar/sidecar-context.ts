// What the sidecar's inbound and upstream sides share: the configuration and policy in force, the
// TLS context and session tickets, the open sockets, and the flow records and decisions they make.
import { randomUUID } from 'node:crypto';
import type net from 'node:net';
import tls from 'node:tls';
import { parseServiceSpiffeId } from '../core/names.js';
import type { FlowRecord, FlowIdentity } from '../dataflow/index.js';
import { compileIntentions, type CompiledIntentions, type HttpRequestInfo } from '../intentions/index.js';
import { silentLogger, type Logger } from '../telemetry/index.js';
import { ReadBuffer } from './relay.js';
import type { SidecarConfig, SidecarOptions } from './sidecar-config.js';

export interface Decision {
  allowed: boolean;
  reason: string;
  intentionId: string;
  l7?: boolean;
  permission?: number;
}

export const ZERO_TRACE = '0'.repeat(32);

export class SidecarContext {
  config: SidecarConfig;
  matcher: CompiledIntentions;
  /** One read buffer for every relayed connection of this sidecar. */
  readonly readBuffer = new ReadBuffer();
  readonly sockets = new Set<net.Socket>();
  readonly log: Logger;
  secureContext: tls.SecureContext;
  /** TLS 1.3 session tickets per upstream endpoint: new connections resume instead of a full handshake. */
  readonly sessions = new Map<string, Buffer>();

  constructor(readonly opts: SidecarOptions) {
    this.config = opts.config;
    this.log = (opts.logger ?? silentLogger).child({ component: 'sidecar', service: opts.config.service.name });
    this.matcher = compileIntentions(this.config.policy.intentions, { defaultAllow: this.config.policy.defaultAllow });
    this.secureContext = this.buildContext();
  }

  contextOptions(): tls.SecureContextOptions {
    const { leaf, bundle } = this.config;
    return {
      key: leaf.keyPem,
      cert: [leaf.certPem.trim(), ...bundle.chain.map((c) => c.trim())].join('\n') + '\n',
      ca: bundle.roots,
      minVersion: 'TLSv1.3',
    };
  }

  buildContext(): tls.SecureContext {
    return tls.createSecureContext(this.contextOptions());
  }

  identity(spiffeId: string, fallbackService = ''): FlowIdentity {
    const p = parseServiceSpiffeId(spiffeId);
    return { spiffeId, service: p?.service ?? fallbackService, namespace: p?.namespace ?? '', dc: p?.dc ?? '' };
  }

  self(): FlowIdentity {
    const s = this.config.service;
    return { spiffeId: this.config.leaf.spiffeId, service: s.name, namespace: s.namespace, dc: s.dc };
  }

  record(r: Omit<FlowRecord, 'id' | 'dc' | 'reporter' | 'intentionDc' | 'intentionIndex'> & Partial<FlowRecord>): void {
    try {
      this.opts.onFlow({
        id: randomUUID(),
        dc: this.config.service.dc,
        reporter: this.config.service.id,
        intentionDc: r.intentionId ? this.config.policy.sourceDc : '',
        intentionIndex: r.intentionId ? this.config.policy.index : 0,
        ...r,
      } as FlowRecord);
    } catch (err) {
      this.log.warn('flow record listener failed', { error: err });
    }
  }

  /**
   * The server sidecar's record of one request (or upgraded connection) it decided: what is fixed
   * when the request arrives, and a function that writes the record once its outcome is known.
   */
  inboundRequest(at: {
    traceId: string;
    requestIndex: number;
    source: string;
    decision: Decision;
    start: number;
    method: string;
    path: string;
    traceparent: string;
  }): (verdict: FlowRecord['verdict'], reason: string, status: number, bytesIn: number, bytesOut: number) => void {
    return (verdict, reason, status, bytesIn, bytesOut) =>
      this.record({
        traceId: at.traceId,
        requestIndex: at.requestIndex,
        hop: 'server-sidecar',
        source: this.identity(at.source),
        destination: this.self(),
        sni: '',
        verdict,
        reason,
        intentionId: at.decision.intentionId,
        startTime: at.start,
        durationMs: Date.now() - at.start,
        bytesIn,
        bytesOut,
        http: { method: at.method, path: at.path, status, traceparent: at.traceparent },
      });
  }

  decide(source: string, request?: HttpRequestInfo): Decision {
    const id = parseServiceSpiffeId(source);
    if (!id) return { allowed: false, reason: `peer certificate has no service SPIFFE ID (${source || 'none'})`, intentionId: '' };
    if (id.trustDomain !== this.config.service.trustDomain) {
      return { allowed: false, reason: `peer trust domain ${id.trustDomain} is not ${this.config.service.trustDomain}`, intentionId: '' };
    }
    const d = this.matcher.decide(
      { namespace: id.namespace, service: id.service },
      { namespace: this.config.service.namespace, service: this.config.service.name },
      request,
    );
    return { allowed: d.allowed, reason: d.reason, intentionId: d.decidedBy, l7: d.l7, permission: d.permission };
  }
}

export function listen(server: net.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
