// Runs the checks of this server's node: HTTP and TCP on their interval, TTL deadlines, alias
// checks on every change of what they alias, and DeregisterCriticalServiceAfter. It writes to the
// store only when a status or output changes.
import { connect } from 'node:net';
import type { Component } from '../core/lifecycle.js';
import type { Change, Store } from '../store/index.js';
import { silentLogger, type Logger } from '../telemetry/index.js';
import type { Catalog } from './catalog.js';
import { CHECKS, NODES, SERVICES, type CheckRecord, type HealthStatus } from './model.js';

export interface CheckRunnerOptions {
  store: Store;
  catalog: Catalog;
  nodeName: string;
  logger?: Logger;
}

interface Running {
  def: string;
  timer?: NodeJS.Timeout;
  ttlTimer?: NodeJS.Timeout;
  /** Pending DeregisterCriticalServiceAfter deadline while the check is critical. */
  criticalTimer?: NodeJS.Timeout;
  /** Alias checks: the instance aliased (`node/serviceId`, `node/` for a node), and whether a result is being written. */
  alias?: { target: string; busy: boolean; dirty: boolean };
  /** HTTP and TCP checks: runs the check now (after the probe in flight, if any). */
  runNow?: () => void;
}

const MAX_OUTPUT = 4096;
/**
 * Until an HTTP or TCP check has passed once, it is retried this often (during its first
 * FIRST_PASS_WINDOW_MS, and never less often than its interval): a sidecar or app usually starts
 * just after its registration, and waiting a whole interval (Consul's 10 s for a sidecar) to notice
 * it would keep it out of every endpoint set meanwhile. A check already passing when it is
 * scheduled (a server restart) keeps its interval.
 */
const FIRST_PASS_RETRY_MS = 100;
const FIRST_PASS_WINDOW_MS = 10_000;
/** Alias checks are recomputed on every change; this is only a safety net, as Consul's minute. */
const ALIAS_REFRESH_MS = 60_000;

export class CheckRunner implements Component {
  readonly name = 'check-runner';
  private readonly running = new Map<string, Running>();
  private unsubscribe: (() => void) | undefined;
  private stopped = false;
  private readonly log: Logger;
  /** Alias checks by what they alias: `node/serviceId` for an instance, `node/` for a node. */
  private readonly aliasesByTarget = new Map<string, Set<string>>();

