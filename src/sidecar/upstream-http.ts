// The L7 side of an http upstream: the local listener is an HTTP/1.1 proxy. Per request it walks the
// discovery chain (route, split, resolver), edits headers and the path as the route says, and sends
// the request over a keep-alive mTLS connection to an endpoint of the chosen target, moving on to the
// next endpoint or target when a connection fails before the request went out, retrying as the
// route's retry policy says (Envoy's conditions), under the route's (or resolver's) request timeout.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import type tls from 'node:tls';
import { ErrorCodes, type ErrorCode } from '../core/errors.js';
import type { FlowRecord, FlowRouting } from '../dataflow/index.js';
import { applyHeaderEdits, rewritePath, type ChainWalk } from './chain-walk.js';
import type { SidecarEndpoint } from './sidecar-config.js';
import { addSetCookies, lbRequestOf } from './load-balancer.js';
import { ZERO_TRACE, type SidecarContext } from './sidecar-context.js';
import { describeTlsError } from './tls-refusal.js';
import { LOCAL_APP_HEADER, endToEnd } from './inbound-answers.js';
import { idleTimeoutOf, watchIdle, watchRequestIdle } from './idle-timeout.js';
import { HTTP_IDLE_TIMEOUT_MS } from './sidecar-inbound.js';
import { answerFrom, answerRaw, responseHead, splice, withUpgrade } from './upgrade.js';
import { AttemptCursor, RETRY_BUFFER_BYTES, backoff, readUpTo, requestTimeoutOf, retriable, retryPolicyOf, type Body } from './retry-policy.js';
import { attemptsOf, connectTimeoutOf, dialEndpoint, endpointKey, joinReasons, routed, routingOf, type Attempt, type UpstreamState } from './upstream-state.js';

