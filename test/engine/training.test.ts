// Training primitives beyond the reference vectors: accumulation over micro-batches, SGD, weight decay, clipping,
// frozen tensors, optimizer state save/restore, and the initialiser.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { Model, NATIVE } from '../../lib/engine/model';
import { FIXTURE_DIR, loadExpected, maxAbs, maxAbsDiff } from './helpers';

const ex = loadExpected();
const half = ex.B * ex.T / 2;  // one sequence of the batch

async function tiny(): Promise<Model> {
  return Model.load(FIXTURE_DIR, { maxBatch: ex.B, maxSeq: ex.T, threads: 2 });
}

function snapshot(model: Model, read: (name: string) => Float32Array): Map<string, Float32Array> {
  return new Map(model.tensors.map((x) => [x.name, read(x.name)]));
}

t.test('two accumulated micro-batches equal one batch of two', async (t) => {
  const whole = await tiny();
  const parts = await tiny();
  await whole.forward(ex.inputs, ex.targets, ex.B, ex.T);
  await whole.backward();
  for (let b = 0; b < 2; b++) {
    await parts.forward(ex.inputs.subarray(b * half, (b + 1) * half), ex.targets.subarray(b * half, (b + 1) * half), 1, ex.T);
    await parts.backward();
  }
  // The batch gradient is the mean of the two micro-batch gradients: the step scales the sum by 1/2.
  for (const x of whole.tensors) {
    const g = whole.getGrad(x.name);
    const sum = parts.getGrad(x.name);
    t.ok(maxAbsDiff(sum.map((v) => v / 2), g) <= 1e-5 * maxAbs(g), `grad ${x.name}`);
  }
  const normWhole = await whole.step({ optimizer: 'adamw', lr: 1e-3 });
  const normParts = await parts.step({ optimizer: 'adamw', lr: 1e-3, gradScale: 0.5 });
  t.ok(Math.abs(normWhole - normParts) <= 1e-5 * normWhole, `gradient norms ${normWhole} vs ${normParts}`);
  const loss = [await whole.forward(ex.inputs, ex.targets, ex.B, ex.T), await parts.forward(ex.inputs, ex.targets, ex.B, ex.T)];
  t.ok(Math.abs(loss[0] - loss[1]) <= 1e-4, `losses after the step agree (${loss[0]} vs ${loss[1]})`);
  whole.dispose();
  parts.dispose();
});

t.test('SGD with weight decay on the decayed tensors only; step zeroes the gradients', async (t) => {
  const model = await tiny();
  await model.forward(ex.inputs, ex.targets, ex.B, ex.T);
  await model.backward();
  const g = snapshot(model, (n) => model.getGrad(n));
  const p = snapshot(model, (n) => model.getParam(n));
  const lr = 0.1, wd = 0.01;
  await model.step({ optimizer: 'sgd', lr, weightDecay: wd });
  for (const x of model.tensors) {
    const p0 = p.get(x.name) as Float32Array;
    const g0 = g.get(x.name) as Float32Array;
    const decay = x.isMatrix ? wd : 0;
    const expected = p0.map((v, i) => v - lr * (g0[i] + decay * v));
    t.ok(maxAbsDiff(model.getParam(x.name), expected) <= 1e-7, `${x.name}: p - lr (g + ${decay} p)`);
    t.equal(maxAbs(model.getGrad(x.name)), 0, `${x.name}: gradient zeroed`);
  }
  t.equal(model[NATIVE].optimizerStepCount(), 0, 'SGD does not advance the AdamW step count');
  model.dispose();
});

