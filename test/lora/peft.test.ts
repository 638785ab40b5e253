// lib/formats/peft.ts: PEFT's names and config round trip through writePeftAdapter and readPeftAdapter; an adapter
// folder written here byte by byte in PEFT's layout (F32, F16, BF16) reads; and corrupt or mismatched adapters fail
// with errors that name the file and the field or tensor, from Model.load and from bin/generate --adapter.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { isTargeted, readLoraConfig, readPeftAdapter, writePeftAdapter, type TensorNaming } from '../../lib/formats/peft';
import { NO_DEV_FULL, diskFull, isTemporaryOf } from '../helpers/full_disk';
import { openSafetensors } from '../../lib/formats/safetensors';
import { maxAbsDiff } from '../engine/helpers';
import { CONFIG, type Factors, allLogits, peftConfig, peftTensorName, randomFactors, saveBase, writeRawAdapter, writeRawSafetensors } from './helpers';
import { runCommand } from '../helpers/run_command';

const work = t.testdir({});
let base = '';
t.before(async () => {
  base = await saveBase(path.join(work, 'base'));
});

const C = CONFIG.nEmbd;
// Tensor names as the model's own state_dict() gives them, with the adapter's name that `adapterName` gives a module.
const named = (adapterName: (module: string) => string) => (module: string, factor: 'A' | 'B'): string => `base_model.model.transformer.${module}.lora_${factor}.${adapterName(module)}.weight`;
const layer0 = (): Factors[] => [randomFactors('h.0.attn.c_attn', 4, C, 1), randomFactors('h.1.attn.c_attn', 4, C, 2)];

t.test('writePeftAdapter writes PEFT\'s names and config, and readPeftAdapter reads back the same', async (t) => {
  const dir = path.join(work, 'written');
  const fc = randomFactors('h.1.mlp.c_fc', 2, C, 3);
  const proj = randomFactors('h.0.mlp.c_proj', 4, C, 4);
  await writePeftAdapter(dir, {
    baseModel: 'gpt2',
    r: 4,
    alpha: 8,
    targets: ['c_fc', 'mlp.c_proj'],
    rankPattern: { c_fc: 2 },
    alphaPattern: { c_fc: 4 },
    useRslora: true,
    tensors: { 'h.1.mlp.c_fc': { a: fc.a, b: fc.b }, 'h.0.mlp.c_proj': { a: proj.a, b: proj.b } },
  });
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  t.same(Object.keys(json), [...Object.keys(json)].sort(), 'keys sorted, as PEFT writes them');
  t.same(json, peftConfig({
    base_model_name_or_path: 'gpt2', r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: ['c_fc', 'mlp.c_proj'],
    rank_pattern: { c_fc: 2 }, alpha_pattern: { c_fc: 4 }, use_rslora: true,
  }), 'PEFT\'s fields');
  const st = openSafetensors(path.join(dir, 'adapter_model.safetensors'));
  t.same(st.metadata, { format: 'pt' });
  t.same(st.tensors.map((e) => [e.name, e.dtype, e.shape]).sort(), [
    ['base_model.model.transformer.h.0.mlp.c_proj.lora_A.weight', 'F32', [4, 4 * C]],
    ['base_model.model.transformer.h.0.mlp.c_proj.lora_B.weight', 'F32', [C, 4]],
    ['base_model.model.transformer.h.1.mlp.c_fc.lora_A.weight', 'F32', [2, C]],
    ['base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight', 'F32', [4 * C, 2]],
  ]);
  st.close();

  const read = readPeftAdapter(dir);
  t.same(read.config, {
    baseModel: 'gpt2', r: 4, alpha: 8, dropout: 0, targetModules: ['c_fc', 'mlp.c_proj'], excludeModules: null,
    layersToTransform: null, layersPattern: null, useRslora: true, rankPattern: { c_fc: 2 }, alphaPattern: { c_fc: 4 }, modulesToSave: null, bias: 'none',
    ensureWeightTying: false, taskType: 'CAUSAL_LM', inferenceMode: true,
  });
  t.same(read.modules.map((m) => [m.path, m.weight, m.rank, m.alpha, m.scaling, m.inputs, m.outputs]), [
    ['transformer.h.0.mlp.c_proj', 'h.0.mlp.c_proj.weight', 4, 8, 8 / 2, 4 * C, C],
    ['transformer.h.1.mlp.c_fc', 'h.1.mlp.c_fc.weight', 2, 4, 4 / Math.sqrt(2), C, 4 * C],
  ]);
  t.same([read.modules[0].a, read.modules[0].b, read.modules[1].a, read.modules[1].b], [proj.a, proj.b, fc.a, fc.b], 'the same factors');

  await t.rejects(writePeftAdapter(dir, { baseModel: null, r: 4, alpha: 8, targets: ['c_attn'], tensors: { 'h.0.mlp.c_fc': fc } }), /writePeftAdapter: "h.0.mlp.c_fc" is not among the targets \["c_attn"\]/);
});

