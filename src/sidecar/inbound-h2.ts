// The inbound's HTTP/2 side: a caller's h2 connection (negotiated by ALPN, or spoken with prior
// knowledge through an L4 client sidecar) ends here, each stream is checked against the intentions
// as an HTTP/1.1 request is, and goes on to the app as a stream of one reused h2c session (grpc,
// http2) or as an HTTP/1.1 request (http). gRPC callers hear gRPC: a denial is a trailers-only
// PERMISSION_DENIED, an unreachable app UNAVAILABLE; the app's trailers reach the caller as sent.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type tls from 'node:tls';
import { ErrorCodes } from '../core/errors.js';
import type { FlowRecord } from '../dataflow/index.js';
import { LOCAL_APP_HEADER, deniedBody, endToEnd, traceparentOf, unreachableBody } from './inbound-answers.js';
import type { SidecarInbound } from './sidecar-config.js';
import { ZERO_TRACE, type Decision, type SidecarContext } from './sidecar-context.js';

const { NGHTTP2_NO_ERROR, NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_FLAG_END_STREAM } = http2.constants;

/** gRPC status codes (grpc/doc/statuscodes.md) this side answers with itself. */
export const GRPC_PERMISSION_DENIED = 7;
export const GRPC_UNAVAILABLE = 14;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/**
 * Reads a caller's first bytes and puts them back: true when they are the HTTP/2 connection preface.
 * ALPN alone cannot say: a client sidecar that does not know the upstream's protocol relays an app's
 * h2c prior knowledge without offering h2, and an h2 offer says nothing of what the app then sends.
 * A caller silent for `idleMs` is closed, as an idle HTTP connection would be.
 */
export function sniffH2(sock: net.Socket, idleMs: number, then: (h2: boolean) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  let settled = false;
  const quiet = () => {};
  sock.on('error', quiet);
  const timer = setTimeout(() => sock.destroy(), idleMs);
  timer.unref();
  const settle = (h2: boolean) => {
    settled = true;
    clearTimeout(timer);
    sock.off('close', onClose);
    if (seen.length) sock.unshift(seen);
    sock.off('error', quiet);
    then(h2);
  };
  const onClose = () => clearTimeout(timer);
  sock.once('close', onClose);
  const onReadable = () => {
    if (settled || sock.destroyed) return;
    for (let chunk: Buffer | null; (chunk = sock.read() as Buffer | null) !== null;) seen = seen.length ? Buffer.concat([seen, chunk]) : chunk;
    const n = Math.min(seen.length, PREFACE.length);
    const prefix = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
    if (prefix && n < PREFACE.length && !sock.readableEnded) {
      sock.once('readable', onReadable);
      return;
    }
    settle(prefix && n === PREFACE.length);
  };
  sock.once('readable', onReadable);
}

