// ggml's block-quantized tensor types as GGUF files hold them (what llama.cpp's llama-quantize writes: q4_K_M is
// mostly q4_K with some q6_K, and so on), expanded to float32 as ggml's own dequantize_row_* functions expand them:
// the same float32 operations in the same order, each rounded (Math.fround), so that the values are ggml's bit for
// bit (test/formats/ggml_quants.test.ts holds ggml's own output). A tensor is blocks of `block` values along its
// innermost dimension, `bytes` bytes each; the scales are f16. Layouts (byte offsets within a block):
//   q4_0  d 0, 16 bytes of 4-bit q at 2             x = (q - 8) d
//   q4_1  d 0, m 2, 4-bit q at 4                    x = q d + m
//   q5_0  d 0, 32 fifth bits at 2, 4-bit q at 6     x = (q - 16) d
//   q5_1  d 0, m 2, fifth bits at 4, 4-bit q at 8   x = q d + m
//   q8_0  d 0, 32 int8 q at 2                       x = q d
// and the k-quants, super-blocks of 256 values in sub-blocks of 16 or 32 with quantized scales:
//   q2_K  4-bit scale and min per 16 at 0, 2-bit q at 16, d 80, dmin 82     x = d sc q - dmin m
//   q3_K  high bits at 0, 2-bit q at 32, 6-bit scales at 96, d 108          x = d (sc - 32) (q - 4 unless the high bit)
//   q4_K  d 0, dmin 2, 6-bit scales and mins per 32 at 4, 4-bit q at 16     x = d sc q - dmin m
//   q5_K  as q4_K, with the fifth bits at 16 and the 4-bit q at 48
//   q6_K  low 4 bits at 0, high 2 bits at 128, int8 scale per 16 at 192, d 208   x = d sc (q - 32)
// and iq4_nl and iq4_xs (below).
import { f16ToF32 } from './safetensors';

export interface GgmlQuant {
  name: string;
  block: number;  // values a block
  bytes: number;  // bytes a block
  // Whole blocks of raw into dst, a block's values at a time.
  dequantize(raw: Uint8Array, dst: Float32Array): void;
}

const f = Math.fround;

// The f16 at byte `at` of each of a tensor's blocks, as float32.
function halves(raw: Uint8Array, blocks: number, bytes: number, at: number): Float32Array {
  const h = new Uint16Array(blocks);
  for (let b = 0, o = at; b < blocks; b++, o += bytes) h[b] = raw[o] | (raw[o + 1] << 8);
  return f16ToF32(h);
}

function u32(raw: Uint8Array, o: number): number {
  return (raw[o] | (raw[o + 1] << 8) | (raw[o + 2] << 16) | (raw[o + 3] << 24)) >>> 0;
}

// q4_0 and iq4_nl: an f16 d, then 16 bytes of 4-bit indices (low nibbles the first 16 values) into `levels`:
// x = levels[q] d.
function nibbles(name: string, levels: Int8Array): GgmlQuant {
  return {
    name, block: 32, bytes: 18,
    dequantize(raw, dst) {
      const n = dst.length / 32;
      const d = halves(raw, n, 18, 0);
      for (let b = 0; b < n; b++) {
        const o = b * 18 + 2, y = b * 32;
        for (let j = 0; j < 16; j++) {
          dst[y + j] = f(levels[raw[o + j] & 15] * d[b]);
          dst[y + j + 16] = f(levels[raw[o + j] >> 4] * d[b]);
        }
      }
    },
  };
}

const Q4_0 = nibbles('q4_0', Int8Array.from({ length: 16 }, (_, q) => q - 8));

// q4_1, q5_0 and q5_1: 4-bit q in the low nibbles (the first 16 values) and high nibbles, with q5's fifth bits
// (value j's is bit j of the block's 32 high bits) after the scale, or after the scale and the min.
function lowBits(name: string, bytes: number, withMin: boolean, fifthBits: boolean): GgmlQuant {
  const qhAt = withMin ? 4 : 2, qsAt = qhAt + (fifthBits ? 4 : 0), offset = withMin ? 0 : 16;
  return {
    name, block: 32, bytes,
    dequantize(raw, dst) {
      const n = dst.length / 32;
      const d = halves(raw, n, bytes, 0), m = withMin ? halves(raw, n, bytes, 2) : null;
      for (let b = 0; b < n; b++) {
        const o = b * bytes, y = b * 32, qh = fifthBits ? u32(raw, o + qhAt) : 0;
        for (let j = 0; j < 16; j++) {
          const lo = (raw[o + qsAt + j] & 15) | (((qh >>> j) << 4) & 16);
          const hi = (raw[o + qsAt + j] >> 4) | ((qh >>> (j + 12)) & 16);
          dst[y + j] = m ? f(f(lo * d[b]) + m[b]) : f((lo - offset) * d[b]);
          dst[y + j + 16] = m ? f(f(hi * d[b]) + m[b]) : f((hi - offset) * d[b]);
        }
      }
    },
  };
}

