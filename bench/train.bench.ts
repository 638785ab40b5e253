// The training driver against the bare engine: tokens/s of lib/train's loop (bin/train) on a fresh 124M
// model at B=4, T=64, next to a plain forward/backward/step loop on the same shapes; the driver should add
// nothing measurable. Then data-parallel bin/train under mpirun on 1 and 2 CPU ranks at the same global batch,
// with the time a step spends in the gradients' all-reduce; then a LoRA adapter's step against full fine-tuning
// at 124M and 355M shapes, time and memory, and the adapter's step with dropout 0.05 (`--lora`: these rows alone);
// then bin/encode's throughput on one thread and on every core.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeDataset } from '../lib/data/dataset';
import { GPT2Config, LoraOptions, Model } from '../lib/engine/model';
import type { WeightDType } from '../lib/engine/native';
import { loadTokenizer } from '../lib/tokenizer';
import { TrainRecord, readMetrics } from '../lib/train/metrics';
import { train } from '../lib/train/train';

const REPO = path.resolve(__dirname, '..', '..');
const CHAT = path.join(REPO, 'examples', 'chat', 'train');
const CONFIG: GPT2Config = { nLayer: 12, nHead: 12, nEmbd: 768, nCtx: 1024, vocabSize: 50257 };
const CONFIG_355M: GPT2Config = { nLayer: 24, nHead: 16, nEmbd: 1024, nCtx: 1024, vocabSize: 50257 };
const LORA: LoraOptions = { rank: 8, alpha: 16, targets: ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'] };
const B = 4;
const T = 64;
const WARMUP = 1;
const STEPS = 5;

// Tokens/s of the bare engine: forward, backward, Adam step on random tokens (with `lora`, of an adapter over the
// frozen model, held in `weightDtype`), and the bytes the model holds.
async function engineTokensPerSecond(config = CONFIG, lora?: LoraOptions, weightDtype: WeightDType = 'f32'): Promise<{ tokensPerSecond: number; bytes: number }> {
  const model = Model.create(config, { maxBatch: B, maxSeq: T, seed: 1, lora, weightDtype });
  try {
    const inputs = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % CONFIG.vocabSize);
    const targets = Int32Array.from({ length: B * T }, (_, i) => (i * 104729) % CONFIG.vocabSize);
    let started = 0;
    for (let step = 0; step < WARMUP + STEPS; step++) {
      if (step === WARMUP) started = performance.now();
      model.zeroGrad();
      await model.forward(inputs, targets, B, T, undefined, { step, microBatch: 0 });
      await model.backward();
      await model.step({ optimizer: 'adamw', lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradScale: 1 });
    }
    const m = model.memory();
    return { tokensPerSecond: (STEPS * B * T) / ((performance.now() - started) / 1000), bytes: m.params + m.grads + m.optimizer + m.activations };
  } finally {
    model.dispose();
  }
}

async function loraRows(): Promise<void> {
  console.log(`
a LoRA adapter (rank ${LORA.rank}, the four matrices of every block) over its frozen base held in f32, f16 and q8_0, against full fine-tuning, B=${B}, T=${T}, Adam; memory: weights, gradients, optimizer state and activations
`);
  console.log('| shape | training | tokens/s | against full | memory | against full |');
  console.log('|---|---|---:|---:|---:|---:|');
  const gib = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
  for (const [name, config] of [['124M', CONFIG], ['355M', CONFIG_355M]] as const) {
    const full = await engineTokensPerSecond(config);
    console.log(`| ${name} | every weight | ${full.tokensPerSecond.toFixed(0)} | | ${gib(full.bytes)} | |`);
    const variants: [string, LoraOptions, WeightDType][] = [
      ['LoRA over f32', LORA, 'f32'],
      ['LoRA over f32, dropout 0.05', { ...LORA, dropout: 0.05 }, 'f32'],
      ['LoRA over f16', LORA, 'f16'],
      ['LoRA over q8_0', LORA, 'q8_0'],
    ];
    for (const [what, lora, dtype] of variants) {
      const r = await engineTokensPerSecond(config, lora, dtype);
      console.log(`| ${name} | ${what} | ${r.tokensPerSecond.toFixed(0)} | ${(r.tokensPerSecond / full.tokensPerSecond).toFixed(2)}x | ${gib(r.bytes)} | ${(r.bytes / full.bytes).toFixed(2)}x |`);
    }
  }
}

