// The soak's intention churn, and the bookkeeping that tells whether an acknowledged write was lost.
// - churn: every step creates, updates or deletes an intention of a pool of unrelated pairs
//   (soak-src-N -> soak-dst-N) at the primary; half the pairs through the exact endpoints
//   (`/v1/connect/intentions/exact`), half through the ID endpoints (POST, PUT and DELETE by ID);
// - toggles, written in turn at each DC (the secondaries forward to the primary), that must not change
//   the measured path's decisions: a wildcard deny `* -> db` on and off (web -> db stays allowed by
//   its exact allow), `batch -> api` flipped between allow and deny, and the measured intention
//   `web -> api` itself rewritten with a new description (still allow).
// Only a write answered 2xx is acknowledged, and the expected state of its pair becomes what it
// wrote; a write that failed or got no answer leaves its pair uncertain (counted and kept as an
// error). compare() reads every DC's intentions and lists where any DC differs from the expected state.
import type { SoakDc } from './soak-federation.js';

interface IntentionState {
  Action: 'allow' | 'deny';
  Description: string;
}

interface ListedIntention {
  ID: string;
  SourceName: string;
  DestinationName: string;
  Action?: 'allow' | 'deny';
  Description: string;
}

export interface WriteError {
  t: number;
  dc: string;
  op: string;
  pair: string;
  error: string;
}

export interface Difference {
  pair: string;
  dc: string;
  expected: IntentionState | null;
  actual: IntentionState | null;
}

export interface Probe {
  /** Seconds since the load started. */
  t: number;
  /** Time until every DC held every acknowledged write, or null if they did not within the bound. */
  convergedMs: number | null;
  differences: Difference[];
}

const key = (src: string, dst: string) => `${src} -> ${dst}`;