t.test('AdamW decoupled weight decay follows setWeightDecay', async (t) => {
  const model = await tiny();
  model.setWeightDecay((name) => name === 'ln_f.weight');
  const p0 = model.getParam('ln_f.weight');
  const w0 = model.getParam('h.0.mlp.c_fc.weight');
  // No gradient at all (no backward): the update is the decay alone, lr * wd * p, on ln_f.weight only.
  await model.step({ optimizer: 'adamw', lr: 0.1, weightDecay: 0.5 });
  t.ok(maxAbsDiff(model.getParam('ln_f.weight'), p0.map((v) => v - 0.1 * 0.5 * v)) <= 1e-6, 'ln_f.weight decayed');
  t.equal(maxAbsDiff(model.getParam('h.0.mlp.c_fc.weight'), w0), 0, 'a matrix excluded from decay is untouched');
  model.dispose();
});

t.test('clipping by global norm', async (t) => {
  const model = await tiny();
  await model.forward(ex.inputs, ex.targets, ex.B, ex.T);
  await model.backward();
  const g = snapshot(model, (n) => model.getGrad(n));
  const p = snapshot(model, (n) => model.getParam(n));
  let sq = 0;
  for (const v of g.values()) for (const x of v) sq += x * x;
  const norm = Math.sqrt(sq);
  const clip = norm / 4;
  const reported = await model.step({ optimizer: 'sgd', lr: 1, gradClip: clip });
  t.ok(Math.abs(reported - norm) <= 1e-5 * norm, `step reports the norm before clipping (${reported} vs ${norm})`);
  const factor = clip / (norm + 1e-6);
  for (const x of model.tensors) {
    const p0 = p.get(x.name) as Float32Array;
    const g0 = g.get(x.name) as Float32Array;
    t.ok(maxAbsDiff(model.getParam(x.name), p0.map((v, i) => v - g0[i] * factor)) <= 1e-6, `${x.name} moved by the clipped gradient`);
  }
  model.dispose();
});

t.test('frozen tensors are not updated; the norm covers the trainable ones', async (t) => {
  const model = await tiny();
  const frozen = (name: string): boolean => name.startsWith('h.0.') || name === 'wte.weight';
  model.setTrainable((name) => !frozen(name));
  await model.forward(ex.inputs, ex.targets, ex.B, ex.T);
  await model.backward();
  let sq = 0;
  for (const x of model.tensors) if (!frozen(x.name)) for (const v of model.getGrad(x.name)) sq += v * v;
  const before = snapshot(model, (n) => model.getParam(n));
  const norm = await model.step({ optimizer: 'adamw', lr: 1e-2 });
  t.ok(Math.abs(norm - Math.sqrt(sq)) <= 1e-5 * norm, 'norm over trainable tensors');
  for (const x of model.tensors) {
    const moved = maxAbsDiff(model.getParam(x.name), before.get(x.name) as Float32Array);
    if (frozen(x.name)) t.equal(moved, 0, `${x.name} frozen`);
    else t.ok(moved > 0, `${x.name} trained`);
    t.equal(maxAbs(model.getGrad(x.name)), 0, `${x.name}: gradient zeroed`);
  }
  model.dispose();
});

t.test('zeroGrad clears accumulated gradients', async (t) => {
  const model = await tiny();
  await model.forward(ex.inputs, ex.targets, ex.B, ex.T);
  await model.backward();
  t.ok(maxAbs(model.getGrad('wpe.weight')) > 0);
  model.zeroGrad();
  for (const x of model.tensors) t.equal(maxAbs(model.getGrad(x.name)), 0, `${x.name} zero`);
  await t.rejects(model.backward(), /backward needs a forward with targets/, 'one backward per forward');
  model.dispose();
});