t.test('an adapter written over another that fails partway (a full disk) leaves the one before whole', { skip: NO_DEV_FULL }, async (t) => {
  const dir = path.join(work, 'full-disk');
  const first = randomFactors('h.0.attn.c_attn', 4, C, 5);
  await writePeftAdapter(dir, { baseModel: 'gpt2', r: 4, alpha: 8, targets: ['c_attn'], tensors: { 'h.0.attn.c_attn': first } });
  const before = new Map(fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f))]));
  const second = randomFactors('h.0.attn.c_attn', 2, C, 6);
  await t.test('the disk fills up as the config is written, after the weights', async (t) => {
    diskFull(t, isTemporaryOf(path.join(dir, 'adapter_config.json')));
    await t.rejects(writePeftAdapter(dir, { baseModel: 'gpt2', r: 2, alpha: 4, targets: ['c_attn'], tensors: { 'h.0.attn.c_attn': second } }), { code: 'ENOSPC', message: /adapter_config\.json/ });
  });
  t.same(fs.readdirSync(dir), [...before.keys()], 'no file added, no temporary file left');
  for (const [file, bytes] of before) t.ok(fs.readFileSync(path.join(dir, file)).equals(bytes), `${file} as it was`);
  t.same([readPeftAdapter(dir).modules[0].a, readPeftAdapter(dir).modules[0].b], [first.a, first.b], 'the adapter before reads whole');
});

t.test('an adapter written here in PEFT\'s layout reads, in F32, F16 and BF16', async (t) => {
  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    const dir = writeRawAdapter(path.join(work, `raw-${dtype}`), peftConfig({}), layer0(), dtype);
    const read = readPeftAdapter(dir);
    t.same(read.modules.map((m) => m.weight), ['h.0.attn.c_attn.weight', 'h.1.attn.c_attn.weight'], dtype);
    const model = await Model.load(base, { device: 'cpu', trainable: false, adapter: dir });
    t.equal(model.adapter?.config.baseModel, 'gpt2');
    model.dispose();
  }
});

