// A PEFT LoRA adapter loaded into a base (Model.load's `adapter`): the same logits as bin/merge-lora's merged folder
// and as the base with W + scaling * A^T B^T computed here, in every weight type (f32, f16 and bf16 widened before the
// delta is added, q8_0 quantizing the merged values) and from a GGUF base; lora_B = 0 changes nothing; bin/merge-lora's
// --help, its refusal of an existing folder, and --force.
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { chatTemplate } from '../../lib/data/chat_format';
import { Model } from '../../lib/engine/model';
import { writeGguf } from '../../lib/formats/gguf';
import { f32ToBf16, f32ToF16, openSafetensors, writeSafetensors } from '../../lib/formats/safetensors';
import { validateServerConfig } from '../../lib/server/config';
import { loadTokenizer } from '../../lib/tokenizer';
import { trainedAudiences } from '../../lib/formats/chat_record';
import { maxAbsDiff } from '../engine/helpers';
import { CONFIG, type Factors, allLogits, mergedWeight, peftConfig, randomFactors, saveBase, writeRawAdapter } from './helpers';
import { runCommand } from '../helpers/run_command';

const work = t.testdir({});
let base = '';
// r 4 and lora_alpha 16 (scaling 4), but rank 2 for mlp.c_fc (rank_pattern) and alpha 8 for attn.c_proj (alpha_pattern,
// which does not touch mlp.c_proj): "c_proj" targets both.
const CONFIG_FIELDS = { r: 4, lora_alpha: 16, target_modules: ['c_attn', 'c_proj', 'c_fc'], rank_pattern: { c_fc: 2 }, alpha_pattern: { 'attn.c_proj': 8 } };
const factors: Factors[] = [];
const scalings = new Map<string, number>();
let adapter = '';

t.before(async () => {
  base = await saveBase(path.join(work, 'base'));
  let seed = 10;
  for (let layer = 0; layer < CONFIG.nLayer; layer++) {
    for (const kind of ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj']) {
      const module = `h.${layer}.${kind}`;
      factors.push(randomFactors(module, kind === 'mlp.c_fc' ? 2 : 4, CONFIG.nEmbd, seed++));
      scalings.set(module, kind === 'mlp.c_fc' ? 16 / 2 : kind === 'attn.c_proj' ? 8 / 4 : 16 / 4);
    }
  }
  adapter = writeRawAdapter(path.join(work, 'adapter'), peftConfig(CONFIG_FIELDS), factors);
});

// The base's weights with the adapter merged by mergedWeight, set into a model loaded from `dir`.
async function mergedHere(dir: string, merges: readonly Factors[], scalingOf: (module: string) => number): Promise<Model> {
  const model = await Model.load(dir, { device: 'cpu', trainable: false });
  for (const f of merges) model.setParam(`${f.module}.weight`, mergedWeight(model.getParam(`${f.module}.weight`), f, scalingOf(f.module)));
  return model;
}

t.test('an adapter gives the logits of bin/merge-lora\'s folder, bit for bit, and of the merge computed here, within 1e-5', async (t) => {
  const baseStarted = process.hrtime.bigint();
  const plain = await Model.load(base, { device: 'cpu', trainable: false });
  const baseMs = Number(process.hrtime.bigint() - baseStarted) / 1e6;
  const started = process.hrtime.bigint();
  const loaded = await Model.load(base, { device: 'cpu', trainable: false, adapter });
  const adapterMs = Number(process.hrtime.bigint() - started) / 1e6;
  t.comment(`load at ${JSON.stringify(CONFIG)}: base ${baseMs.toFixed(1)} ms, base + adapter ${adapterMs.toFixed(1)} ms`);
  t.equal(loaded.adapter?.dir, adapter, 'the model says which adapter it carries');
  t.same([loaded.adapter?.config.r, loaded.adapter?.config.alpha, loaded.adapter?.config.rankPattern], [4, 16, { c_fc: 2 }]);
  t.equal(plain.adapter, null);

  const out = path.join(work, 'merged');
  const merge = runCommand('merge-lora', [base, adapter, out]);
  t.equal(merge.status, 0, merge.stderr);
  t.match(merge.stderr, /model\.safetensors/, 'a progress line');
  t.match(merge.stderr, new RegExp(`-> ${out}: LoRA of r 4, lora_alpha 16, target_modules \\["c_attn","c_proj","c_fc"\\]\\n$`));
  t.same(fs.readdirSync(out).sort(), ['config.json', 'merges.txt', 'model.safetensors', 'tokenizer_config.json', 'vocab.json'], 'a plain model folder with the base\'s vocabulary');
  t.same(fs.readdirSync(work).filter((f) => f.startsWith('.')), [], 'no temporary folder left behind');
  const merged = await Model.load(out, { device: 'cpu', trainable: false });
  const independent = await mergedHere(base, factors, (m) => scalings.get(m) as number);

  const [withAdapter, fromFolder, fromHere, ofBase] = [await allLogits(loaded), await allLogits(merged), await allLogits(independent), await allLogits(plain)];
  t.equal(maxAbsDiff(withAdapter, fromFolder), 0, 'adapter = merged folder, bit for bit');
  const diff = maxAbsDiff(withAdapter, fromHere);
  t.ok(diff <= 1e-5, `adapter vs merged here: max |diff| ${diff.toExponential(2)}`);
  t.ok(maxAbsDiff(withAdapter, ofBase) > 1e-2, 'and the adapter changes the logits');
  for (const m of [loaded, plain, merged, independent]) m.dispose();
});