  constructor(private readonly opts: CheckRunnerOptions) {
    this.log = (opts.logger ?? silentLogger).child({ component: 'checks' });
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.opts.catalog.onTtlUpdate = (key) => this.resetTtl(key);
    this.opts.catalog.onRecheck = (keys) => keys.forEach((k) => this.running.get(k)?.runNow?.());
    for (const e of this.opts.store.list<CheckRecord>(CHECKS, `${this.opts.nodeName}/`)) this.schedule(e.key, e.value);
    this.unsubscribe = this.opts.store.subscribe((changes) => {
      for (const ch of changes) {
        if (ch.table !== CHECKS || !ch.key.startsWith(`${this.opts.nodeName}/`)) continue;
        if (ch.op === 'delete') this.unschedule(ch.key);
        else this.schedule(ch.key, ch.entry!.value as CheckRecord);
      }
      if (this.aliasesByTarget.size > 0) this.followAliased(changes);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    for (const key of [...this.running.keys()]) this.unschedule(key);
    this.opts.catalog.onTtlUpdate = undefined;
    this.opts.catalog.onRecheck = undefined;
  }

  /** Checks being run (for tests and metrics). */
  size(): number {
    return this.running.size;
  }

  private schedule(key: string, c: CheckRecord): void {
    const def = JSON.stringify(c.Definition);
    const current = this.running.get(key);
    if (current && current.def === def) {
      this.trackCritical(key, c, current);
      return;
    }
    this.unschedule(key);
    const r: Running = { def };
    this.running.set(key, r);
    this.trackCritical(key, c, r);
    if (c.Type === 'ttl') this.resetTtl(key);
    else if (c.Type === 'alias') this.startAlias(key, c, r);
    else if ((c.Type === 'http' || c.Type === 'tcp') && c.Definition.Interval) {
      let passed = c.Status === 'passing';
      const since = Date.now();
      let busy = false;
      let again = false;
      const run = async () => {
        if (this.stopped || this.running.get(key) !== r) return;
        const latest = this.opts.store.get<CheckRecord>(CHECKS, key)?.value;
        if (!latest) return;
        busy = true;
        try {
          const [status, output] = latest.Type === 'http' ? await this.http(latest) : await this.tcp(latest);
          if (this.stopped || this.running.get(key) !== r) return;
          await this.opts.catalog.setCheckResult(key, status, output).catch((err) => this.log.warn('cannot record check result', { check: key, error: err }));
          if (this.stopped || this.running.get(key) !== r) return;
          passed ||= status === 'passing';
          const interval = latest.Definition.Interval ?? 10_000;
          const delay = again ? 0 : passed || Date.now() - since >= FIRST_PASS_WINDOW_MS ? interval : Math.min(interval, FIRST_PASS_RETRY_MS);
          again = false;
          r.timer = setTimeout(run, delay);
          r.timer.unref?.();
        } finally {
          busy = false;
        }
      };
      r.runNow = () => {
        // One run at a time: asked during one, the next starts as soon as its result is recorded.
        if (busy) again = true;
        else {
          clearTimeout(r.timer);
          r.timer = setTimeout(run, 0);
        }
      };
      r.timer = setTimeout(run, 0);
    }
  }

  private unschedule(key: string): void {
    const r = this.running.get(key);
    if (!r) return;
    clearTimeout(r.timer);
    clearTimeout(r.ttlTimer);
    clearTimeout(r.criticalTimer);
    if (r.alias) {
      const set = this.aliasesByTarget.get(r.alias.target);
      if (set?.delete(key) && set.size === 0) this.aliasesByTarget.delete(r.alias.target);
    }
    this.running.delete(key);
  }

  private startAlias(key: string, c: CheckRecord, r: Running): void {
    const node = c.Definition.AliasNode || c.Node;
    const target = `${node}/${c.Definition.AliasService ?? ''}`;
    r.alias = { target, busy: false, dirty: false };
    let set = this.aliasesByTarget.get(target);
    if (!set) this.aliasesByTarget.set(target, (set = new Set()));
    set.add(key);
    const refresh = () => {
      this.refreshAlias(key);
      r.timer = setTimeout(refresh, ALIAS_REFRESH_MS);
      r.timer.unref?.();
    };
    refresh();
  }

  /** Recomputes the alias checks whose target one of these changes touched. */
  private followAliased(changes: Change[]): void {
    const due = new Set<string>();
    const addTarget = (target: string) => {
      for (const k of this.aliasesByTarget.get(target) ?? []) due.add(k);
    };
    const addNode = (node: string) => {
      for (const [target, keys] of this.aliasesByTarget) if (target.startsWith(`${node}/`)) for (const k of keys) due.add(k);
    };
    for (const ch of changes) {
      const node = ch.key.slice(0, ch.key.indexOf('/'));
      if (ch.table === SERVICES) addTarget(ch.key);
      else if (ch.table === CHECKS) {
        const serviceId = ch.op === 'put' ? (ch.entry!.value as CheckRecord).ServiceID : undefined;
        // A node's own check counts for every instance on it; a deleted check's owner is no longer
        // known, so everything aliased on its node is recomputed (writes happen only on a change).
        if (serviceId) addTarget(`${node}/${serviceId}`);
        else addNode(node);
      } else if (ch.table === NODES) addNode(ch.key);
    }
    for (const k of due) this.refreshAlias(k);
  }

  /** Writes an alias check's result; one write at a time per check, the last change always seen. */
  private refreshAlias(key: string): void {
    const r = this.running.get(key);
    const a = r?.alias;
    if (!r || !a) return;
    if (a.busy) {
      a.dirty = true;
      return;
    }
    a.busy = true;
    void (async () => {
      do {
        a.dirty = false;
        const c = this.opts.store.get<CheckRecord>(CHECKS, key)?.value;
        if (this.stopped || !c || this.running.get(key) !== r) break;
        const [status, output] = this.opts.catalog.aliasStatus(c);
        await this.opts.catalog.setCheckResult(key, status, output).catch((err) => this.log.warn('cannot record check result', { check: key, error: err }));
      } while (a.dirty);
      a.busy = false;
    })();
  }

  private resetTtl(key: string): void {
    const r = this.running.get(key);
    const c = this.opts.store.get<CheckRecord>(CHECKS, key)?.value;
    if (!r || !c?.Definition.TTL) return;
    clearTimeout(r.ttlTimer);
    r.ttlTimer = setTimeout(() => {
      void this.opts.catalog.setCheckResult(key, 'critical', `TTL expired (no update in ${c.Definition.TTL} ms)`).catch(() => {});
    }, c.Definition.TTL);
    r.ttlTimer.unref?.();
  }

  /** Starts or clears the DeregisterCriticalServiceAfter clock of a check. */
  private trackCritical(key: string, c: CheckRecord, r: Running): void {
    const after = c.Definition.DeregisterCriticalServiceAfter;
    if (!after || !c.ServiceID || c.Status !== 'critical') {
      // A check that recovers restarts the clock: a later failure gets the full delay again.
      clearTimeout(r.criticalTimer);
      r.criticalTimer = undefined;
      return;
    }
    if (r.criticalTimer !== undefined) return;
    r.criticalTimer = setTimeout(() => {
      r.criticalTimer = undefined;
      const latest = this.opts.store.get<CheckRecord>(CHECKS, key)?.value;
      if (this.stopped || !latest || latest.Status !== 'critical' || this.running.get(key) !== r) return;
      this.log.info('deregistering a service critical for too long', { service: c.ServiceID, check: c.CheckID, afterMs: after });
      this.opts.catalog
        .deregisterService(c.ServiceID)
        .catch((err) => this.log.warn('cannot deregister critical service', { service: c.ServiceID, error: err }));
    }, after);
    r.criticalTimer.unref?.();
  }

  private async http(c: CheckRecord): Promise<[HealthStatus, string]> {
    const d = c.Definition;
    const ctrl = AbortSignal.timeout(d.Timeout ?? 10_000);
    try {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(d.Header ?? {})) headers[k] = v.join(',');
      const res = await fetch(d.HTTP!, { method: d.Method ?? 'GET', headers, body: d.Body, signal: ctrl, redirect: 'manual' });
      const text = (await res.text()).slice(0, MAX_OUTPUT);
      const head = `HTTP ${d.Method ?? 'GET'} ${d.HTTP}: ${res.status} ${res.statusText} Output: ${text}`;
      if (res.status >= 200 && res.status < 300) return ['passing', head];
      if (res.status === 429) return ['warning', head];
      return ['critical', head];
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      return ['critical', `HTTP ${d.Method ?? 'GET'} ${d.HTTP}: ${e.name === 'TimeoutError' ? 'timed out' : (e.cause?.code ?? e.message)}`];
    }
  }

  private tcp(c: CheckRecord): Promise<[HealthStatus, string]> {
    const target = c.Definition.TCP!;
    const i = target.lastIndexOf(':');
    const host = target.slice(0, i).replace(/^\[|\]$/g, '');
    const port = Number(target.slice(i + 1));
    return new Promise((resolve) => {
      const sock = connect({ host, port });
      const timer = setTimeout(() => {
        sock.destroy();
        resolve(['critical', `TCP connect ${target}: timed out`]);
      }, c.Definition.Timeout ?? 10_000);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.destroy();
        resolve(['passing', `TCP connect ${target}: Success`]);
      });
      sock.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        resolve(['critical', `TCP connect ${target}: ${err.code ?? err.message}`]);
      });
    });
  }
}
