// The L7 side of an http2 or grpc upstream: the local listener takes h2c with prior knowledge (what
// grpc-js with insecure credentials sends) and HTTP/1.1 on the same port. Per stream it walks the
// discovery chain (a gRPC method is a path, /pkg.Service/Method), edits headers and the path, and
// sends the stream on a pooled HTTP/2 session over mTLS (ALPN h2) to an endpoint of the chosen target,
// failing over and retrying as the HTTP/1.1 side does (upstream-http.ts), under the request timeout.
// gRPC callers hear gRPC: a timeout or an upstream no endpoint can take is a trailers-only UNAVAILABLE.
import http2 from 'node:http2';
import net from 'node:net';
import type tls from 'node:tls';
import { ErrorCodes, type ErrorCode } from '../core/errors.js';
import type { FlowRecord } from '../dataflow/index.js';
import { applyHeaderEdits, rewritePath, type ChainWalk, type HeaderEdits } from './chain-walk.js';
import { LOCAL_APP_HEADER } from './inbound-answers.js';
import { GRPC_UNAVAILABLE, grpcPercentEncode, sniffH2 } from './inbound-h2.js';
import { AttemptCursor, RETRY_BUFFER_BYTES, backoff, readUpTo, requestTimeoutOf, retriable, retryPolicyOf, type Body } from './retry-policy.js';
import type { SidecarEndpoint } from './sidecar-config.js';
import { addSetCookies, lbRequestOf } from './load-balancer.js';
import { ZERO_TRACE, type SidecarContext } from './sidecar-context.js';
import { HTTP_IDLE_TIMEOUT_MS } from './sidecar-inbound.js';
import { describeTlsError } from './tls-refusal.js';
import { UpstreamHttp, traceparentOf } from './upstream-http.js';
import { attemptsOf, connectTimeoutOf, dialEndpoint, endpointKey, routed, routingOf, type Attempt, type UpstreamState } from './upstream-state.js';

const { NGHTTP2_NO_ERROR, NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM, NGHTTP2_FLAG_END_STREAM } = http2.constants;

/** How long a pooled session to an endpoint may stay idle: under the server sidecar's idle close, so this side closes first. */
const UPSTREAM_IDLE_MS = HTTP_IDLE_TIMEOUT_MS / 2;

/** Connection-specific fields, which HTTP/2 forbids (RFC 9113 8.2.2), and this side's own. */
const NOT_FORWARDED = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'host']);

/** One pooled session to one endpoint: many streams at once, each counted for its flow record. */
interface Pooled {
  session: http2.ClientHttp2Session;
  context: tls.SecureContext;
  ready: Promise<string | undefined>;
  traceId: () => string;
  requests: number;
}

type Outcome =
  | { kind: 'response'; up: http2.ClientHttp2Stream; headers: http2.IncomingHttpHeaders; only: boolean; pooled: Pooled; requestIndex: number }
  | { kind: 'connect'; why: string }
  /** The stream never reached the server: refused (REFUSED_STREAM) or cut by the session's GOAWAY. */
  | { kind: 'refused'; why: string; goaway: boolean; pooled: Pooled; requestIndex: number }
  | { kind: 'reset'; why: string; pooled: Pooled; requestIndex: number }
  | { kind: 'aborted' };

export class UpstreamH2 {
  /** The local listener: it reads the first bytes and hands each connection to the h2c or the HTTP/1.1 side. */
  readonly server: net.Server;
  /** HTTP/1.1 callers of the same port: the http upstream's proxy, fed the connections that are not h2. */
  readonly http: UpstreamHttp;
  private readonly h2c = http2.createServer();
  readonly #pool = new Map<string, Pooled>();
  /** The apps' sessions, told to go away (GOAWAY) when the listener closes, so they reconnect to the next one. */
  readonly #callers = new Set<http2.Http2Session>();

