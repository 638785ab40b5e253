// LoRA adapters in Hugging Face PEFT's format, for GPT-2: a folder of adapter_config.json and
// adapter_model.safetensors, read and checked (readPeftAdapter), fitted to a base model (adapterDeltas: what the
// loader adds to each weight it streams in, lib/engine/model.ts), and written (writePeftAdapter).
//
// An adapter changes each GPT-2 matrix it targets, a Conv1D weight W [in, out] (y = x W + b), into
//   W + scaling * (B A)^T,   A = lora_A [r, in],  B = lora_B [out, r],
//   scaling = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora,
// r and lora_alpha taken per module from rank_pattern and alpha_pattern when one of their keys matches it. PEFT names
// a module by its path in GPT2LMHeadModel ("transformer.h.0.attn.c_attn") and its tensors after it:
// base_model.model.transformer.h.0.attn.c_attn.lora_A.weight.
//
// An adapter may also carry tensors of the base trained whole, which replace the base's when it is merged: the
// modules of modules_to_save (base_model.model.transformer.ln_f.weight, as get_peft_model_state_dict saves them, with
// no "modules_to_save" in the name) and, with bias "all" or "lora_only", biases (….c_attn.base_layer.bias where LoRA
// wraps the module, since PEFT 0.7; ….c_attn.bias before it and where it does not).
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { finishInterruptedSave, textToWrite, writeFilesAtomic } from '../util/atomic_file';
import { parseJsonAt } from '../util/json_file';
import type { GPT2Config } from './model_folder';
import { openSafetensors, safetensorsToWrite, type SafetensorsFile, type TensorEntry, type TensorToWrite } from './safetensors';
import { isJsonObject } from '../util/json_object';
import { sameShape } from '../util/same_shape';
import { quoted } from '../util/quoted';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

// The matrices of a GPT-2 block an adapter can change, and their inputs and outputs in multiples of n_embd.
const ADAPTABLE: Readonly<Record<string, { inputs: number; outputs: number }>> = {
  'attn.c_attn': { inputs: 1, outputs: 3 },
  'attn.c_proj': { inputs: 1, outputs: 1 },
  'mlp.c_fc': { inputs: 1, outputs: 4 },
  'mlp.c_proj': { inputs: 4, outputs: 1 },
};
const ADAPTABLE_NAMES = Object.keys(ADAPTABLE).join(', ');

// PEFT's tensor names: base_model.model.<module path>.lora_A.weight. The path starts with "transformer." for
// GPT2LMHeadModel (what PEFT adapts for CAUSAL_LM) and without it for a bare GPT2Model. Two other namings load too,
// as PEFT or transformers load them: a state dict saved by hand (the model's own state_dict()) has the adapter's name
// before "weight", lora_A.default.weight, which save_pretrained leaves out; and transformers' save_pretrained of a
// model with an adapter attached, given save_peft_format=False, leaves out "base_model.model.", which its
// load_adapter takes either way.
const PEFT_PREFIX = 'base_model.model.';
const TENSOR_NAME = /^(base_model\.model\.)?((?:transformer\.)?h\.(\d+)\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj))\.lora_([AB])(?:\.([^.]+))?\.weight$/;
// A tensor of the base saved whole: the module's path, "base_layer." where LoRA wraps it, the parameter.
const BASE_TENSOR_NAME = /^(base_model\.model\.)?((?:transformer\.)?(?:wte|wpe|ln_f|h\.\d+\.(?:ln_1|ln_2|attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj))|lm_head)(?:\.base_layer)?\.(weight|bias)$/;
// The causal mask, a buffer older transformers kept in the state dict, which bias "all" saved for having "bias" in
// its name; it is no parameter (lib/engine/model.ts passes it over in checkpoints too).
const CAUSAL_MASK = /\.attn\.(masked_)?bias$/;
// A module of modules_to_save's tensor as its wrapper holds it, which bias "all" saved for having "bias" in its name
// (PEFT before the wrapper's keys were dropped from the bias's): the base's own (original_module), unchanged, or
// the trained copy (modules_to_save) that the file holds under the module's own name as well.
const WRAPPER_TENSOR = /^(.*)\.(?:original_module|modules_to_save)\.(weight|bias)$/;

// How a file names its factors' tensors: with PEFT's prefix or not, with an adapter's name or not.
export interface TensorNaming {
  prefixed: boolean;
  adapterName: string | null;
}
const PEFT_NAMING: TensorNaming = { prefixed: true, adapterName: null };

function factorName(modulePath: string, factor: 'A' | 'B', naming: TensorNaming): string {
  return `${naming.prefixed ? PEFT_PREFIX : ''}${modulePath}.lora_${factor}${naming.adapterName === null ? '' : `.${naming.adapterName}`}.weight`;
}

function describeNaming(naming: TensorNaming): string {
  return `${naming.prefixed ? '' : `no "${PEFT_PREFIX}" and `}${naming.adapterName === null ? 'no adapter name' : `adapter name "${naming.adapterName}"`}`;
}

// PEFT's default target for GPT-2 when target_modules is null, and what "all-linear" stands for in it (every
// Conv1D and Linear but the output head).
const DEFAULT_TARGETS = ['c_attn'];
const ALL_LINEAR = 'all-linear';

export type LoraBias = 'none' | 'all' | 'lora_only';
const LORA_BIASES: readonly LoraBias[] = ['none', 'all', 'lora_only'];

export interface LoraConfig {
  baseModel: string | null;          // base_model_name_or_path
  r: number;
  alpha: number;                     // lora_alpha
  dropout: number;                   // lora_dropout: training only
  targetModules: string[] | string;  // module path suffixes, or a regex the whole path must match
  excludeModules: string[] | string | null;
  layersToTransform: number[] | null;  // with a list of targets, only modules of these layers
  layersPattern: string[] | null;      // the name before the layer index ("h"); null: any
  useRslora: boolean;
  rankPattern: Record<string, number>;   // r by module path suffix (a regex)
  alphaPattern: Record<string, number>;  // lora_alpha likewise
  modulesToSave: string[] | null;  // modules trained whole: those whose path ends with one of these
  bias: LoraBias;                  // which of the base's biases were trained too: "all", or the adapted modules'
  ensureWeightTying: boolean;      // the output head trained as the token embedding's copy, tied to it
  taskType: string | null;
  inferenceMode: boolean;
}