/** A small deterministic random source (mulberry32), so a run's sequence of operations can be repeated. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class IntentionChurn {
  /** Expected state per tracked pair: what its last acknowledged write left (null: no intention). */
  readonly expected = new Map<string, IntentionState | null>();
  /** Pairs whose last write failed or got no answer: it may or may not have been applied. */
  readonly uncertain = new Set<string>();
  readonly ops = { create: 0, update: 0, delete: 0, toggle: 0 };
  readonly writeErrors: WriteError[] = [];
  readonly writeMs: number[] = [];
  private readonly ids = new Map<string, string>();
  private readonly random: () => number;
  private rev = 0;
  private toggles = 0;

  constructor(
    private readonly dcs: SoakDc[],
    private readonly pool: number,
    private readonly now: () => number,
    seed = 1,
  ) {
    this.random = rng(seed);
    this.expected.set(key('web', 'api'), { Action: 'allow', Description: 'measured path' });
    this.expected.set(key('web', 'db'), { Action: 'allow', Description: 'measured path' });
    this.expected.set(key('*', 'db'), null);
    this.expected.set(key('batch', 'api'), null);
    for (let i = 0; i < pool; i++) this.expected.set(key(`soak-src-${i}`, `soak-dst-${i}`), null);
  }

  get writes(): number {
    return this.ops.create + this.ops.update + this.ops.delete + this.ops.toggle;
  }

  /** One create, update or delete on a pair of the pool, at the primary. */
  async step(): Promise<void> {
    const i = Math.floor(this.random() * this.pool);
    const src = `soak-src-${i}`;
    const dst = `soak-dst-${i}`;
    const k = key(src, dst);
    const current = this.expected.get(k);
    const byId = i % 2 === 1;
    const primary = this.dcs[0];
    const rev = ++this.rev;
    const exact = `/v1/connect/intentions/exact?source=${src}&destination=${dst}`;
    if (this.uncertain.has(k)) {
      // After a write that got no answer, an upsert by pair settles the state whatever it was.
      const state: IntentionState = { Action: 'allow', Description: `soak rev ${rev}` };
      const r = await this.write(primary, 'update', k, 'PUT', exact, state);
      if (r.ok) this.ack(k, state, 'update');
      return;
    }
    if (current === null) {
      const state: IntentionState = { Action: this.random() < 0.5 ? 'allow' : 'deny', Description: `soak rev ${rev}` };
      const r = byId
        ? await this.write(primary, 'create', k, 'POST', '/v1/connect/intentions', { SourceName: src, DestinationName: dst, ...state })
        : await this.write(primary, 'create', k, 'PUT', exact, state);
      if (r.ok) {
        if (byId) this.ids.set(k, (r.body as { ID: string }).ID);
        this.ack(k, state, 'create');
      }
      return;
    }
    const del = this.random() < 0.4;
    const id = byId ? await this.idOf(src, dst) : undefined;
    if (del) {
      const r = await this.write(primary, 'delete', k, 'DELETE', id ? `/v1/connect/intentions/${id}` : exact);
      if (r.ok) {
        this.ids.delete(k);
        this.ack(k, null, 'delete');
      }
      return;
    }
    const state: IntentionState = { Action: current?.Action === 'allow' ? 'deny' : 'allow', Description: `soak rev ${rev}` };
    const r = id
      ? await this.write(primary, 'update', k, 'PUT', `/v1/connect/intentions/${id}`, { SourceName: src, DestinationName: dst, ...state })
      : await this.write(primary, 'update', k, 'PUT', exact, state);
    if (r.ok) this.ack(k, state, 'update');
  }

  /** One toggle that leaves the measured path's decisions alone, written at each DC in turn. */
  async toggle(): Promise<void> {
    const n = this.toggles++;
    const at = this.dcs[n % this.dcs.length];
    const rev = ++this.rev;
    const which = n % 3;
    if (which === 0) {
      const k = key('*', 'db');
      const on = this.expected.get(k) === null || this.uncertain.has(k);
      const r = on
        ? await this.write(at, 'toggle', k, 'PUT', '/v1/connect/intentions/exact?source=*&destination=db', {
            Action: 'deny',
            Description: `soak wildcard deny rev ${rev}`,
          })
        : await this.write(at, 'toggle', k, 'DELETE', '/v1/connect/intentions/exact?source=*&destination=db');
      if (r.ok) this.ack(k, on ? { Action: 'deny', Description: `soak wildcard deny rev ${rev}` } : null, 'toggle');
    } else if (which === 1) {
      const k = key('batch', 'api');
      const state: IntentionState = { Action: this.expected.get(k)?.Action === 'allow' ? 'deny' : 'allow', Description: `soak batch rev ${rev}` };
      const r = await this.write(at, 'toggle', k, 'PUT', '/v1/connect/intentions/exact?source=batch&destination=api', state);
      if (r.ok) this.ack(k, state, 'toggle');
    } else {
      const k = key('web', 'api');
      const state: IntentionState = { Action: 'allow', Description: `measured path, rev ${rev}` };
      const r = await this.write(at, 'toggle', k, 'PUT', '/v1/connect/intentions/exact?source=web&destination=api', state);
      if (r.ok) this.ack(k, state, 'toggle');
    }
  }

  /** Where any DC differs from the expected state (uncertain pairs: only where the DCs differ among themselves). */
  async compare(): Promise<Difference[]> {
    const lists = await Promise.all(this.dcs.map((d) => this.list(d)));
    const diffs: Difference[] = [];
    for (const [k, want] of this.expected) {
      const got = lists.map((l) => {
        const i = l.get(k);
        return i ? { Action: i.Action ?? 'allow', Description: i.Description } : null;
      });
      for (const [j, d] of this.dcs.entries()) {
        const target = this.uncertain.has(k) ? got[0] : want;
        if (JSON.stringify(got[j]) !== JSON.stringify(target)) diffs.push({ pair: k, dc: d.dc, expected: target, actual: got[j] });
      }
    }
    return diffs;
  }

  /** Every DC's full list of intentions, as comparable text; true when all are the same. */
  async identical(): Promise<{ same: boolean; counts: Record<string, number> }> {
    const lists = await Promise.all(this.dcs.map((d) => this.list(d)));
    const text = lists.map((l) => JSON.stringify([...l.values()].map((i) => [i.ID, i.SourceName, i.DestinationName, i.Action, i.Description]).sort()));
    return { same: text.every((t) => t === text[0]), counts: Object.fromEntries(this.dcs.map((d, j) => [d.dc, lists[j].size])) };
  }

  /** Waits up to `ms` for every DC to hold every acknowledged write. */
  async probe(ms: number): Promise<Probe> {
    const t = this.now();
    const start = performance.now();
    let diffs: Difference[] = [];
    for (;;) {
      try {
        diffs = await this.compare();
        if (diffs.length === 0) return { t: +t.toFixed(1), convergedMs: Math.round(performance.now() - start), differences: [] };
      } catch (err) {
        diffs = [{ pair: '(read failed)', dc: '', expected: null, actual: { Action: 'deny', Description: (err as Error).message } }];
      }
      if (performance.now() - start > ms) return { t: +t.toFixed(1), convergedMs: null, differences: diffs };
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private ack(k: string, state: IntentionState | null, op: keyof IntentionChurn['ops']): void {
    this.expected.set(k, state);
    this.uncertain.delete(k);
    this.ops[op]++;
  }

  private async idOf(src: string, dst: string): Promise<string | undefined> {
    const k = key(src, dst);
    if (this.ids.has(k)) return this.ids.get(k);
    const r = await fetch(`${this.dcs[0].url}/v1/connect/intentions/exact?source=${src}&destination=${dst}`, { signal: AbortSignal.timeout(15_000) }).catch(
      () => undefined,
    );
    if (!r || !r.ok) return undefined;
    const id = ((await r.json()) as { ID: string }).ID;
    this.ids.set(k, id);
    return id;
  }

  private async list(d: SoakDc): Promise<Map<string, ListedIntention>> {
    const r = await fetch(`${d.url}/v1/connect/intentions`, { signal: AbortSignal.timeout(15_000) });
    if (!r.ok) throw new Error(`${d.dc}: GET /v1/connect/intentions ${r.status}`);
    const list = (await r.json()) as ListedIntention[];
    return new Map(list.map((i) => [key(i.SourceName, i.DestinationName), i]));
  }

  private async write(d: SoakDc, op: string, k: string, method: string, path: string, body?: unknown): Promise<{ ok: boolean; body?: unknown }> {
    const t0 = performance.now();
    const fail = (error: string) => {
      this.uncertain.add(k);
      this.ids.delete(k);
      this.writeErrors.push({ t: +this.now().toFixed(1), dc: d.dc, op, pair: k, error });
      return { ok: false };
    };
    let res: Response;
    try {
      res = await fetch(d.url + path, {
        method,
        headers: { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (err) {
      return fail(`${method} ${path}: ${(err as Error).message}`);
    }
    const text = await res.text().catch((err: Error) => `(body unreadable: ${err.message})`);
    if (!res.ok) return fail(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
    this.writeMs.push(performance.now() - t0);
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = text;
    }
    return { ok: true, body: parsed };
  }
}
