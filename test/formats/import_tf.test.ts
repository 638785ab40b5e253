// bin/import-tf: a tiny GPT-2 written in TensorFlow's layout (OpenAI's variable names, [1, C, 3C] conv1d
// weights, Adam slots, global_step) by our own bundle writer, imported, and compared with the same weights
// saved as safetensors: tensor for tensor, and logits once the engine can load models.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { importTFCheckpoint } from '../../lib/formats/import_tf';
import { inspectModelFolder } from '../../lib/formats/model_folder';
import { openSafetensors } from '../../lib/formats/safetensors';
import { openTFCheckpoint } from '../../lib/formats/tf_checkpoint';
import { NO_DEV_FULL, diskFull, isTemporaryOf } from '../helpers/full_disk';
import { writeTFBundle, type BundleTensor } from '../helpers/tf_bundle';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const TINY = path.join(ROOT, 'test', 'fixtures', 'gpt2-tiny');
const HPARAMS = { n_vocab: 256, n_ctx: 64, n_embd: 64, n_head: 4, n_layer: 2 };
const ENCODER = JSON.stringify(Object.fromEntries(Array.from({ length: 256 }, (_, i) => [`t${i}`, i])));
const MERGES = '#version: 0.2\nt 1\n';

// HF name -> TF name, the inverse of the import's mapping, written out independently here.
function tfName(hf: string): string {
  const leaf: Record<string, string> = { weight: 'w', bias: 'b' };
  if (hf === 'wte.weight') return 'model/wte';
  if (hf === 'wpe.weight') return 'model/wpe';
  const ln = /^(?:h\.(\d+)\.)?(ln_1|ln_2|ln_f)\.(weight|bias)$/.exec(hf);
  if (ln) return `model/${ln[1] !== undefined ? `h${ln[1]}/` : ''}${ln[2]}/${ln[3] === 'weight' ? 'g' : 'b'}`;
  const conv = /^h\.(\d+)\.(attn|mlp)\.(c_attn|c_proj|c_fc)\.(weight|bias)$/.exec(hf);
  if (!conv) throw new Error(`unexpected tensor ${hf}`);
  return `model/h${conv[1]}/${conv[2]}/${conv[3]}/${leaf[conv[4]]}`;
}

// The gpt2-tiny weights as TensorFlow variables, with optimizer state beside them.
function tinyAsTF(): BundleTensor[] {
  const st = openSafetensors(path.join(TINY, 'model.safetensors'));
  const out: BundleTensor[] = [];
  for (const e of st.tensors) {
    const data = st.readF32(e);
    const shape = e.name.endsWith('.weight') && e.shape.length === 2 && !e.name.startsWith('w') ? [1, ...e.shape] : e.shape;
    const name = tfName(e.name);
    out.push({ name, dtype: 'DT_FLOAT', shape, data });
    out.push({ name: `${name}/Adam`, dtype: 'DT_FLOAT', shape, data: data.map((x) => x * 0.5) });
    out.push({ name: `${name}/Adam_1`, dtype: 'DT_FLOAT', shape, data: data.map((x) => x * x) });
  }
  st.close();
  out.push({ name: 'global_step', dtype: 'DT_INT64', shape: [], data: BigInt64Array.of(1234n) });
  out.push({ name: 'beta1_power', dtype: 'DT_FLOAT', shape: [], data: Float32Array.of(0.9) });
  return out;
}

function writeRelease(dir: string, tensors = tinyAsTF()): string {
  writeTFBundle(path.join(dir, 'model.ckpt'), tensors, { numShards: 2, blockSize: 1024 });
  fs.writeFileSync(path.join(dir, 'hparams.json'), JSON.stringify(HPARAMS));
  fs.writeFileSync(path.join(dir, 'encoder.json'), ENCODER);
  fs.writeFileSync(path.join(dir, 'vocab.bpe'), MERGES);
  return dir;
}

function sameTensors(t: Test, imported: string, reference: string): void {
  const a = openSafetensors(imported);
  const b = openSafetensors(reference);
  t.same(a.tensors.map((e) => e.name).sort(), b.tensors.map((e) => e.name).sort(), 'the same tensor names');
  let mismatched = 0;
  for (const e of b.tensors) {
    const x = a.tensor(e.name);
    if (x.dtype !== 'F32' || x.shape.join() !== e.shape.join() || Buffer.compare(Buffer.from(a.readF32(x).buffer), Buffer.from(b.readF32(e).buffer)) !== 0) mismatched++;
  }
  t.equal(mismatched, 0, 'every tensor identical in dtype, shape and bits');
  t.same(a.metadata, { format: 'pt' }, 'format pt, which transformers requires');
  a.close();
  b.close();
}