// One adapted matrix: the base weight it changes ("h.0.attn.c_attn.weight") and its two factors.
export interface LoraModule {
  path: string;     // PEFT's module path, "transformer.h.0.attn.c_attn"
  weight: string;   // the base tensor, by dixie's name
  layer: number;
  kind: string;     // "attn.c_attn", …
  rank: number;
  alpha: number;
  scaling: number;
  inputs: number;
  outputs: number;
  a: Float32Array;  // lora_A [rank, inputs]
  b: Float32Array;  // lora_B [outputs, rank]
}

// A tensor of the base the adapter holds whole (modules_to_save, a trained bias), which merging puts in its place.
export interface ReplacedTensor {
  name: string;     // in the adapter's file
  weight: string;   // the base tensor, by dixie's name ("ln_f.weight", "h.0.attn.c_attn.bias", "lm_head.weight")
  reason: string;   // the config field that asks for it, for messages
  shape: number[];
  values: Float32Array;
}

export interface PeftAdapter {
  dir: string;
  config: LoraConfig;
  naming: TensorNaming;  // how its tensors are named, for errors that name one
  modules: LoraModule[];  // in the order of their base weights: by layer, then as ADAPTABLE lists them
  replaced: ReplacedTensor[];
}

// ---- adapter_config.json ----

// How target_modules and exclude_modules match a module path (Python's re.fullmatch), and how rank_pattern's and
// alpha_pattern's keys do (its end, after a dot).
const WHOLE_PATH = (s: string): string => `^(?:${s})$`;
const PATH_END = (s: string): string => `^(.*\\.)?(${s})$`;

// A regex of Python's `re` as JavaScript reads it (the two agree on what target patterns use), named after its field.
function patternOf(file: string, field: string, source: string, wrap: (s: string) => string): RegExp {
  try {
    return new RegExp(wrap(source));
  } catch (err) {
    throw new Error(`${file}: field "${field}": ${JSON.stringify(source)} is not a regular expression (${(err as Error).message})`);
  }
}

function stringList(file: string, json: Record<string, unknown>, field: string): string[] | string | null {
  const value = json[field];
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') {
    patternOf(file, field, value, WHOLE_PATH);
    return value;
  }
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value as string[];
  throw new Error(`${file}: field "${field}" must be a list of module names or one regular expression, got ${quoted(value)}`);
}

function numberPattern(file: string, json: Record<string, unknown>, field: string, isValid: (v: number) => boolean, what: string): Record<string, number> {
  const value = json[field] ?? {};
  if (!isJsonObject(value)) throw new Error(`${file}: field "${field}" must be an object of module pattern -> ${what}, got ${quoted(value)}`);
  for (const [key, v] of Object.entries(value)) {
    patternOf(file, `${field}.${key}`, key, PATH_END);
    if (typeof v !== 'number' || !isValid(v)) throw new Error(`${file}: field "${field}": "${key}" must be ${what}, got ${quoted(v)}`);
  }
  return value as Record<string, number>;
}

const isPositiveInt = (v: number): boolean => Number.isSafeInteger(v) && v > 0;

function isUnset(value: unknown): boolean {
  return value === undefined || value === null || value === false || (Array.isArray(value) && value.length === 0) || (isJsonObject(value) && Object.keys(value).length === 0);
}

// Fields of PEFT's LoraConfig that make an adapter compute something a merge into GPT-2's four matrices cannot
// hold: refused when set, rather than dropped without a word.
const UNSUPPORTED: readonly [field: string, what: string][] = [
  ['use_dora', 'DoRA, which rescales each column by a trained magnitude'],
  ['lora_bias', 'a trained bias on lora_B'],
  ['layer_replication', 'layers duplicated from the base'],
  ['trainable_token_indices', 'embeddings of some tokens trained'],
  ['target_parameters', 'parameters adapted directly'],
  ['alora_invocation_tokens', 'activated LoRA, applied only after its invocation tokens'],
  ['use_qalora', 'QALoRA, whose lora_A takes the inputs pooled in groups'],
  ['use_bdlora', 'BD-LoRA, whose factors are block-diagonal'],
  ['kasa_config', 'KaSA, which truncates the base\'s singular values and scales the factors by trained ones'],
  ['arrow_config', 'Arrow, which routes each token among several adapters'],
];

// init_lora_weights: how PEFT started the factors. These started them from the base's own weights and took that
// part out of the base (PiSSA, OLoRA, CorDA), or replaced the base (LoftQ's quantized one, LoRA-GA's moved one), so
// the adapter holds W - W_res + its training, and added to the base it would count W - W_res twice.
const BASE_CHANGING_INITS: readonly [prefix: string, what: string][] = [
  ['pissa', 'PiSSA'], ['olora', 'OLoRA'], ['corda', 'CorDA'], ['loftq', 'LoftQ'], ['lora_ga', 'LoRA-GA'],
];
// Those that leave the base as it is, the adapter starting at B A = 0 (true, eva, mica) or at random (false, gaussian,
// orthogonal). PEFT reads the names in any case.
const PLAIN_INITS: readonly (string | boolean)[] = [true, false, 'gaussian', 'eva', 'orthogonal', 'mica'];

function checkInit(file: string, value: unknown): void {
  const init = typeof value === 'string' ? value.toLowerCase() : value;
  if (init === undefined || init === null || PLAIN_INITS.includes(init as string | boolean)) return;
  const changing = typeof init === 'string' ? BASE_CHANGING_INITS.find(([prefix]) => init.startsWith(prefix)) : undefined;
  if (changing !== undefined) {
    throw new Error(`${file}: field "init_lora_weights" is ${quoted(value)}: ${changing[1]} took the factors' start out of the base's weights, `
      + 'so the factors hold the difference from a base that is not the one they name; save the adapter with PEFT\'s '
      + 'save_pretrained(..., path_initial_model_for_weight_conversion=<the adapter as initialized>), which turns it into plain LoRA '
      + '(init_lora_weights true, twice the rank)');
  }
  throw new Error(`${file}: field "init_lora_weights" is ${quoted(value)}, which PEFT does not know (true, false, ${PLAIN_INITS.slice(2).map((v) => `"${v}"`).join(', ')}, or one that changes the base)`);
}

