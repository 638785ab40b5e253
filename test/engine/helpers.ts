// Shared by the engine tests: the gpt2-tiny reference vectors, comparisons, KV-cached decoding on a schedule, and an
// independent float64 GPT-2 forward pass in plain TypeScript (the reference for models the vectors do not cover).
import path from 'node:path';
import { openSafetensors } from '../../lib/formats/safetensors';
import { NATIVE, type GPT2Config, type Model } from '../../lib/engine/model';

export const FIXTURE_DIR = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'gpt2-tiny');
export const TINY_CONFIG: GPT2Config = { nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 64, vocabSize: 256 };

export interface Expected {
  B: number;
  T: number;
  inputs: Int32Array;
  targets: Int32Array;
  logits: Float32Array;
  losses: Float32Array;
  grad(name: string): Float32Array;
  afterStep1(name: string): Float32Array;
}

export function loadExpected(): Expected {
  const file = openSafetensors(path.join(FIXTURE_DIR, 'expected.safetensors'));
  const ints = (name: string): Int32Array => {
    const out = new Int32Array(file.tensor(name).numel);
    file.readInto(name, out);
    return out;
  };
  const [B, T] = file.tensor('inputs').shape;
  const expected: Expected = {
    B,
    T,
    inputs: ints('inputs'),
    targets: ints('targets'),
    logits: file.readF32('logits'),
    losses: file.readF32('losses'),
    grad: (name) => file.readF32(`grad.${name}`),
    afterStep1: (name) => file.readF32(`adamw_step1.${name}`),
  };
  return expected;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// The probabilities of logits, in float64.
export function softmax(logits: Float32Array): Float64Array {
  const max = logits.reduce((m, x) => Math.max(m, x), -Infinity);
  const p = Float64Array.from(logits, (x) => Math.exp(x - max));
  const sum = p.reduce((a, b) => a + b, 0);
  return p.map((x) => x / sum);
}

// A small deterministic generator for test data (not the model's initialiser).
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

export function randomTokens(n: number, vocab: number, seed: number): Int32Array {
  const next = lcg(seed);
  return Int32Array.from({ length: n }, () => Math.floor(next() * vocab));
}

// Feeds `schedule[i]` tokens per call to each slot (all slots in each call, until each runs out), and returns
// every logits row the calls produced, keyed by slot and the position of the token it follows.
export async function decode(model: Model, sequences: Int32Array[], chunk: (slot: number, call: number) => number): Promise<Map<string, Float32Array>> {
  const V = model.config.vocabSize;
  const native = model[NATIVE];
  await model.run((n) => n.kvReserve(sequences.length));
  for (let s = 0; s < sequences.length; s++) await model.run((n) => n.kvTruncate(s, 0));
  const done = sequences.map(() => 0);
  const rows = new Map<string, Float32Array>();
  for (let call = 0; done.some((d, s) => d < sequences[s].length); call++) {
    const slots: number[] = [];
    const counts: number[] = [];
    const tokens: number[] = [];
    sequences.forEach((seq, s) => {
      if (done[s] >= seq.length) return;
      const n = Math.min(chunk(s, call), seq.length - done[s]);
      slots.push(s);
      counts.push(n);
      tokens.push(...seq.subarray(done[s], done[s] + n));
    });
    const logits = new Float32Array(slots.length * V);
    await model.run(() => native.kvForward(Int32Array.from(slots), Int32Array.from(counts), Int32Array.from(tokens), logits));
    slots.forEach((s, i) => {
      done[s] += counts[i];
      rows.set(`${s}:${done[s] - 1}`, logits.slice(i * V, (i + 1) * V));
    });
  }
  sequences.forEach((seq, s) => {
    if (native.kvLength(s) !== seq.length) throw new Error(`slot ${s} holds ${native.kvLength(s)} tokens, not ${seq.length}`);
  });
  return rows;
}

// ---- float64 reference forward ----

export type Params64 = (name: string) => Float64Array;

function layernorm(x: Float64Array, w: Float64Array, b: Float64Array, N: number, C: number): Float64Array {
  const out = new Float64Array(N * C);
  for (let r = 0; r < N; r++) {
    let mean = 0;
    for (let c = 0; c < C; c++) mean += x[r * C + c];
    mean /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[r * C + c] - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / C + 1e-5);
    for (let c = 0; c < C; c++) out[r * C + c] = (x[r * C + c] - mean) * rstd * w[c] + b[c];
  }
  return out;
}

