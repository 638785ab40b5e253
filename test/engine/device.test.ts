// Device selection: 'cpu', 'cuda', 'auto' and the precision option, on whatever machine runs the tests. Without
// a usable GPU (CI), 'auto' must give a working CPU model with one notice, and 'cuda' a clear error; with one,
// 'cuda' must run the reference vectors.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Model, setComputeDefaults } from '../../lib/engine/model';
import { loadAddon } from '../../lib/engine/native';
import { FIXTURE_DIR, loadExpected, maxAbsDiff } from './helpers';

const ex = loadExpected();
const V = 256;
const addon = loadAddon();
const gpu = addon.cudaAvailable();

async function lossAndLogits(model: Model): Promise<{ loss: number; logits: Float32Array }> {
  const logits = new Float32Array(ex.B * ex.T * V);
  const loss = await model.forward(ex.inputs, ex.targets, ex.B, ex.T, logits);
  return { loss, logits };
}

t.test('cudaAvailable() is a boolean that agrees with what device "cuda" does', async (t) => {
  t.type(gpu, 'boolean');
  const make = () => Model.load(FIXTURE_DIR, { maxBatch: ex.B, maxSeq: ex.T, device: 'cuda' });
  if (gpu) {
    const model = await make();
    t.match(model.device(), /^cuda:/, model.device());
    model.dispose();
  } else {
    await t.rejects(make(), /options\.device is 'cuda' but (no CUDA device is usable|this addon was built without CUDA)/);
  }
});

t.test("device 'auto' gives a working model: the CPU without a GPU, CUDA with one", async (t) => {
  const model = await Model.load(FIXTURE_DIR, { maxBatch: ex.B, maxSeq: ex.T, device: 'auto', threads: 2 });
  t.match(model.device(), gpu ? /^cuda:/ : /^cpu /, model.device());
  const { loss, logits } = await lossAndLogits(model);
  t.ok(Math.abs(loss - ex.losses[0]) <= 1e-4, `loss ${loss} vs ${ex.losses[0]}`);
  t.ok(maxAbsDiff(logits, ex.logits) <= 1e-5, `logits within 1e-5 (max diff ${maxAbsDiff(logits, ex.logits)})`);
  model.dispose();
});

t.test("device 'cpu' runs on the CPU whatever the machine", async (t) => {
  const model = await Model.load(FIXTURE_DIR, { maxBatch: ex.B, maxSeq: ex.T, device: 'cpu', threads: 2 });
  t.match(model.device(), /^cpu /);
  model.dispose();
});

t.test("precision 'bf16' on the CPU computes in float32", async (t) => {
  const model = await Model.load(FIXTURE_DIR, { maxBatch: ex.B, maxSeq: ex.T, device: 'cpu', precision: 'bf16', threads: 2 });
  const { loss, logits } = await lossAndLogits(model);
  t.ok(Math.abs(loss - ex.losses[0]) <= 1e-4, `loss ${loss} vs ${ex.losses[0]}`);
  t.ok(maxAbsDiff(logits, ex.logits) <= 1e-5, 'logits at float32 precision');
  model.dispose();
});

t.test('bad device and precision values are refused with the option named', async (t) => {
  const config = { nLayer: 1, nHead: 1, nEmbd: 8, nCtx: 8, vocabSize: 16 };
  t.throws(() => Model.create(config, { device: 'gpu' as 'cuda' }), { name: 'TypeError', message: /options\.device must be 'cpu', 'cuda' or 'auto', got 'gpu'/ });
  t.throws(() => Model.create(config, { precision: 'f16' as 'bf16' }), { name: 'TypeError', message: /options\.precision must be 'f32' or 'bf16', got 'f16'/ });
});

t.test('setComputeDefaults sets the device of models whose options name none', async (t) => {
  const config = { nLayer: 1, nHead: 1, nEmbd: 8, nCtx: 8, vocabSize: 16 };
  t.teardown(() => setComputeDefaults({}));
  setComputeDefaults({ device: 'cpu' });
  const model = Model.create(config);
  t.match(model.device(), /^cpu /);
  model.dispose();
  setComputeDefaults({ device: 'cuda' });
  if (gpu) {
    const onGpu = Model.create(config);
    t.match(onGpu.device(), /^cuda:/);
    onGpu.dispose();
  } else {
    t.throws(() => Model.create(config), /options\.device is 'cuda'/);
  }
  const explicit = Model.create(config, { device: 'cpu' });
  t.match(explicit.device(), /^cpu /, "a model's own option wins over the default");
  explicit.dispose();
});

t.test("'auto' without a GPU prints one notice per process, however many models", { skip: gpu && 'a GPU is present' }, async (t) => {
  const addonPath = process.env.DIXIE_ADDON ?? path.join(__dirname, '..', '..', '..', 'build', 'Release', 'dixie_native.node');
  const script = `
    const a = require(${JSON.stringify(addonPath)});
    const c = { nLayer: 1, nHead: 1, nEmbd: 8, nCtx: 8, vocabSize: 16 };
    for (let i = 0; i < 3; i++) new a.Model(c, { device: 'auto' }).dispose();
    let builtWithCuda = true;
    try { new a.Model(c, { device: 'cuda' }); } catch (e) { builtWithCuda = !/built without CUDA/.test(e.message); }
    process.stdout.write(String(builtWithCuda));
  `;
  const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  t.equal(child.status, 0, child.stderr);
  const notices = child.stderr.split('\n').filter((line) => line.startsWith('dixie: '));
  // An addon built without CUDA has nothing to explain: 'auto' simply means the CPU.
  t.equal(notices.length, child.stdout === 'true' ? 1 : 0, `notices: ${JSON.stringify(notices)}`);
  // On a machine without an NVIDIA driver the runtime says the driver is too old: the notice must not.
  if (notices.length === 1) t.match(notices[0], fs.existsSync('/dev/nvidiactl') ? /running on the CPU$/ : /^dixie: no GPU found, running on the CPU$/);
});
