// A real grpc-js app for tests of the sidecar's HTTP/2 path (echo.proto): Say answers or fails with
// trailers of its own, Count streams n messages (each only once the test lets it go, so a caller can
// prove it got one before the next was even sent), Denied is there for intentions to deny.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const ECHO_PROTO = fileURLToPath(new URL('./echo.proto', import.meta.url));
export const ECHO_SERVICE = 'isthmus.test.Echo';

interface Msg {
  text: string;
}

export type EchoClient = grpc.Client & {
  say(m: Msg, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, r?: Msg) => void): grpc.ClientUnaryCall;
  denied(m: Msg, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, r?: Msg) => void): grpc.ClientUnaryCall;
  count(m: { n: number; size?: number }): grpc.ClientReadableStream<Msg>;
};

function echoPackage(): { Echo: grpc.ServiceClientConstructor } {
  const def = protoLoader.loadSync(ECHO_PROTO, { keepCase: false, longs: Number, defaults: true });
  return (grpc.loadPackageDefinition(def).isthmus as grpc.GrpcObject).test as unknown as { Echo: grpc.ServiceClientConstructor };
}

export interface EchoApp {
  port: number;
  /** What Count waits for before sending message i (default: nothing). */
  gate: (i: number) => Promise<void>;
  /** Count messages sent so far, over all calls. */
  sent: number;
  /** Calls the app saw cancelled by their caller. */
  cancelled: number;
  /** Calls of Denied that reached the app. */
  deniedReached: number;
  /** The traceparent each call arrived with, by method. */
  traceparents: string[];
  /** Say calls still to fail with UNAVAILABLE before it answers again (default 0). */
  failNext: number;
  close(): Promise<void>;
}

/**
 * Say: answers "said <text>"; text "fail" fails with NOT_FOUND and trailer x-app-trailer; while
 * `failNext` is above 0 it fails with UNAVAILABLE (a trailers-only answer).
 * Count: n messages "<i>" (or `size` bytes each); n < 0: two messages, then RESOURCE_EXHAUSTED (trailers after data).
 */
export async function startEchoApp(host = '127.0.0.1'): Promise<EchoApp> {
  const server = new grpc.Server();
  const app: EchoApp = {
    port: 0,
    gate: () => Promise.resolve(),
    sent: 0,
    cancelled: 0,
    deniedReached: 0,
    traceparents: [],
    failNext: 0,
    close: () =>
      new Promise<void>((r) => {
        server.forceShutdown();
        r();
      }),
  };
  const seen = (md: grpc.Metadata) => app.traceparents.push(String(md.get('traceparent')[0] ?? ''));
  server.addService(echoPackage().Echo.service, {
    say: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      seen(call.metadata);
      if (app.failNext > 0) {
        app.failNext--;
        cb({ code: grpc.status.UNAVAILABLE, details: 'failing on purpose' });
        return;
      }
      if (call.request.text === 'fail') {
        const md = new grpc.Metadata();
        md.set('x-app-trailer', 'from the app');
        cb({ code: grpc.status.NOT_FOUND, details: 'no such thing', metadata: md });
        return;
      }
      cb(null, { text: `said ${call.request.text}` });
    },
    denied: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      app.deniedReached++;
      cb(null, { text: 'reached' });
    },
    count: async (call: grpc.ServerWritableStream<{ n: number; size: number }, Msg>) => {
      seen(call.metadata);
      let cancelled = false;
      call.on('cancelled', () => {
        cancelled = true;
        app.cancelled++;
      });
      const failing = call.request.n < 0;
      const n = failing ? 2 : call.request.n;
      const filler = call.request.size > 0 ? 'x'.repeat(call.request.size) : undefined;
      for (let i = 0; i < n; i++) {
        await app.gate(i);
        if (cancelled) return;
        // Past the socket's buffer, wait for it to drain: a stream, not a heap, of messages.
        const more = call.write({ text: filler ?? String(i) });
        app.sent++;
        if (!more) await new Promise((r) => call.once('drain', r));
      }
      if (failing) call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'stopped after 2' });
      else call.end();
    },
  });
  app.port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:0`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
  return app;
}

/** A grpc-js client speaking h2c with prior knowledge to `host:port` (a sidecar's upstream listener). */
export function echoClient(host: string, port: number): EchoClient {
  return new (echoPackage().Echo)(`${host}:${port}`, grpc.credentials.createInsecure()) as unknown as EchoClient;
}

export { grpc };