t.test('use_rslora scales by lora_alpha / sqrt(r); a regex target_modules adapts only what it matches', async (t) => {
  const only = factors.filter((f) => /^h\.1\.mlp\./.test(f.module)).map((f) => randomFactors(f.module, 4, CONFIG.nEmbd, 77));
  const dir = writeRawAdapter(path.join(work, 'rslora'), peftConfig({ r: 4, lora_alpha: 6, use_rslora: true, target_modules: '.*\\.h\\.1\\.mlp\\.c_(fc|proj)' }), only);
  const loaded = await Model.load(base, { device: 'cpu', trainable: false, adapter: dir });
  const independent = await mergedHere(base, only, () => 6 / Math.sqrt(4));
  const diff = maxAbsDiff(await allLogits(loaded), await allLogits(independent));
  t.ok(diff <= 1e-5, `max |diff| ${diff.toExponential(2)}`);
  t.same(loaded.getParam('h.0.mlp.c_fc.weight'), independent.getParam('h.0.mlp.c_fc.weight'), 'layer 0 untouched');
  loaded.dispose();
  independent.dispose();
});

t.test('lora_B = 0, as PEFT initialises it, leaves the logits bit for bit', async (t) => {
  const zero = factors.map((f) => ({ ...f, b: new Float32Array(f.b.length) }));
  const dir = writeRawAdapter(path.join(work, 'zero'), peftConfig(CONFIG_FIELDS), zero);
  for (const weightDtype of ['f32', 'f16', 'q8_0'] as const) {
    const loaded = await Model.load(base, { device: 'cpu', trainable: false, weightDtype, adapter: dir });
    const plain = await Model.load(base, { device: 'cpu', trainable: false, weightDtype });
    t.equal(maxAbsDiff(await allLogits(loaded), await allLogits(plain)), 0, weightDtype);
    loaded.dispose();
    plain.dispose();
  }
});

// The base's model.safetensors rewritten with every tensor in `dtype`.
async function baseIn(dtype: 'F16' | 'BF16'): Promise<string> {
  const dir = await saveBase(path.join(work, `base-${dtype}`));
  const file = path.join(dir, 'model.safetensors');
  const st = openSafetensors(file);
  const tensors = st.tensors.map((e) => {
    const values = st.readF32(e);
    const half = dtype === 'F16' ? f32ToF16(values) : f32ToBf16(values);
    return { name: e.name, dtype, shape: e.shape, data: () => half };
  });
  st.close();
  await writeSafetensors(file, tensors);
  return dir;
}

// Loaded with the adapter in a weight type, against bin/merge-lora's folder of the same base loaded in that type:
// the same merged float32 values stored the same way, so the same logits bit for bit.
async function sameAsMerged(t: Test, baseDir: string, weightDtype: 'f32' | 'f16' | 'bf16' | 'q8_0'): Promise<void> {
  const out = path.join(work, `merged-${path.basename(baseDir)}-${weightDtype}`);
  const merge = runCommand('merge-lora', [baseDir, adapter, out]);
  t.equal(merge.status, 0, merge.stderr);
  const loaded = await Model.load(baseDir, { device: 'cpu', trainable: false, weightDtype, adapter });
  const merged = await Model.load(out, { device: 'cpu', trainable: false, weightDtype });
  t.equal(maxAbsDiff(await allLogits(loaded), await allLogits(merged)), 0, `${path.basename(baseDir)} as ${weightDtype}: adapter = merged folder, bit for bit`);
  loaded.dispose();
  merged.dispose();
}

