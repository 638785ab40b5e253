// What loading a model refuses, and how it says so: weights that are NaN or infinite (by tensor and element), a
// config whose sizes the machine cannot hold (by field, with the bytes), a model.safetensors that is a folder, and
// a vocabulary-less folder of a model GPT-2's vocabulary does not fit (without a vocabulary, GPT-2's is used with
// a warning). A checkpoint sharded as transformers writes a large model loads as the same model in one file does;
// pickle weights are refused as such.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { inspectModelFolder } from '../../lib/formats/model_folder';
import { f32ToF16, openSafetensors, writeSafetensors } from '../../lib/formats/safetensors';
import { checkModelFiles } from '../../lib/server/engine';
import { randomTokens } from '../engine/helpers';

const ROOT = path.join(__dirname, '..', '..', '..');
const TINY_VOCAB = path.join(ROOT, 'test', 'fixtures', 'tiny-vocab');
const CONFIG = { nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 64, vocabSize: 457 };

function generate(args: string[]): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'generate'), '--device', 'cpu', '--length', '4', '--seed', '1', '--prompt', 'hi', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

// A tiny model saved to `dir`, with the tiny vocabulary unless `vocab` is false.
async function saveTiny(dir: string, vocab = true): Promise<string> {
  const model = Model.create(CONFIG, { seed: 3, device: 'cpu' });
  await model.save(dir);
  model.dispose();
  if (vocab) for (const f of ['encoder.json', 'vocab.bpe']) fs.copyFileSync(path.join(TINY_VOCAB, f), path.join(dir, f));
  return dir;
}

// Writes the weights of `file` again in `dtype`, after `edit` had its way with each tensor's values as stored
// (setParam, which refuses what is not finite, cannot put such values there).
async function rewriteWeights(file: string, dtype: 'F32' | 'F16', edit: (name: string, data: Float32Array | Uint16Array) => void): Promise<void> {
  const st = openSafetensors(file);
  const tensors = st.tensors.map((e) => {
    const data = dtype === 'F32' ? st.readF32(e) : f32ToF16(st.readF32(e));
    edit(e.name, data);
    return { name: e.name, dtype, shape: e.shape, data: () => data };
  });
  st.close();
  await writeSafetensors(file, tensors);
}

function escaped(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}

t.test('a NaN or an infinity in the weights is refused, with the tensor and the element named', async (t) => {
  const dir = await saveTiny(path.join(t.testdir(), 'nan'));
  const file = path.join(dir, 'model.safetensors');
  await rewriteWeights(file, 'F32', (name, w) => {
    if (name === 'h.0.attn.c_attn.weight') w[123] = NaN;
  });
  await t.rejects(Model.load(dir, { device: 'cpu' }), { message: `${file}: tensor "h.0.attn.c_attn.weight" has a NaN at element 123` });
  const generated = generate(['--restore_from', dir]);
  t.equal(generated.status, 1, 'bin/generate fails rather than print "?????"');
  t.equal(generated.stderr.trim().split('\n').pop(), `generate: ${file}: tensor "h.0.attn.c_attn.weight" has a NaN at element 123`);
  t.notMatch(generated.stdout, /SAMPLE/);

  // The same weights in float16, with -Infinity in wpe.weight instead.
  await rewriteWeights(file, 'F16', (name, half) => {
    if (name === 'h.0.attn.c_attn.weight') half[123] = 0;
    if (name === 'wpe.weight') half[7] = 0xfc00;
  });
  await t.rejects(Model.load(dir, { device: 'cpu', trainable: false, weightDtype: 'f16' }), { message: `${file}: tensor "wpe.weight" has -Infinity at element 7` });
});

