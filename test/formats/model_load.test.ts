// What loading a model refuses, and how it says so: weights that are NaN or infinite (by tensor and element), a
// config whose sizes the machine cannot hold (by field, with the bytes), a model.safetensors that is a folder, and
// a vocabulary-less folder of a model GPT-2's vocabulary does not fit (without a vocabulary, GPT-2's is used with
// a warning).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { f32ToF16, openSafetensors, writeSafetensors } from '../../lib/formats/safetensors';

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
  t.match(warned.stderr, `warning: ${gpt2Sized} has no vocabulary (encoder.json + vocab.bpe, or vocab.json + merges.txt): using GPT-2's`);
  t.match(warned.stdout, /SAMPLE 1/);

  const other = await saveTiny(path.join(root, 'other'), false);
  const refused = generate(['--restore_from', other]);
  t.equal(refused.status, 1);
  t.match(refused.stderr, `generate: ${other} has no vocabulary (encoder.json + vocab.bpe, or vocab.json + merges.txt), and its vocab_size is 457, not GPT-2's 50257`);
});
