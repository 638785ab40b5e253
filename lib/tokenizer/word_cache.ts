// Tokens of recently seen pieces, keyed by the piece's UTF-16 code units and looked up straight from the
// text (no substring is made). A slot is one 64-byte record holding the key's hash, up to 16 code units
// of the key and up to 4 tokens, so that a hit in the common case reads a single cache line; longer keys
// and token lists live in two pools. Memory is planned once. When the table reaches its bound or a pool
// fills, the whole cache is dropped and refills: in text the frequent pieces come back within a few
// hundred words, and dropping keeps lookups free of eviction work.

// Longer pieces are rare and cheap to merge relative to their length; they bypass the cache.
export const MAX_CACHED_PIECE = 32;

// Slot layout, in int32s.
const STRIDE = 16;
const KEY_LENGTH = 0; // 0: empty slot
const HASH = 1;
const TOKEN_COUNT = 2;
const TOKEN_START = 3; // in the token pool, when TOKEN_COUNT > INLINE_TOKENS
const TOKENS = 4;
const INLINE_TOKENS = 4;
const KEY = 8; // the key's code units, or (when longer than INLINE_UNITS) its start in the key pool
const INLINE_UNITS = 16;

export class WordCache {
  readonly maxEntries: number;
  private entries = 0;
  private readonly mask: number;
  private readonly slots: Int32Array;
  private readonly slotUnits: Uint16Array; // the same memory, for inline keys
  private readonly keys: Uint16Array;
  private keysUsed = 0;
  private readonly tokens: Int32Array;
  private tokensUsed = 0;

  constructor(maxEntries: number) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError(`maxCachedPieces must be a positive integer, got ${maxEntries}`);
    this.maxEntries = maxEntries;
    let slots = 16;
    while (slots < maxEntries * 2) slots *= 2;
    this.mask = slots - 1;
    this.slots = new Int32Array(slots * STRIDE);
    this.slotUnits = new Uint16Array(this.slots.buffer);
    // Pools sized for long pieces being a minority; a full pool drops the cache like a full table.
    this.keys = new Uint16Array(Math.max(maxEntries * 4, MAX_CACHED_PIECE));
    this.tokens = new Int32Array(Math.max(maxEntries * 2, 3 * MAX_CACHED_PIECE));
  }

  get size(): number {
    return this.entries;
  }

  // The slot holding text[start..end) (hash from hashPiece), or -1.
  find(text: string, start: number, end: number, hash: number): number {
    const slots = this.slots;
    const len = end - start;
    for (let slot = (hash ^ (hash >>> 15)) & this.mask; ; slot = (slot + 1) & this.mask) {
      const base = slot * STRIDE;
      const keyLength = slots[base + KEY_LENGTH];
      if (keyLength === 0) return -1;
      if (keyLength !== len || slots[base + HASH] !== hash) continue;
      let units: Uint16Array;
      let at: number;
      if (len <= INLINE_UNITS) {
        units = this.slotUnits;
        at = 2 * (base + KEY);
      } else {
        units = this.keys;
        at = slots[base + KEY];
      }
      let i = 0;
      while (i < len && units[at + i] === text.charCodeAt(start + i)) i++;
      if (i === len) return slot;
    }
  }

  // Writes the tokens of `slot` (from find) at out[at]; returns the position after them.
  copyTokens(slot: number, out: Int32Array, at: number): number {
    const base = slot * STRIDE;
    const count = this.slots[base + TOKEN_COUNT];
    if (count <= INLINE_TOKENS) {
      for (let k = base + TOKENS; k < base + TOKENS + count; k++) out[at++] = this.slots[k];
    } else {
      const from = this.slots[base + TOKEN_START];
      for (let k = from; k < from + count; k++) out[at++] = this.tokens[k];
    }
    return at;
  }

  // Stores tokens[0..count) for text[start..end) (at most MAX_CACHED_PIECE units), which find() has
  // just missed.
  insert(text: string, start: number, end: number, hash: number, tokens: Int32Array, count: number): void {
    const len = end - start;
    const keyRoom = len > INLINE_UNITS ? len : 0;
    const tokenRoom = count > INLINE_TOKENS ? count : 0;
    if (this.entries >= this.maxEntries || this.keysUsed + keyRoom > this.keys.length || this.tokensUsed + tokenRoom > this.tokens.length) {
      this.clear();
    }
    let slot = (hash ^ (hash >>> 15)) & this.mask;
    while (this.slots[slot * STRIDE + KEY_LENGTH] !== 0) slot = (slot + 1) & this.mask;
    const base = slot * STRIDE;
    const slots = this.slots;
    slots[base + KEY_LENGTH] = len;
    slots[base + HASH] = hash;
    slots[base + TOKEN_COUNT] = count;
    if (len <= INLINE_UNITS) {
      const at = 2 * (base + KEY);
      for (let i = 0; i < len; i++) this.slotUnits[at + i] = text.charCodeAt(start + i);
    } else {
      slots[base + KEY] = this.keysUsed;
      for (let i = start; i < end; i++) this.keys[this.keysUsed++] = text.charCodeAt(i);
    }
    if (count <= INLINE_TOKENS) {
      for (let k = 0; k < count; k++) slots[base + TOKENS + k] = tokens[k];
    } else {
      slots[base + TOKEN_START] = this.tokensUsed;
      for (let k = 0; k < count; k++) this.tokens[this.tokensUsed++] = tokens[k];
    }
    this.entries++;
  }

  clear(): void {
    for (let base = 0; base < this.slots.length; base += STRIDE) this.slots[base + KEY_LENGTH] = 0;
    this.entries = 0;
    this.keysUsed = 0;
    this.tokensUsed = 0;
  }
}

// FNV-1a over the code units of text[start..end).
export function hashPiece(text: string, start: number, end: number): number {
  let h = 0x811c9dc5 | 0; // int32 throughout, or V8 deoptimizes on the first wrap
  for (let i = start; i < end; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h;
}
