// Two `isthmus server` replicas of one secondary DC on one Redis: exactly one of them (the leader)
// dials the primary; when it is killed with SIGKILL the other takes the leadership within its lease,
// dials, and replication goes on from the index the DC had applied: no acknowledged write is lost.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { api, runCli, startServer, tempDir, type ServerProcess } from '../harness/server-process.js';
import { until } from '../harness/until.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const id = randomUUID().slice(0, 6);
const primaryDc = `p${id}`;
const dc = `s${id}`;
const HB = ['--federation-heartbeat', '300ms'];
const primaryDir = tempDir('isthmus-leadership-');

let primary: ServerProcess;
let a: ServerProcess;
let b: ServerProcess;

interface PeerStatus {
  Datacenter: string;
  State: string;
  Direction: string;
  ConnectedSince: string | null;
  LastError: string;
}
interface Status {
  Leader: boolean;
  LeaderAddress: string;
  AppliedIndex: number;
  Peers: PeerStatus[];
}

const status = async (s: ServerProcess) => (await api(s.url, 'GET', '/v1/federation/status')).body as Status;
const peer = (st: Status, name: string) => st.Peers.find((p) => p.Datacenter === name)!;

beforeAll(async () => {
  primary = await startServer('server', ['--dc', primaryDc, '--acl-default-policy', 'allow', '--data-dir', primaryDir, ...HB]);
  const token = (await api(primary.url, 'POST', '/v1/federation/token', { Datacenter: dc })).body.Token as string;
  expect(token).toMatch(/^isthmus-join\./);
  const args = [
    '--dc',
    dc,
    '--primary-dc',
    primaryDc,
    '--store',
    'redis',
    '--redis-url',
    REDIS_URL,
    '--acl-default-policy',
    'allow',
    '--join-token',
    token,
    ...HB,
  ];
  // The first replica joins; the second finds the join in Redis.
  a = await startServer('server', [...args, '--node', 'node-a']);
  b = await startServer('server', [...args, '--node', 'node-b']);
}, 60_000);

afterAll(async () => {
  await Promise.all([a?.kill9(), b?.stop(), primary?.stop()]);
  const admin = new Redis(REDIS_URL);
  const keys = await admin.keys(`isthmus:{${dc}}:*`);
  if (keys.length) await admin.del(...keys);
  admin.disconnect();
  rmSync(primaryDir, { recursive: true, force: true });
});

describe('leadership among the servers of one DC', () => {
  it('lets only the leader dial, and moves the links and replication to the other replica when the leader is killed', async () => {
    // Whichever took the lease first leads; the other says who does.
    await until('one leader with its link up', async () => {
      const [sa, sb] = await Promise.all([status(a), status(b)]);
      return sa.Leader !== sb.Leader && peer(sa.Leader ? sa : sb, primaryDc).State === 'up';
    });
    let [leader, standby] = (await status(a)).Leader ? [a, b] : [b, a];
    // The banner says where acknowledged writes live (issue 21).
    expect(a.output()).toContain(`store: redis, persisted in Redis at ${REDIS_URL}`);
    expect(primary.output()).toContain(`store: memory, persisted in ${primaryDir}`);
    const sStandby = await status(standby);
    expect(sStandby.Leader).toBe(false);
    expect(sStandby.LeaderAddress).toBe(leader.addr);
    expect(peer(sStandby, primaryDc)).toMatchObject({ State: 'down', Direction: '' });
    expect(peer(sStandby, primaryDc).LastError).toMatch(/does not lead/);
    const cli = await runCli(['federation', 'status', '--http-addr', standby.addr]);
    expect(cli.stdout).toContain(`This server does not lead its datacenter; the leader is ${leader.addr}.`);
    expect((await runCli(['federation', 'status', '--http-addr', leader.addr])).stdout).toContain('This server leads its datacenter.');

    // Exactly one dials: were both dialing, each new link would replace the other's at the primary.
    const since = peer(await status(primary), dc);
    expect(since).toMatchObject({ State: 'up', Direction: 'in' });
    await new Promise((r) => setTimeout(r, 2000));
    expect(peer(await status(primary), dc).ConnectedSince).toBe(since.ConnectedSince);

    // A write at the replica that does not lead is forwarded to the primary all the same.
    const fwd = await api(standby.url, 'PUT', '/v1/connect/intentions/exact?source=via-standby&destination=db', { Action: 'deny' });
    expect(fwd.status).toBe(200);

    // A steady writer at the primary while the leader dies.
    const acked: string[] = [];
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        const name = `w${i}`;
        const r = await api(primary.url, 'PUT', `/v1/connect/intentions/exact?source=${name}&destination=db`, { Action: 'deny' }).catch(() => undefined);
        if (r?.status === 200) acked.push(name);
        await new Promise((res) => setTimeout(res, 40));
      }
    })();
    await until('some writes replicated', () => acked.length >= 10);

    const killedAt = Date.now();
    await leader.kill9();
    await until(
      'the other replica leads and its link is up',
      async () => {
        const s = await status(standby);
        return s.Leader && peer(s, primaryDc).State === 'up';
      },
      15_000,
    );
    const takeoverMs = Date.now() - killedAt;
    // The lease is 5 s, renewed every second: the standby takes it within about 6 s, then dials.
    expect(takeoverMs).toBeLessThan(9000);
    [leader, standby] = [standby, leader];
    expect(peer(await status(primary), dc)).toMatchObject({ State: 'up', Direction: 'in' });
    const afterKill = acked.length;
    await until('writes after the takeover', () => acked.length >= afterKill + 10);
    writing = false;
    await writer;

    // Every acknowledged write reached the DC, through whichever replica applied it.
    await until(
      'every acknowledged write is in the secondary',
      async () => {
        const list = (await api(leader.url, 'GET', '/v1/connect/intentions')).body as { SourceName: string }[];
        const have = new Set(list.map((x) => x.SourceName));
        return acked.every((n) => have.has(n)) && have.has('via-standby');
      },
      10_000,
    );
    const st = await status(leader);
    expect(st.Leader).toBe(true);
    expect(st.AppliedIndex).toBeGreaterThan(0);
    console.log(`leadership moved in ${takeoverMs} ms; ${acked.length} writes acknowledged, none lost`);
  }, 90_000);
});