t.test('target_modules, layers_to_transform, layers_pattern and exclude_modules select modules as PEFT does', async (t) => {
  const config = readLoraConfig(configOf(writeRawAdapter(path.join(work, 'select'), peftConfig({}), layer0())));
  const targeted = (fields: Partial<typeof config>): string[] => ['transformer.h.0.attn.c_attn', 'transformer.h.1.attn.c_attn', 'transformer.h.1.attn.c_proj', 'transformer.h.1.mlp.c_proj', 'h.1.attn.c_attn']
    .filter((p) => isTargeted({ ...config, ...fields }, p, 'adapter_config.json'));
  t.same(targeted({ targetModules: ['c_proj'] }), ['transformer.h.1.attn.c_proj', 'transformer.h.1.mlp.c_proj'], 'a suffix after a dot');
  t.same(targeted({ targetModules: ['attn.c_proj', 'transformer.h.0.attn.c_attn'] }), ['transformer.h.0.attn.c_attn', 'transformer.h.1.attn.c_proj'], 'a longer suffix, a whole path');
  t.same(targeted({ targetModules: 'c_attn' }), [], 'a regex matches the whole path');
  t.same(targeted({ targetModules: '.*attn\\.c_(attn|proj)' }), ['transformer.h.0.attn.c_attn', 'transformer.h.1.attn.c_attn', 'transformer.h.1.attn.c_proj', 'h.1.attn.c_attn']);
  t.same(targeted({ targetModules: 'all-linear' }).length, 5, 'all-linear');
  t.same(targeted({ layersToTransform: [1] }), ['transformer.h.1.attn.c_attn'], 'layers_to_transform: the first index of the path');
  t.same(targeted({ layersToTransform: [1], layersPattern: ['layers'] }), [], 'layers_pattern names the layer list');
  t.same(targeted({ targetModules: ['c_attn', 'c_proj'], excludeModules: ['mlp.c_proj', 'transformer.h.0.attn.c_attn'] }), ['transformer.h.1.attn.c_attn', 'transformer.h.1.attn.c_proj', 'h.1.attn.c_attn']);

  const upper = writeRawAdapter(path.join(work, 'upper'), peftConfig({ layers_to_transform: 1 }), layer0().slice(1));
  const model = await Model.load(base, { device: 'cpu', trainable: false, adapter: upper });
  t.same(model.adapter?.config.layersToTransform, [1], 'an adapter of layer 1 only loads');
  model.dispose();
  // PEFT reads an empty layers_pattern as none given.
  for (const [i, layersPattern] of [[], ''].entries()) {
    const dir = writeRawAdapter(path.join(work, `upper-${i}`), peftConfig({ layers_to_transform: [1], layers_pattern: layersPattern }), layer0().slice(1));
    t.same(readPeftAdapter(dir).modules.map((m) => m.path), ['transformer.h.1.attn.c_attn'], `layers_pattern ${JSON.stringify(layersPattern)}: the layers_to_transform of any layer list`);
  }
});

t.test('an adapter as PEFT also reads it gives the logits of the same adapter in save_pretrained\'s layout', async (t) => {
  const canonical = await Model.load(base, { device: 'cpu', trainable: false, adapter: writeRawAdapter(path.join(work, 'canonical'), peftConfig({}), layer0()) });
  const expected = await allLogits(canonical);
  canonical.dispose();
  const plain = await Model.load(base, { device: 'cpu', trainable: false });
  t.ok(maxAbsDiff(expected, await allLogits(plain)) > 1e-2, 'the adapter changes the logits');
  plain.dispose();
  const withoutFanInFanOut = peftConfig({});
  delete withoutFanInFanOut.fan_in_fan_out;
  const variants: [what: string, config: Record<string, unknown>, tensorName?: typeof peftTensorName, naming?: TensorNaming][] = [
    // PEFT's default, which it turns to true for GPT-2's Conv1D layers, warning.
    ['fan_in_fan_out false', peftConfig({ fan_in_fan_out: false })],
    ['fan_in_fan_out absent', withoutFanInFanOut],
    // The model's own state_dict(), saved by hand, names the adapter ("default" unless named otherwise).
    ['tensors named after adapter "default"', peftConfig({}), named(() => 'default'), { prefixed: true, adapterName: 'default' }],
    ['tensors named after adapter "mom"', peftConfig({}), named(() => 'mom'), { prefixed: true, adapterName: 'mom' }],
    // transformers' save_pretrained(save_peft_format=False) of a model with an adapter attached.
    ['tensors named without base_model.model.', peftConfig({}), (module, factor) => `transformer.${module}.lora_${factor}.weight`, { prefixed: false, adapterName: null }],
    // PeftModel of no task, as get_peft_model makes it without task_type.
    ['task_type null', peftConfig({ task_type: null })],
    // Ways of starting the factors that leave the base as it is.
    ...['gaussian', 'Gaussian', 'eva', 'orthogonal', 'mica', false].map((init): [string, Record<string, unknown>] => [`init_lora_weights ${JSON.stringify(init)}`, peftConfig({ init_lora_weights: init })]),
  ];
  for (const [what, config, tensorName, naming] of variants) {
    const dir = writeRawAdapter(path.join(work, `variant-${what.replace(/\W+/g, '-')}`), config, layer0(), 'F32', tensorName);
    t.same(readPeftAdapter(dir).naming, naming ?? { prefixed: true, adapterName: null }, `${what}: how its tensors are named`);
    const model = await Model.load(base, { device: 'cpu', trainable: false, adapter: dir });
    t.equal(maxAbsDiff(await allLogits(model), expected), 0, `${what}: the same logits`);
    model.dispose();
  }
});

