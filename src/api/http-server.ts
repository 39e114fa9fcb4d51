// Binds the hono app to a Node HTTP listener; close() ends open (blocking) requests so no port stays bound.
import { ServerResponse, type IncomingMessage, type OutgoingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import type { Hono } from 'hono';
import { ErrorCodes, IsthmusError } from '../core/errors.js';
import type { ApiEnv } from './env.js';

export interface HttpListener {
  /** host:port actually bound (port 0 resolved). */
  address: string;
  port: number;
  /** Starts answering with `app`; until then every request gets a 503. */
  serve(app: Hono<ApiEnv>): void;
  close(): Promise<void>;
}

/** Binds first (so the advertised address is known before the parts that publish it are built). */
export async function listenHttp(host: string, port: number, staticHeaders: Record<string, string> = {}): Promise<HttpListener> {
  let fetchFn: (req: Request, env: unknown) => Response | Promise<Response> = () =>
    Response.json({ Error: ErrorCodes.UNAVAILABLE, Message: 'server is starting' }, { status: 503 });
  // The adapter's env carries the Node request: handlers read plain header objects from it instead
  // of materialising a Fetch Headers object for every request.
  const server = createAdaptorServer({
    fetch: (req: Request, env: unknown) => fetchFn(req, env),
    serverOptions: { ServerResponse: withStaticHeaders(staticHeaders) },
  }) as Server;
  // Bounded header size and slow-client timeouts; Node's defaults are generous.
  server.maxHeadersCount = 200;
  server.headersTimeout = 20_000;
  server.requestTimeout = 11 * 60_000; // longer than the longest blocking query (10 m + jitter)
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
 * A ServerResponse that adds the same headers to every answer inside writeHead. Setting them with
 * setHeader() beforehand would push Node's writeHead onto its slow merging path (about -35 % req/s).
 */
function withStaticHeaders(headers: Record<string, string>): typeof ServerResponse {
  const entries = Object.entries(headers);
  if (entries.length === 0) return ServerResponse;
  return class extends ServerResponse<IncomingMessage> {
    override writeHead(status: number, a?: unknown, b?: unknown): this {
      const [message, given] = typeof a === 'string' ? [a, b] : [undefined, a];
      let merged: OutgoingHttpHeaders | unknown[];
      if (Array.isArray(given)) merged = [...given, ...entries.flat()];
      else merged = { ...(given as OutgoingHttpHeaders | undefined), ...headers };
      return message === undefined ? super.writeHead(status, merged as OutgoingHttpHeaders) : super.writeHead(status, message, merged as OutgoingHttpHeaders);
    }
  } as unknown as typeof ServerResponse;
}
