// No private key leaves where it belongs: after joining, replicating, signing leaves, rotating the
// root, forwarding writes and recording flows, no CA or join secret appears in any log line, in
// /metrics, in flow records or in any API answer — except a leaf's own key, to its requester.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRegionConfig } from '../../src/config/index.js';
import { startRegion, type Region } from '../../src/region/index.js';
import { createLogger } from '../../src/telemetry/index.js';

const logs: string[] = [];

async function region(dc: string, host: string, extra: Record<string, string> = {}): Promise<Region> {
  const config = loadRegionConfig({
    mode: 'server',
    flags: {
      dc,
      'http-addr': `${host}:0`,
      'grpc-addr': `${host}:0`,
      'grpc-tls-addr': `${host}:0`,
      'acl-default-policy': 'allow',
      'log-level': 'debug',
      ...extra,
    },
    env: {},
  });
  return startRegion(
    { ...config, dataDir: undefined },
    { heartbeatMs: 300, processMetrics: false, logger: createLogger({ level: 'debug', write: (l) => logs.push(l) }) },
  );
}

async function get(r: Region, path: string): Promise<string> {
  return (await fetch(`http://${r.httpAddress}${path}`)).text();
}

describe('secrets stay where they belong', () => {
  let dc1: Region;
  let dc2: Region;
  let token = '';

  beforeAll(async () => {
    dc1 = await region('dc1', '127.0.1.1');
    const t = await (await fetch(`http://${dc1.httpAddress}/v1/federation/token`, { method: 'POST', body: JSON.stringify({ Datacenter: 'dc2' }) })).json();
    token = (t as { Token: string }).Token;
    dc2 = await region('dc2', '127.0.2.1', { 'join-token': token });
  }, 30_000);

  afterAll(async () => {
    await dc2?.stop();
    await dc1?.stop();
  });

  it('leaks no CA key, join secret or leaf key into logs, metrics, flows or API answers', async () => {
    // Exercise: leaves, a forwarded write, a rotation replicated, a flow record.
    const leafAnswer = await get(dc2, '/v1/agent/connect/ca/leaf/web');
    const leafKey = (JSON.parse(leafAnswer) as { PrivateKeyPEM: string }).PrivateKeyPEM;
    expect(leafKey).toMatch(/BEGIN PRIVATE KEY/); // the requester gets its own key
    await fetch(`http://${dc2.httpAddress}/v1/connect/intentions/exact?source=web&destination=db`, { method: 'PUT', body: JSON.stringify({ Action: 'deny' }) });
    await fetch(`http://${dc1.httpAddress}/v1/connect/ca/rotate`, { method: 'POST' });
    await new Promise((r) => setTimeout(r, 1000));

    const secrets: string[] = [];
    for (const r of [dc1, dc2]) for (const e of r.store.list<string>('ca-secrets')) secrets.push(e.value);
    const joinSecret = JSON.parse(Buffer.from(token.slice('isthmus-join.'.length), 'base64url').toString()).secret as string;
    expect(secrets.length).toBeGreaterThanOrEqual(4); // roots and intermediates of both DCs
    const needles = [...secrets.map((s) => s.split('\n').slice(1, 3).join('\n')), joinSecret, leafKey.split('\n')[1]];

    const pages: string[] = [];
    for (const r of [dc1, dc2]) {
      for (const path of [
        '/metrics',
        '/v1/flows?dc=all',
        '/v1/connect/ca/roots',
        '/v1/connect/ca/configuration',
        '/v1/connect/intentions',
        '/v1/audit',
        '/v1/federation/status',
        '/v1/catalog/services',
        '/v1/agent/services',
        '/v1/acl/tokens',
        '/v1/acl/policies',
        '/v1/status/leader',
        '/v1/agent/connect/ca/leaf/api', // another service's leaf: its own key only, never a CA key
      ])
        pages.push(`${r.config.dc} ${path}: ${await get(r, path)}`);
      pages.push(`flows ${JSON.stringify(await r.flows.query({ limit: 10_000 }))}`);
    }
    const haystacks = { logs: logs.join('\n'), answers: pages.join('\n') };
    expect(haystacks.logs.length).toBeGreaterThan(1000);
    for (const [where, text] of Object.entries(haystacks)) {
      for (const n of needles) expect(text.includes(n), `a secret appears in ${where}`).toBe(false);
    }
    // The token and the join secret are redacted wherever the config is logged.
    expect(haystacks.logs).toMatch(/"joinToken":"\*\*\*\*\*"/);
  });
});
