// Model folders: which layout a folder holds, its config with errors that name the field, its vocabulary,
// and how model names resolve under models/ (or DIXIE_MODELS_DIR), with a how-to-get-it error when missing.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { findVocabulary, inspectModelFolder, readHFConfig, readHparams, tfCheckpointPrefix } from '../../lib/formats/model_folder';
import { modelDir, modelsDir, releaseName, resolveModel } from '../../lib/formats/resolve_model';

const FIXTURES = path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures');
const HPARAMS = { n_vocab: 256, n_ctx: 64, n_embd: 64, n_head: 4, n_layer: 2 };

function write(dir: string, files: Record<string, string | object>): string {
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    fs.writeFileSync(path.join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return dir;
}

t.test('a Hugging Face folder: config and vocabulary', async (t) => {
  const dir = write(path.join(t.testdir(), 'hf'), { 'vocab.json': '{}', 'merges.txt': '#version: 0.2\n' });
  fs.copyFileSync(path.join(FIXTURES, 'gpt2-tiny', 'config.json'), path.join(dir, 'config.json'));
  fs.copyFileSync(path.join(FIXTURES, 'gpt2-tiny', 'model.safetensors'), path.join(dir, 'model.safetensors'));
  const folder = inspectModelFolder(dir);
  t.same(folder, {
    dir, kind: 'huggingface', config: { nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 64, vocabSize: 256 },
    configFile: path.join(dir, 'config.json'), weights: path.join(dir, 'model.safetensors'),
    vocab: { encoder: path.join(dir, 'vocab.json'), merges: path.join(dir, 'merges.txt') },
  });
  fs.rmSync(path.join(dir, 'config.json'));
  t.throws(() => inspectModelFolder(dir), /hf: has model\.safetensors but no config\.json/);
  fs.rmSync(path.join(dir, 'model.safetensors'));
  write(dir, { 'config.json': { n_layer: 1 } });
  t.throws(() => inspectModelFolder(dir), /hf: has config\.json but no model\.safetensors/);

  // A file there that cannot be looked at is named as such, not reported missing.
  fs.symlinkSync('model.safetensors', path.join(dir, 'model.safetensors'));
  const weights = path.join(dir, 'model.safetensors');
  t.throws(() => inspectModelFolder(dir), { message: new RegExp(`^${weights.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot be read: ELOOP: `) });
  fs.rmSync(weights);
  fs.copyFileSync(path.join(FIXTURES, 'gpt2-tiny', 'model.safetensors'), weights);
  fs.rmSync(path.join(dir, 'config.json'));
  fs.symlinkSync('config.json', path.join(dir, 'config.json'));
  t.throws(() => inspectModelFolder(dir), { message: new RegExp(`: cannot be read: ELOOP: .*config\\.json`) });
});

t.test('config.json and hparams.json errors name the field and the file', async (t) => {
  const dir = t.testdir();
  const base = { model_type: 'gpt2', n_layer: 12, n_head: 12, n_embd: 768, n_positions: 1024, n_ctx: 1024, vocab_size: 50257 };
  const cfg = (name: string, json: object | string): string => path.join(write(dir, { [name]: json }), name);
  t.same(readHFConfig(cfg('a.json', base)), { nLayer: 12, nHead: 12, nEmbd: 768, nCtx: 1024, vocabSize: 50257 });
  t.same(readHFConfig(cfg('b.json', { ...base, n_positions: undefined, n_ctx: 512 })).nCtx, 512, 'n_ctx when n_positions is absent');
  t.same(readHFConfig(cfg('c.json', { ...base, n_positions: 256 })).nCtx, 256, 'n_positions wins');
  const bad: [object | string, RegExp][] = [
    [{ ...base, n_head: undefined }, /d1\.json: missing field "n_head"/],
    [{ ...base, n_embd: '768' }, /d2\.json: field "n_embd" must be a positive integer, got "768"/],
    [{ ...base, n_layer: 0 }, /d3\.json: field "n_layer" must be a positive integer, got 0/],
    [{ ...base, n_positions: undefined, n_ctx: undefined }, /d4\.json: missing field "n_ctx"/],
    [{ ...base, n_head: 7 }, /d5\.json: field "n_embd" \(768\) must be a multiple of "n_head" \(7\)/],
    [{ ...base, model_type: 'llama' }, /d6\.json: field "model_type" is "llama"/],
    ['{"n_layer": 1,', /d7\.json:1:15: not valid JSON/],
    ['[1]', /d8\.json: must be a JSON object/],
  ];
  bad.forEach(([json, message], i) => t.throws(() => readHFConfig(cfg(`d${i + 1}.json`, json)), message));
  t.same(readHparams(cfg('hparams.json', HPARAMS)), { nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 64, vocabSize: 256 });
  t.throws(() => readHparams(cfg('h2.json', { ...HPARAMS, n_vocab: undefined })), /h2\.json: missing field "n_vocab"/);
  t.throws(() => readHFConfig(path.join(dir, 'none.json')), /none\.json: cannot read/);
});

t.test("OpenAI's release layout and a TensorFlow training run folder", async (t) => {
  const root = t.testdir();
  const release = write(path.join(root, '124M'), {
    'hparams.json': HPARAMS, 'encoder.json': '{}', 'vocab.bpe': '#version: 0.2\n', checkpoint: 'model_checkpoint_path: "model.ckpt"\nall_model_checkpoint_paths: "model.ckpt"\n',
    'model.ckpt.index': '', 'model.ckpt.data-00000-of-00001': '', 'model.ckpt.meta': '',
  });
  t.match(inspectModelFolder(release), {
    kind: 'openai-release', config: { nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 64, vocabSize: 256 }, weights: path.join(release, 'model.ckpt'),
    vocab: { encoder: path.join(release, 'encoder.json'), merges: path.join(release, 'vocab.bpe') },
  });
  fs.rmSync(path.join(release, 'checkpoint'));
  t.equal(inspectModelFolder(release).weights, path.join(release, 'model.ckpt'), 'the sole .index without a checkpoint file');

  // TensorFlow writes absolute paths into `checkpoint`; a moved run folder still works.
  const run = write(path.join(root, 'checkpoint', 'run1'), {
    checkpoint: 'model_checkpoint_path: "/home/xeb/dixie/checkpoint/run1/model-1234"\nall_model_checkpoint_paths: "/home/xeb/dixie/checkpoint/run1/model-1000"\n',
    'model-1000.index': '', 'model-1234.index': '', 'model-1234.data-00000-of-00001': '',
  });
  t.match(inspectModelFolder(run), { kind: 'tf-run', config: null, configFile: null, weights: path.join(run, 'model-1234'), vocab: null });
  write(run, { checkpoint: 'model_checkpoint_path: "model-999"\n' });
  t.throws(() => tfCheckpointPrefix(run), /run1[/\\]checkpoint:1: names checkpoint "model-999" but .*model-999\.index does not exist/);
  write(run, { checkpoint: 'all_model_checkpoint_paths: "model-1000"\n' });
  t.throws(() => inspectModelFolder(run), /checkpoint: no model_checkpoint_path line/);
  fs.rmSync(path.join(run, 'checkpoint'));
  t.throws(() => inspectModelFolder(run), /several checkpoints \(model-1000\.index, model-1234\.index\) and no `checkpoint` file/);

  const t2t = inspectModelFolder(path.join(FIXTURES, 'tf-checkpoint-t2t'));
  t.match(t2t, { kind: 'tf-run', weights: path.join(FIXTURES, 'tf-checkpoint-t2t', 'model.ckpt-1') }, 'a checkpoint written by TensorFlow');

  const empty = write(path.join(root, 'empty'), { 'notes.txt': 'hi' });
  t.throws(() => inspectModelFolder(empty), /empty: not a model folder: expected config\.json \+ model\.safetensors \(or its shards with model\.safetensors\.index\.json\), .* found notes\.txt/);
  t.throws(() => inspectModelFolder(path.join(root, 'nope')), /nope: no such folder/);
  t.equal(findVocabulary(empty), null);
});

t.test('model names resolve under models/ or DIXIE_MODELS_DIR, and say how to get a missing model', async (t) => {
  const root = t.testdir();
  const saved = process.env.DIXIE_MODELS_DIR;
  t.teardown(() => {
    if (saved === undefined) delete process.env.DIXIE_MODELS_DIR;
    else process.env.DIXIE_MODELS_DIR = saved;
  });
  delete process.env.DIXIE_MODELS_DIR;
  t.equal(modelsDir(), path.resolve('models'), 'models/ under the current folder by default');
  process.env.DIXIE_MODELS_DIR = path.join(root, 'models');
  t.same(['gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl', '355M', 'mom'].map(releaseName), ['124M', '355M', '774M', '1558M', '355M', null]);
  t.equal(modelDir('gpt2'), path.join(root, 'models', '124M'), 'an alias lives under its release name');
  t.equal(modelDir('./x/y'), path.resolve('x/y'), 'a path stays a path');

  t.throws(() => resolveModel('gpt2-large'), /model "gpt2-large" not found: no folder .*models[/\\]774M \(models are looked up in .*; set DIXIE_MODELS_DIR to look elsewhere\); download it with `bin\/download-model 774M`/);
  t.throws(() => resolveModel('mom'), /model "mom" not found: .*`bin\/download-model 124M` \(or 355M, 774M, 1558M\), or convert a TensorFlow checkpoint with `bin\/import-tf <checkpoint folder> .*mom`/);
  t.throws(() => resolveModel(path.join(root, 'elsewhere')), /not found: no folder .*elsewhere; download a GPT-2 release/);
  // where training runs have been saved (run1 has a checkpoint, empty has none), the message names them
  const cwd = process.cwd();
  t.teardown(() => process.chdir(cwd));
  process.chdir(t.testdir({ checkpoint: { chat: { latest: 'model-800\n' }, empty: {}, run1: { latest: 'model-5\n' } } }));
  t.throws(() => resolveModel('gpt2'), /download it with `bin\/download-model 124M`; or name a run trained here: `--model checkpoint\/chat`, `--model checkpoint\/run1`$/);
  t.throws(() => resolveModel('./nowhere'), /<checkpoint folder> [^`]*nowhere`$/, 'not for a path');
  fs.mkdirSync('mine');
  t.throws(() => resolveModel('mine'), /model "mine" not found: no folder .*models[/\\]mine .*; \.\/mine is here: give it as `\.\/mine` to load that$/, 'a folder of the name here');
  process.chdir(cwd);

  const m124 = path.join(root, 'models', '124M');
  fs.mkdirSync(m124, { recursive: true });
  fs.copyFileSync(path.join(FIXTURES, 'gpt2-tiny', 'config.json'), path.join(m124, 'config.json'));
  fs.copyFileSync(path.join(FIXTURES, 'gpt2-tiny', 'model.safetensors'), path.join(m124, 'model.safetensors'));
  t.equal(resolveModel('gpt2').weights, path.join(m124, 'model.safetensors'));
  t.equal(resolveModel('124M').config?.nEmbd, 64);
  t.equal(resolveModel(m124).dir, m124);

  const tf = write(path.join(root, 'models', '355M'), { 'hparams.json': HPARAMS, 'model.ckpt.index': '' });
  t.throws(() => resolveModel('355M'), new RegExp(`holds OpenAI's TensorFlow release \\(model\\.ckpt\\); convert it once with \`bin/import-tf ${tf.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')} `));
});
