// A server on `--store redis` (its own redis-server on 127.0.17.1, AOF on, never the shared one)
// while Redis fails under a load of writes: killed with SIGKILL and started again, then hung
// (SIGSTOP) and resumed. The promises: while Redis is gone every write answers 503 with a JSON error
// naming the cause (at once when it is unreachable, within the command timeout when it hangs) and
// reads keep answering; nothing is half-applied (each write is there whole or not at all, and a write
// answered "nothing was written" is indeed absent); no acknowledged write is lost; the server
// recovers by itself, without a restart, and its view is what Redis holds.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePortOn } from '../harness/regions.js';
import { startRedis, type RedisProc } from '../harness/redis-process.js';
import { api, startServer, tempDir, type ServerProcess } from '../harness/server-process.js';
import { until } from '../harness/until.js';

const HOST = '127.0.17.1';
const DC = 'faults-redis';

interface Write {
  kind: 'intention' | 'service';
  name: string;
  at: number;
  ms: number;
  status: number;
  body: any;
}

let redis: RedisProc;
let srv: ServerProcess;
let n = 0;

beforeAll(async () => {
  redis = await startRedis(HOST, await freePortOn(HOST));
  srv = await startServer('server', [
    '--dc',
    DC,
    '--store',
    'redis',
    '--redis-url',
    redis.url,
    '--http-addr',
    `${HOST}:0`,
    '--grpc-addr',
    `${HOST}:0`,
    '--grpc-tls-addr',
    `${HOST}:0`,
    '--data-dir',
    tempDir('isthmus-faults-redis-'),
    '--acl-default-policy',
    'allow',
    '--log-level',
    'error',
  ]);
}, 60_000);

afterAll(async () => {
  redis?.thaw();
  await srv?.stop();
  await redis?.stop();
});

/**
 * Four writers of two multi-key kinds, each one commit: an intention with its audit event, and a
 * service with its sidecar (two services and their checks). `fault` runs once 30 writes are in and
 * resolves when Redis is back; the load goes on until 20 more writes were acknowledged after that.
 */
async function underLoad(fault: (writes: Write[]) => Promise<{ goneAt: number; backAt: number }>) {
  const writes: Write[] = [];
  let writing = true;
  const writer = async (kind: Write['kind']) => {
    while (writing) {
      const i = n++;
      const at = Date.now();
      const name = kind === 'intention' ? `r-${i}` : `svc-${i}`;
      const r =
        kind === 'intention'
          ? await api(srv.url, 'PUT', `/v1/connect/intentions/exact?source=${name}&destination=api`, { Action: 'allow', Description: `write ${i}` })
          : await api(srv.url, 'PUT', '/v1/agent/service/register', {
              Name: name,
              Port: 8000 + (i % 1000),
              Connect: { SidecarService: { Port: 31000 + (i % 1000) } },
            });
      writes.push({ kind, name, at, ms: Date.now() - at, status: r.status, body: r.body });
      if (r.status !== 200) await new Promise((res) => setTimeout(res, 20));
    }
  };
  const writers = [writer('intention'), writer('service'), writer('intention'), writer('service')];
  await until('30 acknowledged writes', () => writes.filter((w) => w.status === 200).length >= 30, 20_000, 20);
  const { goneAt, backAt } = await fault(writes);
  await until('20 writes acknowledged after Redis came back', () => writes.filter((w) => w.at > backAt && w.status === 200).length >= 20, 20_000, 20);
  writing = false;
  await Promise.all(writers);
  const recoveredAt = Math.min(...writes.filter((w) => w.at > backAt && w.status === 200).map((w) => w.at + w.ms));
  return { writes, goneAt, backAt, recoveredAt, refused: writes.filter((w) => w.status === 503) };
}

