// The sidecar proxy of one service instance: an inbound mTLS listener that verifies the caller's
// SPIFFE ID and enforces intentions locally (L4 per connection, L7 per HTTP request), and one local
// listener per upstream that dials the upstream's sidecar over mTLS and checks its identity.
// Certificates and policy are pushed in with update(); open connections are never dropped by a swap.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { Component } from '../core/lifecycle.js';
import { parseServiceSpiffeId } from '../core/names.js';
import type { FlowRecord, FlowIdentity } from '../dataflow/index.js';
import { compileIntentions, type CompiledIntentions, type HttpRequestInfo, type Intention } from '../intentions/index.js';
import { chooseDataPath, logDataPath, type DataPath } from '../netio/index.js';
import { silentLogger, type Logger } from '../telemetry/index.js';
import { peerSpiffeId, spiffeOf, traceIdFromKeylog } from './identity.js';
import { ReadBuffer, RelayTarget, relay, relayRead } from './relay.js';
import { describeTlsError } from './tls-refusal.js';

export interface SidecarEndpoint {
  host: string;
  port: number;
  sni: string;
  spiffeId: string;
}

export interface SidecarUpstream {
  name: string;
  namespace: string;
  datacenter: string;
  localBindHost: string;
  localBindPort: number;
  endpoints: SidecarEndpoint[];
}

export interface SidecarInbound {
  bindHost: string;
  bindPort: number;
  localAppHost: string;
  localAppPort: number;
  protocol: 'tcp' | 'http';
}

export interface SidecarPolicy {
  intentions: Intention[];
  defaultAllow: boolean;
  index: number;
  sourceDc: string;
}

export interface SidecarConfig {
  service: { id: string; name: string; namespace: string; dc: string; trustDomain: string };
  leaf: { certPem: string; keyPem: string; spiffeId: string };
  bundle: { roots: string[]; chain: string[] };
  inbound?: SidecarInbound;
  upstreams: SidecarUpstream[];
  policy: SidecarPolicy;
}

export interface SidecarOptions {
  config: SidecarConfig;
  onFlow: (r: FlowRecord) => void;
  logger?: Logger;
  /** An inbound TLS handshake (ClientHello included) must complete within this (default 10 s, as the gateway's hello bound). */
  handshakeTimeoutMs?: number;
  /**
   * Accept on the upstream listeners through the fast data path where it passes its self-test
   * (true), or plainly (false); unset: as ISTHMUS_FAST_PATH says (see netio/).
   */
  fastPath?: boolean;
}

interface Decision {
  allowed: boolean;
  reason: string;
  intentionId: string;
  l7?: boolean;
}

/**
 * How long an idle keep-alive connection of an L7 inbound stays open, announced to callers in
 * `Keep-Alive: timeout=` (Node's default is 5 s: a caller through two gateways would make a new mTLS
 * connection after every pause of a few seconds; nginx keeps 75 s, Envoy an hour).
 */
export const HTTP_IDLE_TIMEOUT_MS = 60_000;
const ZERO_TRACE = '0'.repeat(32);

export class Sidecar implements Component {
  readonly name = 'sidecar';
  private config: SidecarConfig;
  private matcher: CompiledIntentions;
  private inbound: tls.Server | undefined;
  /** Local listeners by upstreamKey(): one service may be an upstream in several DCs. */
  private readonly outbound = new Map<string, { server: net.Server; rr: number; name: string }>();
  /** One read buffer for every relayed connection of this sidecar. */
  private readonly readBuffer = new ReadBuffer();
  private readonly sockets = new Set<net.Socket>();
  private readonly log: Logger;
  private appAgent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  private secureContext: tls.SecureContext;
  /** TLS 1.3 session tickets per upstream endpoint: new connections resume instead of a full handshake. */
  private readonly sessions = new Map<string, Buffer>();
  /** How the upstream listeners accept (chosen at start, see netio/). */
  private dataPath: DataPath | undefined;

  constructor(private readonly opts: SidecarOptions) {
    this.config = opts.config;
    this.log = (opts.logger ?? silentLogger).child({ component: 'sidecar', service: opts.config.service.name });
    this.matcher = compileIntentions(this.config.policy.intentions, { defaultAllow: this.config.policy.defaultAllow });
    this.secureContext = this.buildContext();
  }