t.test('optimizer state saves and restores exactly', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-opt-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const a = await tiny();
  const trainStep = async (m: Model): Promise<void> => {
    await m.forward(ex.inputs, ex.targets, ex.B, ex.T);
    await m.backward();
    await m.step({ optimizer: 'adamw', lr: 1e-3, weightDecay: 0.1 });
  };
  await trainStep(a);
  await trainStep(a);
  const file = path.join(dir, 'optimizer.safetensors');
  await a.saveOptimizer(file);
  await a.save(dir);
  const b = await Model.load(dir, { maxBatch: ex.B, maxSeq: ex.T, threads: 2 });
  await b.loadOptimizer(file);
  t.equal(b[NATIVE].optimizerStepCount(), 2);
  await trainStep(a);
  await trainStep(b);
  for (const x of a.tensors) t.equal(maxAbsDiff(a.getParam(x.name), b.getParam(x.name)), 0, `${x.name} identical after the resumed step`);
  fs.writeFileSync(path.join(dir, 'bad.safetensors'), fs.readFileSync(file).subarray(0, 100));
  await t.rejects(b.loadOptimizer(path.join(dir, 'bad.safetensors')), /bad\.safetensors/);
  a.dispose();
  b.dispose();
});

t.test('create: GPT-2 initialisation, reproducible from the seed', async (t) => {
  const config = { nLayer: 4, nHead: 4, nEmbd: 128, nCtx: 64, vocabSize: 500 };
  const a = Model.create(config, { seed: 3, trainable: false });
  const b = Model.create(config, { seed: 3, trainable: false });
  const c = Model.create(config, { seed: 4, trainable: false });
  const std = (x: Float32Array): number => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
  t.equal(maxAbsDiff(a.getParam('wte.weight'), b.getParam('wte.weight')), 0, 'same seed, same weights');
  t.ok(maxAbsDiff(a.getParam('wte.weight'), c.getParam('wte.weight')) > 0, 'another seed, other weights');
  t.ok(Math.abs(std(a.getParam('wte.weight')) - 0.02) < 0.001, 'wte std 0.02');
  t.ok(Math.abs(std(a.getParam('h.1.mlp.c_fc.weight')) - 0.02) < 0.001, 'c_fc std 0.02');
  t.ok(Math.abs(std(a.getParam('h.1.attn.c_proj.weight')) - 0.02 / Math.sqrt(8)) < 0.0005, 'residual projection std 0.02/sqrt(2 nLayer)');
  t.equal(maxAbs(a.getParam('h.2.attn.c_attn.bias')), 0, 'biases 0');
  t.ok(a.getParam('h.3.ln_2.weight').every((v) => v === 1), 'LayerNorm weights 1');
  for (const m of [a, b, c]) m.dispose();
});

// Linux: the process's threads by name, with their nice values (/proc/self/task/<tid>/stat, field 19).
function threadsNamed(name: string): number[] {
  return fs.readdirSync('/proc/self/task').flatMap((tid) => {
    try {
      if (fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() !== name) return [];
      const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      return [Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])];
    } catch {
      return [];  // a thread that ended meanwhile
    }
  });
}

t.test('a background model works on threads of the lowest priority, to the same numbers', { skip: process.platform !== 'linux' && '/proc and per-thread nice are Linux\'s' }, async (t) => {
  const normal = await tiny();
  const background = await Model.load(FIXTURE_DIR, { maxBatch: ex.B, maxSeq: ex.T, threads: 2, background: true });
  const losses: number[][] = [];
  for (const model of [normal, background]) {
    const seen: number[] = [];
    for (let step = 0; step < 3; step++) {
      seen.push(await model.forward(ex.inputs, ex.targets, ex.B, ex.T));
      await model.backward();
      await model.step({ optimizer: 'adamw', lr: 1e-3 });
    }
    losses.push(seen);
  }
  t.same(losses[1], losses[0], `three steps, the same losses (${losses[0].join(', ')})`);
  t.same(threadsNamed('dixie-bg'), [19, 19], 'two threads at nice 19: all its work, the caller asleep');
  t.ok(threadsNamed('dixie-worker').every((nice) => nice === 0), 'a normal model\'s worker at the process\'s priority');
  background.dispose();
  t.same(threadsNamed('dixie-bg'), [], 'gone with the model');
  normal.dispose();
});