// x[N, K] @ w[K, M] + b[M]
function matmul(x: Float64Array, w: Float64Array, b: Float64Array | null, N: number, K: number, M: number): Float64Array {
  const out = new Float64Array(N * M);
  for (let r = 0; r < N; r++) {
    const o = r * M;
    if (b) for (let m = 0; m < M; m++) out[o + m] = b[m];
    for (let k = 0; k < K; k++) {
      const xv = x[r * K + k];
      const wo = k * M;
      for (let m = 0; m < M; m++) out[o + m] += xv * w[wo + m];
    }
  }
  return out;
}

// GPT-2 in float64: returns the logits [B*T, V] and the mean cross-entropy against targets.
export function referenceForward(cfg: GPT2Config, p: Params64, inputs: Int32Array, targets: Int32Array, B: number, T: number): { logits: Float64Array; loss: number } {
  const C = cfg.nEmbd, NH = cfg.nHead, hs = C / NH, V = cfg.vocabSize, N = B * T;
  const wte = p('wte.weight'), wpe = p('wpe.weight');
  let x = new Float64Array(N * C);
  for (let r = 0; r < N; r++) {
    for (let c = 0; c < C; c++) x[r * C + c] = wte[inputs[r] * C + c] + wpe[(r % T) * C + c];
  }
  for (let l = 0; l < cfg.nLayer; l++) {
    const P = (n: string): Float64Array => p(`h.${l}.${n}`);
    const ln1 = layernorm(x, P('ln_1.weight'), P('ln_1.bias'), N, C);
    const qkv = matmul(ln1, P('attn.c_attn.weight'), P('attn.c_attn.bias'), N, C, 3 * C);
    const y = new Float64Array(N * C);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < NH; h++) {
        for (let t = 0; t < T; t++) {
          const q = (b * T + t) * 3 * C + h * hs;
          const scores: number[] = [];
          for (let j = 0; j <= t; j++) {
            const k = (b * T + j) * 3 * C + C + h * hs;
            let s = 0;
            for (let i = 0; i < hs; i++) s += qkv[q + i] * qkv[k + i];
            scores.push(s / Math.sqrt(hs));
          }
          const mx = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - mx));
          const sum = e.reduce((a, v) => a + v, 0);
          for (let j = 0; j <= t; j++) {
            const v = (b * T + j) * 3 * C + 2 * C + h * hs;
            for (let i = 0; i < hs; i++) y[(b * T + t) * C + h * hs + i] += (e[j] / sum) * qkv[v + i];
          }
        }
      }
    }
    const att = matmul(y, P('attn.c_proj.weight'), P('attn.c_proj.bias'), N, C, C);
    const x2 = x.map((v, i) => v + att[i]);
    const ln2 = layernorm(x2, P('ln_2.weight'), P('ln_2.bias'), N, C);
    const fc = matmul(ln2, P('mlp.c_fc.weight'), P('mlp.c_fc.bias'), N, C, 4 * C);
    const gelu = fc.map((u) => 0.5 * u * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (u + 0.044715 * u * u * u))));
    const mlp = matmul(gelu, P('mlp.c_proj.weight'), P('mlp.c_proj.bias'), N, 4 * C, C);
    x = x2.map((v, i) => v + mlp[i]);
  }
  const lnf = layernorm(x, p('ln_f.weight'), p('ln_f.bias'), N, C);
  const logits = new Float64Array(N * V);
  let loss = 0;
  for (let r = 0; r < N; r++) {
    let mx = -Infinity;
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += lnf[r * C + c] * wte[v * C + c];
      logits[r * V + v] = s;
      mx = Math.max(mx, s);
    }
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(logits[r * V + v] - mx);
    loss += Math.log(sum) + mx - logits[r * V + targets[r]];
  }
  return { logits, loss: loss / N };
}

// Mean cross-entropy in float64 from float32 logits [N, V]: far less rounding noise than the float32 loss.
export function lossFromLogits(logits: Float32Array, targets: Int32Array, V: number): number {
  const N = targets.length;
  let total = 0;
  for (let r = 0; r < N; r++) {
    let mx = -Infinity;
    for (let v = 0; v < V; v++) mx = Math.max(mx, logits[r * V + v]);
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(logits[r * V + v] - mx);
    total += Math.log(z) + mx - logits[r * V + targets[r]];
  }
  return total / N;
}

// The coordinates to check in a tensor: its largest gradients (well above rounding) and a few random ones.
export function sampleCoordinates(g: Float32Array, largest: number, random: number, seed: number): number[] {
  const order = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]) - Math.abs(g[a]));
  const next = lcg(seed);
  const picked = new Set(order.slice(0, largest));
  while (picked.size < Math.min(g.length, largest + random)) picked.add(Math.floor(next() * g.length));
  return [...picked];
}