  /** Port the inbound listener is bound to. */
  get inboundPort(): number {
    return (this.inbound?.address() as net.AddressInfo | null)?.port ?? 0;
  }

  upstreams(): SidecarUpstream[] {
    return this.config.upstreams;
  }

  /** Port of the local listener of upstream `name` (of `datacenter`, when one service is an upstream in several). */
  upstreamPort(name: string, datacenter?: string): number {
    for (const [key, o] of this.outbound) {
      if (o.name === name && (datacenter === undefined || key.endsWith(`@${datacenter}`))) return (o.server.address() as net.AddressInfo | null)?.port ?? 0;
    }
    return 0;
  }

  /** True once every listener is bound. */
  started = false;

  async start(): Promise<void> {
    const choice = await chooseDataPath({ fastPath: this.opts.fastPath });
    this.dataPath = choice.path;
    logDataPath(this.log, choice);
    try {
      if (this.config.inbound) await this.startInbound(this.config.inbound);
      for (const u of this.config.upstreams) await this.startUpstream(u);
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.started = true;
  }

  async stop(): Promise<void> {
    const closing: Promise<void>[] = [];
    if (this.inbound) closing.push(new Promise((r) => this.inbound!.close(() => r())));
    for (const { server } of this.outbound.values()) closing.push(new Promise((r) => server.close(() => r())));
    for (const s of this.sockets) s.destroy();
    this.appAgent.destroy();
    await Promise.all(closing);
  }

  /** New leaf, bundle, policy or endpoints; open connections carry on, new ones use what is new. */
  async update(next: Partial<SidecarConfig>): Promise<void> {
    const prev = this.config;
    this.config = { ...prev, ...next };
    if (next.policy) this.matcher = compileIntentions(next.policy.intentions, { defaultAllow: next.policy.defaultAllow });
    if (next.leaf || next.bundle) {
      // A resumed session would carry the old identity: new certificates mean full handshakes.
      this.sessions.clear();
      this.secureContext = this.buildContext();
      this.inbound?.setSecureContext(this.contextOptions());
    }
    if (next.upstreams) {
      for (const u of next.upstreams) if (!this.outbound.has(upstreamKey(u))) await this.startUpstream(u);
      for (const [key, o] of this.outbound) {
        if (!next.upstreams.some((u) => upstreamKey(u) === key)) {
          o.server.close();
          this.outbound.delete(key);
        }
      }
    }
  }

  private contextOptions(): tls.SecureContextOptions {
    const { leaf, bundle } = this.config;
    return {
      key: leaf.keyPem,
      cert: [leaf.certPem.trim(), ...bundle.chain.map((c) => c.trim())].join('\n') + '\n',
      ca: bundle.roots,
      minVersion: 'TLSv1.3',
    };
  }

  private buildContext(): tls.SecureContext {
    return tls.createSecureContext(this.contextOptions());
  }

  private identity(spiffeId: string, fallbackService = ''): FlowIdentity {
    const p = parseServiceSpiffeId(spiffeId);
    return { spiffeId, service: p?.service ?? fallbackService, namespace: p?.namespace ?? '', dc: p?.dc ?? '' };
  }

  private self(): FlowIdentity {
    const s = this.config.service;
    return { spiffeId: this.config.leaf.spiffeId, service: s.name, namespace: s.namespace, dc: s.dc };
  }

  private record(r: Omit<FlowRecord, 'id' | 'dc' | 'reporter' | 'intentionDc' | 'intentionIndex'> & Partial<FlowRecord>): void {
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

  private decide(source: string, request?: HttpRequestInfo): Decision {
    const id = parseServiceSpiffeId(source);
    if (!id) return { allowed: false, reason: `peer certificate has no service SPIFFE ID (${source || 'none'})`, intentionId: '' };
    if (id.trustDomain !== this.config.service.trustDomain) {
      return { allowed: false, reason: `peer trust domain ${id.trustDomain} is not ${this.config.service.trustDomain}`, intentionId: '' };
    }
    const d = this.matcher.decide({ namespace: id.namespace, service: id.service }, { namespace: this.config.service.namespace, service: this.config.service.name }, request);
    return { allowed: d.allowed, reason: d.reason, intentionId: d.decidedBy, l7: d.l7 };
  }

  // ---- inbound ----

  private async startInbound(cfg: SidecarInbound): Promise<void> {
    const traces = new WeakMap<tls.TLSSocket, string>();
    // No Nagle delay on any hop: a proxy's small writes (a request, an answer) go out at once.
    const server = tls.createServer({ ...this.contextOptions(), noDelay: true, requestCert: true, rejectUnauthorized: true, handshakeTimeout: this.opts.handshakeTimeoutMs ?? 10_000 });
    server.on('keylog', (line, sock) => {
      if (!traces.has(sock)) {
        const t = traceIdFromKeylog(line);
        if (t) traces.set(sock, t);
      }
    });
    server.on('tlsClientError', (err, sock) => {
      const start = Date.now();
      // A certificate that fails verification is refused by Node after the handshake, and the error
      // handed over is then only the hang-up; the verification's own code says why.
      // (Typed as an Error, set to the OpenSSL code string.)
      const verify = (sock as tls.TLSSocket).authorizationError as unknown as string | (Error & { code?: string }) | undefined;
      const verifyCode = typeof verify === 'string' ? verify : verify?.code;
      const why = describeTlsError(verifyCode ? { code: verifyCode, message: verifyCode } : err);
      this.record({
        traceId: traces.get(sock as tls.TLSSocket) ?? ZERO_TRACE,
        requestIndex: 0,
        hop: 'server-sidecar',
        source: { spiffeId: '', service: '', namespace: '', dc: '' },
        destination: this.self(),
        sni: '',
        verdict: 'denied',
        reason: `TLS handshake refused: ${why}`,
        intentionId: '',
        startTime: start,
        durationMs: 0,
        bytesIn: sock.bytesRead ?? 0,
        bytesOut: sock.bytesWritten ?? 0,
      });
      this.log.warn('inbound handshake refused', { error: why });
      // With a listener here Node leaves the socket open (a handshake timeout included): close it.
      sock.destroy();
    });
    const l7 = cfg.protocol === 'http' ? this.httpHandler(cfg, traces) : undefined;
    server.on('secureConnection', (sock: tls.TLSSocket) => {
      this.sockets.add(sock);
      sock.once('close', () => this.sockets.delete(sock));
      const start = Date.now();
      const source = peerSpiffeId(sock) ?? '';
      const traceId = traces.get(sock) ?? ZERO_TRACE;
      const sni = (sock as tls.TLSSocket & { servername?: string | false }).servername || '';
      const d = this.decide(source);
      const base = { traceId, hop: 'server-sidecar' as const, source: this.identity(source), destination: this.self(), sni };
      if (!d.allowed && !d.l7) {
        sock.destroy();
        this.record({ ...base, requestIndex: 0, verdict: 'denied', reason: d.reason, intentionId: d.intentionId, startTime: start, durationMs: Date.now() - start, bytesIn: 0, bytesOut: 0 });
        return;
      }
      if (l7) {
        sock.once('close', () =>
          this.record({ ...base, requestIndex: 0, verdict: 'allowed', reason: d.l7 ? 'connection accepted; requests checked against L7 permissions' : d.reason, intentionId: d.intentionId, startTime: start, durationMs: Date.now() - start, bytesIn: sock.bytesRead, bytesOut: sock.bytesWritten }),
        );
        l7.emit('connection', sock);
        return;
      }
      const appTarget = new RelayTarget();
      const app: net.Socket = net.connect({ host: cfg.localAppHost, port: cfg.localAppPort, noDelay: true, onread: relayRead(this.readBuffer, appTarget, () => app) });
      this.sockets.add(app);
      let failed = false;
      app.once('error', (err) => {
        failed = true;
        this.log.warn('local app unreachable', { error: err.message });
        sock.destroy();
      });
      relay(sock, undefined, app, appTarget);
      sock.once('close', () => {
        this.sockets.delete(app);
        this.record({ ...base, requestIndex: 0, verdict: failed ? 'error' : 'allowed', reason: failed ? 'local application unreachable' : d.reason, intentionId: d.intentionId, startTime: start, durationMs: Date.now() - start, bytesIn: sock.bytesRead, bytesOut: sock.bytesWritten });
      });
    });
    await listen(server, cfg.bindHost, cfg.bindPort);
    this.inbound = server;
  }

  private httpHandler(cfg: SidecarInbound, traces: WeakMap<tls.TLSSocket, string>): http.Server {
    // Per connection: requests so far, and the caller's identity (read once: it cannot change).
    const conns = new WeakMap<net.Socket, { requests: number; source: string }>();
    const server = http.createServer({ keepAlive: true, keepAliveTimeout: HTTP_IDLE_TIMEOUT_MS }, (req, res) => {
      const sock = req.socket as tls.TLSSocket;
      let conn = conns.get(sock);
      if (!conn) conns.set(sock, (conn = { requests: 0, source: peerSpiffeId(sock) ?? '' }));
      const n = ++conn.requests;
      const start = Date.now();
      const source = conn.source;
      const traceId = traces.get(sock) ?? ZERO_TRACE;
      const path = req.url ?? '/';
      const d = this.decide(source, { method: req.method ?? 'GET', path, headers: req.headers });
      const traceparent = (req.headers.traceparent as string | undefined) ?? `00-${traceId}-${randomUUID().replace(/-/g, '').slice(0, 16)}-01`;
      const base = { traceId, requestIndex: n, hop: 'server-sidecar' as const, source: this.identity(source), destination: this.self(), sni: '' };
      if (!d.allowed) {
        const body = JSON.stringify({ error: 'denied', reason: d.reason, intention: d.intentionId });
        res.writeHead(403, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
        this.record({ ...base, verdict: 'denied', reason: d.reason, intentionId: d.intentionId, startTime: start, durationMs: Date.now() - start, bytesIn: 0, bytesOut: body.length, http: { method: req.method ?? '', path, status: 403, traceparent } });
        return;
      }
      // Each side's connection is its own: its Connection and Keep-Alive fields stay on it (the app's
      // idle timeout announced to the caller would outlive this server's, and a caller trusting it
      // would send into a connection this sidecar has just closed).
      const up = http.request({ host: cfg.localAppHost, port: cfg.localAppPort, method: req.method, path, headers: { ...endToEnd(req.headers), traceparent }, agent: this.appAgent }, (ures) => {
        res.writeHead(ures.statusCode ?? 502, endToEnd(ures.headers));
        ures.pipe(res);
        ures.once('end', () =>
          this.record({ ...base, verdict: 'allowed', reason: d.reason, intentionId: d.intentionId, startTime: start, durationMs: Date.now() - start, bytesIn: Number(req.headers['content-length'] ?? 0), bytesOut: Number(ures.headers['content-length'] ?? 0), http: { method: req.method ?? '', path, status: ures.statusCode ?? 0, traceparent } }),
        );
      });
      up.once('error', (err) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'local application unreachable' }));
        this.record({ ...base, verdict: 'error', reason: `local application unreachable: ${err.message}`, intentionId: d.intentionId, startTime: start, durationMs: Date.now() - start, bytesIn: 0, bytesOut: 0, http: { method: req.method ?? '', path, status: 502, traceparent } });
      });
      req.pipe(up);
    });
    return server;
  }

  // ---- outbound ----

  private async startUpstream(u: SidecarUpstream): Promise<void> {
    const key = upstreamKey(u);
    // The caller's bytes are read through the shared buffer, and kept until the upstream is connected.
    const path = this.dataPath!;
    const server = path.createServer((accepted) => {
      const target = new RelayTarget();
      const client: net.Socket = path.socketOf(accepted, relayRead(this.readBuffer, target, () => client));
      this.dial(key, client, target);
    });
    const entry = { server, rr: 0, name: u.name };
    await listen(entry.server, u.localBindHost, u.localBindPort);
    this.outbound.set(key, entry);
  }

  private dial(key: string, client: net.Socket, clientTarget: RelayTarget): void {
    const up = this.config.upstreams.find((x) => upstreamKey(x) === key);
    const entry = this.outbound.get(key);
    const name = entry?.name ?? key;
    const start = Date.now();
    this.sockets.add(client);
    client.once('close', () => this.sockets.delete(client));
    client.on('error', () => {});
    const dest = (spiffeId: string): FlowIdentity => ({ ...this.identity(spiffeId, name), service: name });
    if (!up || !entry || up.endpoints.length === 0) {
      client.destroy();
      this.record({ traceId: ZERO_TRACE, requestIndex: 0, hop: 'client-sidecar', source: this.self(), destination: dest(''), sni: '', verdict: 'error', reason: `no healthy endpoint for upstream ${name}`, intentionId: '', startTime: start, durationMs: 0, bytesIn: 0, bytesOut: 0 });
      return;
    }
    // The endpoints as they are now: a push while this call fails over does not reshuffle it.
    const endpoints = up.endpoints;
    const first = entry.rr++;
    const refused: string[] = [];
    const attempt = (k: number): void => {
      const ep = endpoints[(first + k) % endpoints.length];
      const sessionKey = `${ep.host}:${ep.port}/${ep.sni}/${ep.spiffeId}`;
      let traceId = ZERO_TRACE;
      let identityError: string | undefined;
      const serverTarget = new RelayTarget();
      // (Node's tls.connect takes `onread` since v15.1; its type here lacks it.)
      const options: tls.ConnectionOptions & { onread: net.OnReadOpts } = {
        host: ep.host,
        port: ep.port,
        servername: ep.sni,
        secureContext: this.secureContext,
        session: this.sessions.get(sessionKey),
        minVersion: 'TLSv1.3',
        onread: relayRead(this.readBuffer, serverTarget, () => server),
        checkServerIdentity: (_host, cert) => {
          const got = spiffeOf(cert);
          if (got !== ep.spiffeId) {
            identityError = `upstream presented ${got ?? 'no SPIFFE ID'}, expected ${ep.spiffeId}`;
            return new Error(identityError);
          }
          return undefined;
        },
      };
      const server: tls.TLSSocket = tls.connect(options);
      server.setNoDelay(true);
      this.sockets.add(server);
      const contextAtDial = this.secureContext;
      server.on('session', (session: Buffer) => {
        if (this.secureContext === contextAtDial) this.sessions.set(sessionKey, session);
      });
      server.on('keylog', (line) => {
        if (traceId === ZERO_TRACE) traceId = traceIdFromKeylog(line) ?? ZERO_TRACE;
      });
      let tcpConnected = false;
      let retried = false;
      server.once('connect', () => (tcpConnected = true));
      let ok = false;
      let failure: string | undefined;
      server.once('secureConnect', () => {
        ok = true;
        relay(client, clientTarget, server, serverTarget);
      });
      server.once('error', (err: Error & { code?: string }) => {
        // Nothing reached that endpoint (its process is gone, its port closed): the caller's bytes are
        // still unread, so the next endpoint can take the call before a push says this one is dead.
        if (!tcpConnected && k + 1 < endpoints.length && !client.destroyed) {
          retried = true;
          refused.push(`${ep.host}:${ep.port} (${err.code ?? err.message})`);
          this.log.warn('upstream endpoint refused the connection; trying the next', { upstream: name, endpoint: `${ep.host}:${ep.port}`, error: err.code ?? err.message });
          attempt(k + 1);
          return;
        }
        failure = identityError ?? describeTlsError(err);
        client.destroy();
      });
      server.once('close', () => {
        this.sockets.delete(server);
        if (retried) return;
        if (!ok) client.destroy();
        const reason = failure ?? (ok ? 'connected' : 'connection closed during handshake (refused by the destination)');
        this.record({
          traceId,
          requestIndex: 0,
          hop: 'client-sidecar',
          source: this.self(),
          destination: dest(ep.spiffeId),
          sni: ep.sni,
          verdict: ok && !failure ? 'allowed' : ok ? 'error' : identityError ? 'denied' : 'error',
          reason: refused.length ? `${reason}, after ${refused.join(', ')} refused` : reason,
          intentionId: '',
          startTime: start,
          durationMs: Date.now() - start,
          bytesIn: server.bytesRead,
          bytesOut: server.bytesWritten,
        });
      });
    };
    attempt(0);
  }
}

/** Hop-by-hop fields (RFC 9110 7.6.1), which a proxy does not pass on: these and any the Connection field names. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection']);

function endToEnd(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const named = new Set(String(headers.connection ?? '').toLowerCase().split(',').map((f) => f.trim()));
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP_BY_HOP.has(k) && !named.has(k)) out[k] = v;
  return out;
}

/** An upstream's identity among a sidecar's: the same service may be an upstream in several DCs. */
function upstreamKey(u: SidecarUpstream): string {
  return `${u.namespace}/${u.name}@${u.datacenter}`;
}

function listen(server: net.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
