// Snappy decompression (the raw block format LevelDB tables use for compressed blocks). Every length and
// offset is checked, so a corrupt block gives an error rather than reading or writing out of bounds.

function fail(what: string, at: number): never {
  throw new Error(`corrupt snappy data at byte ${at}: ${what}`);
}

export function snappyUncompress(src: Uint8Array): Uint8Array {
  // The uncompressed length, a varint32.
  let length = 0;
  let pos = 0;
  for (let shift = 0; ; shift += 7) {
    if (pos >= src.length || shift > 28) fail('bad length prefix', pos);
    const b = src[pos++];
    length += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) break;
  }
  if (length > 0xffffffff) fail('length prefix too large', 0);
  const out = new Uint8Array(length);
  let o = 0;
  while (pos < src.length) {
    const tag = src[pos++];
    const kind = tag & 3;
    if (kind === 0) {  // literal
      let n = tag >>> 2;
      if (n >= 60) {
        const extra = n - 59;
        if (pos + extra > src.length) fail('literal length runs past the end', pos);
        n = 0;
        for (let k = 0; k < extra; k++) n += src[pos + k] * 2 ** (8 * k);
        pos += extra;
      }
      n += 1;
      if (pos + n > src.length) fail('literal runs past the end of the input', pos);
      if (o + n > length) fail('literal runs past the declared length', pos);
      out.set(src.subarray(pos, pos + n), o);
      pos += n;
      o += n;
      continue;
    }
    let n: number;
    let offset: number;
    if (kind === 1) {
      if (pos + 1 > src.length) fail('truncated copy', pos);
      n = 4 + ((tag >>> 2) & 7);
      offset = ((tag >>> 5) << 8) | src[pos];
      pos += 1;
    } else if (kind === 2) {
      if (pos + 2 > src.length) fail('truncated copy', pos);
      n = (tag >>> 2) + 1;
      offset = src[pos] | (src[pos + 1] << 8);
      pos += 2;
    } else {
      if (pos + 4 > src.length) fail('truncated copy', pos);
      n = (tag >>> 2) + 1;
      offset = (src[pos] | (src[pos + 1] << 8) | (src[pos + 2] << 16) | (src[pos + 3] << 24)) >>> 0;
      pos += 4;
    }
    if (offset === 0 || offset > o) fail(`copy offset ${offset} outside the ${o} bytes written`, pos);
    if (o + n > length) fail('copy runs past the declared length', pos);
    // Copies may overlap their own output (run-length style), so go byte by byte.
    for (let k = 0; k < n; k++, o++) out[o] = out[o - offset];
  }
  if (o !== length) fail(`${o} bytes decoded, ${length} declared`, pos);
  return out;
}