// PEFT's task types (its TaskType, which its config refuses any other of) and the model each was trained under. Only
// a causal LM's adapter, or one of no task (PeftModel's, over GPT2LMHeadModel or GPT2Model), learned to predict the
// next token; the others tuned GPT-2 for another head's task, and its factors put into text generation would apply
// without a word what no one trained for it.
const CAUSAL_LM = 'CAUSAL_LM';
const OTHER_TASKS: Readonly<Record<string, string>> = {
  SEQ_CLS: 'text classification (GPT2ForSequenceClassification)',
  TOKEN_CLS: 'token classification (GPT2ForTokenClassification)',
  QUESTION_ANS: 'question answering (GPT2ForQuestionAnswering)',
  FEATURE_EXTRACTION: 'feature extraction (GPT2Model\'s hidden states as embeddings)',
  SEQ_2_SEQ_LM: 'sequence-to-sequence language modelling (an encoder-decoder)',
};

function checkTaskType(file: string, taskType: unknown): asserts taskType is string | null {
  if (taskType === null || taskType === CAUSAL_LM) return;
  const task = typeof taskType === 'string' ? OTHER_TASKS[taskType] : undefined;
  if (task === undefined) {
    throw new Error(`${file}: field "task_type" is ${quoted(taskType)}, which is no task type PEFT knows (${[CAUSAL_LM, ...Object.keys(OTHER_TASKS)].map((t) => `"${t}"`).join(', ')}, or null)`);
  }
  throw new Error(`${file}: field "task_type" is ${quoted(taskType)}: the adapter was trained for ${task}, and only causal-LM adapters `
    + `(task_type "${CAUSAL_LM}", or null) apply to GPT-2's text generation`);
}

export function readLoraConfig(file: string): LoraConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(missing ? `${file}: missing: a PEFT adapter folder holds ${ADAPTER_CONFIG_FILE} and ${ADAPTER_WEIGHTS_FILE}` : `${file}: cannot read: ${(err as Error).message}`);
  }
  const json = parseJsonAt(file, text);
  if (!isJsonObject(json)) throw new Error(`${file}: must be a JSON object`);
  if (json.peft_type !== 'LORA') {
    const found = json.peft_type === undefined ? 'missing' : `is ${quoted(json.peft_type)}`;
    throw new Error(`${file}: field "peft_type" ${found}: dixie reads LoRA adapters ("LORA") only`);
  }
  for (const [field, what] of UNSUPPORTED) {
    if (!isUnset(json[field])) throw new Error(`${file}: field "${field}" is ${quoted(json[field])}: ${what}; dixie merges plain LoRA only`);
  }
  const bias = json.bias ?? 'none';
  if (!LORA_BIASES.includes(bias as LoraBias)) throw new Error(`${file}: field "bias" must be one of ${LORA_BIASES.map((b) => `"${b}"`).join(', ')}, got ${quoted(bias)}`);
  const modulesToSave = json.modules_to_save ?? null;
  if (modulesToSave !== null && !(Array.isArray(modulesToSave) && modulesToSave.every((m) => typeof m === 'string' && m !== ''))) {
    throw new Error(`${file}: field "modules_to_save" must be a list of module names or null, got ${quoted(modulesToSave)}`);
  }
  checkInit(file, json.init_lora_weights);
  const r = json.r;
  if (typeof r !== 'number' || !isPositiveInt(r)) throw new Error(`${file}: field "r" must be a positive integer, got ${quoted(r)}`);
  const alpha = json.lora_alpha ?? 8;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw new Error(`${file}: field "lora_alpha" must be a number, got ${quoted(alpha)}`);
  const dropout = json.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) throw new Error(`${file}: field "lora_dropout" must be a number in [0, 1), got ${quoted(dropout)}`);
  const base = json.base_model_name_or_path ?? null;
  if (base !== null && typeof base !== 'string') throw new Error(`${file}: field "base_model_name_or_path" must be a string or null, got ${quoted(base)}`);
  const taskType = json.task_type ?? null;
  checkTaskType(file, taskType);
  // fan_in_fan_out says how the adapted layer stores its weight, not how the factors are stored (lora_A [r, in] and
  // lora_B [out, r] either way); PEFT takes true for every Conv1D, GPT-2's four matrices, whatever the field says.
  for (const field of ['use_rslora', 'inference_mode', 'fan_in_fan_out', 'ensure_weight_tying'] as const) {
    if (json[field] !== undefined && typeof json[field] !== 'boolean') throw new Error(`${file}: field "${field}" must be true or false, got ${quoted(json[field])}`);
  }
  const layers = json.layers_to_transform ?? null;
  const layerList = typeof layers === 'number' ? [layers] : layers;
  if (layerList !== null && !(Array.isArray(layerList) && layerList.every((l) => Number.isSafeInteger(l) && l >= 0))) {
    throw new Error(`${file}: field "layers_to_transform" must be a layer index or a list of them, got ${quoted(layers)}`);
  }
  const layersPattern = stringList(file, json, 'layers_pattern');
  const targetModules = stringList(file, json, 'target_modules') ?? DEFAULT_TARGETS;
  // PEFT's LoraConfig refuses these together (a regex already says which layers it takes), whatever their value.
  if (typeof targetModules === 'string') {
    for (const field of ['layers_to_transform', 'layers_pattern']) {
      if (json[field] !== undefined && json[field] !== null) {
        throw new Error(`${file}: field "${field}" is ${quoted(json[field])}, but "target_modules" is a regular expression (${JSON.stringify(targetModules)}), which PEFT refuses with it: `
          + `put the layers in the regular expression (such as ".*\\.h\\.(1|2)\\.attn\\.c_attn") and set "${field}" to null, or make "target_modules" a list`);
      }
    }
  }
  return {
    baseModel: base,
    r,
    alpha,
    dropout,
    targetModules,
    excludeModules: stringList(file, json, 'exclude_modules'),
    layersToTransform: layerList as number[] | null,
    // PEFT takes an empty one, "" or [], as none given.
    layersPattern: layersPattern === null || layersPattern.length === 0 ? null : typeof layersPattern === 'string' ? [layersPattern] : layersPattern,
    useRslora: json.use_rslora === true,
    rankPattern: numberPattern(file, json, 'rank_pattern', isPositiveInt, 'a positive integer rank'),
    alphaPattern: numberPattern(file, json, 'alpha_pattern', Number.isFinite, 'a number'),
    modulesToSave: modulesToSave as string[] | null,
    bias: bias as LoraBias,
    ensureWeightTying: json.ensure_weight_tying === true,
    taskType,
    inferenceMode: json.inference_mode === true,
  };
}

