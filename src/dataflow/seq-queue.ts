// An ascending queue of sequence numbers: the memory flow store's index lists. The ring evicts its
// oldest record first, and that record is the oldest of every list it is in, so eviction is always
// a shift from the front; lookups by sequence range are binary searches.

export class SeqQueue {
  private items: number[] = [];
  private head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  push(seq: number): void {
    this.items.push(seq);
  }

  first(): number | undefined {
    return this.head < this.items.length ? this.items[this.head] : undefined;
  }

  /** Removes the front if it is `seq`; returns whether it was. */
  shiftIf(seq: number): boolean {
    if (this.first() !== seq) return false;
    this.head++;
    // Drop the consumed prefix now and then so a long-lived list does not grow without bound.
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return true;
  }

  /** The i-th element from the front. */
  at(i: number): number {
    return this.items[this.head + i];
  }

  /** Position (from the front) of the first element >= seq; `size` when there is none. */
  lowerBound(seq: number): number {
    let lo = this.head;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.items[mid] < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo - this.head;
  }

  /** How many elements lie in [from, to]. */
  countBetween(from: number, to: number): number {
    if (from > to) return 0;
    return this.lowerBound(to + 1) - this.lowerBound(from);
  }
}