t.test("OpenAI's release layout imports to the same weights as the safetensors file", async (t) => {
  const root = t.testdir();
  const src = writeRelease(path.join(root, '124M'));
  const out = path.join(root, 'models', 'tiny');
  const progress: number[] = [];
  const result = await importTFCheckpoint(src, out, { onProgress: (bytes, total) => progress.push(bytes / total) });
  t.same(result.config, { nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 64, vocabSize: 256 });
  t.equal(result.tensors, 28);
  t.same(result.skipped.sort(), ['beta1_power', 'global_step', ...tinyAsTF().filter((x) => x.name.includes('/Adam')).map((x) => x.name)].sort());
  t.equal(progress.length, 28);
  t.equal(progress[progress.length - 1], 1);
  sameTensors(t, path.join(out, 'model.safetensors'), path.join(TINY, 'model.safetensors'));
  const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  t.match(config, {
    model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_layer: 2, n_head: 4, n_embd: 64, n_positions: 64, n_ctx: 64,
    vocab_size: 256, layer_norm_epsilon: 1e-5, activation_function: 'gelu_new',
  });
  t.equal(fs.readFileSync(path.join(out, 'vocab.json'), 'utf8'), ENCODER);
  t.equal(fs.readFileSync(path.join(out, 'merges.txt'), 'utf8'), MERGES);
  t.match(inspectModelFolder(out), { kind: 'huggingface', config: { nLayer: 2 }, vocab: { encoder: path.join(out, 'vocab.json') } });

  // In place: the release folder becomes a model folder too.
  await importTFCheckpoint(src, src);
  t.equal(inspectModelFolder(src).kind, 'huggingface');
  sameTensors(t, path.join(src, 'model.safetensors'), path.join(TINY, 'model.safetensors'));
});

t.test('an import over a model folder that fails partway leaves its files as they were', { skip: NO_DEV_FULL }, async (t) => {
  const root = t.testdir();
  const src = writeRelease(path.join(root, '124M'));
  const out = path.join(root, 'models', 'earlier');
  fs.cpSync(TINY, out, { recursive: true });
  // Another model's: the import's weights beside this config would not load.
  const config = JSON.stringify({ ...JSON.parse(fs.readFileSync(path.join(TINY, 'config.json'), 'utf8')), n_layer: 1 });
  fs.writeFileSync(path.join(out, 'config.json'), config);
  const before = new Map(fs.readdirSync(out).map((f) => [f, fs.readFileSync(path.join(out, f))]));
  await t.test('the disk fills up as the config is written', async (t) => {
    diskFull(t, isTemporaryOf(path.join(out, 'config.json')));
    await t.rejects(importTFCheckpoint(src, out), { code: 'ENOSPC', message: /config\.json/ });
  });
  t.same(fs.readdirSync(out), [...before.keys()], 'no file added, no temporary file left');
  for (const [file, bytes] of before) t.ok(fs.readFileSync(path.join(out, file)).equals(bytes), `${file} as it was`);
});