const Q8_0: GgmlQuant = {
  name: 'q8_0', block: 32, bytes: 34,
  dequantize(raw, dst) {
    const n = dst.length / 32;
    const d = halves(raw, n, 34, 0);
    const q = new Int8Array(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let b = 0; b < n; b++) for (let j = 0; j < 32; j++) dst[b * 32 + j] = f(q[b * 34 + 2 + j] * d[b]);
  },
};

const Q2_K: GgmlQuant = {
  name: 'q2_K', block: 256, bytes: 84,
  dequantize(raw, dst) {
    const n = dst.length / 256;
    const d = halves(raw, n, 84, 80), dmin = halves(raw, n, 84, 82);
    for (let b = 0; b < n; b++) {
      const o = b * 84;
      let y = b * 256, is = 0;
      for (let half = 0; half < 2; half++) {
        const q = o + 16 + 32 * half;
        for (let shift = 0; shift < 8; shift += 2) {
          for (let part = 0; part < 2; part++) {
            const sc = raw[o + is++];
            const dl = f(d[b] * (sc & 15)), ml = f(dmin[b] * (sc >> 4));
            for (let l = 0; l < 16; l++) dst[y++] = f(f(dl * ((raw[q + 16 * part + l] >> shift) & 3)) - ml);
          }
        }
      }
    }
  },
};

// q3_K's 16 scales, 6 bits each: the low 4 bits in bytes 0-7 (two a byte), the high 2 bits in bytes 8-11.
function q3Scales(raw: Uint8Array, o: number, out: Int8Array): void {
  const a0 = u32(raw, o), a1 = u32(raw, o + 4), tmp = u32(raw, o + 8);
  const words = [
    (a0 & 0x0f0f0f0f) | ((tmp & 0x03030303) << 4),
    (a1 & 0x0f0f0f0f) | (((tmp >>> 2) & 0x03030303) << 4),
    ((a0 >>> 4) & 0x0f0f0f0f) | (((tmp >>> 4) & 0x03030303) << 4),
    ((a1 >>> 4) & 0x0f0f0f0f) | (((tmp >>> 6) & 0x03030303) << 4),
  ];
  for (let w = 0; w < 4; w++) for (let k = 0; k < 4; k++) out[4 * w + k] = (words[w] >>> (8 * k)) & 0xff;
}

const Q3_K: GgmlQuant = {
  name: 'q3_K', block: 256, bytes: 110,
  dequantize(raw, dst) {
    const n = dst.length / 256;
    const d = halves(raw, n, 110, 108);
    const scales = new Int8Array(16);
    for (let b = 0; b < n; b++) {
      const o = b * 110;
      q3Scales(raw, o + 96, scales);
      let y = b * 256, is = 0, mask = 1;
      for (let half = 0; half < 2; half++) {
        const q = o + 32 + 32 * half;
        for (let shift = 0; shift < 8; shift += 2, mask <<= 1) {
          for (let part = 0; part < 2; part++) {
            const dl = f(d[b] * (scales[is++] - 32));
            for (let l = 16 * part; l < 16 * part + 16; l++) {
              dst[y++] = f(dl * (((raw[q + l] >> shift) & 3) - (raw[o + l] & mask ? 0 : 4)));
            }
          }
        }
      }
    }
  },
};

// q4_K's and q5_K's scale and min of sub-block j (0-7), 6 bits each, packed in 12 bytes at o.
function scaleMinK4(raw: Uint8Array, o: number, j: number): [number, number] {
  if (j < 4) return [raw[o + j] & 63, raw[o + j + 4] & 63];
  return [(raw[o + j + 4] & 15) | ((raw[o + j - 4] >> 6) << 4), (raw[o + j + 4] >> 4) | ((raw[o + j] >> 6) << 4)];
}