/** How long a pooled upstream connection may stay idle: under the server sidecar's keep-alive, so it closes first. */
const UPSTREAM_IDLE_MS = HTTP_IDLE_TIMEOUT_MS / 2;
/** Methods a request on a connection the server had just closed may be sent again for (RFC 9110 9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The caller's W3C traceparent, or a new trace when it sent none (or a malformed one). */
export function traceparentOf(h: string | string[] | undefined): string {
  const v = Array.isArray(h) ? h[0] : h;
  if (v && TRACEPARENT.test(v.trim().toLowerCase())) return v.trim().toLowerCase();
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`;
}

interface SocketInfo {
  traceId: () => string;
  requests: number;
  identityError: () => string | undefined;
}

type Outcome =
  | { kind: 'response'; res: http.IncomingMessage; info: SocketInfo | undefined; requestIndex: number }
  | { kind: 'connect'; why: string }
  | { kind: 'reset'; why: string; reused: boolean; info: SocketInfo | undefined; requestIndex: number }
  | { kind: 'aborted' };

export class UpstreamHttp {
  readonly server: http.Server;
  readonly #agents = new Map<string, { agent: http.Agent; context: tls.SecureContext }>();
  readonly #sockets = new WeakMap<net.Socket, SocketInfo>();

  constructor(
    private readonly ctx: SidecarContext,
    private readonly state: UpstreamState,
  ) {
    this.server = http.createServer({ keepAlive: true, keepAliveTimeout: HTTP_IDLE_TIMEOUT_MS }, (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.ctx.log.error('upstream request failed', { upstream: this.state.name, error: err });
        const body = JSON.stringify({ Error: ErrorCodes.INTERNAL, Message: 'the sidecar failed on this request (its log has the detail)' });
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
        else res.destroy();
      });
    });
    this.server.on('upgrade', (req: http.IncomingMessage, sock: net.Socket, head: Buffer) => this.upgrade(req, sock, head));
    this.server.on('connection', (s: net.Socket) => {
      s.setNoDelay(true);
      this.ctx.sockets.add(s);
      s.once('close', () => this.ctx.sockets.delete(s));
    });
  }

  close(): void {
    for (const { agent } of this.#agents.values()) agent.destroy();
    this.#agents.clear();
  }

  /** One keep-alive pool per endpoint, made again when the sidecar's certificates change. */
  private agentFor(ep: SidecarEndpoint, connectTimeoutMs: number): http.Agent {
    const key = `${endpointKey(ep)}/${ep.spiffeId}/${connectTimeoutMs}`;
    const had = this.#agents.get(key);
    if (had && had.context === this.ctx.secureContext) return had.agent;
    // The old pool's idle connections carry the old certificate; those in use finish first.
    if (had) for (const list of Object.values(had.agent.freeSockets)) for (const s of list ?? []) s.destroy();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 256, timeout: UPSTREAM_IDLE_MS, scheduling: 'lifo' });
    agent.createConnection = () => {
      const d = dialEndpoint(this.ctx, ep, connectTimeoutMs);
      this.#sockets.set(d.socket, { traceId: d.traceId, requests: 0, identityError: d.identityError });
      return d.socket;
    };
    this.#agents.set(key, { agent, context: this.ctx.secureContext });
    return agent;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const start = Date.now();
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const traceparent = traceparentOf(req.headers.traceparent);
    const up = this.state.current();
    const name = this.state.name;
    const base = {
      hop: 'client-sidecar' as const,
      source: this.ctx.self(),
      intentionId: '',
      startTime: start,
    };
    const fail = (
      status: number,
      code: ErrorCode,
      message: string,
      routing?: ReturnType<typeof routingOf>,
      extra: { traceId?: string; requestIndex?: number; sni?: string; spiffeId?: string } = {},
    ) => {
      const body = JSON.stringify({ Error: code, Message: message });
      if (!res.headersSent) {
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      } else res.destroy();
      this.ctx.record({
        ...base,
        traceId: extra.traceId ?? ZERO_TRACE,
        requestIndex: extra.requestIndex ?? 0,
        destination: { ...this.ctx.identity(extra.spiffeId ?? '', name), service: name },
        sni: extra.sni ?? '',
        verdict: 'error',
        reason: message,
        durationMs: Date.now() - start,
        bytesIn: 0,
        bytesOut: Buffer.byteLength(body),
        http: { method, path: url, status, traceparent },
        ...(routing ? { routing } : {}),
      });
    };
    if (!up) return fail(503, ErrorCodes.UNAVAILABLE, `upstream ${name} is gone`);
    const walker = this.state.walker(up.chain);
    const walk: ChainWalk | undefined = walker?.walk({ method, url, headers: req.headers });
    if (walker && !walk) {
      req.resume();
      return fail(404, ErrorCodes.NOT_FOUND, `no route of upstream ${name} matches ${method} ${url.split('?')[0]}`, routingOf(undefined, '', 0, ''));
    }
    const dest = walk?.route?.Destination;
    const edits = walk && walker ? walker.edits(walk) : { request: [], response: [] };
    const policy = retryPolicyOf(dest);
    const { ms: timeoutMs, source: timeoutSource } = requestTimeoutOf(walk);

    // The request body, held while it is small enough to send again.
    const body = await readUpTo(req, RETRY_BUFFER_BYTES);
    if (body === undefined) return; // the caller went away
    const headers = endToEnd(req.headers);
    headers.traceparent = traceparent;
    if (body.complete) {
      // The body is here already: nothing to wait for a 100 Continue for.
      delete headers.expect;
      const len = body.chunks.reduce((n, c) => n + c.length, 0);
      if (len > 0 || req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) headers['content-length'] = len;
    } else if (req.headers['transfer-encoding'] !== undefined) headers['transfer-encoding'] = req.headers['transfer-encoding'];
    applyHeaderEdits(headers, edits.request);
    const path = rewritePath(url, walk?.route?.Match?.HTTP, dest?.PrefixRewrite);

    const plan = this.state.plan(up, walk, lbRequestOf(req.headers, url, req.socket));
    const attempts = attemptsOf(plan.targets);
    const connectTimeout = connectTimeoutOf(walk);
    const withRouting = routed(up);
    if (attempts.length === 0) {
      req.resume();
      return fail(503, ErrorCodes.UNAVAILABLE, `no healthy endpoint for upstream ${name}`, withRouting ? routingOf(walk, '', 0, plan.failover) : undefined);
    }

    // The request timeout runs from the end of the caller's request (Envoy's), over every attempt.
    let timedOut = false;
    let current: http.ClientRequest | undefined;
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            timedOut = true;
            current?.destroy();
          }, timeoutMs)
        : undefined;
    let gone = false;
    res.once('close', () => {
      if (res.writableFinished) return;
      gone = true;
      current?.destroy();
    });
    // The route's IdleTimeout: a request with no bytes either way for that long ends as a timed-out one.
    let idleWhy: string | undefined;
    watchRequestIdle(req, res, dest, walk?.routeIndex, (why) => {
      idleWhy = why;
      timedOut = true;
      current?.destroy();
    });

    const cursor = new AttemptCursor(attempts, plan.failover, policy?.numRetries ?? 0, body.complete);
    const next = (why: string, mode: 'connect' | 'stale' | 'policy') => cursor.next(why, mode);
    // The attempt in flight, counted for least_request until it is answered in full or given up.
    const flight = this.state.flight();
    try {
      for (;;) {
        const a = cursor.current;
        flight.to(a);
        const o =
          gone || timedOut ? ({ kind: 'aborted' } as const) : await this.send(a, method, path, headers, body, req, connectTimeout, (c) => (current = c));
        const routing = () => (withRouting ? routingOf(walk, a.target.id, cursor.retries, cursor.failover) : undefined);
        if (timedOut || gone || o.kind === 'aborted') {
          const info = o.kind === 'response' || o.kind === 'reset' ? o : undefined;
          if (timedOut) this.state.report(up, a.target, a.endpoint, false);
          if (o.kind === 'response') o.res.destroy();
          return fail(
            timedOut ? 504 : 499,
            timedOut ? ErrorCodes.TIMEOUT : ErrorCodes.UNAVAILABLE,
            timedOut ? (idleWhy ?? `upstream ${name} did not answer within ${timeoutMs} ms (${timeoutSource})`) : 'the caller went away before the answer',
            routing(),
            { traceId: info?.info?.traceId(), requestIndex: info?.requestIndex, sni: a.endpoint.sni, spiffeId: a.endpoint.spiffeId },
          );
        }
        if (o.kind === 'connect') {
          this.state.report(up, a.target, a.endpoint, false);
          // Nothing was sent: the next endpoint (then the next target) takes the request, retry policy or not.
          if (next(`connect failure at ${a.endpoint.host}:${a.endpoint.port} (${o.why})`, 'connect')) continue;
          return fail(
            503,
            ErrorCodes.UNAVAILABLE,
            `upstream ${name} unreachable: connect failure at ${a.endpoint.host}:${a.endpoint.port} (${o.why})`,
            routing(),
            {
              sni: a.endpoint.sni,
              spiffeId: a.endpoint.spiffeId,
            },
          );
        }
        if (o.kind === 'reset') {
          this.state.report(up, a.target, a.endpoint, false);
          const why = `reset at ${a.endpoint.host}:${a.endpoint.port} (${o.why})`;
          // A kept-alive connection the server closed as the request went out: nothing was answered,
          // so an idempotent request goes again (as browsers and undici do), policy or not.
          const stale = o.reused && IDEMPOTENT.has(method);
          if (stale ? next(why, 'stale') : policy !== undefined && retriable(policy, { kind: 'reset' }) && next(why, 'policy')) {
            if (!stale) await backoff(cursor.retries);
            continue;
          }
          return fail(503, ErrorCodes.UNAVAILABLE, `upstream ${name} ${why} before answering`, routing(), {
            traceId: o.info?.traceId(),
            requestIndex: o.requestIndex,
            sni: a.endpoint.sni,
            spiffeId: a.endpoint.spiffeId,
          });
        }
        const ures = o.res;
        const status = ures.statusCode ?? 502;
        this.state.report(up, a.target, a.endpoint, status < 500);
        const localAppUnreachable = ures.headers[LOCAL_APP_HEADER] === 'unreachable';
        const why = `${status} from ${a.endpoint.host}:${a.endpoint.port}`;
        // An app its sidecar cannot reach is a connect failure one hop on: the next endpoint takes it.
        if (
          (localAppUnreachable && next(why, 'connect')) ||
          (policy && retriable(policy, { kind: 'status', status, localAppUnreachable }) && next(why, 'policy'))
        ) {
          ures.resume();
          if (!localAppUnreachable) await backoff(cursor.retries);
          continue;
        }
        // The answer goes back to the caller.
        const out = endToEnd(ures.headers);
        addSetCookies(out, plan.setCookies);
        applyHeaderEdits(out, edits.response);
        res.writeHead(status, out);
        let bytesOut = 0;
        ures.on('data', (c: Buffer) => (bytesOut += c.length));
        ures.pipe(res);
        await new Promise<void>((resolve) => {
          ures.once('end', resolve);
          ures.once('error', resolve);
          ures.once('close', resolve);
        });
        const complete = ures.complete;
        if (!complete) res.destroy();
        this.ctx.record({
          ...base,
          traceId: o.info?.traceId() ?? ZERO_TRACE,
          requestIndex: o.requestIndex,
          destination: { ...this.ctx.identity(a.endpoint.spiffeId, name), service: name },
          sni: a.endpoint.sni,
          verdict: complete ? 'allowed' : 'error',
          reason: complete
            ? cursor.last
              ? `answered ${status} after ${cursor.last}`
              : `answered ${status}`
            : timedOut
              ? (idleWhy ?? `upstream ${name} did not finish its answer within ${timeoutMs} ms (${timeoutSource})`)
              : 'the answer was cut off',
          durationMs: Date.now() - start,
          bytesIn: body.chunks.reduce((n, c) => n + c.length, 0),
          bytesOut,
          http: { method, path: url, status, traceparent },
          ...(withRouting ? { routing: routing() } : {}),
        });
        return;
      }
    } finally {
      flight.done();
      if (timer) clearTimeout(timer);
    }
  }

  /**
   * An Upgrade request (WebSocket): the chain is walked as for any request (route, header edits,
   * PrefixRewrite, target), the request goes over a connection of its own (an upgraded connection
   * is never pooled), and on a 101 the two connections are joined until both end. Another answer
   * goes back as it came; a failed connection takes the next endpoint, then the next target, as a
   * request does (the retry policy does not apply: an upgrade's bytes cannot be sent again). The
   * route's IdleTimeout bounds the wait for the answer (504) and any silence after the 101.
   */
  private upgrade(req: http.IncomingMessage, sock: net.Socket, head: Buffer): void {
    const start = Date.now();
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const traceparent = traceparentOf(req.headers.traceparent);
    const up = this.state.current();
    const name = this.state.name;
    sock.on('error', () => {});
    const record = (
      verdict: FlowRecord['verdict'],
      reason: string,
      status: number,
      bytes: { in: number; out: number },
      at?: { a: Attempt; traceId: string; retries: number; failover: string },
      routing?: FlowRouting,
    ) =>
      this.ctx.record({
        hop: 'client-sidecar',
        source: this.ctx.self(),
        intentionId: '',
        startTime: start,
        traceId: at?.traceId ?? ZERO_TRACE,
        requestIndex: 1,
        destination: { ...this.ctx.identity(at?.a.endpoint.spiffeId ?? '', name), service: name },
        sni: at?.a.endpoint.sni ?? '',
        verdict,
        reason,
        durationMs: Date.now() - start,
        bytesIn: bytes.in,
        bytesOut: bytes.out,
        http: { method, path: url, status, traceparent },
        ...(routing ? { routing } : {}),
      });
    const fail = (status: number, code: ErrorCode, message: string, routing?: FlowRouting, at?: Parameters<typeof record>[4]) => {
      const n = answerRaw(sock, status, { 'content-type': 'application/json' }, JSON.stringify({ Error: code, Message: message }));
      record('error', message, status, { in: 0, out: n }, at, routing);
    };
    if (!up) return fail(503, ErrorCodes.UNAVAILABLE, `upstream ${name} is gone`);
    const walker = this.state.walker(up.chain);
    const walk: ChainWalk | undefined = walker?.walk({ method, url, headers: req.headers });
    if (walker && !walk)
      return fail(404, ErrorCodes.NOT_FOUND, `no route of upstream ${name} matches ${method} ${url.split('?')[0]}`, routingOf(undefined, '', 0, ''));
    const dest = walk?.route?.Destination;
    const edits = walk && walker ? walker.edits(walk) : { request: [], response: [] };
    const headers = withUpgrade(endToEnd(req.headers), req.headers.upgrade);
    headers.traceparent = traceparent;
    applyHeaderEdits(headers, edits.request);
    const path = rewritePath(url, walk?.route?.Match?.HTTP, dest?.PrefixRewrite);
    const plan = this.state.plan(up, walk, lbRequestOf(req.headers, url, sock));
    const attempts = attemptsOf(plan.targets);
    const connectTimeout = connectTimeoutOf(walk);
    const withRouting = routed(up);
    const idleMs = idleTimeoutOf(dest);
    const idleSource = `Routes[${walk?.routeIndex ?? 0}] IdleTimeout`;
    if (attempts.length === 0)
      return fail(503, ErrorCodes.UNAVAILABLE, `no healthy endpoint for upstream ${name}`, withRouting ? routingOf(walk, '', 0, plan.failover) : undefined);

    let failover = plan.failover;
    const refused: string[] = [];
    const attempt = (k: number): void => {
      const a = attempts[k];
      const ep = a.endpoint;
      const d = dialEndpoint(this.ctx, ep, connectTimeout);
      const at = () => ({ a, traceId: d.traceId(), retries: k, failover });
      const routing = () => (withRouting ? routingOf(walk, a.target.id, k, failover) : undefined);
      let connected = false;
      let settled = false;
      d.socket.once('secureConnect', () => (connected = true));
      const creq = http.request({ method, path, headers, setHost: false, createConnection: () => d.socket });
      const stopIdle = watchIdle(
        idleMs,
        () => sock.bytesRead + sock.bytesWritten + d.socket.bytesRead + d.socket.bytesWritten,
        () => {
          if (settled) return;
          settled = true;
          creq.destroy();
          this.state.report(up, a.target, ep, false);
          fail(504, ErrorCodes.TIMEOUT, `upstream ${name} did not answer the upgrade: no bytes either way for ${idleMs} ms (${idleSource})`, routing(), at());
        },
      );
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        stopIdle();
        return true;
      };
      const callerGone = () => {
        if (!settle()) return;
        creq.destroy();
        record('error', 'the caller went away before the answer', 499, { in: 0, out: 0 }, at(), routing());
      };
      sock.once('close', callerGone);
      const next = (why: string): boolean => {
        if (k + 1 >= attempts.length || sock.destroyed) return false;
        refused.push(why);
        if (attempts[k + 1].target.id !== a.target.id) failover = joinReasons(failover, why);
        sock.off('close', callerGone);
        attempt(k + 1);
        return true;
      };
      creq.once('upgrade', (ures: http.IncomingMessage, usock: net.Socket, uhead: Buffer) => {
        if (!settle()) return usock.destroy();
        sock.off('close', callerGone);
        this.state.report(up, a.target, ep, true);
        const out = withUpgrade(endToEnd(ures.headers), ures.headers.upgrade);
        applyHeaderEdits(out, edits.response);
        sock.write(responseHead(101, out));
        const proto = String(ures.headers.upgrade ?? '');
        splice(sock, head, usock, uhead, idleMs, (r) =>
          record(
            'allowed',
            `upgraded to ${proto}${refused.length ? ` after ${refused.join(', ')}` : ''}; ${r.idle ? `closed: no bytes either way for ${idleMs} ms (${idleSource})` : 'closed'}`,
            101,
            { in: r.aToB, out: r.bToA },
            at(),
            routing(),
          ),
        );
      });
      creq.once('response', (ures: http.IncomingMessage) => {
        if (!settle()) return ures.destroy();
        sock.off('close', callerGone);
        const status = ures.statusCode ?? 502;
        const localAppUnreachable = ures.headers[LOCAL_APP_HEADER] === 'unreachable';
        this.state.report(up, a.target, ep, status < 500);
        // An app its sidecar cannot reach is a connect failure one hop on, as for any request.
        if (localAppUnreachable && next(`${status} from ${ep.host}:${ep.port}`)) {
          ures.resume();
          d.socket.destroy();
          return;
        }
        const out = endToEnd(ures.headers);
        applyHeaderEdits(out, edits.response);
        answerFrom(sock, ures, out, (n) => {
          d.socket.destroy();
          record(status < 500 ? 'allowed' : 'error', `answered ${status} to an upgrade`, status, { in: 0, out: n }, at(), routing());
        });
      });
      creq.once('error', (err: Error & { code?: string }) => {
        if (settled) return;
        if (!connected) {
          const why =
            d.identityError() ?? (err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET' || err.code === 'ETIMEDOUT' ? err.code : describeTlsError(err));
          this.state.report(up, a.target, ep, false);
          settled = true;
          stopIdle();
          if (next(`connect failure at ${ep.host}:${ep.port} (${why})`)) return;
          sock.off('close', callerGone);
          return fail(503, ErrorCodes.UNAVAILABLE, `upstream ${name} unreachable: connect failure at ${ep.host}:${ep.port} (${why})`, routing(), at());
        }
        if (!settle()) return;
        sock.off('close', callerGone);
        this.state.report(up, a.target, ep, false);
        fail(503, ErrorCodes.UNAVAILABLE, `upstream ${name} reset at ${ep.host}:${ep.port} (${err.code ?? err.message}) before answering`, routing(), at());
      });
      creq.end();
    };
    attempt(0);
  }

  /** One attempt at one endpoint. */
  private send(
    a: Attempt,
    method: string,
    path: string,
    headers: http.OutgoingHttpHeaders,
    body: Body,
    req: http.IncomingMessage,
    connectTimeoutMs: number,
    track: (c: http.ClientRequest) => void,
  ): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      const ep = a.endpoint;
      const creq = http.request({ host: ep.host, port: ep.port, method, path, headers, agent: this.agentFor(ep, connectTimeoutMs), setHost: false });
      track(creq);
      let info: SocketInfo | undefined;
      let connected = false;
      let requestIndex = 0;
      let done = false;
      const settle = (o: Outcome) => {
        if (!done) {
          done = true;
          resolve(o);
        }
      };
      creq.once('socket', (s: net.Socket) => {
        info = this.#sockets.get(s);
        const tlsSock = s as tls.TLSSocket;
        const count = () => (requestIndex = info ? ++info.requests : 0);
        if (creq.reusedSocket || !tlsSock.connecting) {
          connected = true;
          count();
        } else
          tlsSock.once('secureConnect', () => {
            connected = true;
            count();
          });
      });
      creq.once('response', (res) => settle({ kind: 'response', res, info, requestIndex }));
      creq.once('error', (err: Error & { code?: string }) => {
        if (!connected) {
          const why =
            info?.identityError() ?? (err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET' || err.code === 'ETIMEDOUT' ? err.code : describeTlsError(err));
          settle({ kind: 'connect', why });
        } else settle({ kind: 'reset', why: err.code ?? err.message, reused: creq.reusedSocket, info, requestIndex });
      });
      creq.once('close', () => settle({ kind: 'aborted' }));
      for (const c of body.chunks) creq.write(c);
      if (body.complete) creq.end();
      else req.pipe(creq);
    });
  }
}
