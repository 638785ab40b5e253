// Adapters that carry tensors of the base trained whole, as PEFT saves them: modules_to_save (ln_f, or wte and a tied
// lm_head) and biases (bias "all", "lora_only"). Merged (Model.load's `adapter`, bin/merge-lora), each replaces the
// base's tensor, checked against the merge computed here; decoded unmerged, trained on or exported to llama.cpp, such
// an adapter is refused, naming the tensor and the way out; and tensors its config does not ask for, of another shape,
// or an output head trained apart from wte are refused too.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { writeGgufAdapter } from '../../lib/formats/gguf';
import { readPeftAdapter } from '../../lib/formats/peft';
import { bf16ToF32, f32ToBf16, openSafetensors } from '../../lib/formats/safetensors';
import { CONFIG, type Factors, type RawTensor, mergedWeight, peftConfig, peftTensorName, randomFactors, randomValues, saveBase, writeRawAdapter, writeRawSafetensors } from './helpers';
import { runCommand } from '../helpers/run_command';

const work = t.testdir({});
let base = '';
t.before(async () => {
  base = await saveBase(path.join(work, 'base'));
});

const C = CONFIG.nEmbd;
const V = CONFIG.vocabSize;
const factors: Factors[] = [randomFactors('h.0.attn.c_attn', 4, C, 1), randomFactors('h.1.attn.c_attn', 4, C, 2)];
const SCALING = 16 / 4;  // peftConfig's lora_alpha over r

// An adapter of `factors` under PEFT's names, with `whole` beside them.
function adapterWith(name: string, fields: Record<string, unknown>, whole: RawTensor[]): string {
  const dir = writeRawAdapter(path.join(work, name), peftConfig(fields), factors);
  const tensors = factors.flatMap((f): RawTensor[] => [
    { name: peftTensorName(f.module, 'A'), shape: [f.rank, f.inputs], data: f.a },
    { name: peftTensorName(f.module, 'B'), shape: [f.outputs, f.rank], data: f.b },
  ]);
  writeRawSafetensors(path.join(dir, 'adapter_model.safetensors'), [...tensors, ...whole]);
  return dir;
}

const weightsOf = (dir: string): string => path.join(dir, 'adapter_model.safetensors');

// modules_to_save ["ln_f"] and bias "all": ln_f's weight and bias, the bias of an adapted module (under PEFT's
// base_layer) and of one that is not, and the causal mask older transformers saved with them.
const lnWeight = randomValues(C, 21, 1);
const lnBias = randomValues(C, 22);
const cAttnBias = randomValues(3 * C, 23);
const cFcBias = randomValues(4 * C, 24);
const WHOLE: RawTensor[] = [
  { name: 'base_model.model.transformer.ln_f.weight', shape: [C], data: lnWeight },
  { name: 'base_model.model.transformer.ln_f.bias', shape: [C], data: lnBias },
  { name: 'base_model.model.transformer.h.0.attn.c_attn.base_layer.bias', shape: [3 * C], dtype: 'BF16', data: cAttnBias },
  { name: 'base_model.model.transformer.h.1.mlp.c_fc.bias', shape: [4 * C], data: cFcBias },
  { name: 'base_model.model.transformer.h.0.attn.bias', shape: [1, 1, 4, 4], data: new Float32Array(16) },
];

