// Flow records repeat themselves: the same services, DCs, reporters, SNIs, reasons and intention IDs
// in record after record, each a fresh string (and each identity a fresh object) as it comes off the
// wire. The memory store keeps one copy of each instead, which roughly halves what a record holds.
import type { FlowHop, FlowIdentity, FlowRecord, FlowVerdict } from './flow-record.js';

/** Values kept before the tables start over (so a stream of one-off reasons cannot grow them for ever). */
const MAX_VALUES = 20_000;

export class Interner {
  private strings = new Map<string, string>();
  private identities = new Map<string, FlowIdentity>();

  /** Values kept now (strings and identities). */
  get size(): number {
    return this.strings.size + this.identities.size;
  }

  /** The kept copy of `s`. */
  str(s: string): string {
    const kept = this.strings.get(s);
    if (kept !== undefined) return kept;
    if (this.strings.size >= MAX_VALUES) this.strings = new Map();
    this.strings.set(s, s);
    return s;
  }

  /** One frozen object for every identity with the same fields. */
  identity(id: FlowIdentity): FlowIdentity {
    const key = `${id.spiffeId}\n${id.service}\n${id.namespace}\n${id.dc}`;
    const kept = this.identities.get(key);
    if (kept !== undefined) return kept;
    if (this.identities.size >= MAX_VALUES) this.identities = new Map();
    const made = Object.freeze({ spiffeId: this.str(id.spiffeId), service: this.str(id.service), namespace: this.str(id.namespace), dc: this.str(id.dc) });
    this.identities.set(key, made);
    return made;
  }

  /**
   * The record with its repeated fields replaced by the kept copies, in place: every value stays
   * equal, only shared. (A record's own ID, trace ID, path and traceparent are its own and stay.)
   */
  record(r: FlowRecord): FlowRecord {
    r.hop = this.str(r.hop) as FlowHop;
    r.verdict = this.str(r.verdict) as FlowVerdict;
    r.dc = this.str(r.dc);
    r.reporter = this.str(r.reporter);
    r.sni = this.str(r.sni);
    r.reason = this.str(r.reason);
    r.intentionId = this.str(r.intentionId);
    r.intentionDc = this.str(r.intentionDc);
    r.source = this.identity(r.source);
    r.destination = this.identity(r.destination);
    if (r.http) r.http.method = this.str(r.http.method);
    return r;
  }
}
