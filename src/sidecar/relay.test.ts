import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { chooseDataPath, type Accepted } from '../netio/index.js';
import { ReadBuffer, RelayTarget, relay, relayRead } from './relay.js';

const cleanup: (() => void)[] = [];
afterEach(() => cleanup.splice(0).forEach((f) => f()));

function listen(onConn: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer(onConn);
  cleanup.push(() => server.close());
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r((server.address() as net.AddressInfo).port)));
}

/** A listener of this process's data path, as the sidecar's upstream listeners are. */
async function listenAccepted(onAccept: (c: Accepted, socketOf: (c: Accepted, onread: net.OnReadOpts) => net.Socket) => void): Promise<number> {
  const { path } = await chooseDataPath();
  const server = path.createServer((c) => onAccept(c, (a, onread) => path.socketOf(a, onread)));
  cleanup.push(() => server.close());
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r((server.address() as net.AddressInfo).port)));
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * A relay in the middle: client -> [accepted | relay | dialed] -> sink. The sink reads slowly, so
 * writes queue up and the shared read buffer must be given up, not overwritten.
 */
async function throughRelay(
  payload: Buffer,
  sinkDelayMs: number,
  echoFirst?: Buffer,
  buffers = new ReadBuffer(),
): Promise<{ atSink: Buffer; atClient: Buffer }> {
  let atSink = Buffer.alloc(0);
  const sinkDone = new Promise<void>((resolve) => {
    void listen((s) => {
      if (echoFirst) s.write(echoFirst);
      const chunks: Buffer[] = [];
      s.on('data', (d) => chunks.push(d));
      // A sink that starts reading late: the kernel's buffers fill and the relay's writes queue up.
      if (sinkDelayMs) {
        s.pause();
        setTimeout(() => s.resume(), sinkDelayMs);
      }
      s.on('end', () => {
        atSink = Buffer.concat(chunks);
        s.end();
        resolve();
      });
    }).then((sinkPort) => {
      void listenAccepted((accepted, socketOf) => {
        // The accepted side reads through onread like the sidecar's.
        const inTarget = new RelayTarget();
        const inbound: net.Socket = socketOf(
          accepted,
          relayRead(buffers, inTarget, () => inbound),
        );
        const outTarget = new RelayTarget();
        const outbound: net.Socket = net.connect({ port: sinkPort, host: '127.0.0.1', onread: relayRead(buffers, outTarget, () => outbound) });
        outbound.once('connect', () => relay(inbound, inTarget, outbound, outTarget));
      }).then(async (relayPort) => {
        client = net.connect(relayPort, '127.0.0.1');
        client.on('data', (d) => (atClient = Buffer.concat([atClient, d])));
        client.end(payload);
      });
    });
  });
  let client: net.Socket | undefined;
  let atClient = Buffer.alloc(0);
  await sinkDone;
  await new Promise((r) => client!.once('close', r));
  return { atSink, atClient };
}

describe('relay', () => {
  it('carries 12 MiB intact on each of three relays sharing one read buffer, to late readers', async () => {
    const buffers = new ReadBuffer();
    const payloads = [0, 1, 2].map(() => randomBytes(12 * 1024 * 1024));
    const got = await Promise.all(payloads.map((p, i) => throughRelay(p, 200 + 100 * i, undefined, buffers)));
    for (const [i, { atSink }] of got.entries()) {
      expect(atSink.length).toBe(payloads[i].length);
      expect(sha(atSink)).toBe(sha(payloads[i]));
    }
  });

  it('carries what the far side sends first, before the near side has written', async () => {
    const hello = Buffer.from('220 ready\r\n');
    const { atSink, atClient } = await throughRelay(Buffer.from('QUIT\r\n'), 0, hello);
    expect(atClient.toString()).toBe(hello.toString());
    expect(atSink.toString()).toBe('QUIT\r\n');
  });

  it('keeps bytes read before the destination is set, and writes them first', () => {
    const buffers = new ReadBuffer();
    const target = new RelayTarget();
    const onread = relayRead(buffers, target, () => undefined);
    const buf = onread.buffer as () => Buffer;
    const first = buf();
    first.write('early');
    expect((onread.callback as (n: number, b: Uint8Array) => boolean)(5, first)).toBe(false);
    first.write('XXXXX');
    expect(target.early.map((b) => b.toString())).toEqual(['early']);
  });
});