t.test('modules_to_save and trained biases replace the base\'s tensors when merged, in Model.load and bin/merge-lora', async (t) => {
  const adapter = adapterWith('ln-f-bias-all', { modules_to_save: ['ln_f'], bias: 'all' }, WHOLE);
  const plain = await Model.load(base, { device: 'cpu', trainable: false });
  const merged = await Model.load(base, { device: 'cpu', trainable: false, adapter });
  // The file holds the adapted module's bias in bf16.
  const bf16 = (values: Float32Array): Float32Array => bf16ToF32(f32ToBf16(values));
  const expected: [string, Float32Array][] = [
    ['ln_f.weight', lnWeight],
    ['ln_f.bias', lnBias],
    ['h.0.attn.c_attn.bias', bf16(cAttnBias)],
    ['h.1.mlp.c_fc.bias', cFcBias],
    ['h.1.attn.c_attn.bias', plain.getParam('h.1.attn.c_attn.bias')],
    ['h.0.ln_1.weight', plain.getParam('h.0.ln_1.weight')],
    ['wte.weight', plain.getParam('wte.weight')],
    ...factors.map((f): [string, Float32Array] => [`${f.module}.weight`, mergedWeight(plain.getParam(`${f.module}.weight`), f, SCALING)]),
  ];
  for (const [name, values] of expected) {
    const got = merged.getParam(name);
    const worst = got.reduce((w, v, i) => Math.max(w, Math.abs(v - values[i])), 0);
    t.ok(worst <= 1e-6, `${name}: within 1e-6 of the merge computed here (${worst})`);
  }
  t.same(merged.adapter?.config.modulesToSave, ['ln_f']);
  plain.dispose();
  merged.dispose();
  const plain2 = await Model.load(base, { device: 'cpu', trainable: false });

  const out = path.join(work, 'merged');
  const run = runCommand('merge-lora', [base, adapter, out]);
  t.equal(run.status, 0, run.stderr);
  const file = openSafetensors(path.join(out, 'model.safetensors'));
  t.same(file.readF32(file.tensor('ln_f.weight')), lnWeight, 'bin/merge-lora writes the adapter\'s ln_f');
  t.same(file.readF32(file.tensor('h.1.mlp.c_fc.bias')), cFcBias, 'and its trained bias');
  file.close();

  // PEFT before its wrapper's keys were dropped from bias "all"'s also saved ln_f's bias as the wrapper holds it: the
  // base's own and the trained copy, beside the trained one under ln_f's name.
  const older = adapterWith('ln-f-bias-all-older', { modules_to_save: ['ln_f'], bias: 'all' }, [
    ...WHOLE,
    { name: 'base_model.model.transformer.ln_f.original_module.bias', shape: [C], data: plain2.getParam('ln_f.bias') },
    { name: 'base_model.model.transformer.ln_f.modules_to_save.bias', shape: [C], data: lnBias },
  ]);
  const olderMerged = await Model.load(base, { device: 'cpu', trainable: false, adapter: older });
  t.same([olderMerged.getParam('ln_f.weight'), olderMerged.getParam('ln_f.bias')], [lnWeight, lnBias], 'an older PEFT\'s file: the wrapper\'s copies passed over');
  olderMerged.dispose();
  plain2.dispose();

  // bias "lora_only": the biases of the adapted modules alone.
  const loraOnly = adapterWith('lora-only', { bias: 'lora_only' }, [WHOLE[2]]);
  const model = await Model.load(base, { device: 'cpu', trainable: false, adapter: loraOnly });
  t.same(model.getParam('h.0.attn.c_attn.bias'), bf16(cAttnBias), 'bias "lora_only": an adapted module\'s bias');
  model.dispose();
});

