// Prometheus metrics of flows, fed by the flow store's subscribe. Each server counts what it
// received (localOnly), so adding up the servers of a DC that share one Redis counts each flow once.
import { Counter, Histogram, type Registry } from 'prom-client';
import type { FlowRecord } from './flow-record.js';
import type { FlowStore } from './flow-store.js';

export interface FlowMetricsOptions {
  /**
   * Distinct service names (and DC names) given their own label value; later ones are counted as
   * "other". A reporter can name any destination (an SNI nobody serves), and each name would be a
   * new series.
   */
  maxNames?: number;
}

const OTHER = 'other';
const UNKNOWN = 'unknown';

export class FlowMetrics {
  readonly flows: Counter<'source' | 'destination' | 'dc' | 'verdict' | 'hop'>;
  readonly duration: Histogram<'source' | 'destination' | 'dc' | 'verdict'>;
  private readonly services: BoundedNames;
  private readonly dcs: BoundedNames;

  constructor(registry: Registry, opts: FlowMetricsOptions = {}) {
    const max = opts.maxNames ?? 500;
    this.services = new BoundedNames(max);
    this.dcs = new BoundedNames(Math.min(max, 64));
    this.flows = new Counter({
      name: 'isthmus_flows_total',
      help: 'Connections seen by each hop (one flow record each; HTTP requests inside are not counted), by source and destination service, DC of the hop, verdict and hop.',
      labelNames: ['source', 'destination', 'dc', 'verdict', 'hop'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'isthmus_flow_duration_seconds',
      help: 'How long connections lasted as each hop saw them, by source and destination service, DC of the hop and verdict.',
      labelNames: ['source', 'destination', 'dc', 'verdict'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600],
      registers: [registry],
    });
  }

  observe(r: FlowRecord): void {
    if (r.requestIndex !== 0) return;
    const source = this.services.label(r.source.service);
    const destination = this.services.label(r.destination.service);
    const dc = this.dcs.label(r.dc);
    this.flows.inc({ source, destination, dc, verdict: r.verdict, hop: r.hop });
    this.duration.observe({ source, destination, dc, verdict: r.verdict }, Math.max(0, r.durationMs) / 1000);
  }
}

/** Counts every record this server stores from now on; returns the function that stops it. */
export function observeFlows(store: Pick<FlowStore, 'subscribe'>, registry: Registry, opts?: FlowMetricsOptions): () => void {
  const metrics = new FlowMetrics(registry, opts);
  return store.subscribe((r) => metrics.observe(r), { localOnly: true });
}

class BoundedNames {
  private readonly seen = new Set<string>();
  constructor(private readonly max: number) {}

  label(name: string): string {
    if (!name) return UNKNOWN;
    if (this.seen.has(name)) return name;
    if (this.seen.size >= this.max) return OTHER;
    this.seen.add(name);
    return name;
  }
}