// The error loading `base` with the adapter that `make` writes into a fresh folder.
async function loadError(name: string, make: (dir: string) => void): Promise<{ dir: string; message: string }> {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  make(dir);
  try {
    (await Model.load(base, { device: 'cpu', trainable: false, adapter: dir })).dispose();
  } catch (err) {
    return { dir, message: (err as Error).message };
  }
  throw new Error(`${name}: loaded`);
}

const configOf = (dir: string): string => path.join(dir, 'adapter_config.json');
const weightsOf = (dir: string): string => path.join(dir, 'adapter_model.safetensors');
const A = (module: string): string => `"base_model.model.transformer.${module}.lora_A.weight"`;

t.test('corrupt and mismatched adapters: errors that name the file and the field or tensor', async (t) => {
  const cases: [name: string, make: (dir: string) => void, expected: (dir: string) => string][] = [
    ['not-lora', (d) => writeRawAdapter(d, peftConfig({ peft_type: 'IA3' }), layer0()),
      (d) => `${configOf(d)}: field "peft_type" is "IA3": dixie reads LoRA adapters ("LORA") only`],
    ['fan-in-fan-out', (d) => writeRawAdapter(d, peftConfig({ fan_in_fan_out: 'yes' }), layer0()),
      (d) => `${configOf(d)}: field "fan_in_fan_out" must be true or false, got "yes"`],
    ['two-adapter-names', (d) => writeRawAdapter(d, peftConfig({}), [...layer0(), randomFactors('h.0.mlp.c_fc', 4, C, 8)], 'F32', named((module) => (module.includes('mlp') ? 'other' : 'default'))),
      (d) => `${weightsOf(d)}: tensor "base_model.model.transformer.h.0.mlp.c_fc.lora_A.other.weight" has adapter name "other" but "base_model.model.transformer.h.0.attn.c_attn.lora_A.default.weight" has adapter name "default": the file holds the factors of more than one adapter, or of one saved two ways; save the one to load with PEFT's save_pretrained(..., selected_adapters=[name])`],
    ['named-and-unnamed', (d) => writeRawAdapter(d, peftConfig({}), layer0(), 'F32', (module, factor) => (module.startsWith('h.1') ? named(() => 'default')(module, factor) : `transformer.${module}.lora_${factor}.weight`)),
      (d) => `${weightsOf(d)}: tensor "base_model.model.transformer.h.1.attn.c_attn.lora_A.default.weight" has adapter name "default" but "transformer.h.0.attn.c_attn.lora_A.weight" has no "base_model.model." and no adapter name: the file holds the factors of more than one adapter, or of one saved two ways; save the one to load with PEFT's save_pretrained(..., selected_adapters=[name])`],
    ['named-a-without-b', (d) => {
      writeRawAdapter(d, peftConfig({}), layer0(), 'F32', named(() => 'default'));
      writeRawSafetensors(weightsOf(d), [{ name: 'base_model.model.transformer.h.0.attn.c_attn.lora_A.default.weight', shape: [4, C], data: layer0()[0].a }]);
    }, (d) => `${weightsOf(d)}: tensor "base_model.model.transformer.h.0.attn.c_attn.lora_A.default.weight" has no "base_model.model.transformer.h.0.attn.c_attn.lora_B.default.weight": each adapted module needs both factors`],
    ['pissa', (d) => writeRawAdapter(d, peftConfig({ init_lora_weights: 'pissa_niter_16' }), layer0()),
      (d) => `${configOf(d)}: field "init_lora_weights" is "pissa_niter_16": PiSSA took the factors' start out of the base's weights, so the factors hold the difference from a base that is not the one they name; save the adapter with PEFT's save_pretrained(..., path_initial_model_for_weight_conversion=<the adapter as initialized>), which turns it into plain LoRA (init_lora_weights true, twice the rank)`],
    ['loftq', (d) => writeRawAdapter(d, peftConfig({ init_lora_weights: 'loftq' }), layer0()),
      (d) => `${configOf(d)}: field "init_lora_weights" is "loftq": LoftQ took the factors' start out of the base's weights, so the factors hold the difference from a base that is not the one they name; save the adapter with PEFT's save_pretrained(..., path_initial_model_for_weight_conversion=<the adapter as initialized>), which turns it into plain LoRA (init_lora_weights true, twice the rank)`],
    ['unknown-init', (d) => writeRawAdapter(d, peftConfig({ init_lora_weights: 'kaiming' }), layer0()),
      (d) => `${configOf(d)}: field "init_lora_weights" is "kaiming", which PEFT does not know (true, false, "gaussian", "eva", "orthogonal", "mica", or one that changes the base)`],
    ['kasa', (d) => writeRawAdapter(d, peftConfig({ kasa_config: { lambda_u: 0.1 } }), layer0()),
      (d) => `${configOf(d)}: field "kasa_config" is {"lambda_u":0.1}: KaSA, which truncates the base's singular values and scales the factors by trained ones; dixie merges plain LoRA only`],
    ['wrong-rank', (d) => writeRawAdapter(d, peftConfig({ r: 8 }), layer0()),
      (d) => `${weightsOf(d)}: tensor ${A('h.0.attn.c_attn')} has shape [4, ${C}], rank 4, but ${configOf(d)} gives r = 8 for transformer.h.0.attn.c_attn`],
    ['wrong-rank-pattern', (d) => writeRawAdapter(d, peftConfig({ rank_pattern: { 'h.1.attn.c_attn': 2 } }), layer0()),
      (d) => `${weightsOf(d)}: tensor ${A('h.1.attn.c_attn')} has shape [4, ${C}], rank 4, but ${configOf(d)} gives rank_pattern "h.1.attn.c_attn" = 2 for transformer.h.1.attn.c_attn`],
    ['layer-30', (d) => writeRawAdapter(d, peftConfig({}), [...layer0(), randomFactors('h.30.attn.c_attn', 4, C, 5)]),
      (d) => `${weightsOf(d)}: tensor ${A('h.30.attn.c_attn')} adapts transformer.h.30.attn.c_attn, which the base does not have: ${base}/config.json gives n_layer 2 (layers h.0 to h.1)`],
    ['other-size', (d) => writeRawAdapter(d, peftConfig({}), [randomFactors('h.0.attn.c_attn', 4, 32, 6), randomFactors('h.1.attn.c_attn', 4, 32, 7)]),
      (d) => `${weightsOf(d)}: tensor ${A('h.0.attn.c_attn')} is for 32 inputs of attn.c_attn, but the base's has 64 (${base}/config.json gives n_embd 64): the adapter was made for a base of another size`],
    ['fewer-layers', (d) => writeRawAdapter(d, peftConfig({}), layer0().slice(0, 1)),
      (d) => `${configOf(d)}: targets transformer.h.1.attn.c_attn (target_modules ["c_attn"]), which the base has, but ${weightsOf(d)} has no lora_A / lora_B for it: made for a base with fewer layers?`],
    ['targets-lm-head', (d) => writeRawAdapter(d, peftConfig({ target_modules: ['c_attn', 'lm_head'] }), layer0()),
      (d) => `${configOf(d)}: targets lm_head (target_modules ["c_attn","lm_head"]), which dixie does not adapt (only attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj in each layer), and ${weightsOf(d)} has no lora_A / lora_B for it`],
    ['targets-wte', (d) => writeRawAdapter(d, peftConfig({ target_modules: ['c_attn', 'wte'] }), layer0()),
      (d) => `${configOf(d)}: targets transformer.wte (target_modules ["c_attn","wte"]), which dixie does not adapt (only attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj in each layer), and ${weightsOf(d)} has no lora_A / lora_B for it`],
    ['untargeted', (d) => writeRawAdapter(d, peftConfig({}), [...layer0(), randomFactors('h.0.mlp.c_fc', 4, C, 8)]),
      (d) => `${weightsOf(d)}: tensor ${A('h.0.mlp.c_fc')} adapts transformer.h.0.mlp.c_fc, which ${configOf(d)} does not target (target_modules ["c_attn"])`],
    ['a-without-b', (d) => {
      writeRawAdapter(d, peftConfig({}), layer0());
      const f = layer0()[0];
      writeRawSafetensors(weightsOf(d), [{ name: A('h.0.attn.c_attn').slice(1, -1), shape: [4, C], data: f.a }]);
    }, (d) => `${weightsOf(d)}: tensor ${A('h.0.attn.c_attn')} has no "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight": each adapted module needs both factors`],
    ['bias-tensor', (d) => {
      writeRawAdapter(d, peftConfig({}), layer0());
      writeRawSafetensors(weightsOf(d), [{ name: 'base_model.model.transformer.h.0.attn.c_attn.bias', shape: [3 * C], data: new Float32Array(3 * C) }]);
    }, (d) => `${weightsOf(d)}: tensor "base_model.model.transformer.h.0.attn.c_attn.bias" is the base's h.0.attn.c_attn.bias trained whole, which ${configOf(d)} does not ask for (modules_to_save null, bias "none")`],
    ['magnitude', (d) => {
      writeRawAdapter(d, peftConfig({}), layer0());
      writeRawSafetensors(weightsOf(d), [{ name: 'base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector', shape: [3 * C], data: new Float32Array(3 * C) }]);
    }, (d) => `${weightsOf(d)}: tensor "base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector" is neither a LoRA factor dixie can merge (lora_A or lora_B of attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj in a layer h.N) nor a tensor of the base (modules_to_save, a trained bias); DoRA magnitudes and adapters of the embeddings or the output head are not supported`],
    // PEFT's PeftModelForSequenceClassification adds its head, "score" for GPT-2, to modules_to_save and saves it.
    ['seq-cls', (d) => {
      writeRawAdapter(d, peftConfig({ task_type: 'SEQ_CLS', modules_to_save: ['classifier', 'score'] }), layer0());
      writeRawSafetensors(weightsOf(d), [{ name: 'base_model.model.score.weight', shape: [2, C], data: new Float32Array(2 * C) }]);
    }, (d) => `${configOf(d)}: field "task_type" is "SEQ_CLS": the adapter was trained for text classification (GPT2ForSequenceClassification), and only causal-LM adapters (task_type "CAUSAL_LM", or null) apply to GPT-2's text generation`],
    ['feature-extraction', (d) => writeRawAdapter(d, peftConfig({ task_type: 'FEATURE_EXTRACTION' }), layer0()),
      (d) => `${configOf(d)}: field "task_type" is "FEATURE_EXTRACTION": the adapter was trained for feature extraction (GPT2Model's hidden states as embeddings), and only causal-LM adapters (task_type "CAUSAL_LM", or null) apply to GPT-2's text generation`],
    ['unknown-task', (d) => writeRawAdapter(d, peftConfig({ task_type: 'causal_lm' }), layer0()),
      (d) => `${configOf(d)}: field "task_type" is "causal_lm", which is no task type PEFT knows ("CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION", "SEQ_2_SEQ_LM", or null)`],
    ['dora', (d) => writeRawAdapter(d, peftConfig({ use_dora: true }), layer0()),
      (d) => `${configOf(d)}: field "use_dora" is true: DoRA, which rescales each column by a trained magnitude; dixie merges plain LoRA only`],
    ['no-config', (d) => {
      writeRawAdapter(d, peftConfig({}), layer0());
      fs.rmSync(configOf(d));
    }, (d) => `${configOf(d)}: missing: a PEFT adapter folder holds adapter_config.json and adapter_model.safetensors`],
    ['pickle', (d) => {
      writeRawAdapter(d, peftConfig({}), layer0());
      fs.renameSync(weightsOf(d), path.join(d, 'adapter_model.bin'));
    }, (d) => `${weightsOf(d)}: missing: the folder has adapter_model.bin, PEFT's older PyTorch pickle, which dixie does not read; save the adapter again with safe_serialization=True (PEFT's default)`],
    ['bad-json', (d) => {
      writeRawAdapter(d, peftConfig({}), layer0());
      fs.writeFileSync(configOf(d), '{\n  "peft_type": "LORA",\n  "r": 4,\n}\n');
    }, (d) => `${configOf(d)}:4:1: not valid JSON: Expected double-quoted property name in JSON at position 35`],
    ['bad-r', (d) => writeRawAdapter(d, peftConfig({ r: 0 }), layer0()),
      (d) => `${configOf(d)}: field "r" must be a positive integer, got 0`],
    ['bad-regex', (d) => writeRawAdapter(d, peftConfig({ target_modules: '(c_attn' }), layer0()),
      (d) => `${configOf(d)}: field "target_modules": "(c_attn" is not a regular expression (Invalid regular expression: /^(?:(c_attn)$/: Unterminated group)`],
    ['regex-and-layers', (d) => writeRawAdapter(d, peftConfig({ target_modules: '.*c_attn', layers_to_transform: [1] }), layer0()),
      (d) => `${configOf(d)}: field "layers_to_transform" is [1], but "target_modules" is a regular expression (".*c_attn"), which PEFT refuses with it: put the layers in the regular expression (such as ".*\\.h\\.(1|2)\\.attn\\.c_attn") and set "layers_to_transform" to null, or make "target_modules" a list`],
    ['regex-and-layers-pattern', (d) => writeRawAdapter(d, peftConfig({ target_modules: '.*c_attn', layers_pattern: 'h' }), layer0()),
      (d) => `${configOf(d)}: field "layers_pattern" is "h", but "target_modules" is a regular expression (".*c_attn"), which PEFT refuses with it: put the layers in the regular expression (such as ".*\\.h\\.(1|2)\\.attn\\.c_attn") and set "layers_pattern" to null, or make "target_modules" a list`],
    ['backtracking-targets', (d) => writeRawAdapter(d, peftConfig({ target_modules: '(.|.|.)*X' }), layer0()),
      (d) => `${configOf(d)}: field "target_modules": the regular expression "(.|.|.)*X" ran for over 250 ms matching "transformer.h.0.attn.c_attn" (it backtracks without bound: nested or overlapping repetition)`],
    ['backtracking-rank-pattern', (d) => writeRawAdapter(d, peftConfig({ rank_pattern: { '(.|.|.)*X': 2 } }), layer0()),
      (d) => `${configOf(d)}: field "rank_pattern.(.|.|.)*X": the regular expression "(.|.|.)*X" ran for over 250 ms matching "transformer.h.0.attn.c_attn" (it backtracks without bound: nested or overlapping repetition)`],
    ['leading-zero-layer', (d) => writeRawAdapter(d, peftConfig({}), [...layer0(), randomFactors('h.01.attn.c_attn', 4, C, 9)]),
      (d) => `${weightsOf(d)}: tensor ${A('h.01.attn.c_attn')} numbers its layer "01"; PEFT names layer 1 "h.1"`],
  ];
  for (const [name, make, expected] of cases) {
    const { dir, message } = await loadError(name, make);
    t.equal(message, expected(dir), name);
  }

  const { dir, message } = await loadError('truncated', (d) => {
    writeRawAdapter(d, peftConfig({}), layer0());
    fs.truncateSync(weightsOf(d), fs.statSync(weightsOf(d)).size - 100);
  });
  t.match(message, new RegExp(`^${weightsOf(dir).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: tensor ".*": data_offsets .* the file has \\d+ bytes \\(truncated\\?\\)$`), 'truncated');
  await t.rejects(Model.load(base, { adapter: path.join(work, 'nowhere') }), { message: `${path.join(work, 'nowhere')}: no such folder (a PEFT adapter folder holds adapter_config.json and adapter_model.safetensors)` });
});

