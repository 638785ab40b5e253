// A small seeded PRNG whose whole state is four 32-bit words, so a checkpoint can store it and a resumed
// run draws exactly the batches the uninterrupted run would have drawn. xoshiro128** (Blackman & Vigna),
// seeded through splitmix32 so that nearby seeds give unrelated streams.
import { quoted } from './quoted';
export type RngState = [number, number, number, number];

export class Rng {
  private readonly s = new Uint32Array(4);
  private spare: number | null = null;

  constructor(seed: number) {
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  static fromState(state: RngState): Rng {
    const rng = new Rng(0);
    rng.state = state;
    return rng;
  }

  get state(): RngState {
    return [this.s[0], this.s[1], this.s[2], this.s[3]];
  }

  set state(words: RngState) {
    if (words.length !== 4 || !words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff) || words.every((w) => w === 0)) {
      throw new Error(`RNG state must be four 32-bit words, not all zero; got ${quoted(words)}`);
    }
    this.s.set(words);
  }

  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  // Uniform in (0, 1).
  uniform(): number {
    return (this.nextU32() + 0.5) / 4294967296;
  }

  // A standard normal by Box-Muller; the second value of each pair is cached, outside `state`, so only streams
  // that never checkpoint (weight initialisation) draw normals.
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const theta = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  // A uniform integer in [0, n), n up to 2^53, without modulo bias (rejection on 53-bit draws).
  below(n: number): number {
    if (!Number.isSafeInteger(n) || n <= 0) throw new RangeError(`Rng.below: n must be a positive safe integer, got ${n}`);
    const limit = Math.floor(2 ** 53 / n) * n;
    for (;;) {
      const x = (this.nextU32() >>> 5) * 2 ** 26 + (this.nextU32() >>> 6);
      if (x < limit) return x % n;
    }
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
