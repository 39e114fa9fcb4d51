// Calls to another DC's servers on behalf of this one, and answering them: writes forwarded from a
// secondary to the primary (the primary replays them against its own API), reads of another DC's
// records (GET /v1/flows), and the renewal of a secondary's intermediate. The leader uses the client
// of its live link; a replica that does not lead keeps a client of its own per DC.
import * as grpc from '@grpc/grpc-js';
import { ErrorCodes, IsthmusError, invalid } from '../core/errors.js';
import type { FederationContext } from './context.js';
import type { Dialer } from './dialer.js';
import { fromStatus, unary } from './grpc-calls.js';
import type { ServerIdentity } from './identity.js';
import type { LinkRegistry } from './links.js';
import type { Membership } from './membership.js';
import type { FederationClient, ForwardRequest, ForwardResponse, SignRequest, SignResponse } from './proto.js';
import type { Replication } from './replication.js';
import { callerCertificate, serverDcOf } from './tls.js';

export type ForwardHandler = (req: {
  method: string;
  path: string;
  body: string;
  token: string;
  originDc: string;
}) => Promise<{ status: number; body: string; contentType: string; receiptsJson: string }>;

/** Largest forwarded body: what the HTTP API takes. */
const MAX_FORWARDED_BODY = 1 << 20;
const FORWARD_TIMEOUT_MS = 10_000;

export class Forwarding {
  private handler: ForwardHandler | undefined;
  private readonly spare = new Map<string, { client: FederationClient; address: string }>();

  constructor(
    private readonly ctx: FederationContext,
    private readonly members: Membership,
    private readonly links: LinkRegistry,
    private readonly dialer: Dialer,
    private readonly identity: ServerIdentity,
    private readonly replication: Replication,
  ) {}

  setHandler(h: ForwardHandler): void {
    this.handler = h;
  }

  close(): void {
    for (const s of this.spare.values()) s.client.close();
    this.spare.clear();
  }

  // ---- calling out ----

  /** Secondary: a write sent to the primary, answered as the primary's API answered it. */
  async forward(req: { method: string; path: string; body: string; token: string }, waitMs = 0): Promise<ForwardResponse> {
    if (this.ctx.isPrimary) throw new IsthmusError(ErrorCodes.INTERNAL, 'the primary does not forward');
    const primary = this.ctx.primaryDc;
    const client = this.primaryClient();
    if (!client) {
      const why = this.links.lastError(primary) || this.dialer.dialing(primary)?.lastError || 'no live link';
      throw new IsthmusError(
        ErrorCodes.PRIMARY_UNREACHABLE,
        `the primary datacenter ${primary} cannot be reached (${why}); intentions, ACL, CA settings and federation membership are written there, so nothing was changed`,
      );
    }
    const timeoutMs = FORWARD_TIMEOUT_MS + waitMs;
    try {
      return await unary<ForwardRequest, ForwardResponse>(client.forward.bind(client), { ...req, originDatacenter: this.ctx.dc }, timeoutMs);
    } catch (err) {
      const e = err as grpc.ServiceError;
      if (e.code === grpc.status.DEADLINE_EXCEEDED) {
        throw new IsthmusError(
          ErrorCodes.PRIMARY_UNREACHABLE,
          `the primary datacenter ${primary} did not answer within ${Math.round(timeoutMs / 1000)} s; the write may or may not have been applied there: read it back before retrying`,
        );
      }
      throw fromStatus(e, `the primary datacenter ${primary} cannot be reached; nothing was changed`);
    }
  }

  /** Secondary: has its intermediate signed by the primary (renewal). */
  async signRemote(dc: string, publicKeyPem: string): Promise<{ certPem: string; rootId: string }> {
    const primary = this.ctx.primaryDc;
    const client = this.primaryClient();
    if (!client)
      throw new IsthmusError(
        ErrorCodes.PRIMARY_UNREACHABLE,
        `the primary datacenter ${primary} cannot be reached to sign the intermediate; the current one stays in use`,
      );
    try {
      return await unary<SignRequest, SignResponse>(client.signIntermediate.bind(client), { datacenter: dc, publicKeyPem }, 15_000);
    } catch (err) {
      throw fromStatus(err as grpc.ServiceError, `the primary datacenter ${primary} cannot be reached to sign the intermediate`);
    }
  }

  /** Asks another DC to answer a read of its own records (GET /v1/flows...) with the caller's token. */
  async queryPeer(dc: string, path: string, token: string, timeoutMs: number): Promise<ForwardResponse> {
    if (dc === this.ctx.dc) throw new IsthmusError(ErrorCodes.INTERNAL, 'a DC does not query itself');
    const client = this.dialer.liveClient(dc) ?? this.spareClient(dc);
    if (!client) throw new IsthmusError(ErrorCodes.UNAVAILABLE, `no address known for datacenter ${dc}`);
    try {
      return await unary<ForwardRequest, ForwardResponse>(
        client.query.bind(client),
        { method: 'GET', path, body: '', token, originDatacenter: this.ctx.dc },
        timeoutMs,
      );
    } catch (err) {
      const e = err as grpc.ServiceError;
      if (e.code === grpc.status.DEADLINE_EXCEEDED) throw new IsthmusError(ErrorCodes.TIMEOUT, `datacenter ${dc} did not answer within ${timeoutMs} ms`);
      const mine = fromStatus(e, `datacenter ${dc} cannot be reached`);
      throw mine.code === ErrorCodes.PRIMARY_UNREACHABLE ? new IsthmusError(ErrorCodes.UNAVAILABLE, mine.message) : mine;
    }
  }

