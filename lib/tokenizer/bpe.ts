// Byte-pair merging over token ids: the lowest-ranked adjacent pair merges first, ties to the left, as in
// GPT-2's encoder.py. Pairs live in an open-addressing hash table keyed by (left << 16 | right), so the
// vocabulary must fit in 16-bit ids (GPT-2 has 50257).

export const MAX_TOKEN_ID = 0xffff;

// Pieces longer than this merge through a heap (n log n) instead of rescanning all pairs after every
// merge (n^2): a megabyte of '=' or of spaces must not stall the encoder.
const SHORT_PIECE = 64;

export class MergeTable {
  private readonly keys: Int32Array;
  private readonly ranks: Int32Array; // -1: empty slot
  private readonly shift: number;
  private readonly mask: number;
  // The token that merge `rank` produces.
  readonly mergedId: Int32Array;

  constructor(capacity: number) {
    let bits = 4;
    while (1 << bits < capacity * 2) bits++;
    this.keys = new Int32Array(1 << bits);
    this.ranks = new Int32Array(1 << bits).fill(-1);
    this.shift = 32 - bits;
    this.mask = (1 << bits) - 1;
    this.mergedId = new Int32Array(capacity);
  }

  // A later merge of the same pair replaces the earlier one, as Python's dict(zip(merges, range(n))) does.
  set(left: number, right: number, rank: number, merged: number): void {
    const key = (left << 16) | right; // int32: a uint32 key would make V8 deoptimize
    let slot = Math.imul(key, 0x9e3779b1) >>> this.shift;
    while (this.ranks[slot] >= 0 && this.keys[slot] !== key) slot = (slot + 1) & this.mask;
    this.keys[slot] = key;
    this.ranks[slot] = rank;
    this.mergedId[rank] = merged;
  }

  // Rank of the merge of (left, right), or -1 when the pair does not merge.
  rank(left: number, right: number): number {
    const key = (left << 16) | right; // int32: a uint32 key would make V8 deoptimize
    let slot = Math.imul(key, 0x9e3779b1) >>> this.shift;
    for (;;) {
      const r = this.ranks[slot];
      if (r < 0 || this.keys[slot] === key) return r;
      slot = (slot + 1) & this.mask;
    }
  }
}

// Merges the tokens parts[0..n) in place; returns how many remain. Keeps scratch buffers between calls.
export class PairMerger {
  private pairRank = new Int32Array(SHORT_PIECE);
  // Long pieces: a doubly linked list over positions and a binary min-heap of (rank, position).
  private next = new Int32Array(0);
  private prev = new Int32Array(0);
  private heap = new Float64Array(0);

  constructor(private readonly table: MergeTable) {}

  merge(parts: Int32Array, n: number): number {
    return n <= SHORT_PIECE ? this.mergeShort(parts, n) : this.mergeLong(parts, n);
  }

  private mergeShort(parts: Int32Array, n: number): number {
    const table = this.table;
    const pr = this.pairRank;
    for (let i = 0; i < n - 1; i++) pr[i] = table.rank(parts[i], parts[i + 1]);
    while (n > 1) {
      let best = -1;
      let at = -1;
      for (let i = 0; i < n - 1; i++) {
        const r = pr[i];
        if (r >= 0 && (best < 0 || r < best)) {
          best = r;
          at = i;
        }
      }
      if (at < 0) break;
      parts[at] = table.mergedId[best];
      for (let i = at + 1; i < n - 1; i++) {
        parts[i] = parts[i + 1];
        pr[i] = pr[i + 1];
      }
      n--;
      pr[at] = at + 1 < n ? table.rank(parts[at], parts[at + 1]) : -1;
      if (at > 0) pr[at - 1] = table.rank(parts[at - 1], parts[at]);
    }
    return n;
  }

  private mergeLong(parts: Int32Array, n: number): number {
    const table = this.table;
    if (this.next.length < n) {
      this.next = new Int32Array(n);
      this.prev = new Int32Array(n);
      this.pairRank = new Int32Array(n);
      this.heap = new Float64Array(n);
    }
    const { next, prev, pairRank } = this;
    // A heap key is rank * 2^32 + position: lowest rank first, then leftmost. Entries go stale when
    // their position is merged away or its pair changes; they are skipped when popped.
    let size = 0;
    const push = (rank: number, pos: number): void => {
      let i = size++;
      if (i >= this.heap.length) {
        const grown = new Float64Array(this.heap.length * 2);
        grown.set(this.heap);
        this.heap = grown;
      }
      const h = this.heap;
      const key = rank * 4294967296 + pos;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (h[parent] <= key) break;
        h[i] = h[parent];
        i = parent;
      }
      h[i] = key;
    };
    const pop = (): number => {
      const h = this.heap;
      const top = h[0];
      const last = h[--size];
      let i = 0;
      for (;;) {
        let child = 2 * i + 1;
        if (child >= size) break;
        if (child + 1 < size && h[child + 1] < h[child]) child++;
        if (h[child] >= last) break;
        h[i] = h[child];
        i = child;
      }
      h[i] = last;
      return top;
    };
    for (let i = 0; i < n; i++) {
      next[i] = i + 1;
      prev[i] = i - 1;
      pairRank[i] = i + 1 < n ? table.rank(parts[i], parts[i + 1]) : -1;
      if (pairRank[i] >= 0) push(pairRank[i], i);
    }
    while (size > 0) {
      const key = pop();
      const rank = Math.floor(key / 4294967296);
      const pos = key - rank * 4294967296;
      if (pairRank[pos] !== rank) continue; // stale
      const gone = next[pos];
      parts[pos] = table.mergedId[rank];
      pairRank[gone] = -1;
      next[pos] = next[gone];
      if (next[pos] < n) {
        prev[next[pos]] = pos;
        pairRank[pos] = table.rank(parts[pos], parts[next[pos]]);
        if (pairRank[pos] >= 0) push(pairRank[pos], pos);
      } else {
        pairRank[pos] = -1;
      }
      const p = prev[pos];
      if (p >= 0) {
        pairRank[p] = table.rank(parts[p], parts[pos]);
        if (pairRank[p] >= 0) push(pairRank[p], p);
      }
    }
    let m = 0;
    for (let i = 0; i < n; i = next[i]) parts[m++] = parts[i];
    return m;
  }
}