// adapter_config.json as PEFT writes it, keys sorted: the fields of its LoraConfig as of 0.10, which later versions
// read too and earlier ones refuse any field beyond, so exclude_modules (0.14) is written only when set.
function loraConfigJson(config: LoraConfig): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    alpha_pattern: config.alphaPattern,
    auto_mapping: null,
    base_model_name_or_path: config.baseModel,
    bias: config.bias,
    ...(config.excludeModules === null ? {} : { exclude_modules: config.excludeModules }),
    fan_in_fan_out: true,
    inference_mode: config.inferenceMode,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: config.layersPattern,
    layers_to_transform: config.layersToTransform,
    loftq_config: {},
    lora_alpha: config.alpha,
    lora_dropout: config.dropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: config.modulesToSave,
    peft_type: 'LORA',
    r: config.r,
    rank_pattern: config.rankPattern,
    revision: null,
    target_modules: config.targetModules,
    task_type: config.taskType,
    use_dora: false,
    use_rslora: config.useRslora,
  };
  return Object.fromEntries(Object.entries(fields).sort(([a], [b]) => (a < b ? -1 : 1)));
}

// ---- which modules an adapter targets, as PEFT decides ----

// The patterns come from the adapter's config, where one such as "(.|.|.)*X" backtracks for longer than anyone waits.
// V8 interrupts a regex that runs under a vm timeout, so each match of a pattern runs under one, and a pattern that
// takes that long on a module path of a few dozen characters (a sane one takes microseconds) is refused.
const PATTERN_TIMEOUT_MS = 250;
const EXEC_PATTERN = new vm.Script('pattern.exec(subject)');
let patternContext: vm.Context | null = null;

// `source` (of `field` in `file`), as `wrap` makes it a regex, matched against `subject`.
function execPattern(file: string, field: string, source: string, wrap: (s: string) => string, subject: string): RegExpExecArray | null {
  const context = (patternContext ??= vm.createContext({ pattern: null, subject: '' }));
  context.pattern = patternOf(file, field, source, wrap);
  context.subject = subject;
  try {
    return EXEC_PATTERN.runInContext(context, { timeout: PATTERN_TIMEOUT_MS }) as RegExpExecArray | null;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_SCRIPT_EXECUTION_TIMEOUT') throw err;
    throw new Error(`${file}: field "${field}": the regular expression ${JSON.stringify(source)} ran for over ${PATTERN_TIMEOUT_MS} ms matching "${subject}" `
      + '(it backtracks without bound: nested or overlapping repetition)');
  } finally {
    context.pattern = null;
  }
}

// A list entry matches a path that is the entry or ends in "." + entry; a string is a regex the whole path matches.
function matchesModules(file: string, field: string, modules: string[] | string, modulePath: string): boolean {
  if (typeof modules === 'string') return execPattern(file, field, modules, WHOLE_PATH, modulePath) !== null;
  return modules.some((m) => modulePath === m || modulePath.endsWith(`.${m}`));
}

// The layer index in a module path, after one of the layer patterns (any name when none).
function layerIndexOf(file: string, modulePath: string, patterns: string[] | null): number | null {
  for (const pattern of patterns ?? ['[^.]*']) {
    const match = execPattern(file, 'layers_pattern', pattern, (s) => `^.*?\\.${s}\\.(\\d+)\\.`, modulePath);
    if (match) return Number(match[1]);
  }
  return null;
}

// How PEFT (since 0.16) finds a module of modules_to_save, or one inside it, to keep LoRA off it: the entry, a
// regex, is a whole dotted part of the path, or a run of them.
const IN_SAVED_MODULE = (s: string): string => `^(?:.*\\.)?(?:${s})(?:$|\\.)`;

function keptFromLora(config: LoraConfig, modulePath: string, file: string): string | undefined {
  return config.modulesToSave?.find((m) => execPattern(file, 'modules_to_save', m, IN_SAVED_MODULE, modulePath) !== null);
}

// Whether the adapter of `config` (read from `file`, named in errors) changes the module at `modulePath`. PEFT trains
// a module of modules_to_save whole, and LoRA never wraps it or what it holds.
export function isTargeted(config: LoraConfig, modulePath: string, file: string): boolean {
  if (config.excludeModules !== null && matchesModules(file, 'exclude_modules', config.excludeModules, modulePath)) return false;
  if (keptFromLora(config, modulePath, file) !== undefined) return false;
  const targets = config.targetModules;
  if (targets === ALL_LINEAR) return true;
  if (typeof targets === 'string' || targets.includes(modulePath)) return matchesModules(file, 'target_modules', targets, modulePath);
  if (!matchesModules(file, 'target_modules', targets, modulePath)) return false;
  if (config.layersToTransform === null || config.layersToTransform.length === 0) return true;
  const layer = layerIndexOf(file, modulePath, config.layersPattern);
  return layer !== null && config.layersToTransform.includes(layer);
}

// r or lora_alpha of a module (`field`: rank_pattern or alpha_pattern): the first pattern key that matches the end of
// its path, else the default.
function patterned(file: string, field: string, pattern: Record<string, number>, modulePath: string, fallback: number): { value: number; key: string | null } {
  const key = Object.keys(pattern).find((k) => execPattern(file, `${field}.${k}`, k, PATH_END, modulePath) !== null);
  return key === undefined ? { value: fallback, key: null } : { value: pattern[key], key };
}

const FLOAT32_MAX = 3.4028234663852886e38;

function maxAbs(values: Float32Array): number {
  let max = 0;
  for (const v of values) max = Math.max(max, Math.abs(v));
  return max;
}

// What a module's product is scaled by: lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.
export function loraScaling(alpha: number, rank: number, rslora: boolean): number {
  return rslora ? alpha / Math.sqrt(rank) : alpha / rank;
}

// ---- adapter_model.safetensors ----

function readFactor(file: string, st: SafetensorsFile, entry: TensorEntry): Float32Array {
  if (entry.shape.length !== 2) throw new Error(`${file}: tensor "${entry.name}" has shape [${entry.shape.join(', ')}]; LoRA factors are matrices`);
  return readValues(file, st, entry);
}

