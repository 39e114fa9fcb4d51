// The sidecar's inbound side: the mTLS listener that verifies the caller's SPIFFE ID and enforces
// intentions (L4 per connection, L7 per HTTP/1.1 request or HTTP/2 stream) before relaying to the
// local application. An L7 inbound offers h2 and HTTP/1.1 by ALPN and goes by what the caller speaks.
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { ErrorCodes } from '../core/errors.js';
import { peerSpiffeId, traceIdFromKeylog } from './identity.js';
import { LOCAL_APP_HEADER, deniedBody, endToEnd, traceparentOf, unreachableBody } from './inbound-answers.js';
import { InboundH2, sniffH2 } from './inbound-h2.js';
import { RelayTarget, relay, relayRead } from './relay.js';
import type { SidecarInbound } from './sidecar-config.js';
import { ZERO_TRACE, listen, type SidecarContext } from './sidecar-context.js';
import { describeTlsError } from './tls-refusal.js';
import { answerFrom, answerRaw, responseHead, splice, withUpgrade } from './upgrade.js';

/**
 * How long an idle keep-alive connection of an L7 inbound stays open, announced to callers in
 * `Keep-Alive: timeout=` (Node's default is 5 s: a caller through two gateways would make a new mTLS
 * connection after every pause of a few seconds; nginx keeps 75 s, Envoy an hour).
 */
export const HTTP_IDLE_TIMEOUT_MS = 60_000;

export class InboundListener {
  server: tls.Server | undefined;
  readonly appAgent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  /** How long a caller's connection may sit with nothing in flight (HTTP/1.1 keep-alive, h2 sessions, the protocol sniff). */
  private readonly idleMs: number;

  constructor(private readonly ctx: SidecarContext) {
    this.idleMs = ctx.opts.httpIdleTimeoutMs ?? HTTP_IDLE_TIMEOUT_MS;
  }