t.test('q8_0 with an adapter is q8_0 of the merged model', async (t) => {
  await sameAsMerged(t, base, 'q8_0');
});

t.test('16-bit bases: their slabs widen to float32 before the delta is added', async (t) => {
  await sameAsMerged(t, await baseIn('F16'), 'f16');
  await sameAsMerged(t, await baseIn('BF16'), 'bf16');
  await sameAsMerged(t, await baseIn('F16'), 'f32');
});

t.test('a GGUF base takes the adapter as its safetensors would', async (t) => {
  const dir = path.join(work, 'gguf');
  const model = await Model.load(base, { device: 'cpu', trainable: false });
  await writeGguf(path.join(dir, 'model.gguf'), model, loadTokenizer(base).vocab, { weightType: 'f32', name: 'base' });
  model.dispose();
  const fromGguf = await Model.load(dir, { device: 'cpu', trainable: false, adapter });
  const fromSafetensors = await Model.load(base, { device: 'cpu', trainable: false, adapter });
  t.equal(maxAbsDiff(await allLogits(fromGguf), await allLogits(fromSafetensors)), 0, 'f32 GGUF = safetensors, with the adapter');
  fromGguf.dispose();
  fromSafetensors.dispose();
  const out = path.join(work, 'merged-gguf');
  const merge = runCommand('merge-lora', [dir, adapter, out]);
  t.equal(merge.status, 0, merge.stderr);
  t.same(fs.readdirSync(out).sort(), ['config.json', 'merges.txt', 'model.safetensors', 'tokenizer_config.json', 'vocab.json'], 'the GGUF\'s vocabulary written out as files');
  t.same(loadTokenizer(out).encode('Hello there', { allowSpecial: false }), loadTokenizer(base).encode('Hello there', { allowSpecial: false }), 'the same tokens');
  for (const weightType of ['f16', 'q8_0'] as const) {
    const typed = path.join(work, `gguf-${weightType}`);
    const source = await Model.load(base, { device: 'cpu', trainable: false });
    await writeGguf(path.join(typed, 'model.gguf'), source, loadTokenizer(base).vocab, { weightType, name: 'base' });
    source.dispose();
    await sameAsMerged(t, typed, weightType);
  }
});

t.test('bin/merge-lora of a chat run\'s adapter writes a chat model, which bin/train takes for a model, not a checkpoint', async (t) => {
  const run = path.join(work, 'chat-run');
  fs.cpSync(adapter, path.join(run, 'model-5'), { recursive: true });
  const audiences = [{ audience: 'mom', sent: 9, received: 8 }, { audience: 'dad', sent: 2, received: 1 }];
  fs.writeFileSync(path.join(run, 'model-5', 'state.json'), JSON.stringify({ step: 5, audiences }));
  fs.writeFileSync(path.join(run, 'latest'), 'model-5\n');
  const out = path.join(work, 'chat-merged');
  const merge = runCommand('merge-lora', [base, run, out]);
  t.equal(merge.status, 0, merge.stderr);
  t.same(trainedAudiences(out), ['mom', 'dad'], 'the audiences its run trained on');
  t.notOk(fs.existsSync(path.join(out, 'state.json')), 'no training state');
  t.equal(JSON.parse(fs.readFileSync(path.join(out, 'tokenizer_config.json'), 'utf8')).chat_template, chatTemplate('mom'));
  t.match(validateServerConfig({ models: [{ key: 'm', restore_from: out }] }, 'cfg', work).models[0], { promptFormat: 'chat', audience: 'mom', audiences: ['mom', 'dad'] }, 'served as a chat model');
  const generated = runCommand('generate', ['--restore_from', out, '--prompt', 'Hi', '--length', '2', '--seed', '1']);
  t.equal(generated.status, 0, generated.stderr);
  t.match(generated.stderr, 'a chat model: each sample stops at <EOM>', 'bin/generate stops at <EOM>');
  const dataset = path.join(work, 'chat.train');
  fs.writeFileSync(dataset, '1|mom|Hi <EOM>\n0|mom|Hello <EOM>\n'.repeat(20));
  const trained = runCommand('train', ['--dataset', dataset, '--restore_from', out, '--checkpoint_dir', path.join(work, 'checkpoint'), '--run_name', 'on-merged', '--stop_after', '1', '--sample_every', '0', '--batch_size', '1', '--device', 'cpu']);
  t.equal(trained.status, 0, trained.stderr);
  t.match(trained.stdout + trained.stderr, `starting from the weights of ${out} at step 0`, 'bin/train starts a new run from its weights');
});