function readValues(file: string, st: SafetensorsFile, entry: TensorEntry): Float32Array {
  if (entry.dtype !== 'F32' && entry.dtype !== 'F16' && entry.dtype !== 'BF16') {
    throw new Error(`${file}: tensor "${entry.name}" has dtype ${entry.dtype}; an adapter's tensors must be F32, F16 or BF16`);
  }
  const values = st.readF32(entry);
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new Error(`${file}: tensor "${entry.name}" has ${Number.isNaN(values[bad]) ? 'a NaN' : values[bad]} at element ${bad}`);
  return values;
}

// The entry of modules_to_save that takes the module at `modulePath`: one its path, or the path of a module holding
// it, ends with (PEFT's plain endswith).
function savedModuleEntry(config: LoraConfig, modulePath: string): string | undefined {
  const parts = modulePath.split('.');
  const holders = parts.map((_, i) => parts.slice(0, i + 1).join('.'));
  return config.modulesToSave?.find((m) => holders.some((h) => h.endsWith(m)));
}

// Why the adapter holds the base's tensor `param` of the module at `modulePath` whole: the config field that asks for
// it, or null.
function replacedBy(config: LoraConfig, modulePath: string, param: string, configFile: string): string | null {
  if (param === 'bias' && config.bias === 'all') return 'bias "all"';
  if (param === 'bias' && config.bias === 'lora_only' && isTargeted(config, modulePath, configFile)) return 'bias "lora_only"';
  const entry = savedModuleEntry(config, modulePath);
  if (entry !== undefined) return `modules_to_save "${entry}"`;
  // With ensure_weight_tying, PEFT takes lm_head out of modules_to_save (it puts the embedding, transformer.wte, in
  // its place) and ties the head to the embedding's trained copy, saving both.
  const tiedTo = modulePath === 'lm_head' && config.ensureWeightTying ? savedModuleEntry(config, 'transformer.wte') : undefined;
  return tiedTo === undefined ? null : `ensure_weight_tying with modules_to_save "${tiedTo}"`;
}

// The folder's config and every lora_A / lora_B pair, checked against each other: names, ranks, dtypes, targets.
// What depends on the base (layers, widths) is checked by adapterDeltas.
export function readPeftAdapter(dir: string): PeftAdapter {
  if (!fs.existsSync(dir)) throw new Error(`${dir}: no such folder (a PEFT adapter folder holds ${ADAPTER_CONFIG_FILE} and ${ADAPTER_WEIGHTS_FILE})`);
  if (!fs.statSync(dir).isDirectory()) throw new Error(`${dir}: not a folder (a PEFT adapter folder holds ${ADAPTER_CONFIG_FILE} and ${ADAPTER_WEIGHTS_FILE})`);
  finishInterruptedSave(dir);
  const configFile = path.join(dir, ADAPTER_CONFIG_FILE);
  const config = readLoraConfig(configFile);
  const file = path.join(dir, ADAPTER_WEIGHTS_FILE);
  if (!fs.existsSync(file)) {
    const pickle = fs.existsSync(path.join(dir, 'adapter_model.bin'));
    throw new Error(`${file}: missing${pickle ? ': the folder has adapter_model.bin, PEFT\'s older PyTorch pickle, which dixie does not read; save the adapter again with safe_serialization=True (PEFT\'s default)' : ''}`);
  }
  const st = openSafetensors(file);
  try {
    const pairs = new Map<string, { path: string; layer: number; kind: string; a?: TensorEntry; b?: TensorEntry }>();
    const replaced: ReplacedTensor[] = [];
    let named: { naming: TensorNaming; tensor: string } | null = null;
    const names = new Set(st.tensors.map((e) => e.name));
    for (const entry of st.tensors) {
      if (CAUSAL_MASK.test(entry.name)) continue;
      const wrapped = WRAPPER_TENSOR.exec(entry.name);
      if (wrapped && names.has(`${wrapped[1]}.${wrapped[2]}`)) continue;
      const whole = BASE_TENSOR_NAME.exec(entry.name);
      if (whole) {
        const [, , modulePath, param] = whole;
        const reason = replacedBy(config, modulePath, param, configFile);
        const weight = `${modulePath.replace(/^transformer\./, '')}.${param}`;
        if (reason === null) {
          throw new Error(`${file}: tensor "${entry.name}" is the base's ${weight} trained whole, which ${configFile} does not ask for `
            + `(modules_to_save ${JSON.stringify(config.modulesToSave)}, bias "${config.bias}")`);
        }
        if (replaced.some((r) => r.weight === weight)) throw new Error(`${file}: tensor "${entry.name}" is the base's ${weight}, which another tensor of the file is too`);
        replaced.push({ name: entry.name, weight, reason, shape: entry.shape, values: readValues(file, st, entry) });
        continue;
      }
      const match = TENSOR_NAME.exec(entry.name);
      if (!match) {
        throw new Error(`${file}: tensor "${entry.name}" is neither a LoRA factor dixie can merge (lora_A or lora_B of ${ADAPTABLE_NAMES} in a layer h.N) `
          + 'nor a tensor of the base (modules_to_save, a trained bias); DoRA magnitudes and adapters of the embeddings or the output head are not supported');
      }
      const [, prefix, modulePath, layer, kind, factor, adapterName = null] = match;
      // Tensors named two ways (after two adapters, or with and without a name or the prefix) come from a model that
      // held several adapters, or from two saves, whose factors for one module would silently replace each other.
      const naming: TensorNaming = { prefixed: prefix !== undefined, adapterName };
      named ??= { naming, tensor: entry.name };
      if (naming.prefixed !== named.naming.prefixed || naming.adapterName !== named.naming.adapterName) {
        throw new Error(`${file}: tensor "${entry.name}" has ${describeNaming(naming)} but "${named.tensor}" has ${describeNaming(named.naming)}: `
          + 'the file holds the factors of more than one adapter, or of one saved two ways; save the one to load with PEFT\'s save_pretrained(..., selected_adapters=[name])');
      }
      // "h.01" would name the same weight as "h.1", and one pair of factors would silently replace the other.
      if (String(Number(layer)) !== layer) {
        throw new Error(`${file}: tensor "${entry.name}" numbers its layer "${layer}"; PEFT names layer ${Number(layer)} "h.${Number(layer)}"`);
      }
      if (!isTargeted(config, modulePath, configFile)) {
        const saved = keptFromLora(config, modulePath, configFile);
        const why = saved === undefined ? `does not target (target_modules ${JSON.stringify(config.targetModules)})` : `trains whole (modules_to_save "${saved}"), which PEFT keeps LoRA off`;
        throw new Error(`${file}: tensor "${entry.name}" adapts ${modulePath}, which ${configFile} ${why}`);
      }
      const pair = pairs.get(modulePath) ?? { path: modulePath, layer: Number(layer), kind };
      pair[factor === 'A' ? 'a' : 'b'] = entry;
      pairs.set(modulePath, pair);
    }
    if (pairs.size === 0) throw new Error(`${file}: no lora_A / lora_B tensors`);
    const prefixes = new Set([...pairs.keys()].map((p) => p.slice(0, p.indexOf('h.'))));
    if (prefixes.size > 1) throw new Error(`${file}: names some modules with "transformer." and some without; they must come from one model`);
    const naming = named?.naming ?? PEFT_NAMING;
    const modules: LoraModule[] = [];
    for (const pair of pairs.values()) {
      const name = (factor: 'A' | 'B'): string => factorName(pair.path, factor, naming);
      if (!pair.a || !pair.b) {
        throw new Error(`${file}: tensor "${name(pair.a ? 'A' : 'B')}" has no "${name(pair.a ? 'B' : 'A')}": each adapted module needs both factors`);
      }
      const rank = patterned(configFile, 'rank_pattern', config.rankPattern, pair.path, config.r);
      const said = rank.key === null ? `r = ${config.r}` : `rank_pattern "${rank.key}" = ${rank.value}`;
      if (pair.a.shape.length === 2 && pair.a.shape[0] !== rank.value) {
        throw new Error(`${file}: tensor "${pair.a.name}" has shape [${pair.a.shape.join(', ')}], rank ${pair.a.shape[0]}, but ${configFile} gives ${said} for ${pair.path}`);
      }
      if (pair.b.shape.length === 2 && pair.b.shape[1] !== rank.value) {
        throw new Error(`${file}: tensor "${pair.b.name}" has shape [${pair.b.shape.join(', ')}], rank ${pair.b.shape[1]}, but ${configFile} gives ${said} for ${pair.path}`);
      }
      const a = readFactor(file, st, pair.a);
      const b = readFactor(file, st, pair.b);
      const alpha = patterned(configFile, 'alpha_pattern', config.alphaPattern, pair.path, config.alpha);
      const scaling = loraScaling(alpha.value, rank.value, config.useRslora);
      // No element of the delta exceeds this; past float32's range the adapter can only make weights infinite,
      // whether merged or decoded unmerged (where the scaling itself is a float32).
      const bound = scaling * rank.value * maxAbs(a) * maxAbs(b);
      if (!(Math.fround(scaling) < Infinity && bound <= FLOAT32_MAX)) {
        const given = alpha.key === null ? `lora_alpha ${config.alpha}` : `alpha_pattern "${alpha.key}" = ${alpha.value}`;
        throw new Error(`${configFile}: field ${given} with ${said} scales ${pair.path}'s delta by ${scaling}, which takes its values up to ${bound}, past float32's range (${FLOAT32_MAX})`);
      }
      modules.push({
        path: pair.path,
        weight: `h.${pair.layer}.${pair.kind}.weight`,
        layer: pair.layer,
        kind: pair.kind,
        rank: rank.value,
        alpha: alpha.value,
        scaling,
        inputs: pair.a.shape[1],
        outputs: pair.b.shape[0],
        a,
        b,
      });
    }
    const kinds = Object.keys(ADAPTABLE);
    modules.sort((x, y) => x.layer - y.layer || kinds.indexOf(x.kind) - kinds.indexOf(y.kind));
    return { dir, config, naming, modules, replaced };
  } finally {
    st.close();
  }
}