t.test('an adapter that would make weights infinite is refused, naming its file and module', async (t) => {
  const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const huge = await loadError('huge-alpha', (d) => writeRawAdapter(d, peftConfig({ lora_alpha: 1e308 }), layer0()));
  t.match(huge.message, new RegExp(`^${escape(configOf(huge.dir))}: field lora_alpha 1e\\+308 with r = 4 scales transformer\\.h\\.0\\.attn\\.c_attn's delta by 2\\.5e\\+307, which takes its values up to \\S+, past float32's range`));

  // Factors within range whose delta takes a base weight near float32's largest past it: only the merged sum overflows.
  const model = Model.create(CONFIG, { seed: 3, device: 'cpu' });
  const w = model.getParam('h.0.attn.c_attn.weight');
  w[5] = 3e38;
  model.setParam('h.0.attn.c_attn.weight', w);
  const near = path.join(work, 'near-max-base');
  await model.save(near);
  model.dispose();
  const ones = (module: string): Factors => ({ ...randomFactors(module, 1, C, 1), a: new Float32Array(C).fill(1), b: new Float32Array(3 * C).fill(1) });
  const dir = writeRawAdapter(path.join(work, 'overflowing'), peftConfig({ r: 1, lora_alpha: 1e38 }), [ones('h.0.attn.c_attn'), ones('h.1.attn.c_attn')]);
  await t.rejects(Model.load(near, { device: 'cpu', trainable: false, adapter: dir }),
    { message: new RegExp(`^${escape(weightsOf(dir))}: the factors of transformer\\.h\\.0\\.attn\\.c_attn \\(scaling 1e\\+38\\) add 1e\\+38 to h\\.0\\.attn\\.c_attn\\.weight's 3\\.0\\d*e\\+38 at element 5, past float32's range$`) });
  (await Model.load(near, { device: 'cpu', trainable: false })).dispose();
});

t.test('bin/generate --adapter says what is wrong with an adapter, and samples with a good one', async (t) => {
  const bad = path.join(work, 'layer-30');
  const failed = runCommand('generate', ['--device', 'cpu', '--restore_from', base, '--adapter', bad, '--prompt', 'hi', '--length', '4']);
  t.equal(failed.status, 1);
  t.match(failed.stderr, /^generate: .*adapter_model\.safetensors: tensor "base_model\.model\.transformer\.h\.30\.attn\.c_attn\.lora_A\.weight" adapts transformer\.h\.30\.attn\.c_attn, which the base does not have/m);
  const good = runCommand('generate', ['--device', 'cpu', '--restore_from', base, '--adapter', path.join(work, 'raw-F32'), '--prompt', 'hi', '--length', '4', '--seed', '1']);
  t.equal(good.status, 0, good.stderr);
  t.match(good.stdout, /SAMPLE 1/);
  const chat = runCommand('chat', ['--device', 'cpu', '--restore_from', base, '--adapter', path.join(work, 'raw-F32'), '--audience', 'mom', '--length', '4', '--seed', '1']);
  t.equal(chat.status, 0, chat.stderr);
  t.match(chat.stdout, /Talking to mom/);
});