// Tokens/s of the training loop, timed between its step lines (everything the loop does between steps
// counts), stopped by its signal after the last step so that no 1.5 GB checkpoint is written.
async function driverTokensPerSecond(dir: string): Promise<number> {
  const abort = new AbortController();
  const stamps: number[] = [];
  await train(
    {
      dataset: CHAT,
      fresh_model: true,
      context_length: T,
      batch_size: B,
      learning_rate: 1e-4,
      seed: 1,
      checkpoint_dir: path.join(dir, 'checkpoint'),
      sample_dir: path.join(dir, 'samples'),
      save_every: 0,
      save_time: 0,
      sample_every: 0,
    },
    {
      signal: abort.signal,
      log: (line) => {
        if (!/^\[\d+ \| /.test(line)) return;
        stamps.push(performance.now());
        if (stamps.length === WARMUP + STEPS) abort.abort();
      },
    },
  );
  return (STEPS * B * T) / ((stamps[stamps.length - 1] - stamps[WARMUP - 1]) / 1000);
}

// mpirun -np <ranks> bin/train at 124M shapes, B x ranks = 4 sequences of T a step, stopped by SIGUSR1 (which
// mpirun forwards: no checkpoint is written) after WARMUP + STEPS steps; tokens/s and all-reduce seconds a step
// from rank 0's metrics, after the warmup.
async function ranksTokensPerSecond(dir: string, ranks: number): Promise<{ tokensPerSecond: number; reduceSeconds: number; stepSeconds: number }> {
  const run = `ranks-${ranks}`;
  const args = ['--oversubscribe', '-np', String(ranks), process.execPath, path.join(__dirname, '..', 'bin', 'commands', 'train.js'),
    '--dataset', CHAT, '--fresh_model', '--context_length', String(T), '--batch_size', String(B / ranks), '--learning_rate', '1e-4', '--seed', '1',
    '--checkpoint_dir', path.join(dir, 'checkpoint'), '--sample_dir', path.join(dir, 'samples'), '--save_every', '0', '--save_time', '0',
    '--sample_every', '0', '--run_name', run];
  const child = spawn('mpirun', args, { env: { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' }, stdio: ['ignore', 'pipe', 'inherit'] });
  let lines = 0;
  child.stdout.on('data', (d: Buffer) => {
    const before = lines;
    lines += (d.toString().match(/^\[\d+ \| /gm) ?? []).length;
    if (before < WARMUP + STEPS && lines >= WARMUP + STEPS) child.kill('SIGUSR1');
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0) throw new Error(`mpirun -np ${ranks} bin/train exited with ${code}`);
  const steps = readMetrics(path.join(dir, 'checkpoint', run, 'metrics.jsonl')).flatMap((r) => (r.type === 'train' ? [r] : [])).slice(WARMUP);
  const mean = (f: (r: TrainRecord) => number): number => steps.reduce((a, r) => a + f(r), 0) / steps.length;
  const stepSeconds = mean((r) => (B * T) / r.tokens_per_s);
  return { tokensPerSecond: (B * T) / stepSeconds, reduceSeconds: mean((r) => r.reduce_s ?? 0), stepSeconds };
}

async function encodeThroughput(dir: string, threads: number): Promise<{ mbPerSecond: number; tokensPerSecond: number; mb: number }> {
  const started = performance.now();
  const result = await encodeDataset(path.join(dir, 'text'), path.join(dir, `out-${threads}.tokens`), { tokenizer: loadTokenizer(), threads, chatCheck: 'off' });
  const seconds = (performance.now() - started) / 1000;
  return { mbPerSecond: result.bytes / 1e6 / seconds, tokensPerSecond: result.tokens / seconds, mb: result.bytes / 1e6 };
}

export async function run(): Promise<void> {
  if (process.argv.includes('--lora')) return loraRows();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-train-bench-'));
  try {
    const engine1 = (await engineTokensPerSecond()).tokensPerSecond;
    const driver = await driverTokensPerSecond(dir);
    const engine2 = (await engineTokensPerSecond()).tokensPerSecond;
    const engine = (engine1 + engine2) / 2;
    console.log(`124M fresh model, B=${B}, T=${T}, ${STEPS} steps after ${WARMUP} warmup, ${os.availableParallelism()} cores\n`);
    console.log('| loop | tokens/s | vs engine |');
    console.log('|---|---:|---:|');
    console.log(`| engine: forward/backward/step (mean of runs before and after) | ${engine.toFixed(0)} (${engine1.toFixed(0)}, ${engine2.toFixed(0)}) | 100% |`);
    console.log(`| lib/train driver (bin/train) | ${driver.toFixed(0)} | ${((100 * driver) / engine).toFixed(1)}% |`);

    if (spawnSync('mpirun', ['--version']).status === 0) {
      console.log(`\ndata-parallel bin/train under mpirun, 124M, ${B} sequences of ${T} tokens a step in all, CPU threads shared out among the ranks\n`);
      console.log('| ranks | tokens/s | step s | all-reduce s a step (waits included) |');
      console.log('|---:|---:|---:|---:|');
      for (const ranks of [1, 2]) {
        const r = await ranksTokensPerSecond(dir, ranks);
        console.log(`| ${ranks} | ${r.tokensPerSecond.toFixed(0)} | ${r.stepSeconds.toFixed(2)} | ${r.reduceSeconds.toFixed(3)} (${((100 * r.reduceSeconds) / r.stepSeconds).toFixed(0)}%) |`);
      }
    } else {
      console.log('\n(no mpirun: the data-parallel rows need Open MPI, `apt-get install openmpi-bin`)');
    }

    await loraRows();

    // About 95 MB of chat text in 1000 files (the example dataset, each copy with its own numbers so that the
    // tokenizer's word cache does not see only repeats).
    fs.mkdirSync(path.join(dir, 'text'));
    const files = fs.readdirSync(CHAT).map((f) => fs.readFileSync(path.join(CHAT, f), 'utf8'));
    for (let i = 0; i < 1000; i++) fs.writeFileSync(path.join(dir, 'text', `${i}.txt`), files[i % files.length].replace(/\d+/g, (n) => String(Number(n) + i * 13)));
    const one = await encodeThroughput(dir, 1);
    const all = await encodeThroughput(dir, os.availableParallelism());
    console.log(`\nbin/encode on ${one.mb.toFixed(1)} MB of chat text (GPT-2 vocabulary)\n`);
    console.log('| threads | MB/s | tokens/s |');
    console.log('|---:|---:|---:|');
    console.log(`| 1 | ${one.mbPerSecond.toFixed(2)} | ${one.tokensPerSecond.toFixed(0)} |`);
    console.log(`| ${os.availableParallelism()} | ${all.mbPerSecond.toFixed(2)} | ${all.tokensPerSecond.toFixed(0)} |`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