t.test('wte and lm_head trained together and equal merge as the tied embedding', async (t) => {
  const wte = randomValues(V * C, 31);
  const adapter = adapterWith('tied', { modules_to_save: ['wte', 'lm_head'] }, [
    { name: 'base_model.model.transformer.wte.weight', shape: [V, C], data: wte },
    { name: 'base_model.model.lm_head.weight', shape: [V, C], data: wte },
  ]);
  const model = await Model.load(base, { device: 'cpu', trainable: false, adapter });
  t.same(model.getParam('wte.weight'), wte);
  model.dispose();
  // Given modules_to_save ["lm_head"] and ensure_weight_tying, PEFT saves the config with the embedding in the head's
  // place and the file with both, the head tied to the embedding's trained copy.
  const tied = adapterWith('ensure-weight-tying', { modules_to_save: ['transformer.wte'], ensure_weight_tying: true }, [
    { name: 'base_model.model.transformer.wte.weight', shape: [V, C], data: wte },
    { name: 'base_model.model.lm_head.weight', shape: [V, C], data: wte },
  ]);
  const tiedModel = await Model.load(base, { device: 'cpu', trainable: false, adapter: tied });
  t.same(tiedModel.getParam('wte.weight'), wte, 'ensure_weight_tying');
  tiedModel.dispose();
  // The head tied to the embedding, a file that holds the two as one tensor holds both.
  const once = adapterWith('ensure-weight-tying-once', { modules_to_save: ['transformer.wte'], ensure_weight_tying: true }, [
    { name: 'base_model.model.transformer.wte.weight', shape: [V, C], data: wte },
  ]);
  const onceModel = await Model.load(base, { device: 'cpu', trainable: false, adapter: once });
  t.same(onceModel.getParam('wte.weight'), wte, 'ensure_weight_tying, the tied pair stored once');
  onceModel.dispose();
});

t.test('a module of modules_to_save is no LoRA target, as PEFT (since 0.16) keeps LoRA off it', async (t) => {
  // target_modules ["c_attn"] and modules_to_save ["h.1"]: h.0's c_attn has factors, block h.1 is saved whole.
  const block: [module: string, weight: number[], bias: number][] = [
    ['ln_1', [C], C], ['attn.c_attn', [C, 3 * C], 3 * C], ['attn.c_proj', [C, C], C], ['ln_2', [C], C], ['mlp.c_fc', [C, 4 * C], 4 * C], ['mlp.c_proj', [4 * C, C], C],
  ];
  const whole = block.flatMap(([module, shape, bias], i): RawTensor[] => [
    { name: `base_model.model.transformer.h.1.${module}.weight`, shape, data: randomValues(shape[0] * (shape[1] ?? 1), 40 + i) },
    { name: `base_model.model.transformer.h.1.${module}.bias`, shape: [bias], data: randomValues(bias, 60 + i) },
  ]);
  const dir = writeRawAdapter(path.join(work, 'block-saved'), peftConfig({ modules_to_save: ['h.1'] }), factors.slice(0, 1));
  writeRawSafetensors(path.join(dir, 'adapter_model.safetensors'), [
    { name: peftTensorName(factors[0].module, 'A'), shape: [4, C], data: factors[0].a },
    { name: peftTensorName(factors[0].module, 'B'), shape: [3 * C, 4], data: factors[0].b },
    ...whole,
  ]);
  const model = await Model.load(base, { device: 'cpu', trainable: false, adapter: dir });
  const plain = await Model.load(base, { device: 'cpu', trainable: false });
  t.same(model.getParam('h.0.attn.c_attn.weight'), mergedWeight(plain.getParam('h.0.attn.c_attn.weight'), factors[0], SCALING), 'h.0.attn.c_attn: the factors merged');
  for (const tensor of whole) t.same(model.getParam(tensor.name.replace('base_model.model.transformer.', '')), tensor.data, tensor.name);
  model.dispose();
  plain.dispose();
});

t.test('a modules_to_save entry that names no module of GPT-2 takes none, as in PEFT', async (t) => {
  // Llama's names, and the classification heads PEFT adds for SEQ_CLS: PEFT wraps and saves nothing for them.
  const adapter = adapterWith('no-such-module', { modules_to_save: ['embed_tokens', 'score'] }, []);
  const model = await Model.load(base, { device: 'cpu', trainable: false, adapter });
  const plain = await Model.load(base, { device: 'cpu', trainable: false });
  t.same(model.getParam('ln_f.weight'), plain.getParam('ln_f.weight'));
  t.same(model.getParam('h.0.attn.c_attn.weight'), mergedWeight(plain.getParam('h.0.attn.c_attn.weight'), factors[0], SCALING));
  model.dispose();
  plain.dispose();
});