  /**
   * The leader calls the primary over the link it dialed, and fails at once when that link is down;
   * a replica that does not lead (it has no link) calls through a client of its own.
   */
  private primaryClient(): FederationClient | undefined {
    const primary = this.ctx.primaryDc;
    return this.dialer.active ? this.dialer.liveClient(primary) : this.spareClient(primary);
  }

  private spareClient(dc: string): FederationClient | undefined {
    const addrs = this.members.dialAddresses(dc);
    if (addrs.length === 0) return undefined;
    const cached = this.spare.get(dc);
    if (cached && addrs.includes(cached.address)) return cached.client;
    cached?.client.close();
    const client = this.identity.client(addrs[0], dc);
    this.spare.set(dc, { client, address: addrs[0] });
    return client;
  }

  // ---- answering ----

  /** The member DC whose server certificate made this call; anyone else is refused. */
  callerDc(call: object): string {
    const dc = serverDcOf(callerCertificate(call), this.ctx.trustDomain());
    // A server never calls its own listener: its own identity coming in is someone else's doing.
    if (!dc || dc === this.ctx.dc || !this.members.isMember(dc))
      throw new IsthmusError(ErrorCodes.PERMISSION_DENIED, 'this call needs the server certificate of another member datacenter');
    return dc;
  }

  async onSign(call: grpc.ServerUnaryCall<SignRequest, SignResponse>): Promise<SignResponse> {
    const dc = this.callerDc(call);
    if (call.request.datacenter !== dc)
      throw new IsthmusError(ErrorCodes.PERMISSION_DENIED, `a server of ${dc} cannot have an intermediate signed for ${call.request.datacenter}`);
    return this.ctx.ca.signIntermediateFor(dc, call.request.publicKeyPem);
  }

  async onQuery(call: grpc.ServerUnaryCall<ForwardRequest, ForwardResponse>): Promise<ForwardResponse> {
    const dc = this.callerDc(call);
    const r = call.request;
    if (r.method !== 'GET' || !/^\/v1\/flows(\?|$)/.test(r.path))
      throw invalid([{ Field: 'QueryRequest', Message: 'only GET /v1/flows is answered for another datacenter' }]);
    checkForwarded(r);
    if (!this.handler) throw new IsthmusError(ErrorCodes.UNAVAILABLE, 'the server is starting');
    const res = await this.handler({ method: 'GET', path: r.path, body: '', token: r.token, originDc: dc });
    return { ...res, index: this.ctx.store.index() };
  }

  async onForward(call: grpc.ServerUnaryCall<ForwardRequest, ForwardResponse>): Promise<ForwardResponse> {
    const dc = this.callerDc(call);
    if (!this.ctx.isPrimary || !this.handler) throw new IsthmusError(ErrorCodes.PRIMARY_UNREACHABLE, `${this.ctx.dc} is not the primary`);
    const r = call.request;
    if (!/^(PUT|POST|DELETE|GET)$/.test(r.method) || !r.path.startsWith('/v1/'))
      throw invalid([{ Field: 'ForwardRequest', Message: 'only /v1/ writes are forwarded' }]);
    checkForwarded(r);
    const res = await this.handler({ method: r.method, path: r.path, body: r.body, token: r.token, originDc: dc });
    return { ...res, index: this.replication.replicatedIndex() };
  }
}

/**
 * A forwarded request is replayed against this server's API as an HTTP request: its path and token
 * become a URL and a header, so each must be one (no control characters, no spaces, bounded).
 */
function checkForwarded(r: ForwardRequest): void {
  const v = [];
  if (typeof r.path !== 'string' || r.path.length > 8192 || !/^\/v1\/[\x21-\x7e]*$/.test(r.path) || /(^|\/)\.\.?(\/|\?|$)/.test(r.path.split('?')[0])) {
    v.push({ Field: 'ForwardRequest.path', Message: 'must be an API path under /v1/ (printable ASCII, no spaces, no dot segments, at most 8192 characters)' });
  }
  if (typeof r.token !== 'string' || r.token.length > 512 || !/^[\x21-\x7e]*$/.test(r.token))
    v.push({ Field: 'ForwardRequest.token', Message: 'must be at most 512 printable characters' });
  if (typeof r.body !== 'string' || Buffer.byteLength(r.body) > MAX_FORWARDED_BODY)
    v.push({ Field: 'ForwardRequest.body', Message: `must be at most ${MAX_FORWARDED_BODY} bytes` });
  if (v.length) throw invalid(v);
}