t.test('bin/merge-lora: --help, an existing <out> refused unless --force, the base, a folder holding it or the adapter never', async (t) => {
  const help = runCommand('merge-lora', ['--help']);
  t.equal(help.status, 0);
  t.match(help.stdout, /merge-lora <base> <adapter> <out>/);
  t.match(help.stdout, /--force\s+replace <out> if it exists/);

  const out = path.join(work, 'existing');
  fs.mkdirSync(out);
  fs.writeFileSync(path.join(out, 'keep.txt'), 'mine');
  const refused = runCommand('merge-lora', [base, adapter, out]);
  t.equal(refused.status, 1);
  t.equal(refused.stderr, `merge-lora: ${out} exists; give --force to replace it\n`);
  t.same(fs.readdirSync(out), ['keep.txt'], 'left as it was');

  const forced = runCommand('merge-lora', [base, adapter, out, '--force']);
  t.equal(forced.status, 0, forced.stderr);
  t.same(fs.readdirSync(out).sort(), ['config.json', 'merges.txt', 'model.safetensors', 'tokenizer_config.json', 'vocab.json'], 'replaced whole');
  t.same(fs.readdirSync(work).filter((f) => f.startsWith('.')), [], 'no temporary or old folder left behind');

  const onBase = runCommand('merge-lora', [base, adapter, base, '--force']);
  t.equal(onBase.status, 1);
  t.equal(onBase.stderr, `merge-lora: ${base} is the base model itself; write the merged model to another folder\n`);
  const aboveBase = runCommand('merge-lora', [base, adapter, work, '--force']);
  t.equal(aboveBase.status, 1);
  t.equal(aboveBase.stderr, `merge-lora: ${work} holds the base model, ${base}, which replacing it would delete; write the merged model to another folder\n`);
  const onAdapter = runCommand('merge-lora', [base, adapter, path.join(adapter, '.'), '--force']);
  t.equal(onAdapter.stderr, `merge-lora: ${adapter} is the adapter itself; write the merged model to another folder\n`);
  t.ok(fs.existsSync(path.join(base, 'model.safetensors')) && fs.existsSync(path.join(adapter, 'adapter_model.safetensors')), 'both as they were');

  // A training run's folder stands for its latest checkpoint, as --adapter takes it; an adapter that names another
  // base than the one given is merged, with a warning.
  const run = path.join(work, 'run');
  fs.cpSync(adapter, path.join(run, 'model-3'), { recursive: true });
  fs.writeFileSync(path.join(run, 'model-3', 'state.json'), '{}');  // what makes a checkpoint complete
  fs.writeFileSync(path.join(run, 'latest'), 'model-3\n');
  const config = JSON.parse(fs.readFileSync(path.join(run, 'model-3', 'adapter_config.json'), 'utf8'));
  fs.writeFileSync(path.join(run, 'model-3', 'adapter_config.json'), JSON.stringify({ ...config, base_model_name_or_path: out }));
  const fromRun = runCommand('merge-lora', [base, run, path.join(work, 'from-run')]);
  t.equal(fromRun.status, 0, fromRun.stderr);
  t.ok(fs.readFileSync(path.join(work, 'from-run', 'model.safetensors')).equals(fs.readFileSync(path.join(out, 'model.safetensors'))), 'the run folder merges as its checkpoint');
  const otherBase = `warning: the adapter ${path.join(run, 'model-3')} was trained over ${out}, not ${base}\n`;
  t.match(fromRun.stderr, `merge-lora: ${otherBase}`);
  t.notMatch(forced.stderr, /warning/, 'none for the base it names');
  const generated = runCommand('generate', ['--model', base, '--adapter', run, '--prompt', 'Hi', '--length', '2', '--seed', '1']);
  t.equal(generated.status, 0, generated.stderr);
  t.match(generated.stderr, `generate: ${otherBase}`, 'bin/generate says so too');

  const missing = runCommand('merge-lora', [base]);
  t.not(missing.status, 0);
  t.match(missing.stderr, /give the base model, the adapter and the folder to write/);
});