t.test('a config the machine cannot hold names the field and the memory it would need, before allocating', async (t) => {
  const dir = await saveTiny(path.join(t.testdir(), 'huge'));
  const configFile = path.join(dir, 'config.json');
  const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(configFile, JSON.stringify({ ...config, n_positions: 1_000_000_000, n_ctx: 1_000_000_000 }));
  const message = new RegExp(`^${escaped(configFile)}: field "n_positions" is 1000000000, larger than in any GPT-2 \\(1024\\): the model would need [\\d.]+ GiB of memory \\(weights [\\d.]+ GiB, activations for 1 x 1000000000 tokens [\\d.]+ GiB\\), more than this machine's [\\d.]+ GiB$`);
  await t.rejects(Model.load(dir, { device: 'cpu', trainable: false }), { message });
  const generated = generate(['--restore_from', dir]);
  t.equal(generated.status, 1);
  t.match(generated.stderr, /generate: .*config\.json: field "n_positions" is 1000000000/);
  t.notMatch(generated.stderr, /out of memory/);
  t.throws(() => Model.create({ ...CONFIG, nEmbd: 4_000_000 }, { device: 'cpu' }), /^Model\.create config: field "nEmbd" is 4000000, larger than in any GPT-2 \(1600\): the model would need [\d.]+ GiB of memory \(weights [\d.]+ GiB, gradients and optimizer state [\d.]+ GiB, activations/);
});

t.test('a model.safetensors that is a folder is named as such', async (t) => {
  const dir = await saveTiny(path.join(t.testdir(), 'folder'));
  const file = path.join(dir, 'model.safetensors');
  fs.rmSync(file);
  fs.mkdirSync(file);
  await t.rejects(Model.load(dir, { device: 'cpu' }), { message: `${file}: a folder, where the weights should be one safetensors file` });
});

t.test("a folder without a vocabulary: GPT-2's, with a warning, for a model of GPT-2's size; refused for another", async (t) => {
  const root = t.testdir();
  const gpt2Sized = path.join(root, 'gpt2-sized');
  const model = Model.create({ ...CONFIG, nEmbd: 16, nHead: 2, vocabSize: 50257 }, { seed: 1, device: 'cpu' });
  await model.save(gpt2Sized);
  model.dispose();
  const warned = generate(['--restore_from', gpt2Sized]);
  t.equal(warned.status, 0, warned.stderr);
  t.match(warned.stderr, `warning: ${gpt2Sized} has no vocabulary (encoder.json + vocab.bpe, vocab.json + merges.txt, or tokenizer.json): using GPT-2's`);
  t.match(warned.stdout, /SAMPLE 1/);

  const other = await saveTiny(path.join(root, 'other'), false);
  const refused = generate(['--restore_from', other]);
  t.equal(refused.status, 1);
  t.match(refused.stderr, `generate: ${other} has no vocabulary (encoder.json + vocab.bpe, vocab.json + merges.txt, or tokenizer.json), and its vocab_size is 457, not GPT-2's 50257`);
});

async function logitsOf(dir: string): Promise<Float32Array> {
  const model = await Model.load(dir, { device: 'cpu', trainable: false });
  const logits = new Float32Array(2 * 16 * CONFIG.vocabSize);
  await model.forward(randomTokens(2 * 16, CONFIG.vocabSize, 7), null, 2, 16, logits);
  model.dispose();
  return logits;
}

t.test("a checkpoint sharded as transformers' save_pretrained writes it loads as the same model in one file", async (t) => {
  const root = t.testdir();
  const whole = await saveTiny(path.join(root, 'whole'));
  const dir = path.join(root, 'sharded');
  fs.mkdirSync(dir);
  for (const f of ['config.json', 'encoder.json', 'vocab.bpe']) fs.copyFileSync(path.join(whole, f), path.join(dir, f));
  // Split as transformers splits, with its "transformer." names, and a stale tensor in a shard that the index does
  // not name (not read: it would be refused as no GPT-2 parameter).
  const st = openSafetensors(path.join(whole, 'model.safetensors'));
  const names = st.tensors.map((e) => e.name);
  const shards = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  const shardOf = (name: string): string => shards[names.indexOf(name) < names.length / 2 ? 0 : 1];
  for (const shard of shards) {
    const held = st.tensors.filter((e) => shardOf(e.name) === shard);
    const tensors = held.map((e) => ({ name: `transformer.${e.name}`, dtype: e.dtype, shape: e.shape, data: () => st.readF32(e) }));
    await writeSafetensors(path.join(dir, shard), [...tensors, { name: 'stale', dtype: 'F32', shape: [1], data: () => new Float32Array(1) }]);
  }
  st.close();
  const index = path.join(dir, 'model.safetensors.index.json');
  const weightMap = Object.fromEntries(names.map((name) => [`transformer.${name}`, shardOf(name)]));
  fs.writeFileSync(index, JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));

  const folder = inspectModelFolder(dir);
  t.match(folder, { kind: 'huggingface', weights: index });
  t.doesNotThrow(() => checkModelFiles(folder), 'the server\'s check before loading passes');
  const [a, b] = [await logitsOf(whole), await logitsOf(dir)];
  t.ok(Buffer.from(a.buffer).equals(Buffer.from(b.buffer)), 'the same logits, bit for bit');

  // The index names a tensor that its shard lacks; then a shard that is not there.
  fs.writeFileSync(index, JSON.stringify({ weight_map: { ...weightMap, 'transformer.wte.weight': shards[1 - shards.indexOf(weightMap['transformer.wte.weight'])] } }));
  const other = path.join(dir, shards[1 - shards.indexOf(weightMap['transformer.wte.weight'])]);
  await t.rejects(Model.load(dir, { device: 'cpu' }), { message: `${other}: no tensor "transformer.wte.weight", which ${index}'s weight_map puts there` });
  t.throws(() => checkModelFiles(inspectModelFolder(dir)), { message: `${other}: no tensor "transformer.wte.weight", which ${index}'s weight_map puts there` });
  fs.writeFileSync(index, JSON.stringify({ weight_map: weightMap }));
  fs.rmSync(path.join(dir, shards[1]));
  const missing = Object.keys(weightMap).find((name) => weightMap[name] === shards[1]);
  await t.rejects(Model.load(dir, { device: 'cpu' }), { message: `${path.join(dir, shards[1])}: missing: ${index} names it the shard of tensor "${missing}" (an interrupted download?)` });
});

t.test('a folder of pickle weights (pytorch_model.bin) is refused as such, with how to convert it', async (t) => {
  const dir = await saveTiny(path.join(t.testdir(), 'pickle'));
  fs.renameSync(path.join(dir, 'model.safetensors'), path.join(dir, 'pytorch_model.bin'));
  await t.rejects(Model.load(dir, { device: 'cpu' }), {
    message: `${dir}: has pytorch_model.bin, PyTorch's pickle format, whose weights dixie does not read (loading a pickle can run code): convert it with transformers' save_pretrained(out, safe_serialization=True), which writes model.safetensors`,
  });
});
