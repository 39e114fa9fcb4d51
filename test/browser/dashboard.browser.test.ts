// The dashboard at /ui in headless Chromium, against two federated regions started in this process
// (dc1 the primary, dc2 joined to it; the page is dc2's). Traffic is put in their flow stores as the
// data plane would report it: a web → api connection across dc1 → dc2 (four hops, one trace), a
// web → db connection denied by an intention made through the API, and a no_route at a gateway.
// The page must show them in the graph, the flow table and the trace; intentions are created and
// deleted from the page, previewed against the observed calls (a dry run that writes nothing) and
// suggested from them; the flows show who last changed the intention that decided them.
// Screenshots are kept in test-results/screenshots/.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync } from 'node:fs';
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { loadRegionConfig } from '../../src/config/index.js';
import { startRegion, type Region } from '../../src/region/index.js';
import type { FlowIdentity, FlowRecord } from '../../src/dataflow/index.js';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = fileURLToPath(new URL('../../test-results/screenshots/', import.meta.url));
const HOPS = ['client-sidecar', 'gateway-egress', 'gateway-ingress', 'server-sidecar'];

async function region(dc: string, host: string, extra: Record<string, string> = {}): Promise<Region> {
  const config = loadRegionConfig({
    mode: 'server',
    flags: {
      dc,
      'http-addr': `${host}:0`,
      'grpc-addr': `${host}:0`,
      'grpc-tls-addr': `${host}:0`,
      'acl-default-policy': 'allow',
      'log-level': 'error',
      ...extra,
    },
    env: {},
  });
  // In memory only: nothing of one run is left for the next.
  return startRegion({ ...config, dataDir: undefined }, { heartbeatMs: 300, processMetrics: false });
}