// ---- fitting an adapter to a base ----

// Merges rows [r0, r1) of what an adapter makes of a base tensor into dst, which holds those rows of the base's: adds
// its factors' delta, scaling * (B A)^T, to a weight [in, out], or puts the adapter's own tensor in their place.
export type MergeRows = (r0: number, r1: number, dst: Float32Array) => void;

// How the base describes itself in errors: its config file and the field of a size.
export interface BaseSource {
  where: string;
  fieldName: (key: keyof GPT2Config) => string;
}

// What an adapter changes in a base's tensors, by tensor name (checkAdapterFits first). The output head is wte's,
// which a replaced lm_head equals (checkAdapterFits).
export function adapterDeltas(adapter: PeftAdapter, config: GPT2Config, base: BaseSource): Map<string, MergeRows> {
  checkAdapterFits(adapter, config, base);
  const file = path.join(adapter.dir, ADAPTER_WEIGHTS_FILE);
  const merges = new Map<string, MergeRows>(adapter.modules.map((m) => [m.weight, deltaRows(m, file)]));
  for (const r of adapter.replaced) {
    const cols = r.shape.length === 2 ? r.shape[1] : r.values.length;
    if (r.weight !== LM_HEAD) merges.set(r.weight, (r0, r1, dst) => dst.set(r.values.subarray(r0 * cols, r1 * cols)));
  }
  return merges;
}

const LM_HEAD = 'lm_head.weight';

