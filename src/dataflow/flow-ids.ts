// Stream IDs of the flow stream as the Redis flow store reads them: the padded form its sorted sets
// hold (byte order = stream order), ranges of them with open or closed ends, and the clamp that
// makes a start time an ID.

/** Largest start time (ms) that becomes a stream ID; later ones are clamped to it. */
export const MAX_ID_MS = 1e15;

/** A range of stream IDs in padded form (byte order = stream order), each end open or closed. */
export class IdRange {
  private lo: { id: string; open: boolean } | undefined;
  private hi: { id: string; open: boolean } | undefined;

  above(id: string, open: boolean): void {
    if (!this.lo || id > this.lo.id || (id === this.lo.id && open)) this.lo = { id, open };
  }

  below(id: string, open: boolean): void {
    if (!this.hi || id < this.hi.id || (id === this.hi.id && open)) this.hi = { id, open };
  }

  private nothing = false;

  clone(): IdRange {
    const c = new IdRange();
    c.lo = this.lo;
    c.hi = this.hi;
    c.nothing = this.nothing;
    return c;
  }

  /** Makes the range hold nothing. */
  none(): void {
    this.nothing = true;
  }

  empty(): boolean {
    if (this.nothing) return true;
    if (!this.lo || !this.hi) return false;
    return this.lo.id > this.hi.id || (this.lo.id === this.hi.id && (this.lo.open || this.hi.open));
  }

  xLo(): string {
    return this.lo ? (this.lo.open ? '(' : '') + unpad(this.lo.id) : '-';
  }
  xHi(): string {
    return this.hi ? (this.hi.open ? '(' : '') + unpad(this.hi.id) : '+';
  }
  zLo(): string {
    return this.lo ? (this.lo.open ? '(' : '[') + this.lo.id : '-';
  }
  zHi(): string {
    return this.hi ? (this.hi.open ? '(' : '[') + this.hi.id : '+';
  }
}

export function idMs(t: number): number {
  return Math.min(MAX_ID_MS, Math.max(0, Math.floor(t)));
}

export function pad(id: string): string {
  const dash = id.indexOf('-');
  return `${id.slice(0, dash).padStart(16, '0')}-${id.slice(dash + 1).padStart(10, '0')}`;
}

export function unpad(padded: string): string {
  const dash = padded.indexOf('-');
  return `${BigInt(padded.slice(0, dash))}-${BigInt(padded.slice(dash + 1))}`;
}