async function api(r: Region, method: string, path: string, body?: unknown, token?: string) {
  const res = await fetch(`http://${r.httpAddress}${path}`, {
    method,
    headers: token ? { 'X-Consul-Token': token } : {},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

/** A computed style property of the element a locator points at. */
function styleOf(locator: Locator, property: string): Promise<string> {
  type Win = { getComputedStyle(el: unknown): Record<string, string> };
  return locator.evaluate((el, p) => (globalThis as unknown as Win).getComputedStyle(el)[p], property);
}

async function until<T>(what: string, f: () => T | Promise<T>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('dashboard at /ui', () => {
  let dc1: Region;
  let dc2: Region;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];
  const allowedTrace = randomBytes(16).toString('hex');
  const deniedTrace = randomBytes(16).toString('hex');
  const noRouteTrace = randomBytes(16).toString('hex');
  let allowId = '';
  let denyId = '';
  let managementToken = '';

  const shot = (name: string) => page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true });

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (npm test does it: apt-get install chromium)`);
    mkdirSync(SHOTS, { recursive: true });

    dc1 = await region('dc1', '127.0.1.1');
    const token = await api(dc1, 'POST', '/v1/federation/token', { Datacenter: 'dc2' });
    dc2 = await region('dc2', '127.0.2.1', { 'join-token': token.body.Token });
    await until('the dc1-dc2 link', () => dc1.federation.status().Peers.some((p) => p.Datacenter === 'dc2' && p.State === 'up'));

    for (const [r, name, port] of [
      [dc1, 'web', 8080],
      [dc1, 'db', 5432],
      [dc2, 'api', 9090],
    ] as const) {
      expect((await api(r, 'PUT', '/v1/agent/service/register', { Name: name, Port: port })).status).toBe(200);
    }
    expect(
      (await api(dc1, 'PUT', '/v1/connect/intentions/exact?source=web&destination=api', { Action: 'allow', Description: 'web reads the api' })).status,
    ).toBe(200);
    expect(
      (await api(dc1, 'PUT', '/v1/connect/intentions/exact?source=web&destination=db', { Action: 'deny', Description: 'web goes through the api' })).status,
    ).toBe(200);
    const allow = (await api(dc1, 'GET', '/v1/connect/intentions/exact?source=web&destination=api')).body;
    const deny = (await api(dc1, 'GET', '/v1/connect/intentions/exact?source=web&destination=db')).body;
    allowId = allow.ID;
    denyId = deny.ID;
    // Bootstrapped through dc2: the write goes to the primary, and the token comes back replicated.
    managementToken = (await api(dc2, 'PUT', '/v1/acl/bootstrap')).body.SecretID;

    // What the sidecars and gateways would report, hop by hop, in the DC of each hop.
    const td = dc1.trustDomain;
    const who = (service: string, dc: string): FlowIdentity => ({
      spiffeId: `spiffe://${td}/ns/default/dc/${dc}/svc/${service}`,
      service,
      namespace: 'default',
      dc,
    });
    const nobody: FlowIdentity = { spiffeId: '', service: '', namespace: '', dc: '' };
    const t0 = Date.now() - 5000;
    const rec = (
      r: Partial<FlowRecord> &
        Pick<FlowRecord, 'traceId' | 'hop' | 'dc' | 'reporter' | 'source' | 'destination' | 'verdict' | 'reason' | 'startTime' | 'durationMs'>,
    ): FlowRecord => ({
      id: randomUUID(),
      requestIndex: 0,
      sni: `${r.destination.service}.default.${r.destination.dc}.internal.${td}`,
      intentionId: '',
      intentionDc: '',
      intentionIndex: 0,
      bytesIn: 0,
      bytesOut: 0,
      ...r,
    });
    const web = who('web', 'dc1');
    const apiDc2 = who('api', 'dc2');
    const db = who('db', 'dc1');
    await dc1.flows.append([
      rec({
        traceId: allowedTrace,
        hop: 'client-sidecar',
        dc: 'dc1',
        reporter: 'web-sidecar-proxy',
        source: web,
        destination: apiDc2,
        verdict: 'allowed',
        reason: 'connected',
        startTime: t0,
        durationMs: 48,
        bytesIn: 5120,
        bytesOut: 310,
        routing: { target: 'api.default.dc2', route: '', split: '', retries: 1, failover: 'no healthy instance of api.default.dc1' },
      }),
      rec({
        traceId: allowedTrace,
        hop: 'gateway-egress',
        dc: 'dc1',
        reporter: 'mesh-gateway-dc1',
        source: nobody,
        destination: { ...apiDc2, spiffeId: '' },
        verdict: 'allowed',
        reason: 'routed to 127.0.2.1:8443',
        startTime: t0 + 3,
        durationMs: 43,
      }),
      rec({
        traceId: deniedTrace,
        hop: 'client-sidecar',
        dc: 'dc1',
        reporter: 'web-sidecar-proxy',
        source: web,
        destination: db,
        verdict: 'allowed',
        reason: 'connected',
        startTime: t0 + 900,
        durationMs: 4,
      }),
      rec({
        traceId: deniedTrace,
        hop: 'server-sidecar',
        dc: 'dc1',
        reporter: 'db-sidecar-proxy',
        source: web,
        destination: db,
        verdict: 'denied',
        reason: 'denied by intention web => db',
        intentionId: denyId,
        intentionDc: 'dc1',
        intentionIndex: deny.ModifyIndex,
        startTime: t0 + 902,
        durationMs: 1,
      }),
      rec({
        traceId: noRouteTrace,
        hop: 'gateway-ingress',
        dc: 'dc1',
        reporter: 'mesh-gateway-dc1',
        source: nobody,
        destination: { spiffeId: '', service: 'ghost', namespace: 'default', dc: 'dc1' },
        verdict: 'no_route',
        reason: 'no healthy instance of ghost in dc1',
        startTime: t0 + 1500,
        durationMs: 0,
      }),
    ]);
    await dc2.flows.append([
      rec({
        traceId: allowedTrace,
        hop: 'gateway-ingress',
        dc: 'dc2',
        reporter: 'mesh-gateway-dc2',
        source: nobody,
        destination: { ...apiDc2, spiffeId: '' },
        verdict: 'allowed',
        reason: 'routed to 127.0.2.1:21000',
        startTime: t0 + 9,
        durationMs: 35,
      }),
      rec({
        traceId: allowedTrace,
        hop: 'server-sidecar',
        dc: 'dc2',
        reporter: 'api-sidecar-proxy',
        source: web,
        destination: apiDc2,
        verdict: 'allowed',
        reason: 'allowed by intention web => api',
        intentionId: allowId,
        intentionDc: 'dc1',
        intentionIndex: allow.ModifyIndex,
        startTime: t0 + 12,
        durationMs: 30,
        bytesIn: 310,
        bytesOut: 5120,
      }),
    ]);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    // dc2's page: a secondary reaches the primary's server directly, so its queries of dc=all
    // need no gateway in between in this test.
    await page.goto(`http://${dc2.httpAddress}/ui`);
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await dc2?.stop();
    await dc1?.stop();
  });

  it('serves the page, and the graph shows the services by DC with a red edge for the denied pair', async () => {
    await page.locator('.node[data-service="web"][data-dc="dc1"]').waitFor();
    await page.locator('.node[data-service="db"][data-dc="dc1"]').waitFor();
    await page.locator('.node[data-service="api"][data-dc="dc2"]').waitFor();
    expect(await page.locator('#graph .dc-column').evaluateAll((els) => els.map((e) => (e as unknown as { dataset: { dc: string } }).dataset.dc))).toEqual([
      'dc1',
      'dc2',
    ]);

    const denied = page.locator('path.edge[data-source="web"][data-destination="db"]');
    expect(await denied.count()).toBe(1);
    expect(await denied.getAttribute('data-verdict')).toBe('denied');
    expect(await styleOf(denied, 'stroke')).toBe('rgb(207, 34, 46)');
    expect(await page.locator('.edge-label[data-source="web"][data-destination="db"] text').textContent()).toMatch(/^1 · p99 4 ms$/);

    // The allowed connection crosses DCs; its client and server hops count once.
    const allowed = page.locator('path.edge[data-source="web"][data-destination="api"]');
    expect(await allowed.count()).toBe(1);
    expect(await allowed.getAttribute('data-verdict')).toBe('allowed');
    expect(await allowed.getAttribute('data-destination-dc')).toBe('dc2');
    expect(await styleOf(allowed, 'stroke')).toBe('rgb(26, 127, 55)');
    expect(await page.locator('.edge-label[data-source="web"][data-destination="api"] text').textContent()).toBe('1 · p99 48 ms');
    await shot('graph');
  });

  it('lists the records in the flow table, and verdict=denied leaves only the denied one', async () => {
    await page.locator('#tabs a[data-view="flows"]').click();
    const rows = page.locator('#flow-table tbody tr[data-verdict]');
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(7);
    expect((await rows.evaluateAll((els) => els.map((e) => (e as unknown as { dataset: { verdict: string } }).dataset.verdict))).sort()).toEqual([
      'allowed',
      'allowed',
      'allowed',
      'allowed',
      'allowed',
      'denied',
      'no_route',
    ]);
    expect(await page.locator('#flow-count').textContent()).toContain('from dc1, dc2');
    await shot('flows');

    await page.locator('#flow-filters select[name="verdict"]').selectOption('denied');
    await page.locator('#flow-filters button[type="submit"]').click();
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(1);
    expect(page.url()).toContain('verdict=denied');
    const row = rows.first();
    expect(await row.getAttribute('data-trace')).toBe(deniedTrace);
    const text = await row.textContent();
    expect(text).toContain('server-sidecar');
    expect(text).toContain('denied by intention web => db');
    expect(text).toContain(denyId.slice(0, 8));
    await shot('flows-denied');
  });

  it('shows the allowed trace with its four hops in order on one time axis, and the deciding intention', async () => {
    await page.locator('#flow-filters button[type="button"]').click(); // Clear
    await page.locator(`#flow-table a[href="#/trace/${allowedTrace}"]`).first().click();
    const hops = page.locator('#timeline .tl-row');
    await expect.poll(() => hops.count(), { timeout: 10_000 }).toBe(4);
    const data = await hops.evaluateAll((els) => els.map((e) => ({ ...(e as unknown as { dataset: Record<string, string> }).dataset })));
    expect(data.map((d) => d.hop)).toEqual(HOPS);
    expect(data.map((d) => d.dc)).toEqual(['dc1', 'dc1', 'dc2', 'dc2']);
    expect(data.map((d) => d.verdict)).toEqual(['allowed', 'allowed', 'allowed', 'allowed']);
    // Bars on one axis: each later hop starts further right.
    const lefts = await page
      .locator('#timeline .tl-bar')
      .evaluateAll((els) => els.map((e) => (e as unknown as { getBoundingClientRect(): { left: number } }).getBoundingClientRect().left));
    expect([...lefts].sort((a, b) => a - b)).toEqual(lefts);
    expect(lefts[3]).toBeGreaterThan(lefts[0]);
    const server = await hops.nth(3).textContent();
    expect(server).toContain('allowed by intention web => api');
    expect(server).toContain(`decided by intention ${allowId.slice(0, 8)}`);
    expect(server).toContain('written in dc1');
    expect(await page.locator('#timeline .tl-crossing').textContent()).toBe('dc1 → dc2');
    // The client hop says where its chain sent the call, and why.
    expect(await hops.nth(0).locator('.routing').textContent()).toBe('to api.default.dc2, 1 retry, failed over: no healthy instance of api.default.dc1');
    await shot('trace');
  });

  it('lists intentions with their audit history, and creates and deletes one from the page with a token', async () => {
    await page.locator('#token').fill(managementToken);
    await page.locator('#token-form button[type="submit"]').click();
    await expect.poll(() => page.locator('#token-who').textContent()).toContain('Global Management');

    await page.locator('#tabs a[data-view="intentions"]').click();
    await page.locator(`#intention-table tr[data-id="${denyId}"][data-action="deny"]`).waitFor();
    await page.locator(`#intention-table tr[data-id="${allowId}"][data-action="allow"]`).waitFor();
    await page.locator('#audit-table tr[data-subject="web => db"][data-action="create"]').waitFor();

    const form = page.locator('#intention-form');
    await form.locator('input[name="source"]').fill('web');
    await form.locator('input[name="destination"]').fill('cache');
    await form.locator('select[name="action"]').selectOption('deny');
    await form.locator('input[name="description"]').fill('cache is written by the api only');
    await form.locator('button[type="submit"]').click();
    const created = page.locator('#intention-table tr[data-source="web"][data-destination="cache"]');
    await created.waitFor();
    expect(await page.locator('#intention-message').textContent()).toBe('Created: web → cache (deny)');
    const exact = await api(dc1, 'GET', '/v1/connect/intentions/exact?source=web&destination=cache');
    expect(exact.status).toBe(200);
    expect(exact.body).toMatchObject({ Action: 'deny', Description: 'cache is written by the api only' });
    await page.locator('#audit-table tr[data-subject="web => cache"][data-action="create"]').waitFor();
    await shot('intentions');

    await created.locator('button', { hasText: 'Delete' }).click();
    await created.locator('button', { hasText: 'Confirm delete' }).click();
    await created.waitFor({ state: 'detached' });
    expect(await page.locator('#intention-message').textContent()).toBe('Deleted: web → cache');
    expect((await api(dc1, 'GET', '/v1/connect/intentions/exact?source=web&destination=cache')).status).toBe(404);
    await page.locator('#audit-table tr[data-subject="web => cache"][data-action="delete"]').waitFor();

    // Both changes were made at the primary with the token the page was given, through dc2.
    const audit = (await api(dc1, 'GET', '/v1/audit?kind=intention')).body as { Subject: string; Action: string; Actor: { Description: string }; DC: string }[];
    const changes = audit.filter((e) => e.Subject === 'web => cache').map((e) => [e.Action, e.Actor.Description, e.DC]);
    expect(changes).toEqual([
      ['create', 'Bootstrap Token (Global Management)', 'dc2'],
      ['delete', 'Bootstrap Token (Global Management)', 'dc2'],
    ]);
    await shot('intentions-deleted');
  });

  it('renders federation status with the peer link', async () => {
    await page.locator('#tabs a[data-view="federation"]').click();
    await page.locator('#peer-table tr[data-dc="dc1"][data-state="up"]').waitFor();
    const cards = await page.locator('#federation-summary .card').allTextContents();
    expect(cards[0]).toMatch(/^This datacenterdc2a secondary/);
    expect(cards[1]).toMatch(/^Primarydc1/);
    expect(cards[2]).toMatch(/^Datacentersdc1, dc21 of 1 peer links up/);
    expect(await page.locator('#peer-table tr[data-dc="dc1"]').textContent()).toContain('we dialled them');
    expect(await page.locator('#home-dc').textContent()).toBe('dc2');
    await shot('federation');
  });

  it('shows new records as they come: from the stream, and by polling where there is no stream', async () => {
    const failed = (dc: string, id: string): FlowRecord => ({
      id,
      traceId: randomBytes(16).toString('hex'),
      requestIndex: 0,
      hop: 'server-sidecar',
      dc,
      reporter: 'api-sidecar-proxy',
      source: { spiffeId: '', service: 'batch', namespace: 'default', dc },
      destination: { spiffeId: '', service: 'api', namespace: 'default', dc },
      sni: '',
      verdict: 'error',
      reason: 'local application unreachable',
      intentionId: allowId,
      intentionDc: 'dc1',
      intentionIndex: 1,
      startTime: Date.now(),
      durationMs: 2,
      bytesIn: 0,
      bytesOut: 0,
    });
    const rows = (p: Page) => p.locator('#flow-table tbody tr[data-verdict="error"]');

    expect(await page.locator('#live').textContent()).toBe('live');
    await page.goto(`http://${dc2.httpAddress}/ui#/flows?from=batch`);
    await expect.poll(() => page.locator('#flow-count').textContent()).toContain('where from=batch');
    expect(await rows(page).count()).toBe(0);
    await dc1.flows.append([failed('dc1', 'live-1')]);
    await rows(page).first().waitFor({ timeout: 5000 });

    // A server without /v1/flows/stream: the page says it polls, and still catches up.
    const polling = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    polling.on('pageerror', (err) => pageErrors.push(err.message));
    await polling.route('**/v1/flows/stream*', (route) =>
      route.fulfill({ status: 404, contentType: 'application/json', body: '{"Error":"ISTHMUS_ERR_NOT_FOUND"}' }),
    );
    await polling.goto(`http://${dc2.httpAddress}/ui#/flows?from=batch`);
    await expect.poll(() => rows(polling).count(), { timeout: 5000 }).toBe(1);
    expect(await polling.locator('#live').textContent()).toBe('polling every 2 s');
    await dc2.flows.append([failed('dc2', 'live-2')]);
    await expect.poll(() => rows(polling).count(), { timeout: 6000 }).toBe(2);
    await expect.poll(() => rows(page).count(), { timeout: 6000 }).toBe(2);
    await polling.close();
    expect(pageErrors).toEqual([]);
  });

  it('previews a deny against the observed calls without writing it, and suggests intentions from the allowed calls', async () => {
    // More web → api calls at api's sidecar in dc2 (what a dry run replays): two connections, and
    // one HTTP request inside the second.
    const seen = (requestIndex: number, traceId: string, http?: FlowRecord['http']): FlowRecord => ({
      id: randomUUID(),
      traceId,
      requestIndex,
      hop: 'server-sidecar',
      dc: 'dc2',
      reporter: 'api-sidecar-proxy',
      source: { spiffeId: '', service: 'web', namespace: 'default', dc: 'dc1' },
      destination: { spiffeId: '', service: 'api', namespace: 'default', dc: 'dc2' },
      sni: '',
      verdict: 'allowed',
      reason: 'allowed by intention web => api',
      intentionId: allowId,
      intentionDc: 'dc1',
      intentionIndex: 1,
      startTime: Date.now() - 2000,
      durationMs: 3,
      bytesIn: 0,
      bytesOut: 0,
      ...(http ? { http } : {}),
    });
    const second = randomBytes(16).toString('hex');
    await dc2.flows.append([
      seen(0, randomBytes(16).toString('hex')),
      seen(0, second),
      seen(1, second, { method: 'GET', path: '/v1/orders?page=2', status: 200 }),
    ]);

    const intentionBefore = await api(dc1, 'GET', '/v1/connect/intentions/exact?source=web&destination=api');
    expect(intentionBefore.body).toMatchObject({ ID: allowId, Action: 'allow' });
    const auditBefore = (await api(dc1, 'GET', '/v1/audit?kind=intention')).body as unknown[];
    const writesNothing = async () => {
      const now = await api(dc1, 'GET', '/v1/connect/intentions/exact?source=web&destination=api');
      expect(now.body).toMatchObject({ ID: allowId, Action: 'allow', ModifyIndex: intentionBefore.body.ModifyIndex });
      expect(((await api(dc2, 'GET', '/v1/connect/intentions/exact?source=web&destination=api')).body as { Action: string }).Action).toBe('allow');
      expect(((await api(dc1, 'GET', '/v1/audit?kind=intention')).body as unknown[]).length).toBe(auditBefore.length);
    };

    await page.locator('#tabs a[data-view="intentions"]').click();
    await page.locator(`#intention-table tr[data-id="${allowId}"][data-action="allow"]`).waitFor();
    const form = page.locator('#intention-form');
    await form.locator('input[name="source"]').fill('web');
    await form.locator('input[name="destination"]').fill('api');
    await form.locator('select[name="action"]').selectOption('deny');
    await form.locator('select[name="window"]').selectOption('1h');
    await form.locator('button[name="preview"]').click();

    // The three web → api connections, and the request inside one, would be denied.
    const connections = page.locator('#preview-table tr[data-source="web"][data-destination="api"][data-request="connection"]');
    await connections.waitFor();
    expect(await connections.getAttribute('data-before')).toBe('allowed');
    expect(await connections.getAttribute('data-after')).toBe('denied');
    expect(await connections.getAttribute('data-count')).toBe('3');
    expect(await connections.locator('td.count').textContent()).toBe('3');
    const verdict = connections.locator('.verdict-change strong');
    expect(await verdict.textContent()).toBe('DENIED');
    expect(await styleOf(verdict, 'color')).toBe('rgb(207, 34, 46)');
    expect(await connections.textContent()).toContain('web → api (allow) → the proposal');
    const request = page.locator('#preview-table tr[data-source="web"][data-destination="api"][data-request="GET /v1/orders"]');
    expect(await request.getAttribute('data-count')).toBe('1');
    expect(await request.getAttribute('data-after')).toBe('denied');
    // batch → api (its two failed calls) is decided as before: not listed.
    expect(await page.locator('#preview-table tbody tr').count()).toBe(2);
    expect(await page.locator('#preview-summary').textContent()).toBe(
      'Replayed against 6 calls of the last 1h in dc1, dc2 (3 distinct calls). 4 calls would be denied that were not.',
    );
    expect(await page.locator('#preview h3').textContent()).toContain('replacing the allow intention');
    await shot('preview');

    // Nothing was written: the intention, its index and the audit trail are as they were.
    await writesNothing();
    expect(await page.locator('#intention-message').textContent()).toBe('');
    expect(await page.locator(`#intention-table tr[data-id="${allowId}"]`).getAttribute('data-action')).toBe('allow');

    // Suggest for api: web is the only source with allowed calls (batch's failed), with the one
    // path it used, replacing the allow there is.
    await form.locator('button[name="suggest"]').click();
    const suggestion = page.locator('#suggest-table tr[data-source="web"][data-destination="api"]');
    await suggestion.waitFor();
    expect(await page.locator('#suggest-table tbody tr').count()).toBe(1);
    expect(await suggestion.getAttribute('data-calls')).toBe('4');
    expect(await suggestion.getAttribute('data-existing')).toBe(allowId);
    expect(await suggestion.textContent()).toContain('allow GET /v1/orders');
    expect(await page.locator('#suggest-summary').textContent()).toBe('From 4 allowed calls of the last 24h in dc1, dc2: 1 suggestion.');
    await shot('suggest');

    // Into the editor; previewed, the least-privilege intention changes no verdict of what was seen.
    await suggestion.locator('button.use').click();
    expect(await form.locator('input[name="source"]').inputValue()).toBe('web');
    expect(await form.locator('input[name="destination"]').inputValue()).toBe('api');
    expect(await form.locator('select[name="action"]').inputValue()).toBe('l7');
    expect(JSON.parse(await form.locator('textarea[name="permissions"]').inputValue())).toEqual([
      { Action: 'allow', HTTP: { PathExact: '/v1/orders', Methods: ['GET'] } },
    ]);
    expect(await form.locator('input[name="replace"]').isChecked()).toBe(true);
    await form.locator('button[name="preview"]').click();
    await page.locator('#preview-none').waitFor();
    expect(await page.locator('#preview-none').textContent()).toBe('No observed call would be decided differently.');
    await writesNothing();
    expect(pageErrors).toEqual([]);
  });

  it('shows beside the flows an intention decided who last changed it, when and through which DC', async () => {
    // The deny is changed through dc2 with the management token (the write goes to the primary).
    const put = await api(
      dc2,
      'PUT',
      '/v1/connect/intentions/exact?source=web&destination=db',
      { Action: 'deny', Description: 'web reaches the db through the api only' },
      managementToken,
    );
    expect(put.status).toBe(200);
    type Event = { Subject: string; Action: string; DC: string; Actor: { Description: string }; After?: { ID: string } };
    await until('the change in dc2', async () =>
      ((await api(dc2, 'GET', '/v1/audit?kind=intention')).body as Event[]).some((e) => e.Subject === 'web => db' && e.Action === 'update'),
    );
    const events = (await api(dc1, 'GET', '/v1/audit?kind=intention')).body as Event[];
    expect(events.filter((e) => e.After?.ID === denyId).map((e) => [e.Action, e.Actor.Description, e.DC])).toEqual([
      ['create', 'Anonymous Token', 'dc1'],
      ['update', 'Bootstrap Token (Global Management)', 'dc2'],
    ]);

    await page.locator('#tabs a[data-view="flows"]').click();
    const denied = page.locator(`#flow-table tbody tr[data-trace="${deniedTrace}"][data-hop="server-sidecar"]`);
    const deniedLine = denied.locator('td.intention .audit-line');
    await expect.poll(() => deniedLine.getAttribute('data-action'), { timeout: 10_000 }).toBe('update');
    expect(await deniedLine.getAttribute('data-dc')).toBe('dc2');
    expect(await deniedLine.textContent()).toMatch(/^changed (just now|\d+ s ago) by Bootstrap Token \(Global Management\) in dc2 · after this call$/);
    expect(await denied.locator('td.intention').textContent()).toContain(denyId.slice(0, 8));
    // The allow was made in dc1 without a token, and not changed since.
    const allowed = page.locator(`#flow-table tbody tr[data-trace="${allowedTrace}"][data-hop="server-sidecar"] td.intention .audit-line`);
    expect(await allowed.textContent()).toMatch(/^created (just now|\d+ s ago) by Anonymous Token in dc1$/);
    // Hops that decide nothing have no line.
    expect(await page.locator(`#flow-table tbody tr[data-trace="${deniedTrace}"][data-hop="client-sidecar"] .audit-line`).count()).toBe(0);
    await shot('audit');

    // The same under the deciding hop of the trace.
    await denied.locator(`a[href="#/trace/${deniedTrace}"]`).click();
    const hop = page.locator('#timeline .tl-row[data-hop="server-sidecar"] .audit-line');
    await expect
      .poll(() => hop.textContent(), { timeout: 10_000 })
      .toMatch(/^changed (just now|\d+ s ago) by Bootstrap Token \(Global Management\) in dc2 · after this call$/);
    expect(await page.locator('#timeline .tl-row[data-hop="client-sidecar"] .audit-line').count()).toBe(0);
    await shot('audit-trace');

    // In the intentions tab: each intention's last change, and the flows it decided in the last hour.
    await page.locator('#tabs a[data-view="intentions"]').click();
    const denyRow = page.locator(`#intention-table tr[data-id="${denyId}"]`);
    await expect.poll(() => denyRow.locator('td.updated .audit-line').getAttribute('data-action'), { timeout: 10_000 }).toBe('update');
    expect(await denyRow.locator('td.updated .audit-line').textContent()).toMatch(
      /^changed (just now|\d+ s ago) by Bootstrap Token \(Global Management\) in dc2$/,
    );
    const denyDecided = denyRow.locator('td.decided');
    expect([await denyDecided.getAttribute('data-allowed'), await denyDecided.getAttribute('data-denied')]).toEqual(['0', '1']);
    expect(await denyDecided.textContent()).toBe('0 allowed · 1 denied');
    const allowDecided = page.locator(`#intention-table tr[data-id="${allowId}"] td.decided`);
    // web → api: one connection from the start and three more since; batch's two failed calls are other.
    expect(await allowDecided.textContent()).toBe('4 allowed · 0 denied · 2 other');
    await shot('intentions-decided');
    expect(pageErrors).toEqual([]);
  });

  it('draws every connection it counts after a client sidecar found no endpoint for an upstream (a destination without a DC)', async () => {
    await page.locator('#tabs a[data-view="graph"]').click();
    await page.locator('.node[data-service="api"][data-dc="dc2"]').waitFor();
    const recordsNow = async () => ((await api(dc2, 'GET', '/v1/flows?dc=all&since=15m&limit=2000')).body.Records as unknown[]).length;
    const before = await recordsNow();
    // The error banner must not show at any point while the graph takes the record in.
    type Watch = {
      document: { getElementById(id: string): { hidden: boolean; textContent: string } };
      MutationObserver: new (f: () => void) => { observe(el: unknown, o: unknown): void };
      bannerSeen: string[];
    };
    await page.evaluate(() => {
      const g = globalThis as unknown as Watch;
      const banner = g.document.getElementById('banner');
      g.bannerSeen = [];
      new g.MutationObserver(() => {
        if (!banner.hidden) g.bannerSeen.push(banner.textContent);
      }).observe(banner, { attributes: true, childList: true, characterData: true, subtree: true });
    });
    // As the sidecar records it: the upstream's name, and no SPIFFE ID, namespace or DC to go with it.
    await dc2.flows.append([
      {
        id: randomUUID(),
        traceId: '0'.repeat(32),
        requestIndex: 0,
        hop: 'client-sidecar',
        dc: 'dc2',
        reporter: 'api-sidecar-proxy',
        source: { spiffeId: `spiffe://${dc1.trustDomain}/ns/default/dc/dc2/svc/api`, service: 'api', namespace: 'default', dc: 'dc2' },
        destination: { spiffeId: '', service: 'billing', namespace: '', dc: '' },
        sni: '',
        verdict: 'error',
        reason: 'no healthy endpoint for upstream billing',
        intentionId: '',
        intentionDc: '',
        intentionIndex: 0,
        startTime: Date.now(),
        durationMs: 0,
        bytesIn: 0,
        bytesOut: 0,
      },
    ]);
    const notes = page.locator('section[aria-labelledby="graph-title"] .notes p').first();
    await expect.poll(() => notes.textContent(), { timeout: 15_000 }).toContain(`from ${before + 1} flow records`);
    // Every connection the notes count is an edge on the canvas, and the rest of the graph stays.
    const drawn = (await page.locator('#graph .edge-label text').allTextContents()).reduce((n, t) => n + Number(t.split(' ')[0]), 0);
    expect(await notes.textContent()).toMatch(new RegExp(`^${drawn} connections? between services, from ${before + 1} flow records`));
    expect(await page.locator('.node[data-service="web"][data-dc="dc1"]').count()).toBe(1);
    expect(await page.evaluate(() => (globalThis as unknown as Watch).bannerSeen)).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