/** A text as gRPC's `grpc-message` carries it: UTF-8, every byte outside 0x20-0x7E (and `%`) as %XX. */
export function grpcPercentEncode(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8'))
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

interface H2Conn {
  source: string;
  traceId: string;
  requests: number;
}

/** Connection-specific fields, which HTTP/2 forbids (RFC 9113 8.2.2): dropped from an HTTP/1.1 app's answer. */
const NOT_IN_H2 = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings']);

export class InboundH2 {
  // Never listens: the inbound's TLS listener hands it the connections that speak h2.
  private readonly server = http2.createServer();
  private readonly conns = new WeakMap<http2.Http2Session, H2Conn>();
  private accepting: H2Conn | undefined;
  private appSession: http2.ClientHttp2Session | undefined;

  constructor(
    private readonly ctx: SidecarContext,
    private readonly cfg: SidecarInbound,
    private readonly http1Agent: http.Agent,
    private readonly idleMs: number,
  ) {
    // 'session' is emitted inside emit('connection'): the connection's identity is the one accepting.
    this.server.on('session', (s) => {
      if (this.accepting) this.conns.set(s, this.accepting);
      this.closeWhenIdle(s);
    });
    this.server.on('stream', (stream, headers) => this.onStream(stream, headers));
    this.server.on('sessionError', (err) => this.ctx.log.debug('inbound h2 session failed', { error: err.message }));
  }

  /** Takes a caller's connection that speaks h2 (its identity already read off the handshake). */
  accept(sock: tls.TLSSocket, source: string, traceId: string): void {
    // Node's h2 server treats a TLS socket without an h2 ALPN as HTTP/1.1; this one sent the preface.
    if (sock.alpnProtocol !== 'h2') (sock as { alpnProtocol: string | false | null }).alpnProtocol = 'h2';
    this.accepting = { source, traceId, requests: 0 };
    try {
      this.server.emit('connection', sock);
    } finally {
      this.accepting = undefined;
    }
  }

  /**
   * A caller's session with no open stream for `idleMs` is closed with a GOAWAY (NO_ERROR), as an
   * idle HTTP/1.1 keep-alive connection is closed (Envoy's idle_timeout of a downstream connection);
   * a stream open, however quiet, keeps it.
   */
  private closeWhenIdle(s: http2.ServerHttp2Session): void {
    let open = 0;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      timer = setTimeout(() => {
        if (s.closed || s.destroyed) return;
        s.goaway(NGHTTP2_NO_ERROR);
        s.close();
      }, this.idleMs);
      timer.unref();
    };
    s.on('stream', (stream: http2.ServerHttp2Stream) => {
      open++;
      clearTimeout(timer);
      stream.once('close', () => {
        if (--open === 0 && !s.closed && !s.destroyed) arm();
      });
    });
    s.once('close', () => clearTimeout(timer));
    arm();
  }

  /** The h2c session to the app, made on first use and again after the app closed or refused it. */
  private app(): http2.ClientHttp2Session {
    const live = this.appSession;
    if (live && !live.closed && !live.destroyed) return live;
    const { localAppHost: host, localAppPort: port } = this.cfg;
    const s = http2.connect(`http://${net.isIPv6(host) ? `[${host}]` : host}:${port}`, {
      createConnection: () => {
        const sock = net.connect({ host, port, noDelay: true });
        this.ctx.sockets.add(sock);
        sock.once('close', () => this.ctx.sockets.delete(sock));
        return sock;
      },
    });
    const forget = () => {
      if (this.appSession === s) this.appSession = undefined;
    };
    s.on('error', (err) => {
      forget();
      this.ctx.log.warn('local app unreachable', { error: err.message });
    });
    // After a GOAWAY the session takes no new streams; the ones open finish on it.
    s.once('goaway', forget);
    s.once('close', forget);
    this.appSession = s;
    return s;
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    const conn = (stream.session && this.conns.get(stream.session)) ?? { source: '', traceId: ZERO_TRACE, requests: 0 };
    const n = ++conn.requests;
    const start = Date.now();
    const method = String(headers[':method'] ?? 'GET');
    const path = String(headers[':path'] ?? '/');
    const grpc = String(headers['content-type'] ?? '').startsWith('application/grpc');
    const fields = requestFields(headers);
    const d = this.ctx.decide(conn.source, { method, path, headers: fields });
    const traceparent = traceparentOf(headers.traceparent, conn.traceId);
    let bytesIn = 0;
    let bytesOut = 0;
    // A caller's reset is recorded on close; it is no error of this process.
    stream.on('error', () => {});
    const write = this.ctx.inboundRequest({ traceId: conn.traceId, requestIndex: n, source: conn.source, decision: d, start, method, path, traceparent });
    const record = (verdict: FlowRecord['verdict'], reason: string, status: number) => write(verdict, reason, status, bytesIn, bytesOut);
    if (!d.allowed) {
      const body = this.deny(stream, d, grpc);
      bytesOut = body;
      record('denied', grpc ? `${d.reason}; grpc-status ${GRPC_PERMISSION_DENIED}` : d.reason, grpc ? 200 : 403);
      // What the caller still sends is not wanted, but must be read for the stream to finish.
      stream.resume();
      return;
    }
    stream.on('data', (c: Buffer) => (bytesIn += c.length));
    const outcome: Outcome = { status: 0 };
    const countOut = (c: Buffer) => (bytesOut += c.length);
    stream.once('close', () => {
      const status = outcome.status;
      if (outcome.failure) return record('error', outcome.failure, status);
      const reset = stream.rstCode !== undefined && stream.rstCode !== NGHTTP2_NO_ERROR;
      const said = grpc ? `; grpc-status ${outcome.grpcStatus ?? 'none'}` : '';
      record('allowed', `${d.reason}${said}${reset ? `; the caller reset the stream (code ${stream.rstCode})` : ''}`, status);
    });
    if (this.cfg.protocol === 'http') this.toHttp1(stream, fields, method, path, traceparent, grpc, outcome, countOut);
    else this.toH2c(stream, headers, traceparent, grpc, outcome, countOut);
  }

  private deny(stream: http2.ServerHttp2Stream, d: Decision, grpc: boolean): number {
    if (stream.destroyed) return 0;
    if (grpc) {
      stream.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc',
          'grpc-status': String(GRPC_PERMISSION_DENIED),
          'grpc-message': grpcPercentEncode(d.reason),
          'isthmus-error': ErrorCodes.INTENTION_DENIED,
          'isthmus-intention-id': d.intentionId,
        },
        { endStream: true },
      );
      return 0;
    }
    const body = deniedBody(d);
    stream.respond({ ':status': 403, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    stream.end(body);
    return Buffer.byteLength(body);
  }

  /** The answer when the app cannot take the request: gRPC's UNAVAILABLE, or a 502 as the HTTP/1.1 path gives. */
  private unreachable(stream: http2.ServerHttp2Stream, grpc: boolean, outcome: Outcome, err: Error): void {
    outcome.failure = `local application unreachable: ${err.message}`;
    if (stream.destroyed || stream.closed) return;
    if (stream.headersSent) {
      stream.close(NGHTTP2_INTERNAL_ERROR);
      return;
    }
    if (grpc) {
      outcome.status = 200;
      outcome.grpcStatus = String(GRPC_UNAVAILABLE);
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(GRPC_UNAVAILABLE), 'grpc-message': 'local application unreachable' },
        { endStream: true },
      );
      return;
    }
    outcome.status = 502;
    stream.respond({ ':status': 502, 'content-type': 'application/json', [LOCAL_APP_HEADER]: 'unreachable' });
    stream.end(unreachableBody());
  }

  private toH2c(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    traceparent: string,
    grpc: boolean,
    outcome: Outcome,
    countOut: (c: Buffer) => void,
  ): void {
    let up: http2.ClientHttp2Stream;
    try {
      up = this.app().request({ ...headers, ':scheme': 'http', traceparent });
    } catch (err) {
      this.unreachable(stream, grpc, outcome, err as Error);
      return;
    }
    let trailers: http2.IncomingHttpHeaders | undefined;
    up.once('response', (h, flags) => {
      outcome.status = Number(h[':status'] ?? 0);
      if (h['grpc-status'] !== undefined) outcome.grpcStatus = String(h['grpc-status']);
      if (stream.destroyed || stream.closed) return;
      // A trailers-only answer (gRPC's errors) stays one: its status is in these headers.
      const only = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
      stream.respond(responseFields(h), only ? { endStream: true } : { waitForTrailers: true });
      if (!only) up.pipe(stream);
    });
    up.on('data', countOut);
    up.once('trailers', (t) => {
      trailers = t;
      if (t['grpc-status'] !== undefined) outcome.grpcStatus = String(t['grpc-status']);
    });
    // With no trailers Node ends the stream with an empty DATA frame.
    stream.once('wantTrailers', () => stream.sendTrailers(trailers ? responseFields(trailers) : {}));
    let callerGone = false;
    // The app's stream failed after its answer began: a gRPC caller hears UNAVAILABLE in trailers (a
    // status its retry policy knows), any other caller a reset.
    const failMidway = (why: string, code: number) => {
      // (An error and then the close of the same failure: the first says what happened.)
      if (outcome.failure) return;
      outcome.failure = why;
      if (stream.closed || stream.destroyed) return;
      if (grpc && stream.headersSent && !stream.writableEnded) {
        trailers = { 'grpc-status': String(GRPC_UNAVAILABLE), 'grpc-message': grpcPercentEncode(why) };
        outcome.grpcStatus = String(GRPC_UNAVAILABLE);
        up.unpipe(stream);
        stream.end();
      } else stream.close(code);
    };
    up.once('error', (err) => {
      if (outcome.status === 0) this.unreachable(stream, grpc, outcome, err);
      else failMidway(`the application's stream failed: ${err.message}`, NGHTTP2_INTERNAL_ERROR);
    });
    up.once('close', () => {
      const code = up.rstCode;
      // The app reset its stream (not an end after its answer, nor the caller's cancel passed on).
      if (!callerGone && code !== undefined && code !== NGHTTP2_NO_ERROR) failMidway(`the application reset the stream (code ${code})`, code);
    });
    stream.once('close', () => {
      callerGone = true;
      if (!up.closed) up.close(NGHTTP2_CANCEL);
    });
    stream.pipe(up);
  }

  /**
   * An HTTP/1.1 request to an app that speaks h2 (http2, grpc), carried as a stream of the h2c
   * session, as Envoy does for an http2 cluster. `done` is told the status, or what failed.
   */
  fromHttp1(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    traceparent: string,
    done: (status: number, bytesOut: number, failure?: string) => void,
  ): void {
    const headers: http2.OutgoingHttpHeaders = {
      ':method': req.method ?? 'GET',
      ':path': req.url ?? '/',
      ':scheme': 'http',
      ':authority': req.headers.host ?? `${this.cfg.localAppHost}:${this.cfg.localAppPort}`,
    };
    for (const [k, v] of Object.entries(endToEnd(req.headers))) if (!NOT_IN_H2.has(k) && k !== 'host' && (k !== 'te' || v === 'trailers')) headers[k] = v;
    headers.traceparent = traceparent;
    let status = 0;
    let bytesOut = 0;
    let settled = false;
    const finish = (failure?: string) => {
      if (settled) return;
      settled = true;
      done(status, bytesOut, failure);
    };
    const fail = (err: Error) => {
      if (!res.headersSent) {
        status = 502;
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'local application unreachable' }));
      } else res.destroy();
      finish(`local application unreachable: ${err.message}`);
    };
    let up: http2.ClientHttp2Stream;
    try {
      up = this.app().request(headers);
    } catch (err) {
      fail(err as Error);
      return;
    }
    up.once('response', (h) => {
      status = Number(h[':status'] ?? 502);
      const out: http.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(h)) if (k[0] !== ':') out[k] = v;
      res.writeHead(status, out);
      up.pipe(res);
    });
    up.on('data', (c: Buffer) => (bytesOut += c.length));
    up.once('trailers', (t) => res.addTrailers(responseFields(t) as http.OutgoingHttpHeaders));
    up.once('end', () => finish());
    up.once('error', fail);
    res.once('close', () => {
      if (!up.closed) up.close(NGHTTP2_CANCEL);
      finish(res.writableFinished ? undefined : 'the caller went away');
    });
    req.pipe(up);
  }

  private toHttp1(
    stream: http2.ServerHttp2Stream,
    fields: http.IncomingHttpHeaders,
    method: string,
    path: string,
    traceparent: string,
    grpc: boolean,
    outcome: Outcome,
    countOut: (c: Buffer) => void,
  ): void {
    const up = http.request(
      { host: this.cfg.localAppHost, port: this.cfg.localAppPort, method, path, headers: { ...endToEnd(fields), traceparent }, agent: this.http1Agent },
      (ures) => {
        outcome.status = ures.statusCode ?? 502;
        if (stream.destroyed || stream.closed) return ures.resume();
        const out: http2.OutgoingHttpHeaders = { ':status': outcome.status };
        for (const [k, v] of Object.entries(endToEnd(ures.headers))) if (!NOT_IN_H2.has(k)) out[k] = v;
        stream.respond(out);
        ures.on('data', countOut);
        ures.pipe(stream);
      },
    );
    up.once('error', (err) => this.unreachable(stream, grpc, outcome, err));
    stream.once('close', () => {
      if (!up.writableFinished || stream.rstCode !== NGHTTP2_NO_ERROR) up.destroy();
    });
    stream.pipe(up);
  }
}

interface Outcome {
  status: number;
  grpcStatus?: string;
  failure?: string;
}

/** An h2 request's fields as an HTTP/1.1 request has them (what intentions match): `:authority` as host. */
function requestFields(headers: http2.IncomingHttpHeaders): http.IncomingHttpHeaders {
  const out: http.IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (k[0] !== ':') out[k] = v as string | string[];
  if (out.host === undefined && headers[':authority'] !== undefined) out.host = String(headers[':authority']);
  return out;
}

/** The app's answer or trailers as passed on: its fields, without pseudo-fields other than :status. */
function responseFields(h: http2.IncomingHttpHeaders): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) if (k[0] !== ':' || k === ':status') out[k] = v;
  return out;
}