  async start(cfg: SidecarInbound): Promise<void> {
    const traces = new WeakMap<tls.TLSSocket, string>();
    const isL7 = cfg.protocol === 'http' || cfg.protocol === 'http2' || cfg.protocol === 'grpc';
    // No Nagle delay on any hop: a proxy's small writes (a request, an answer) go out at once.
    const server = tls.createServer({
      ...this.ctx.contextOptions(),
      ...(isL7 ? { ALPNProtocols: ['h2', 'http/1.1'] } : {}),
      noDelay: true,
      requestCert: true,
      rejectUnauthorized: true,
      handshakeTimeout: this.ctx.opts.handshakeTimeoutMs ?? 10_000,
    });
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
      // A hang-up before a single byte came in is a port probe (the sidecar's listening health
      // check), not a refused client: a denied flow for it would come every check interval.
      // (`_parent` is the TCP socket under the TLS one; Node's own bytesRead counts only TLS data.)
      const raw = (sock as unknown as { _parent?: { bytesRead?: number } })._parent;
      if (!verifyCode && raw?.bytesRead === 0 && (err as NodeJS.ErrnoException).code === 'ECONNRESET') {
        sock.destroy();
        return;
      }
      const why = describeTlsError(verifyCode ? { code: verifyCode, message: verifyCode } : err);
      this.ctx.record({
        traceId: traces.get(sock as tls.TLSSocket) ?? ZERO_TRACE,
        requestIndex: 0,
        hop: 'server-sidecar',
        source: { spiffeId: '', service: '', namespace: '', dc: '' },
        destination: this.ctx.self(),
        sni: '',
        verdict: 'denied',
        reason: `TLS handshake refused: ${why}`,
        intentionId: '',
        startTime: start,
        durationMs: 0,
        bytesIn: sock.bytesRead ?? 0,
        bytesOut: sock.bytesWritten ?? 0,
      });
      this.ctx.log.warn('inbound handshake refused', { error: why });
      // With a listener here Node leaves the socket open (a handshake timeout included): close it.
      sock.destroy();
    });
    const h2 = isL7 ? new InboundH2(this.ctx, cfg, this.appAgent, this.idleMs) : undefined;
    const l7 = isL7 ? this.httpHandler(cfg, traces, cfg.protocol === 'http' ? undefined : h2) : undefined;
    server.on('secureConnection', (sock: tls.TLSSocket) => {
      this.ctx.sockets.add(sock);
      sock.once('close', () => this.ctx.sockets.delete(sock));
      const start = Date.now();
      const source = peerSpiffeId(sock) ?? '';
      const traceId = traces.get(sock) ?? ZERO_TRACE;
      const sni = (sock as tls.TLSSocket & { servername?: string | false }).servername || '';
      const d = this.ctx.decide(source);
      const base = { traceId, hop: 'server-sidecar' as const, source: this.ctx.identity(source), destination: this.ctx.self(), sni };
      // An intention with L7 permissions on a listener that does not parse HTTP cannot be checked:
      // the connection is refused rather than relayed unchecked.
      if (!d.allowed && (!d.l7 || !l7)) {
        sock.destroy();
        this.ctx.record({
          ...base,
          requestIndex: 0,
          verdict: 'denied',
          reason: d.l7 ? `L7 permissions of intention ${d.intentionId} cannot be checked on a ${cfg.protocol} listener; denied` : d.reason,
          intentionId: d.intentionId,
          startTime: start,
          durationMs: Date.now() - start,
          bytesIn: 0,
          bytesOut: 0,
        });
        return;
      }
      if (l7) {
        sock.once('close', () =>
          this.ctx.record({
            ...base,
            requestIndex: 0,
            verdict: 'allowed',
            reason: d.l7 ? 'connection accepted; requests checked against L7 permissions' : d.reason,
            intentionId: d.intentionId,
            startTime: start,
            durationMs: Date.now() - start,
            bytesIn: sock.bytesRead,
            bytesOut: sock.bytesWritten,
          }),
        );
        sniffH2(sock, this.idleMs, (speaksH2) => (speaksH2 ? h2!.accept(sock, source, traceId) : l7.emit('connection', sock)));
        return;
      }
      const appTarget = new RelayTarget();
      const app: net.Socket = net.connect({
        host: cfg.localAppHost,
        port: cfg.localAppPort,
        noDelay: true,
        onread: relayRead(this.ctx.readBuffer, appTarget, () => app),
      });
      this.ctx.sockets.add(app);
      let failed = false;
      app.once('error', (err) => {
        failed = true;
        this.ctx.log.warn('local app unreachable', { error: err.message });
        sock.destroy();
      });
      relay(sock, undefined, app, appTarget);
      sock.once('close', () => {
        this.ctx.sockets.delete(app);
        this.ctx.record({
          ...base,
          requestIndex: 0,
          verdict: failed ? 'error' : 'allowed',
          reason: failed ? 'local application unreachable' : d.reason,
          intentionId: d.intentionId,
          startTime: start,
          durationMs: Date.now() - start,
          bytesIn: sock.bytesRead,
          bytesOut: sock.bytesWritten,
        });
      });
    });
    await listen(server, cfg.bindHost, cfg.bindPort);
    this.server = server;
  }

  /** HTTP/1.1 callers; with `h2App` (an app that speaks h2) their requests go on as h2c streams. */
  private httpHandler(cfg: SidecarInbound, traces: WeakMap<tls.TLSSocket, string>, h2App?: InboundH2): http.Server {
    // Per connection: requests so far, and the caller's identity (read once: it cannot change).
    const conns = new WeakMap<net.Socket, { requests: number; source: string }>();
    const connOf = (sock: tls.TLSSocket) => {
      let conn = conns.get(sock);
      if (!conn) conns.set(sock, (conn = { requests: 0, source: peerSpiffeId(sock) ?? '' }));
      return conn;
    };
    const server = http.createServer({ keepAlive: true, keepAliveTimeout: this.idleMs }, (req, res) => {
      const sock = req.socket as tls.TLSSocket;
      const conn = connOf(sock);
      const n = ++conn.requests;
      const start = Date.now();
      const source = conn.source;
      const traceId = traces.get(sock) ?? ZERO_TRACE;
      const path = req.url ?? '/';
      const d = this.ctx.decide(source, { method: req.method ?? 'GET', path, headers: req.headers });
      const traceparent = traceparentOf(req.headers.traceparent, traceId);
      const record = this.ctx.inboundRequest({ traceId, requestIndex: n, source, decision: d, start, method: req.method ?? '', path, traceparent });
      if (!d.allowed) {
        const body = deniedBody(d);
        res.writeHead(403, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
        return record('denied', d.reason, 403, 0, body.length);
      }
      if (h2App) {
        h2App.fromHttp1(req, res, traceparent, (status, bytesOut, failure) =>
          record(failure ? 'error' : 'allowed', failure ?? d.reason, status, Number(req.headers['content-length'] ?? 0), bytesOut),
        );
        return;
      }
      // Each side's connection is its own: its Connection and Keep-Alive fields stay on it (the app's
      // idle timeout announced to the caller would outlive this server's, and a caller trusting it
      // would send into a connection this sidecar has just closed).
      const up = http.request(
        { host: cfg.localAppHost, port: cfg.localAppPort, method: req.method, path, headers: { ...endToEnd(req.headers), traceparent }, agent: this.appAgent },
        (ures) => {
          res.writeHead(ures.statusCode ?? 502, endToEnd(ures.headers));
          ures.pipe(res);
          ures.once('end', () =>
            record('allowed', d.reason, ures.statusCode ?? 0, Number(req.headers['content-length'] ?? 0), Number(ures.headers['content-length'] ?? 0)),
          );
        },
      );
      up.once('error', (err) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json', [LOCAL_APP_HEADER]: 'unreachable' });
        res.end(unreachableBody());
        record('error', `local application unreachable: ${err.message}`, 502, 0, 0);
      });
      req.pipe(up);
    });
    server.on('upgrade', (req: http.IncomingMessage, sock: tls.TLSSocket, head: Buffer) => {
      const conn = connOf(sock);
      this.upgrade(cfg, req, sock, head, conn.source, ++conn.requests, traces.get(sock) ?? ZERO_TRACE, h2App !== undefined);
    });
    return server;
  }

  /**
   * An Upgrade request (WebSocket): checked against the intentions as any request is, then sent to
   * the app on a connection of its own; on a 101 the caller's connection and the app's are joined
   * until both end. One flow record when it ends, with the bytes each way.
   */
  private upgrade(
    cfg: SidecarInbound,
    req: http.IncomingMessage,
    sock: tls.TLSSocket,
    head: Buffer,
    source: string,
    n: number,
    traceId: string,
    h2App: boolean,
  ): void {
    const start = Date.now();
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    sock.on('error', () => {});
    const d = this.ctx.decide(source, { method, path, headers: req.headers });
    const traceparent = traceparentOf(req.headers.traceparent, traceId);
    const record = this.ctx.inboundRequest({ traceId, requestIndex: n, source, decision: d, start, method, path, traceparent });
    if (!d.allowed) {
      const out = answerRaw(sock, 403, { 'content-type': 'application/json' }, deniedBody(d));
      return record('denied', d.reason, 403, 0, out);
    }
    if (h2App) {
      // HTTP/2 has no Upgrade (RFC 9113 8.6); Envoy's extended CONNECT to an h2 app is not done here.
      const message = `the local application speaks ${cfg.protocol}: an HTTP/1.1 upgrade cannot be passed to it`;
      const out = answerRaw(sock, 501, { 'content-type': 'application/json' }, JSON.stringify({ Error: ErrorCodes.UNAVAILABLE, Message: message }));
      return record('error', message, 501, 0, out);
    }
    const app = http.request({
      host: cfg.localAppHost,
      port: cfg.localAppPort,
      method,
      path,
      headers: { ...withUpgrade(endToEnd(req.headers), req.headers.upgrade), traceparent },
      agent: false,
    });
    let settled = false;
    sock.once('close', () => {
      if (!settled) app.destroy();
    });
    app.once('upgrade', (ares: http.IncomingMessage, asock: net.Socket, ahead: Buffer) => {
      settled = true;
      asock.setNoDelay(true);
      this.ctx.sockets.add(asock);
      asock.once('close', () => this.ctx.sockets.delete(asock));
      sock.write(responseHead(101, withUpgrade(endToEnd(ares.headers), ares.headers.upgrade)));
      splice(sock, head, asock, ahead, 0, (r) => record('allowed', `${d.reason}; upgraded to ${String(ares.headers.upgrade ?? '')}`, 101, r.aToB, r.bToA));
    });
    app.once('response', (ares: http.IncomingMessage) => {
      settled = true;
      const status = ares.statusCode ?? 502;
      answerFrom(sock, ares, endToEnd(ares.headers), (bytes) => record('allowed', d.reason, status, 0, bytes));
    });
    app.once('error', (err) => {
      if (settled) return;
      settled = true;
      const out = answerRaw(sock, 502, { 'content-type': 'application/json', [LOCAL_APP_HEADER]: 'unreachable' }, unreachableBody());
      record('error', `local application unreachable: ${err.message}`, 502, 0, out);
    });
    app.end();
  }
}
