// CRC-32C (Castagnoli), as TensorFlow and LevelDB use it to guard checkpoint data and table blocks.
// Slicing-by-8: eight bytes per step, read as two little-endian words, through eight 256-entry tables
// held in one array (reading whole words rather than single bytes doubles its speed in V8).
const POLY = 0x82f63b78;  // reversed Castagnoli polynomial

const TABLE: Int32Array = (() => {
  const table = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    table[n] = c;
  }
  for (let k = 1; k < 8; k++) {
    for (let n = 0; n < 256; n++) {
      const prev = table[(k - 1) * 256 + n];
      table[k * 256 + n] = (prev >>> 8) ^ table[prev & 0xff];
    }
  }
  return table;
})();

// Continues a CRC over more bytes: crc32c(b, crc32c(a)) === crc32c(a ++ b).
export function crc32c(bytes: Uint8Array, previous = 0): number {
  const t = TABLE;
  let crc = ~previous;
  let i = 0;
  const n = bytes.length;
  while (i < n && ((bytes.byteOffset + i) & 3) !== 0) crc = t[(crc ^ bytes[i++]) & 0xff] ^ (crc >>> 8);
  const aligned = ((bytes.byteOffset + i) & 3) === 0;  // false only when fewer than 4 bytes remain
  const words = aligned ? new Int32Array(bytes.buffer, bytes.byteOffset + i, ((n - i) >>> 3) << 1) : new Int32Array(0);
  for (let w = 0; w < words.length; w += 2) {
    const lo = crc ^ words[w];
    const hi = words[w + 1];
    crc = t[1792 + (lo & 0xff)] ^ t[1536 + ((lo >>> 8) & 0xff)] ^ t[1280 + ((lo >>> 16) & 0xff)] ^ t[1024 + (lo >>> 24)]
      ^ t[768 + (hi & 0xff)] ^ t[512 + ((hi >>> 8) & 0xff)] ^ t[256 + ((hi >>> 16) & 0xff)] ^ t[hi >>> 24];
  }
  i += words.length * 4;
  while (i < n) crc = t[(crc ^ bytes[i++]) & 0xff] ^ (crc >>> 8);
  return ~crc >>> 0;
}

// LevelDB/TensorFlow store CRCs "masked" (rotated and offset) so that a CRC of data that itself holds CRCs
// does not degenerate.
export const MASK_DELTA = 0xa282ead8;

export function unmaskCrc(masked: number): number {
  const rot = (masked - MASK_DELTA) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
}
