// The engine at GPT-2 124M shapes (12 layers, 12 heads, 768 channels, vocabulary 50257, context 1024) with random
// weights: one training step (forward, backward, AdamW) at B=4, T=64 on 2 threads, the forward pass of one
// 1024-token sequence, and the memory plan at B=4, T=1024 with and without recomputation.
//
// FLOPs counted: 6 x tokens x (matmul parameters: 12 C^2 per layer + the V x C head), the matmuls of forward (2)
// and backward (4); plus causal attention, 4 x T(T+1)/2 x C per sequence and layer forward (QK^T and AV), tripled
// for training. LayerNorm, GELU, softmax and the optimizer are not counted.
import { GPT2Config, Model } from '../lib/engine/model';
import { cpus } from 'node:os';
import { median } from './stats';

const GPT2_124M: GPT2Config = { nLayer: 12, nHead: 12, nEmbd: 768, nCtx: 1024, vocabSize: 50257 };
const THREADS = 2;

function forwardFlops(c: GPT2Config, B: number, T: number): number {
  const matmulParams = 12 * c.nLayer * c.nEmbd * c.nEmbd + c.vocabSize * c.nEmbd;
  const attention = 4 * B * ((T * (T + 1)) / 2) * c.nEmbd * c.nLayer;
  return 2 * B * T * matmulParams + attention;
}

function tokens(n: number, vocab: number): Int32Array {
  let s = 12345;
  return Int32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % vocab;
  });
}

const now = (): number => Number(process.hrtime.bigint()) / 1e9;
const gib = (bytes: number): string => (bytes / 2 ** 30).toFixed(2);

async function trainingStep(): Promise<string[]> {
  const B = 4, T = 64, steps = 10;
  const model = Model.create(GPT2_124M, { seed: 1, threads: THREADS, maxBatch: B, maxSeq: T });
  const inputs = tokens(B * T, GPT2_124M.vocabSize);
  const targets = tokens(B * T + 1, GPT2_124M.vocabSize).subarray(1);
  const phases = { forward: [] as number[], backward: [] as number[], step: [] as number[], total: [] as number[] };
  for (let i = 0; i < steps + 2; i++) {
    const t0 = now();
    await model.forward(inputs, targets, B, T);
    const t1 = now();
    await model.backward();
    const t2 = now();
    await model.step({ optimizer: 'adamw', lr: 1e-4, weightDecay: 0.1, gradClip: 1 });
    const t3 = now();
    if (i < 2) continue;  // warm-up: first touches of the planned memory
    phases.forward.push(t1 - t0);
    phases.backward.push(t2 - t1);
    phases.step.push(t3 - t2);
    phases.total.push(t3 - t0);
  }
  model.dispose();
  const flops = 3 * forwardFlops(GPT2_124M, B, T);
  const total = median(phases.total);
  return [
    `| training step, B=${B} T=${T}, ${THREADS} threads (median of ${steps}) | ${total.toFixed(3)} s | ${(flops / total / 1e9).toFixed(1)} GFLOP/s |`,
    `| — forward | ${median(phases.forward).toFixed(3)} s | |`,
    `| — backward | ${median(phases.backward).toFixed(3)} s | |`,
    `| — AdamW step (clip, weight decay) | ${median(phases.step).toFixed(3)} s | |`,
  ];
}

async function longForward(): Promise<string> {
  const T = 1024, runs = 3;
  const model = Model.create(GPT2_124M, { seed: 1, threads: THREADS, maxBatch: 1, maxSeq: T, trainable: false });
  const inputs = tokens(T, GPT2_124M.vocabSize);
  const times: number[] = [];
  for (let i = 0; i < runs + 1; i++) {
    const t0 = now();
    await model.forward(inputs, null, 1, T);
    if (i > 0) times.push(now() - t0);
  }
  model.dispose();
  const t = median(times);
  return `| forward, 1 x ${T} tokens, ${THREADS} threads (median of ${runs}) | ${t.toFixed(3)} s | ${(forwardFlops(GPT2_124M, 1, T) / t / 1e9).toFixed(1)} GFLOP/s |`;
}

function memoryRows(): string[] {
  const rows: string[] = [];
  for (const recompute of [false, true]) {
    const model = Model.create(GPT2_124M, { threads: 1, maxBatch: 4, maxSeq: 1024, recompute });
    const m = model.memory();
    model.dispose();
    const total = m.params + m.grads + m.optimizer + m.activations;
    rows.push(`| memory plan B=4 T=1024, recompute ${recompute ? 'on' : 'off'} | ${gib(total)} GiB | params ${gib(m.params)}, grads ${gib(m.grads)}, AdamW ${gib(m.optimizer)}, activations ${gib(m.activations)} GiB |`);
  }
  return rows;
}

export async function run(): Promise<void> {
  console.log(`GPT-2 124M shapes, float32, ${cpus()[0]?.model ?? 'unknown CPU'}\n`);
  console.log('| what | time / size | rate / detail |');
  console.log('|---|---|---|');
  for (const row of memoryRows()) console.log(row);
  for (const row of await trainingStep()) console.log(row);
  console.log(await longForward());
}