// q4_K, and with fifth bits q5_K: 8 sub-blocks of 32, each pair of them in 32 bytes of 4-bit q (low nibbles first).
function qK(name: string, bytes: number, fifth: boolean): GgmlQuant {
  const qsAt = fifth ? 48 : 16;
  return {
    name, block: 256, bytes,
    dequantize(raw, dst) {
      const n = dst.length / 256;
      const d = halves(raw, n, bytes, 0), dmin = halves(raw, n, bytes, 2);
      for (let b = 0; b < n; b++) {
        const o = b * bytes;
        let y = b * 256;
        for (let pair = 0; pair < 4; pair++) {
          const q = o + qsAt + 32 * pair;
          for (let k = 0; k < 2; k++) {
            const [sc, m] = scaleMinK4(raw, o + 4, 2 * pair + k);
            const d1 = f(d[b] * sc), m1 = f(dmin[b] * m);
            const high = 1 << (2 * pair + k);
            for (let l = 0; l < 32; l++) {
              const v = (k === 0 ? raw[q + l] & 15 : raw[q + l] >> 4) + (fifth && raw[o + 16 + l] & high ? 16 : 0);
              dst[y++] = f(f(d1 * v) - m1);
            }
          }
        }
      }
    },
  };
}

const Q6_K: GgmlQuant = {
  name: 'q6_K', block: 256, bytes: 210,
  dequantize(raw, dst) {
    const n = dst.length / 256;
    const d = halves(raw, n, 210, 208);
    const s = new Int8Array(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let b = 0; b < n; b++) {
      const o = b * 210;
      for (let half = 0; half < 2; half++) {
        const ql = o + 64 * half, qh = o + 128 + 32 * half, sc = o + 192 + 8 * half, y = b * 256 + 128 * half;
        for (let l = 0; l < 32; l++) {
          const is = l >> 4, h = raw[qh + l];
          const q1 = ((raw[ql + l] & 15) | ((h & 3) << 4)) - 32;
          const q2 = ((raw[ql + l + 32] & 15) | (((h >> 2) & 3) << 4)) - 32;
          const q3 = ((raw[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
          const q4 = ((raw[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
          dst[y + l] = f(f(d[b] * s[sc + is]) * q1);
          dst[y + l + 32] = f(f(d[b] * s[sc + is + 2]) * q2);
          dst[y + l + 64] = f(f(d[b] * s[sc + is + 4]) * q3);
          dst[y + l + 96] = f(f(d[b] * s[sc + is + 6]) * q4);
        }
      }
    }
  },
};

// iq4_nl and iq4_xs (llama-quantize's IQ4_NL and IQ4_XS): 4-bit indices into a fixed non-uniform table.
const IQ4_VALUES = Int8Array.of(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);

const IQ4_NL = nibbles('iq4_nl', IQ4_VALUES);

// iq4_xs: d 0, the 6-bit scales' high 2 bits at 2 (u16), their low 4 bits at 4, 16 bytes of indices a 32 at 8.
const IQ4_XS: GgmlQuant = {
  name: 'iq4_xs', block: 256, bytes: 136,
  dequantize(raw, dst) {
    const n = dst.length / 256;
    const d = halves(raw, n, 136, 0);
    for (let b = 0; b < n; b++) {
      const o = b * 136, high = raw[o + 2] | (raw[o + 3] << 8);
      for (let ib = 0; ib < 8; ib++) {
        const ls = ((raw[o + 4 + (ib >> 1)] >> (4 * (ib & 1))) & 15) | (((high >> (2 * ib)) & 3) << 4);
        const dl = f(d[b] * (ls - 32));
        const q = o + 8 + 16 * ib, y = b * 256 + 32 * ib;
        for (let j = 0; j < 16; j++) {
          dst[y + j] = f(dl * IQ4_VALUES[raw[q + j] & 15]);
          dst[y + j + 16] = f(dl * IQ4_VALUES[raw[q + j] >> 4]);
        }
      }
    }
  },
};

// By ggml type id.
export const GGML_QUANTS: ReadonlyMap<number, GgmlQuant> = new Map([
  [2, Q4_0], [3, lowBits('q4_1', 20, true, false)], [6, lowBits('q5_0', 22, false, true)], [7, lowBits('q5_1', 24, true, true)], [8, Q8_0],
  [10, Q2_K], [11, Q3_K], [12, qK('q4_K', 144, false)], [13, qK('q5_K', 176, true)], [14, Q6_K], [20, IQ4_NL], [23, IQ4_XS],
]);
