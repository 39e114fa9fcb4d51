// `--wait all` for replicated writes (intentions, config entries): the query that asks the server to
// wait until every datacenter applied the write, and the receipt per datacenter it answers with.
import { str, type Parsed } from './args.js';
import { CliError } from './cli-error.js';

export const WAIT_OPTIONS = {
  wait: { type: 'string' },
  'wait-timeout': { type: 'string' },
} as const;

/** The query parameters for `--wait all [--wait-timeout 10s]` (empty without it), after `&`. */
export function waitQuery(values: Parsed['values']): string {
  const wait = str(values.wait);
  if (wait === undefined) return '';
  if (wait !== 'all') throw new CliError(`--wait takes "all" (wait until every datacenter enforces it), not "${wait}"`);
  return `wait-for=all&timeout=${encodeURIComponent(str(values['wait-timeout']) ?? '10s')}`;
}

interface Receipts {
  Complete: boolean;
  Datacenters: { Datacenter: string; Applied: boolean; AppliedIndex: number; AppliedAt: string | null }[];
}

/** Prints each datacenter's receipt from the answer's headers; exit 0 when all applied, 2 when not. */
export function printReceipts(headers: Headers, started: number, io: { out(line: string): void }): number {
  const raw = headers.get('x-isthmus-receipts');
  if (!raw) throw new CliError('the server sent no receipts (is it older than this command?)');
  const r = JSON.parse(raw) as Receipts;
  for (const d of r.Datacenters) {
    io.out(
      d.Applied
        ? `  enforced in ${d.Datacenter} at ${d.AppliedAt} (+${Math.max(0, Date.parse(d.AppliedAt ?? '') - started)} ms)`
        : `  NOT yet applied in ${d.Datacenter} (at index ${d.AppliedIndex})`,
    );
  }
  return r.Complete ? 0 : 2;
}