/** What must hold once the load is over, whatever the fault was. */
async function checkWhole(writes: Write[]) {
  expect(srv.child.exitCode).toBeNull();
  // Every answer is a success or a 503 with a JSON error naming the store; never a 500.
  expect(writes.filter((w) => w.status !== 200 && w.status !== 503).map((w) => `${w.name}: ${w.status} ${JSON.stringify(w.body)}`)).toEqual([]);
  for (const w of writes.filter((x) => x.status === 503))
    expect(w.body).toMatchObject({ Error: 'ISTHMUS_ERR_STORE_UNAVAILABLE', Message: expect.stringMatching(/Redis/) });

  // The server's view is what Redis holds.
  await until(
    "the server's view matches Redis",
    async () => {
      const s = (await api(srv.url, 'GET', '/v1/federation/status')).body;
      const admin = new Redis(redis.url);
      try {
        return Number(await admin.get(`isthmus:{${DC}}:index`)) === s.Index;
      } finally {
        admin.disconnect();
      }
    },
    10_000,
  );
  // Every acknowledged write is there; every write answered "nothing was written" is not.
  const intentions = new Map(
    ((await api(srv.url, 'GET', '/v1/connect/intentions')).body as { SourceName: string; CreateIndex: number }[]).map((i) => [i.SourceName, i]),
  );
  const services = (await api(srv.url, 'GET', '/v1/agent/services')).body as Record<string, { Service: string }>;
  const present = (w: Write) => (w.kind === 'intention' ? intentions.has(w.name) : w.name in services);
  expect(writes.filter((w) => w.status === 200 && !present(w)).map((w) => w.name)).toEqual([]);
  expect(writes.filter((w) => w.status === 503 && /nothing was written/.test(w.body.Message) && present(w)).map((w) => `${w.name}: ${w.body.Message}`)).toEqual(
    [],
  );
  // Each write whole: a service with its sidecar and the sidecar with its service; an intention with
  // the audit event of the same commit, and no audit event without its intention.
  for (const id of Object.keys(services).filter((k) => /^svc-\d+$/.test(k))) expect([id, services[`${id}-sidecar-proxy`] !== undefined]).toEqual([id, true]);
  for (const id of Object.keys(services).filter((k) => /^svc-\d+-sidecar-proxy$/.test(k)))
    expect([id, services[id.replace(/-sidecar-proxy$/, '')] !== undefined]).toEqual([id, true]);
  const audit = ((await api(srv.url, 'GET', '/v1/audit?kind=intention')).body as { Subject: string; Index: number }[]).filter((e) =>
    /^r-\d+ => api$/.test(e.Subject),
  );
  const audited = new Map(audit.map((e) => [e.Subject.split(' ')[0], e.Index]));
  for (const [source, i] of intentions) if (source.startsWith('r-')) expect([source, audited.get(source)]).toEqual([source, i.CreateIndex]);
  for (const [source] of audited) expect([source, intentions.has(source)]).toEqual([source, true]);

  // Whole again: a leader, and blocking reads wake on new writes.
  await until('a leader again', async () => (await api(srv.url, 'GET', '/v1/status/leader')).body === srv.addr, 5000);
  const idx = (await api(srv.url, 'GET', '/v1/connect/intentions')).headers.get('x-consul-index');
  const pending = api(srv.url, 'GET', `/v1/connect/intentions?index=${idx}&wait=10s`);
  await new Promise((r) => setTimeout(r, 100));
  const probe = `probe-${n++}`;
  expect((await api(srv.url, 'PUT', `/v1/connect/intentions/exact?source=${probe}&destination=api`, { Action: 'deny' })).status).toBe(200);
  expect(((await pending).body as { SourceName: string }[]).some((i) => i.SourceName === probe)).toBe(true);
}

describe('Redis failing under load', () => {
  it('killed and restarted: 503 at once while it is down, reads answer, nothing lost or half-applied, recovery without a restart', async () => {
    let killedAt = 0;
    const r = await underLoad(async (writes) => {
      killedAt = Date.now();
      await redis.kill9();
      const goneAt = Date.now();
      // Down for longer than the client's reconnect backoff reaches (2 s), with writes arriving throughout.
      await until('writes refused while Redis is down', () => writes.filter((w) => w.at > goneAt).length >= 20 && Date.now() - goneAt > 3000, 20_000, 20);
      const read = await api(srv.url, 'GET', '/v1/connect/intentions');
      expect(read.status).toBe(200);
      expect(read.body.length).toBeGreaterThan(0);
      await redis.restart();
      return { goneAt, backAt: Date.now() };
    });
    // Asked while Redis was gone: refused, at once, saying nothing was written.
    const whileDown = r.writes.filter((w) => w.at > r.goneAt && w.at + w.ms <= r.backAt);
    expect(whileDown.length).toBeGreaterThanOrEqual(20);
    expect(whileDown.filter((w) => w.status !== 503)).toEqual([]);
    expect(whileDown.filter((w) => !/nothing was written/.test(w.body.Message))).toEqual([]);
    expect(Math.max(...whileDown.map((w) => w.ms))).toBeLessThan(1000);
    await checkWhole(r.writes);
    console.log(
      `Redis kill -9 under load: ${r.writes.length} writes, ${r.refused.length} refused with 503 (slowest ${Math.max(...r.refused.map((w) => w.ms))} ms), down ${r.backAt - killedAt} ms, writes acknowledged again ${r.recoveredAt - r.backAt} ms after Redis was back`,
    );
  }, 60_000);

  it('hung and resumed: 503 within the command timeout, and a write that timed out is reported as unknown, never as not written', async () => {
    const r = await underLoad(async (writes) => {
      redis.freeze();
      const goneAt = Date.now();
      await until(
        'writes refused while Redis hangs',
        () => writes.filter((w) => w.at > goneAt && w.status === 503).length >= 8 && Date.now() - goneAt > 3000,
        20_000,
        20,
      );
      redis.thaw();
      return { goneAt, backAt: Date.now() };
    });
    const whileHung = r.writes.filter((w) => w.at > r.goneAt && w.at + w.ms <= r.backAt);
    expect(whileHung.length).toBeGreaterThanOrEqual(8);
    expect(whileHung.filter((w) => w.status !== 503)).toEqual([]);
    expect(Math.max(...whileHung.map((w) => w.ms))).toBeLessThan(3500);
    // Those writes were sent before the answer timed out: Redis ran them when it resumed.
    expect(whileHung.filter((w) => /nothing was written/.test(w.body.Message))).toEqual([]);
    await checkWhole(r.writes);
    console.log(
      `Redis hung under load: ${r.writes.length} writes, ${r.refused.length} refused with 503 (slowest ${Math.max(...r.refused.map((w) => w.ms))} ms), writes acknowledged again ${r.recoveredAt - r.backAt} ms after it resumed`,
    );
  }, 60_000);
});
