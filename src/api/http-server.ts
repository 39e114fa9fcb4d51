// Binds the hono app to a Node HTTP listener; close() ends open (blocking) requests so no port stays bound.
import { ServerResponse, validateHeaderName, validateHeaderValue, type IncomingMessage, type OutgoingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { createAdaptorServer } from '@hono/node-server';
import type { Hono } from 'hono';
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import type { ApiEnv } from './env.js';
import { endWithError } from './errors.js';

export interface HttpListener {
  /** host:port actually bound (port 0 resolved). */
  address: string;
  port: number;
  /** Starts answering with `app`; until then every request gets a 503. */
  serve(app: Hono<ApiEnv>): void;
  close(): Promise<void>;
}

const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 120_000;

/**
 * A request Node's parser refused (too large a head, malformed, too slow): a JSON error like every
 * other refusal of the API, then the connection is closed. Node's own answer has no body.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  if (err.code === 'HPE_HEADER_OVERFLOW') endWithError(socket, 431, ErrorCodes.PAYLOAD_TOO_LARGE, 'the request head is larger than the server takes (16 KiB)');
  else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT')
    endWithError(
      socket,
      408,
      ErrorCodes.REQUEST_TIMEOUT,
      `the request was not received in time (head within ${HEADERS_TIMEOUT_MS / 1000} s, whole request within ${REQUEST_TIMEOUT_MS / 1000} s)`,
    );
  else endWithError(socket, 400, ErrorCodes.INVALID, `not an HTTP/1.1 request the server can read (${err.code ?? 'parse error'})`);
}

/** Binds first (so the advertised address is known before the parts that publish it are built). */
export async function listenHttp(host: string, port: number, staticHeaders: Record<string, string> = {}): Promise<HttpListener> {
  let fetchFn: (req: Request, env: unknown) => Response | Promise<Response> = () =>
    Response.json({ Error: ErrorCodes.UNAVAILABLE, Message: 'server is starting' }, { status: 503 });
  // The adapter's env carries the Node request: handlers read plain header objects from it instead
  // of materialising a Fetch Headers object for every request.
  const server = createAdaptorServer({
    fetch: (req: Request, env: unknown) => fetchFn(req, env),
    // Timeouts are checked every second (Node's default: every 30 s, so a slow sender's deadline
    // could pass by half a minute).
    serverOptions: { ServerResponse: withStaticHeaders(staticHeaders), connectionsCheckingInterval: 1000 },
  }) as Server;
  // Bounded header size and slow-client timeouts; Node's defaults are generous. The request timeout
  // covers receiving a request, not answering it: a blocking query is received once its head is.
  // (A body has its own pace bound, in validate.ts.)
  server.maxHeadersCount = 200;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.on('clientError', answerClientError);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(new IsthmusError(ErrorCodes.BAD_CONFIG, `cannot listen on ${host}:${port}: ${err.code ?? err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const info = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  const shown = info.family === 'IPv6' ? `[${info.address}]` : info.address;
  return {
    address: `${shown}:${info.port}`,
    port: info.port,
    serve: (app) => {
      fetchFn = (req, env) => app.fetch(req, env);
    },
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

/**
 * Node's ServerResponse with the same header lines on every answer. Node builds the head of an
 * answer once, in `_storeHeader(firstLine, headers)`; the precomputed lines are appended to the
 * status line there, one string concatenation per answer. Setting them with setHeader() beforehand
 * pushes writeHead onto its slow merging path, and merging them into writeHead's header object
 * costs a copy and a validation of every header on each answer.
 */
function withStaticHeaders(headers: Record<string, string>): typeof ServerResponse {
  const entries = Object.entries(headers);
  if (entries.length === 0) return ServerResponse;
  for (const [name, value] of entries) {
    validateHeaderName(name);
    validateHeaderValue(name, value);
  }
  const lines = entries.map(([name, value]) => `${name}: ${value}\r\n`).join('');
  const Derived = deriveServerResponse();
  const proto = Derived.prototype as unknown as HeadBuilder;
  const storeHeader = (ServerResponse.prototype as unknown as Partial<HeadBuilder>)._storeHeader;
  if (typeof storeHeader === 'function') {
    proto._storeHeader = function (firstLine, given) {
      return storeHeader.call(this, firstLine + lines, given);
    };
  } else {
    // A Node without `_storeHeader`: merge into writeHead's headers instead.
    const writeHead = ServerResponse.prototype.writeHead as (this: ServerResponse, ...args: unknown[]) => ServerResponse;
    proto.writeHead = function (status, a, b) {
      const [message, given] = typeof a === 'string' ? [a, b] : [undefined, a];
      const merged = Array.isArray(given) ? [...given, ...entries.flat()] : { ...(given as OutgoingHttpHeaders | undefined), ...headers };
      return message === undefined ? writeHead.call(this, status, merged) : writeHead.call(this, status, message, merged);
    };
  }
  return Derived;
}

/** The parts of Node's ServerResponse this file replaces (`_storeHeader` is node:_http_outgoing's). */
interface HeadBuilder {
  _storeHeader(this: ServerResponse, firstLine: string, headers: unknown): void;
  writeHead(this: ServerResponse, status: number, a?: unknown, b?: unknown): ServerResponse;
}

/**
 * A constructor inheriting from ServerResponse the way Node's ServerResponse inherits from
 * OutgoingMessage: a function calling the parent, prototypes linked. With `class extends
 * ServerResponse`, V8 (Node 20) aborts the optimisation of the derived constructor on a dependency
 * change over and over, and with it that of Node's parserOnIncoming, which constructs every
 * response: HTTP parsing stayed unoptimised while the compiler threads kept retrying on the
 * server's core.
 */
function deriveServerResponse(): typeof ServerResponse {
  if (Function.prototype.toString.call(ServerResponse).startsWith('class')) {
    return class extends ServerResponse<IncomingMessage> {} as unknown as typeof ServerResponse;
  }
  const parent = ServerResponse as unknown as (this: ServerResponse, req: IncomingMessage, options?: unknown) => void;
  function StaticHeadersResponse(this: ServerResponse, req: IncomingMessage, options?: unknown): void {
    parent.call(this, req, options);
  }
  Object.setPrototypeOf(StaticHeadersResponse.prototype, ServerResponse.prototype);
  Object.setPrototypeOf(StaticHeadersResponse, ServerResponse);
  return StaticHeadersResponse as unknown as typeof ServerResponse;
}