// The shape of a base tensor by dixie's name, as GPT-2 of `config` has it (Conv1D weights [in, out]), with the config
// field each size comes from; null for a name GPT-2 does not have.
function baseShape(weight: string, config: GPT2Config): { shape: number[]; fields: (keyof GPT2Config)[] } | null {
  const C = config.nEmbd;
  if (weight === 'wte.weight' || weight === LM_HEAD) return { shape: [config.vocabSize, C], fields: ['vocabSize', 'nEmbd'] };
  if (weight === 'wpe.weight') return { shape: [config.nCtx, C], fields: ['nCtx', 'nEmbd'] };
  const match = /^(?:h\.(\d+)\.)?(ln_f|ln_1|ln_2|attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.(weight|bias)$/.exec(weight);
  if (!match || (match[1] !== undefined && Number(match[1]) >= config.nLayer)) return null;
  const [, , module, param] = match;
  const sizes = ADAPTABLE[module];
  if (sizes === undefined) return { shape: [C], fields: ['nEmbd'] };
  return { shape: param === 'weight' ? [sizes.inputs * C, sizes.outputs * C] : [sizes.outputs * C], fields: ['nEmbd'] };
}

// GPT-2's modules that hold tensors, by dixie's name, and their parameters; the output head's is wte's, which the
// base has no module for without GPT2LMHeadModel's "transformer." around the rest.
function baseModules(config: GPT2Config, headed: boolean): [module: string, params: string[]][] {
  const both = ['weight', 'bias'];
  const blocks = Array.from({ length: config.nLayer }, (_, l) => ['ln_1', 'ln_2', ...Object.keys(ADAPTABLE)].map((m): [string, string[]] => [`h.${l}.${m}`, both]));
  return [['wte', ['weight']], ['wpe', ['weight']], ...blocks.flat(), ['ln_f', both], ...(headed ? [['lm_head', ['weight']] as [string, string[]]] : [])];
}

// An adapter that replaces tensors of its base whole can only be merged: decoded beside the base unmerged, trained
// on, or written as llama.cpp's LoRA file, it would lose them. `cannot` says what cannot hold them, `instead` the way.
export function checkFactorsOnly(adapter: PeftAdapter, cannot: string, instead: string): void {
  const r = adapter.replaced[0];
  if (r === undefined) return;
  throw new Error(`${path.join(adapter.dir, ADAPTER_WEIGHTS_FILE)}: tensor "${r.name}" replaces the base's ${r.weight} (${r.reason} in ${ADAPTER_CONFIG_FILE}), `
    + `which ${cannot} cannot: merge the adapter into its base (bin/merge-lora <base> ${adapter.dir} <folder>) and ${instead}`);
}

// Checks that the base has every module the adapter adapts, at the same widths, and that every module the config
// targets in it has its factors.
export function checkAdapterFits(adapter: PeftAdapter, config: GPT2Config, base: BaseSource): void {
  const file = path.join(adapter.dir, ADAPTER_WEIGHTS_FILE);
  const configFile = path.join(adapter.dir, ADAPTER_CONFIG_FILE);
  const C = config.nEmbd;
  const fitted = new Set<string>();
  for (const m of adapter.modules) {
    const tensor = (factor: 'A' | 'B'): string => `"${factorName(m.path, factor, adapter.naming)}"`;
    if (m.layer >= config.nLayer) {
      throw new Error(`${file}: tensor ${tensor('A')} adapts ${m.path}, which the base does not have: ${base.where} gives ${base.fieldName('nLayer')} ${config.nLayer} (layers h.0 to h.${config.nLayer - 1})`);
    }
    const inputs = ADAPTABLE[m.kind].inputs * C;
    const outputs = ADAPTABLE[m.kind].outputs * C;
    if (m.inputs !== inputs || m.outputs !== outputs) {
      const [factor, has, wants, side] = m.inputs !== inputs ? ['A', m.inputs, inputs, 'inputs'] : ['B', m.outputs, outputs, 'outputs'];
      throw new Error(`${file}: tensor ${tensor(factor as 'A' | 'B')} is for ${has} ${side} of ${m.kind}, but the base's has ${wants} (${base.where} gives ${base.fieldName('nEmbd')} ${C}): the adapter was made for a base of another size`);
    }
    fitted.add(m.weight);
  }
  const wte = adapter.replaced.find((r) => r.weight === 'wte.weight');
  for (const r of adapter.replaced) {
    const expected = baseShape(r.weight, config);
    if (expected === null) {
      throw new Error(`${file}: tensor "${r.name}" replaces ${r.weight}, which the base does not have: ${base.where} gives ${base.fieldName('nLayer')} ${config.nLayer} (layers h.0 to h.${config.nLayer - 1})`);
    }
    if (!sameShape(r.shape, expected.shape)) {
      throw new Error(`${file}: tensor "${r.name}" has shape [${r.shape.join(', ')}], but the base's ${r.weight} has [${expected.shape.join(', ')}] `
        + `(${base.where} gives ${expected.fields.map((f) => `${base.fieldName(f)} ${config[f]}`).join(', ')}): the adapter was made for a base of another size or vocabulary`);
    }
    if (fitted.has(r.weight)) throw new Error(`${file}: tensor "${r.name}" replaces the base's ${r.weight}, which its lora_A / lora_B adapt too: the file holds two changes of one weight`);
  }
  // PEFT saves every tensor of a module of modules_to_save; one the file lacks is a trained module lost, and PEFT
  // would load the base's own in its place without a word. An entry that names no module of GPT-2 takes none in PEFT
  // either. A module the adapter's factors change is not one PEFT trains whole (its LoRA passes over such modules).
  const prefix = adapter.modules[0].path.slice(0, adapter.modules[0].path.indexOf('h.'));
  for (const [module, params] of baseModules(config, prefix !== '')) {
    const modulePath = module === 'lm_head' ? module : `${prefix}${module}`;
    const entry = savedModuleEntry(adapter.config, modulePath);
    if (entry === undefined || fitted.has(`${module}.weight`)) continue;
    for (const param of params) {
      if (adapter.replaced.some((r) => r.weight === `${module}.${param}`)) continue;
      throw new Error(`${file}: has no tensor "${adapter.naming.prefixed ? PEFT_PREFIX : ''}${modulePath}.${param}": ${configFile} trains ${modulePath} whole `
        + `(modules_to_save "${entry}"), and PEFT saves every tensor of such a module, so the trained one is missing (PEFT would load the base's own in its place)`);
    }
  }
  // GPT-2's output head is wte: PEFT trains a copy of lm_head, or of wte, apart from the other, and a head that is not
  // the input embedding any more cannot be held here.
  const head = adapter.replaced.find((r) => r.weight === LM_HEAD);
  // With ensure_weight_tying the head is the embedding's trained copy, whether the file holds it twice or once.
  const tiedOnce = head === undefined && wte !== undefined && adapter.config.ensureWeightTying;
  if ((!tiedOnce && (head === undefined) !== (wte === undefined)) || (head && wte && !head.values.every((v, i) => Object.is(v, wte.values[i])))) {
    const [trained, other] = head ? [head, wte ? 'its wte.weight' : 'the base\'s wte.weight'] : [wte as ReplacedTensor, 'the base\'s lm_head (its wte.weight)'];
    throw new Error(`${file}: tensor "${trained.name}" (${trained.reason} in ${ADAPTER_CONFIG_FILE}) differs from ${other}: PEFT trained the output head and the token embedding apart, `
      + 'and dixie ties the head to wte as GPT-2 does, so it cannot hold them; train with both in modules_to_save and tied (or neither)');
  }
  for (let layer = 0; layer < config.nLayer; layer++) {
    for (const kind of Object.keys(ADAPTABLE)) {
      const modulePath = `${prefix}h.${layer}.${kind}`;
      if (isTargeted(adapter.config, modulePath, configFile) && !fitted.has(`h.${layer}.${kind}.weight`)) {
        throw new Error(`${configFile}: targets ${modulePath} (target_modules ${JSON.stringify(adapter.config.targetModules)}), which the base has, but ${file} has no lora_A / lora_B for it: made for a base with fewer layers?`);
      }
    }
  }
  // PEFT trains factors for the embeddings and the output head too ("all-linear" leaves the head out), which dixie does
  // not adapt: a target of one without them is an adapter that is not what its config says.
  for (const modulePath of [`${prefix}wte`, `${prefix}wpe`, 'lm_head']) {
    if (adapter.config.targetModules !== ALL_LINEAR && isTargeted(adapter.config, modulePath, configFile)) {
      throw new Error(`${configFile}: targets ${modulePath} (target_modules ${JSON.stringify(adapter.config.targetModules)}), which dixie does not adapt (only ${ADAPTABLE_NAMES} in each layer), and ${file} has no lora_A / lora_B for it`);
    }
  }
}

// Row i of the delta is scaling * sum_k A[k, i] B[:, k], summed in float64 and added to the float32 weights once.
// A sum past float32's range is refused: the base's weights were checked finite before, so the adapter made it.
function deltaRows(m: LoraModule, file: string): MergeRows {
  const { rank, inputs, outputs } = m;
  const bT = new Float64Array(rank * outputs);  // scaling * B^T [rank, outputs], rows contiguous for the inner loop
  for (let o = 0; o < outputs; o++) {
    for (let k = 0; k < rank; k++) bT[k * outputs + o] = m.scaling * m.b[o * rank + k];
  }
  const row = new Float64Array(outputs);
  return (r0, r1, dst) => {
    for (let i = r0; i < r1; i++) {
      row.fill(0);
      for (let k = 0; k < rank; k++) {
        const a = m.a[k * inputs + i];
        const from = k * outputs;
        for (let o = 0; o < outputs; o++) row[o] += a * bT[from + o];
      }
      const at = (i - r0) * outputs;
      for (let o = 0; o < outputs; o++) {
        const merged = Math.fround(dst[at + o] + row[o]);
        if (!Number.isFinite(merged)) {
          throw new Error(`${file}: the factors of ${m.path} (scaling ${m.scaling}) add ${row[o]} to ${m.weight}'s ${dst[at + o]} at element ${i * outputs + o}, past float32's range`);
        }
        dst[at + o] = merged;
      }
    }
  };
}

// ---- writing ----

export interface PeftAdapterToWrite {
  baseModel: string | null;    // base_model_name_or_path: the base's hub name or folder
  r: number;
  alpha: number;
  targets: string[] | string;  // target_modules
  // The factors by module, as dixie names it ("h.0.attn.c_attn"): A [rank, inputs] and B [outputs, rank], row-major.
  tensors: Readonly<Record<string, { a: Float32Array; b: Float32Array }>>;
  dropout?: number;
  useRslora?: boolean;
  rankPattern?: Record<string, number>;
  alphaPattern?: Record<string, number>;
}

// Writes an adapter folder PEFT loads (PeftModel.from_pretrained) and readPeftAdapter reads back: the factors as
// F32 under PEFT's names, then the config, each file atomically.
export async function writePeftAdapter(dir: string, adapter: PeftAdapterToWrite): Promise<void> {
  const config: LoraConfig = {
    baseModel: adapter.baseModel,
    r: adapter.r,
    alpha: adapter.alpha,
    dropout: adapter.dropout ?? 0,
    targetModules: adapter.targets,
    excludeModules: null,
    layersToTransform: null,
    layersPattern: null,
    useRslora: adapter.useRslora ?? false,
    rankPattern: adapter.rankPattern ?? {},
    alphaPattern: adapter.alphaPattern ?? {},
    modulesToSave: null,
    bias: 'none',
    ensureWeightTying: false,
    taskType: 'CAUSAL_LM',
    inferenceMode: true,
  };
  if (!isPositiveInt(config.r)) throw new Error(`writePeftAdapter: r must be a positive integer, got ${config.r}`);
  const tensors: TensorToWrite[] = [];
  for (const [name, { a, b }] of Object.entries(adapter.tensors)) {
    const kind = /^h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)$/.exec(name)?.[1];
    if (kind === undefined) throw new Error(`writePeftAdapter: "${name}" is not a module an adapter can change (h.N. followed by one of ${ADAPTABLE_NAMES})`);
    const modulePath = `transformer.${name}`;
    if (!isTargeted(config, modulePath, 'writePeftAdapter')) throw new Error(`writePeftAdapter: "${name}" is not among the targets ${JSON.stringify(config.targetModules)}`);
    const rank = patterned('writePeftAdapter', 'rank_pattern', config.rankPattern, modulePath, config.r).value;
    if (a.length % rank !== 0 || b.length % rank !== 0) {
      throw new Error(`writePeftAdapter: "${name}": A has ${a.length} values and B ${b.length}, not multiples of its rank ${rank}`);
    }
    const [inputs, outputs] = [a.length / rank, b.length / rank];
    if (inputs * ADAPTABLE[kind].outputs !== outputs * ADAPTABLE[kind].inputs) {
      throw new Error(`writePeftAdapter: "${name}": A [${rank}, ${inputs}] and B [${outputs}, ${rank}] do not fit ${kind}, whose outputs are ${ADAPTABLE[kind].outputs}/${ADAPTABLE[kind].inputs} of its inputs`);
    }
    tensors.push({ name: factorName(modulePath, 'A', PEFT_NAMING), dtype: 'F32', shape: [rank, inputs], data: () => a });
    tensors.push({ name: factorName(modulePath, 'B', PEFT_NAMING), dtype: 'F32', shape: [outputs, rank], data: () => b });
  }
  // Written together, as a model's weights and config are: a failure leaves an adapter saved there before whole.
  await writeFilesAtomic([
    safetensorsToWrite(path.join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: 'pt' }),
    textToWrite(path.join(dir, ADAPTER_CONFIG_FILE), `${JSON.stringify(loraConfigJson(config), null, 2)}\n`),
  ]);
}