t.test('an adapter with tensors of the base is refused where it would be used unmerged, and wrong ones everywhere', async (t) => {
  const adapter = adapterWith('refused-unmerged', { modules_to_save: ['ln_f'] }, WHOLE.slice(0, 2));
  const why = `${weightsOf(adapter)}: tensor "base_model.model.transformer.ln_f.weight" replaces the base's ln_f.weight (modules_to_save "ln_f" in adapter_config.json), which`;
  const model = await Model.load(base, { device: 'cpu', trainable: false });
  await t.rejects(model.addAdapter(adapter), { message: `${why} an adapter decoded unmerged beside its base (as the server serves adapters) cannot: merge the adapter into its base (bin/merge-lora <base> ${adapter} <folder>) and serve the merged folder` });
  model.dispose();
  await t.rejects(Model.load(base, { device: 'cpu', adapter, lora: { rank: 4, alpha: 16, targets: ['attn.c_attn'] } }),
    { message: `${why} training an adapter over its base cannot: merge the adapter into its base (bin/merge-lora <base> ${adapter} <folder>) and train over the merged folder` });
  await t.rejects(writeGgufAdapter(path.join(work, 'refused.gguf'), readPeftAdapter(adapter), { weightType: 'f16', name: 'refused' }),
    { message: `${why} llama.cpp's LoRA file cannot: merge the adapter into its base (bin/merge-lora <base> ${adapter} <folder>) and export the merged folder (bin/export-gguf)` });
  t.notOk(fs.existsSync(path.join(work, 'refused.gguf')));

  const cases: [name: string, fields: Record<string, unknown>, whole: RawTensor[], expected: (dir: string) => string][] = [
    ['not-asked', { modules_to_save: ['ln_f'] }, [WHOLE[3]],
      (d) => `${weightsOf(d)}: tensor "base_model.model.transformer.h.1.mlp.c_fc.bias" is the base's h.1.mlp.c_fc.bias trained whole, which ${path.join(d, 'adapter_config.json')} does not ask for (modules_to_save ["ln_f"], bias "none")`],
    ['lora-only-unadapted', { bias: 'lora_only' }, [WHOLE[3]],
      (d) => `${weightsOf(d)}: tensor "base_model.model.transformer.h.1.mlp.c_fc.bias" is the base's h.1.mlp.c_fc.bias trained whole, which ${path.join(d, 'adapter_config.json')} does not ask for (modules_to_save null, bias "lora_only")`],
    ['other-vocabulary', { modules_to_save: ['wte', 'lm_head'] }, [
      { name: 'base_model.model.transformer.wte.weight', shape: [V + 1, C], data: new Float32Array((V + 1) * C) },
      { name: 'base_model.model.lm_head.weight', shape: [V + 1, C], data: new Float32Array((V + 1) * C) },
    ], (d) => `${weightsOf(d)}: tensor "base_model.model.transformer.wte.weight" has shape [${V + 1}, ${C}], but the base's wte.weight has [${V}, ${C}] (${base}/config.json gives vocab_size ${V}, n_embd ${C}): the adapter was made for a base of another size or vocabulary`],
    ['head-alone', { modules_to_save: ['lm_head'] }, [{ name: 'base_model.model.lm_head.weight', shape: [V, C], data: randomValues(V * C, 32) }],
      (d) => `${weightsOf(d)}: tensor "base_model.model.lm_head.weight" (modules_to_save "lm_head" in adapter_config.json) differs from the base's wte.weight: PEFT trained the output head and the token embedding apart, and dixie ties the head to wte as GPT-2 does, so it cannot hold them; train with both in modules_to_save and tied (or neither)`],
    ['wte-alone', { modules_to_save: ['wte'] }, [{ name: 'base_model.model.transformer.wte.weight', shape: [V, C], data: randomValues(V * C, 33) }],
      (d) => `${weightsOf(d)}: tensor "base_model.model.transformer.wte.weight" (modules_to_save "wte" in adapter_config.json) differs from the base's lm_head (its wte.weight): PEFT trained the output head and the token embedding apart, and dixie ties the head to wte as GPT-2 does, so it cannot hold them; train with both in modules_to_save and tied (or neither)`],
    ['also-adapted', { modules_to_save: ['h.0.attn.c_attn'] }, [{ name: 'base_model.model.transformer.h.0.attn.c_attn.weight', shape: [C, 3 * C], data: new Float32Array(3 * C * C) }],
      (d) => `${weightsOf(d)}: tensor "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight" adapts transformer.h.0.attn.c_attn, which ${path.join(d, 'adapter_config.json')} trains whole (modules_to_save "h.0.attn.c_attn"), which PEFT keeps LoRA off`],
    // "_attn" takes c_attn by its path's end, and leaves it to LoRA as a dotted part of it.
    ['also-adapted-by-end', { modules_to_save: ['_attn'] }, [{ name: 'base_model.model.transformer.h.0.attn.c_attn.weight', shape: [C, 3 * C], data: new Float32Array(3 * C * C) }],
      (d) => `${weightsOf(d)}: tensor "base_model.model.transformer.h.0.attn.c_attn.weight" replaces the base's h.0.attn.c_attn.weight, which its lora_A / lora_B adapt too: the file holds two changes of one weight`],
    // A module of modules_to_save whose tensors the file lacks, or holds in part: PEFT would keep the base's.
    ['saved-module-missing', { modules_to_save: ['ln_f'] }, [],
      (d) => `${weightsOf(d)}: has no tensor "base_model.model.transformer.ln_f.weight": ${path.join(d, 'adapter_config.json')} trains transformer.ln_f whole (modules_to_save "ln_f"), and PEFT saves every tensor of such a module, so the trained one is missing (PEFT would load the base's own in its place)`],
    ['saved-module-half', { modules_to_save: ['ln_2'] }, [{ name: 'base_model.model.transformer.h.0.ln_2.weight', shape: [C], data: lnWeight }, { name: 'base_model.model.transformer.h.0.ln_2.bias', shape: [C], data: lnBias }, { name: 'base_model.model.transformer.h.1.ln_2.weight', shape: [C], data: lnWeight }],
      (d) => `${weightsOf(d)}: has no tensor "base_model.model.transformer.h.1.ln_2.bias": ${path.join(d, 'adapter_config.json')} trains transformer.h.1.ln_2 whole (modules_to_save "ln_2"), and PEFT saves every tensor of such a module, so the trained one is missing (PEFT would load the base's own in its place)`],
    // Without ensure_weight_tying, PEFT neither ties the head to a trained wte nor saves it.
    ['head-untied', { modules_to_save: ['transformer.wte'] }, [
      { name: 'base_model.model.transformer.wte.weight', shape: [V, C], data: randomValues(V * C, 34) },
      { name: 'base_model.model.lm_head.weight', shape: [V, C], data: randomValues(V * C, 34) },
    ], (d) => `${weightsOf(d)}: tensor "base_model.model.lm_head.weight" is the base's lm_head.weight trained whole, which ${path.join(d, 'adapter_config.json')} does not ask for (modules_to_save ["transformer.wte"], bias "none")`],
    ['bad-bias', { bias: 'some' }, [],
      (d) => `${path.join(d, 'adapter_config.json')}: field "bias" must be one of "none", "all", "lora_only", got "some"`],
  ];
  for (const [name, fields, whole, expected] of cases) {
    const dir = adapterWith(name, fields, whole);
    await t.rejects(Model.load(base, { device: 'cpu', trainable: false, adapter: dir }), { message: expected(dir) }, name);
  }
});