t.test('a TensorFlow training run folder: hparams and vocabulary from the base model', async (t) => {
  const root = t.testdir();
  const base = writeRelease(path.join(root, 'models', '124M'));
  const run = path.join(root, 'checkpoint', 'run1');
  writeTFBundle(path.join(run, 'model-1000'), tinyAsTF());
  writeTFBundle(path.join(run, 'model-1234'), tinyAsTF());  // the `checkpoint` file now names model-1234
  const out = path.join(root, 'models', 'mom');
  await t.rejects(importTFCheckpoint(run, out), /model-1234\.index: no hparams\.json beside the checkpoint and width 64 is not one of OpenAI's releases.*--hparams/);
  const result = await importTFCheckpoint(run, out, { hparams: path.join(base, 'hparams.json'), vocab: base });
  t.equal(result.checkpoint, path.join(run, 'model-1234'));
  t.same(result.vocab, { encoder: path.join(base, 'encoder.json'), merges: path.join(base, 'vocab.bpe') });
  sameTensors(t, path.join(out, 'model.safetensors'), path.join(TINY, 'model.safetensors'));
  // A prefix works as well as a folder, and a config.json serves as hparams.
  const out2 = path.join(root, 'models', 'mom2');
  const r2 = await importTFCheckpoint(path.join(run, 'model-1000'), out2, { hparams: path.join(TINY, 'config.json') });
  t.equal(r2.vocab, null, 'no vocabulary beside the checkpoint');
  t.notOk(fs.existsSync(path.join(out2, 'vocab.json')));
  sameTensors(t, path.join(out2, 'model.safetensors'), path.join(TINY, 'model.safetensors'));
  await t.rejects(importTFCheckpoint(run, out, { hparams: path.join(base, 'hparams.json'), vocab: root }), /no encoder\.json \+ vocab\.bpe/);
});

t.test('checkpoints that do not fit GPT-2 are refused by name, and nothing is written', async (t) => {
  const root = t.testdir();
  const good = tinyAsTF();
  const cases: [string, BundleTensor[], RegExp][] = [
    ['missing', good.filter((x) => x.name !== 'model/h1/mlp/c_fc/b'), /no variable "model\/h1\/mlp\/c_fc\/b" \(config from .*hparams\.json expects 2 layers\)/],
    ['shape', good.map((x) => (x.name === 'model/h0/attn/c_attn/w' ? { ...x, shape: [64, 192] } : x)), /variable "model\/h0\/attn\/c_attn\/w" has shape \[64, 192\], expected \[1, 64, 192\] from .*hparams\.json/],
    ['extra', [...good, { name: 'model/h2/ln_1/g', dtype: 'DT_FLOAT', shape: [64], data: new Float32Array(64) }], /variable "model\/h2\/ln_1\/g" is not part of a GPT-2 with 2 layers/],
    ['dtype', good.map((x) => (x.name === 'model/ln_f/b' ? { ...x, dtype: 'DT_INT32' as const, data: new Int32Array(64) } : x)), /variable "model\/ln_f\/b" is DT_INT32, not a float tensor/],
  ];
  for (const [name, tensors, message] of cases) {
    const src = writeRelease(path.join(root, name), tensors);
    const out = path.join(root, `${name}-out`);
    await t.rejects(importTFCheckpoint(src, out), message, name);
    t.notOk(fs.existsSync(path.join(out, 'model.safetensors')), `${name}: no model written`);
  }
  const t2t = path.join(ROOT, 'test', 'fixtures', 'tf-checkpoint-t2t');
  await t.rejects(importTFCheckpoint(t2t, path.join(root, 'x')), /not a GPT-2 checkpoint: no variables "model\/wte" and "model\/wpe" \(it holds "global_step"/);
  await t.rejects(importTFCheckpoint(TINY, path.join(root, 'y')), /already a Hugging Face model folder/);

  // A data shard damaged after the index was written: the crc32c catches it mid-import; nothing lands.
  const src = writeRelease(path.join(root, 'damaged'));
  const ckpt = openTFCheckpoint(path.join(src, 'model.ckpt'));
  const victim = ckpt.tensor('model/h1/mlp/c_proj/w');
  ckpt.close();
  const shard = path.join(src, `model.ckpt.data-0000${victim.shard}-of-00002`);
  const bytes = fs.readFileSync(shard);
  bytes[victim.offset + 100] ^= 0x20;
  fs.writeFileSync(shard, bytes);
  await t.rejects(importTFCheckpoint(src, path.join(root, 'damaged-out')), /data-0000\d-of-00002: variable "model\/h1\/mlp\/c_proj\/w" \(bytes \d+\.\.\d+\) fails its crc32c check/);
  t.notOk(fs.existsSync(path.join(root, 'damaged-out')), 'no partial file left, nor the folder made for it');
});

t.test('bin/import-tf', async (t) => {
  const root = t.testdir();
  const src = writeRelease(path.join(root, '124M'));
  const out = path.join(root, 'tiny');
  const ok = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'import-tf'), src, out], { encoding: 'utf8' });
  t.equal(ok.status, 0, ok.stderr);
  t.match(ok.stderr, /model\.ckpt -> .*tiny: 28 tensors \(2 layers, 4 heads, 64 channels, context 64, vocabulary 256\); skipped 58 training variables/);
  sameTensors(t, path.join(out, 'model.safetensors'), path.join(TINY, 'model.safetensors'));
  const list = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'import-tf'), '--list', src], { encoding: 'utf8' });
  t.equal(list.status, 0);
  t.match(list.stdout, /^model\/h0\/attn\/c_attn\/w\tDT_FLOAT\t\[1, 64, 192\]$/m);
  t.match(list.stderr, /86 variables in 2 shard\(s\), every crc32c checked/);
  const bad = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'import-tf'), path.join(root, 'nowhere'), out], { encoding: 'utf8' });
  t.equal(bad.status, 1);
  t.match(bad.stderr, /^import-tf: .*nowhere: no such folder\n$/);
});

// The engine is written beside this module; this runs as soon as lib/engine/model.ts exists.
const MODEL_JS = path.join(ROOT, 'dist', 'lib', 'engine', 'model.js');
t.test('the imported model gives the same logits as the safetensors one', { skip: !fs.existsSync(MODEL_JS) && 'lib/engine/model.ts is not built yet' }, async (t) => {
  interface LoadedModel {
    forward(inputs: Int32Array, targets: Int32Array | null, B: number, T: number, logitsOut?: Float32Array): Promise<number>;
    dispose(): void;
  }
  const { Model } = require(MODEL_JS) as { Model: { load(dir: string, options?: object): Promise<LoadedModel> } };
  const src = writeRelease(path.join(t.testdir(), '124M'));
  await importTFCheckpoint(src, src);
  const T = 16;
  const inputs = Int32Array.from({ length: T }, (_, i) => (i * 37 + 11) % 256);
  const logits = async (dir: string): Promise<Float32Array> => {
    const model = await Model.load(dir, { threads: 1, trainable: false });
    const out = new Float32Array(T * 256);
    await model.forward(inputs, null, 1, T, out);
    model.dispose();
    return out;
  };
  const [a, b] = [await logits(src), await logits(TINY)];
  t.ok(a.some((x) => x !== 0), 'non-trivial logits');
  t.same(Buffer.from(a.buffer), Buffer.from(b.buffer), 'bit-identical logits');
});