  constructor(
    private readonly ctx: SidecarContext,
    private readonly state: UpstreamState,
  ) {
    this.http = new UpstreamHttp(ctx, state);
    this.server = net.createServer((sock) => {
      sock.setNoDelay(true);
      this.ctx.sockets.add(sock);
      sock.once('close', () => this.ctx.sockets.delete(sock));
      sniffH2(sock, HTTP_IDLE_TIMEOUT_MS, (h2) => (h2 ? this.h2c.emit('connection', sock) : this.http.server.emit('connection', sock)));
    });
    // An app's session idle for as long as an HTTP/1.1 keep-alive connection would be is closed (GOAWAY, open streams finish).
    this.h2c.setTimeout(HTTP_IDLE_TIMEOUT_MS);
    this.h2c.on('timeout', (s?: http2.Http2Session) => s?.close());
    this.h2c.on('session', (s) => {
      this.#callers.add(s);
      s.once('close', () => this.#callers.delete(s));
    });
    this.h2c.on('sessionError', (err) => this.ctx.log.debug('upstream h2c session failed', { upstream: this.state.name, error: err.message }));
    this.h2c.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      this.handle(stream, headers).catch((err: unknown) => {
        this.ctx.log.error('upstream request failed', { upstream: this.state.name, error: err });
        const body = JSON.stringify({ Error: ErrorCodes.INTERNAL, Message: 'the sidecar failed on this request (its log has the detail)' });
        if (stream.headersSent || stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        else {
          stream.respond({ ':status': 500, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
          stream.end(body);
        }
      });
    });
  }

  close(): void {
    for (const s of this.#callers) s.close();
    this.http.server.closeIdleConnections();
    for (const p of this.#pool.values()) p.session.close();
    this.#pool.clear();
    this.http.close();
  }

  /** The endpoint's session, dialed on first use and again once it went away or the certificates changed. */
  private sessionFor(ep: SidecarEndpoint, connectTimeoutMs: number): Pooled {
    const key = `${endpointKey(ep)}/${ep.spiffeId}/${connectTimeoutMs}`;
    const had = this.#pool.get(key);
    if (had && had.context === this.ctx.secureContext && !had.session.closed && !had.session.destroyed) return had;
    // A session with the old certificate finishes its open streams; new ones go on a new session.
    if (had) had.session.close();
    let dialed: ReturnType<typeof dialEndpoint> | undefined;
    const session = http2.connect(`https://${net.isIPv6(ep.host) ? `[${ep.host}]` : ep.host}:${ep.port}`, {
      createConnection: () => (dialed = dialEndpoint(this.ctx, ep, connectTimeoutMs, undefined, ['h2'])).socket,
    });
    const forget = () => {
      if (this.#pool.get(key)?.session === session) this.#pool.delete(key);
    };
    const ready = new Promise<string | undefined>((resolve) => {
      session.once('connect', () => resolve(undefined));
      // (Every error is listened to: one after the connect, a reset socket say, is this session's end.)
      session.on('error', (err: Error & { code?: string }) => {
        forget();
        resolve(
          dialed?.identityError() ?? (err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET' || err.code === 'ETIMEDOUT' ? err.code : describeTlsError(err)),
        );
      });
      session.once('close', () => resolve('connection closed during handshake'));
    });
    // After a GOAWAY the session takes no new streams; the ones open finish on it.
    session.once('goaway', forget);
    session.once('close', forget);
    session.setTimeout(UPSTREAM_IDLE_MS, () => session.close());
    const p: Pooled = { session, context: this.ctx.secureContext, ready, traceId: () => dialed?.traceId() ?? ZERO_TRACE, requests: 0 };
    this.#pool.set(key, p);
    return p;
  }

  private async handle(stream: http2.ServerHttp2Stream, reqHeaders: http2.IncomingHttpHeaders): Promise<void> {
    const start = Date.now();
    const method = String(reqHeaders[':method'] ?? 'GET');
    const url = String(reqHeaders[':path'] ?? '/');
    const grpc = String(reqHeaders['content-type'] ?? '').startsWith('application/grpc');
    const traceparent = traceparentOf(reqHeaders.traceparent);
    const up = this.state.current();
    const name = this.state.name;
    const fields: http2.IncomingHttpHeaders = {};
    for (const [k, v] of Object.entries(reqHeaders)) if (k[0] !== ':') fields[k] = v;
    if (fields.host === undefined && reqHeaders[':authority'] !== undefined) fields.host = String(reqHeaders[':authority']);
    let bytesIn = 0;
    let bytesOut = 0;
    const record = (
      verdict: FlowRecord['verdict'],
      reason: string,
      status: number,
      routing: ReturnType<typeof routingOf> | undefined,
      at: { pooled?: Pooled; requestIndex?: number; ep?: SidecarEndpoint } = {},
    ) =>
      this.ctx.record({
        hop: 'client-sidecar',
        source: this.ctx.self(),
        intentionId: '',
        startTime: start,
        traceId: at.pooled?.traceId() ?? ZERO_TRACE,
        requestIndex: at.requestIndex ?? 0,
        destination: { ...this.ctx.identity(at.ep?.spiffeId ?? '', name), service: name },
        sni: at.ep?.sni ?? '',
        verdict,
        reason,
        durationMs: Date.now() - start,
        bytesIn,
        bytesOut,
        http: { method, path: url, status, traceparent },
        ...(routing ? { routing } : {}),
      });
    /** This side's own answer: the project's error shape, or for a gRPC call a trailers-only status. */
    const fail = (
      status: number,
      code: ErrorCode,
      message: string,
      routing?: ReturnType<typeof routingOf>,
      at: { pooled?: Pooled; requestIndex?: number; ep?: SidecarEndpoint; grpcMessage?: string } = {},
    ) => {
      let answered = status;
      if (stream.destroyed || stream.closed) {
        // The caller is gone: nothing to say.
      } else if (stream.headersSent) stream.close(NGHTTP2_CANCEL);
      else if (grpc) {
        // gRPC clients read the status from the headers of a trailers-only answer, never an HTTP body.
        answered = 200;
        stream.respond(
          {
            ':status': 200,
            'content-type': 'application/grpc',
            'grpc-status': String(GRPC_UNAVAILABLE),
            'grpc-message': grpcPercentEncode(at.grpcMessage ?? message),
            'isthmus-error': code,
          },
          { endStream: true },
        );
      } else {
        const body = JSON.stringify({ Error: code, Message: message });
        stream.respond({ ':status': status, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        stream.end(body);
        bytesOut = Buffer.byteLength(body);
      }
      record('error', grpc ? `${message}; grpc-status ${GRPC_UNAVAILABLE}` : message, answered, routing, at);
    };
    if (!up) {
      stream.resume();
      return fail(503, ErrorCodes.UNAVAILABLE, `upstream ${name} is gone`);
    }
    const walker = this.state.walker(up.chain);
    const walk: ChainWalk | undefined = walker?.walk({ method, url, headers: fields });
    if (walker && !walk) {
      stream.resume();
      const why = `no route of upstream ${name} matches ${method} ${url.split('?')[0]}`;
      if (grpc && !stream.destroyed) {
        // Envoy's 404 for a gRPC call without a route: UNIMPLEMENTED.
        stream.respond(
          { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12', 'grpc-message': grpcPercentEncode(why) },
          { endStream: true },
        );
        return void record('error', `${why}; grpc-status 12`, 200, routingOf(undefined, '', 0, ''));
      }
      return fail(404, ErrorCodes.NOT_FOUND, why, routingOf(undefined, '', 0, ''));
    }
    const dest = walk?.route?.Destination;
    const edits = walk && walker ? walker.edits(walk) : { request: [], response: [] };
    const policy = retryPolicyOf(dest);
    const timeout = requestTimeoutOf(walk);
    const withRouting = routed(up);

    const body = await readUpTo(stream, RETRY_BUFFER_BYTES);
    if (body === undefined) return; // the caller went away
    bytesIn = body.chunks.reduce((n, c) => n + c.length, 0);
    const out = outgoing(reqHeaders, edits.request);
    out[':path'] = rewritePath(url, walk?.route?.Match?.HTTP, dest?.PrefixRewrite);
    out.traceparent = traceparent;

    const plan = this.state.plan(up, walk, lbRequestOf(fields, url, stream.session?.socket));
    const attempts = attemptsOf(plan.targets);
    const connectTimeout = connectTimeoutOf(walk);
    if (attempts.length === 0) {
      stream.resume();
      return fail(503, ErrorCodes.UNAVAILABLE, `no healthy endpoint for upstream ${name}`, withRouting ? routingOf(walk, '', 0, plan.failover) : undefined);
    }

    // The request timeout runs from the end of the caller's request (Envoy's), over every attempt.
    let timedOut = false;
    let current: http2.ClientHttp2Stream | undefined;
    const timer =
      timeout.ms > 0
        ? setTimeout(() => {
            timedOut = true;
            current?.close(NGHTTP2_CANCEL);
          }, timeout.ms)
        : undefined;
    let gone = false;
    stream.once('close', () => {
      if (stream.writableFinished && stream.rstCode === NGHTTP2_NO_ERROR) return;
      gone = true;
      current?.close(NGHTTP2_CANCEL);
    });

    const cursor = new AttemptCursor(attempts, plan.failover, policy?.numRetries ?? 0, body.complete);
    // The attempt in flight, counted for least_request until it is answered in full or given up.
    const flight = this.state.flight();
    try {
      for (;;) {
        const a = cursor.current;
        flight.to(a);
        const o: Outcome =
          gone || timedOut
            ? { kind: 'aborted' }
            : await this.send(
                a,
                out,
                body,
                stream,
                connectTimeout,
                (c) => (current = c),
                (n) => (bytesIn += n),
              );
        const at = {
          ep: a.endpoint,
          ...(o.kind === 'response' || o.kind === 'reset' || o.kind === 'refused' ? { pooled: o.pooled, requestIndex: o.requestIndex } : {}),
        };
        const routing = () => (withRouting ? routingOf(walk, a.target.id, cursor.retries, cursor.failover) : undefined);
        if (timedOut || gone || o.kind === 'aborted') {
          if (timedOut) this.state.report(up, a.target, a.endpoint, false);
          if (o.kind === 'response' && !o.up.closed) o.up.close(NGHTTP2_CANCEL);
          if (!timedOut) return fail(499, ErrorCodes.UNAVAILABLE, 'the caller went away before the answer', routing(), at);
          // Envoy's 504 for the route timeout, which a gRPC caller hears as UNAVAILABLE.
          return fail(504, ErrorCodes.TIMEOUT, `upstream ${name} did not answer within ${timeout.ms} ms (${timeout.source})`, routing(), {
            ...at,
            grpcMessage: 'upstream request timeout',
          });
        }
        const where = `${a.endpoint.host}:${a.endpoint.port}`;
        if (o.kind === 'connect') {
          this.state.report(up, a.target, a.endpoint, false);
          const why = `connect failure at ${where} (${o.why})`;
          if (cursor.next(why, 'connect')) continue;
          return fail(503, ErrorCodes.UNAVAILABLE, `upstream ${name} unreachable: ${why}`, routing(), at);
        }
        if (o.kind === 'refused' || o.kind === 'reset') {
          const why = `${o.kind === 'refused' ? 'stream refused' : 'reset'} at ${where} (${o.why})`;
          // A stream cut by a GOAWAY never reached the server: it goes again on a new session, policy or not.
          if (o.kind === 'refused' && o.goaway) {
            if (cursor.next(why, 'stale')) continue;
          } else {
            this.state.report(up, a.target, a.endpoint, false);
            if (policy && retriable(policy, { kind: o.kind }) && cursor.next(why, 'policy')) {
              await backoff(cursor.retries);
              continue;
            }
          }
          return fail(503, ErrorCodes.UNAVAILABLE, `upstream ${name} ${why} before answering`, routing(), at);
        }
        const status = Number(o.headers[':status'] ?? 502);
        const localAppUnreachable = o.headers[LOCAL_APP_HEADER] === 'unreachable';
        const grpcStatus = o.only && o.headers['grpc-status'] !== undefined ? Number(o.headers['grpc-status']) : undefined;
        // A gRPC answer's status is in its trailers: outlier detection hears it when they come.
        const trailersLater = grpc && !o.only && status < 500;
        if (!trailersLater) this.state.report(up, a.target, a.endpoint, status < 500 && !grpcServerError(grpcStatus));
        const why = grpcStatus !== undefined ? `grpc-status ${grpcStatus} from ${where}` : `${status} from ${where}`;
        if (
          (localAppUnreachable && cursor.next(why, 'connect')) ||
          (policy && retriable(policy, { kind: 'status', status, localAppUnreachable }) && cursor.next(why, 'policy')) ||
          (policy && grpcStatus !== undefined && retriable(policy, { kind: 'grpc', grpcStatus }) && cursor.next(why, 'policy'))
        ) {
          if (!o.up.closed) o.up.close(NGHTTP2_CANCEL);
          if (!localAppUnreachable) await backoff(cursor.retries);
          continue;
        }
        const r = await this.answer(stream, o, edits.response, plan.setCookies, (n) => (bytesOut += n));
        if (trailersLater) this.state.report(up, a.target, a.endpoint, !grpcServerError(r.grpcStatus === undefined ? undefined : Number(r.grpcStatus)));
        const said = grpc ? `; grpc-status ${r.grpcStatus ?? 'none'}` : '';
        record(
          r.complete ? 'allowed' : 'error',
          r.complete
            ? `${cursor.last ? `answered ${status} after ${cursor.last}` : `answered ${status}`}${said}`
            : timedOut
              ? `upstream ${name} did not finish its answer within ${timeout.ms} ms (${timeout.source})`
              : (r.failure ?? 'the answer was cut off'),
          status,
          routing(),
          at,
        );
        return;
      }
    } finally {
      flight.done();
      if (timer) clearTimeout(timer);
    }
  }

  /** One attempt at one endpoint: the stream on the endpoint's session, the held body sent, the rest piped. */
  private async send(
    a: Attempt,
    headers: http2.OutgoingHttpHeaders,
    body: Body,
    caller: http2.ServerHttp2Stream,
    connectTimeoutMs: number,
    track: (c: http2.ClientHttp2Stream) => void,
    more: (n: number) => void,
  ): Promise<Outcome> {
    const pooled = this.sessionFor(a.endpoint, connectTimeoutMs);
    const failed = await pooled.ready;
    if (failed !== undefined) return { kind: 'connect', why: failed };
    if (caller.destroyed || caller.closed) return { kind: 'aborted' };
    let up: http2.ClientHttp2Stream;
    const requestIndex = ++pooled.requests;
    try {
      up = pooled.session.request(headers, { endStream: false });
    } catch (err) {
      // The session went away (GOAWAY, closed) between the pool's look and the request.
      return { kind: 'refused', why: (err as Error & { code?: string }).code ?? (err as Error).message, goaway: true, pooled, requestIndex };
    }
    track(up);
    return new Promise<Outcome>((resolve) => {
      let done = false;
      const settle = (o: Outcome) => {
        if (!done) {
          done = true;
          resolve(o);
        }
      };
      up.once('response', (h, flags) => settle({ kind: 'response', up, headers: h, only: (flags & NGHTTP2_FLAG_END_STREAM) !== 0, pooled, requestIndex }));
      up.on('error', (err: Error & { code?: string }) => {
        if (err.code === 'ERR_HTTP2_GOAWAY_SESSION') settle({ kind: 'refused', why: err.code, goaway: true, pooled, requestIndex });
      });
      up.once('close', () => {
        const code = up.rstCode ?? NGHTTP2_NO_ERROR;
        if (code === NGHTTP2_REFUSED_STREAM) settle({ kind: 'refused', why: 'REFUSED_STREAM', goaway: false, pooled, requestIndex });
        else if (code === NGHTTP2_CANCEL && (caller.destroyed || caller.closed)) settle({ kind: 'aborted' });
        else settle({ kind: 'reset', why: `code ${code}`, pooled, requestIndex });
      });
      for (const c of body.chunks) up.write(c);
      if (body.complete) up.end();
      else {
        // (Both listeners before the next tick: the caller's stream flows once piped.)
        caller.on('data', (c: Buffer) => more(c.length));
        caller.pipe(up);
      }
    });
  }

  /** The endpoint's answer goes to the caller as it comes: headers (edited), body with back-pressure, trailers. */
  private answer(
    stream: http2.ServerHttp2Stream,
    o: Extract<Outcome, { kind: 'response' }>,
    edits: HeaderEdits[],
    setCookies: string[],
    count: (n: number) => void,
  ): Promise<{ complete: boolean; grpcStatus?: string; failure?: string }> {
    const { up } = o;
    return new Promise((resolve) => {
      let grpcStatus = o.headers['grpc-status'] === undefined ? undefined : String(o.headers['grpc-status']);
      let trailers: http2.IncomingHttpHeaders | undefined;
      let settled = false;
      const finish = (complete: boolean, failure?: string) => {
        if (settled) return;
        settled = true;
        resolve({ complete, grpcStatus, failure });
      };
      if (stream.destroyed || stream.closed) {
        if (!up.closed) up.close(NGHTTP2_CANCEL);
        return finish(false, 'the caller went away before the answer');
      }
      const h = responseFields(o.headers);
      addSetCookies(h, setCookies);
      applyHeaderEdits(h, edits);
      // A trailers-only answer (gRPC's errors) stays one: its status is in these headers.
      stream.respond(h, o.only ? { endStream: true } : { waitForTrailers: true });
      if (o.only) {
        up.resume();
        return finish(true);
      }
      up.on('data', (c: Buffer) => count(c.length));
      up.once('trailers', (t) => {
        trailers = t;
        if (t['grpc-status'] !== undefined) grpcStatus = String(t['grpc-status']);
      });
      stream.once('wantTrailers', () => stream.sendTrailers(trailers ? responseFields(trailers) : {}));
      up.pipe(stream);
      up.once('close', () => {
        const code = up.rstCode ?? NGHTTP2_NO_ERROR;
        if (code !== NGHTTP2_NO_ERROR) {
          // The endpoint reset its stream after answering: the caller's stream is reset too.
          if (!stream.closed && !stream.destroyed) stream.close(code);
          return finish(false, `the endpoint reset the stream (code ${code})`);
        }
      });
      stream.once('close', () => {
        if (!up.closed) up.close(NGHTTP2_CANCEL);
        finish(stream.rstCode === NGHTTP2_NO_ERROR && up.readableEnded, stream.rstCode === NGHTTP2_NO_ERROR ? undefined : 'the caller reset the stream');
      });
    });
  }
}

/**
 * gRPC statuses Envoy's outlier detection counts as 5xx: those its grpcToHttpStatus maps to 500 and
 * up (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS).
 */
const GRPC_5XX = new Set([2, 4, 12, 13, 14, 15]);

function grpcServerError(grpcStatus: number | undefined): boolean {
  return grpcStatus !== undefined && GRPC_5XX.has(grpcStatus);
}

/** The caller's request as sent on: its fields without connection-specific ones, the route's edits applied. */
function outgoing(h: http2.IncomingHttpHeaders, edits: HeaderEdits[]): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !NOT_FORWARDED.has(k) && (k !== 'te' || v === 'trailers')) out[k] = v;
  out[':scheme'] = 'https';
  if (out[':authority'] === undefined && h.host !== undefined) out[':authority'] = h.host;
  applyHeaderEdits(out, edits);
  return out;
}

/** An answer's or trailers' fields as passed on: without pseudo-fields other than :status, nor connection-specific ones. */
function responseFields(h: http2.IncomingHttpHeaders): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) if ((k[0] !== ':' || k === ':status') && !NOT_FORWARDED.has(k)) out[k] = v;
  return out;
}
