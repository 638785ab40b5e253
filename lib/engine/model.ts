// The public GPT-2 model: a native backend (lib/engine/native.ts) plus Hugging Face's file format. Every native
// call on a model goes through one queue, so calls never overlap whoever makes them; the heavy ones run off the
// event loop. Each method's comment below is its contract.
import path from 'node:path';
import {
  loadAddon,
  LORA_TARGETS,
  maxServedRank,
  LoraTarget,
  NativeConfig,
  NativeMemory,
  NativeModel,
  NativeOptions,
  NativeStepOptions,
  NativeTensorInfo,
  NativeTraining,
  WeightDType,
} from './native';
import { checkConfig, hfConfigFields, inspectModelFolder, type ModelFolder } from '../formats/model_folder';
import { GGML_QUANTS } from '../formats/ggml_quants';
import { GGUF_OUTPUT, type GgufFile, type GgufTensorInfo, ggmlTypeName, ggufConfig, hfTensorOf, openGguf } from '../formats/gguf';
import { bf16ToF32, f16ToF32, openSafetensors, openSafetensorsWeights, type SafetensorsReader, safetensorsToWrite, TensorEntry, TensorToWrite, writeSafetensors } from '../formats/safetensors';
import { adapterDeltas, checkAdapterFits, checkFactorsOnly, loraScaling, readPeftAdapter, writePeftAdapter, type MergeRows, type LoraConfig, type PeftAdapter } from '../formats/peft';
import { checkMemoryPlan, plannedMemoryBytes } from './memory_plan';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { vocabularyFiles } from '../tokenizer/vocab';
import { textToWrite, writeFilesAtomic } from '../util/atomic_file';
import { chatRecordToWrite, type ChatRecord, NO_CHAT, readChatRecord } from '../formats/chat_record';
import { GENERATION_CONFIG_FILE, type GenerationConfig, readGenerationConfig } from '../formats/generation_config';
import { Rng } from '../util/rng';
import { readJsonObject } from '../util/json_file';
import { quoted } from '../util/quoted';
import { sameShape } from '../util/same_shape';

export type GPT2Config = NativeConfig;

// A LoRA adapter to train over the frozen float32 base: its factors join the model's tensors as
// h.N.<target>.lora_A.weight [rank, in] and lora_B.weight [out, rank], and they alone train.
export interface LoraOptions {
  rank: number;
  alpha: number;              // the product is scaled by alpha / rank, as PEFT's lora_alpha
  rslora?: boolean;           // PEFT's use_rslora: scaled by alpha / sqrt(rank) instead (default false)
  targets: LoraTarget[];      // the layer matrices it changes
  dropout?: number;           // PEFT's lora_dropout, in [0, 1): of the adapter's inputs in training forwards (default 0)
  seed?: number;              // of A's initialisation (B starts at zero, so the model starts as the base) and the dropout masks
}

export interface ModelOptions extends Omit<NativeOptions, 'lora'> {
  lora?: LoraOptions;
}

export interface ModelLoadOptions extends ModelOptions {
  // A PEFT LoRA adapter folder (formats/peft.ts): merged into the weights as they load, or, with `lora`, the
  // factors its training goes on from (of the same rank, alpha and targets).
  adapter?: string;
}

// The adapter a model trains: its shape, and the base it adapts (the folder loaded, or null for a created model).
export interface ModelLora {
  rank: number;
  alpha: number;
  rslora: boolean;
  targets: LoraTarget[];
  dropout: number;
  base: string | null;
}

// An adapter the model decodes unmerged (Model.addAdapter), for the requests that name it (GenerateOptions.adapter).
export interface ServedAdapter {
  readonly id: number;
  readonly dir: string;
  readonly bytes: number;     // its factors, as the model keeps them
  readonly model: Model;
}

const isAdapterFactor = (name: string): boolean => /\.lora_[AB]\.weight$/.test(name);

// The adapter a loaded model carries merged into its weights, for whoever shows what a model is.
export interface ModelAdapter {
  dir: string;
  config: LoraConfig;
}

// The device and precision of models whose options name none: set once per process by the commands'
// --device and --precision flags.
export type ComputeDefaults = Pick<NativeOptions, 'device' | 'precision'>;
let computeDefaults: ComputeDefaults = {};
export function setComputeDefaults(defaults: ComputeDefaults): void {
  computeDefaults = { ...defaults };
}

export const WEIGHTS_FILE = 'model.safetensors';
export const CONFIG_FILE = 'config.json';

// Buffers that Hugging Face's GPT-2 checkpoints carry but that are not parameters (the causal mask).
const IGNORED_SUFFIXES = ['.attn.bias', '.attn.masked_bias'];
const TRANSFORMER_PREFIX = 'transformer.';
// The output head is tied to wte. A checkpoint may spell it out as lm_head.weight: it is accepted when it equals
// wte.weight exactly and refused otherwise, since an untied head cannot be represented.
const LM_HEAD = 'lm_head.weight';


// Where a model's config came from, for errors that name one of its fields.
interface ConfigSource {
  where: string;                                   // the config file
  fieldName: (key: keyof GPT2Config) => string;    // a size as that file spells it
}

const CREATED: ConfigSource = { where: 'Model.create config', fieldName: (key) => key };

// The GGUF metadata (or tensor) each size comes from (formats/gguf.ts, ggufConfig).
const GGUF_FIELDS: Readonly<Record<keyof GPT2Config, string>> = {
  nLayer: 'gpt2.block_count', nHead: 'gpt2.attention.head_count', nEmbd: 'gpt2.embedding_length', nCtx: 'gpt2.context_length',
  vocabSize: 'token_embd.weight',
};

// transformers' names (its ACT2FN) of GPT-2's GELU, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), which each
// computes in its own way (PyTorch's fused kernel for gelu_pytorch_tanh, sqrt(2/pi) rounded to 0.7978845608 for
// gelu_fast) to within float32 rounding; "gelu" is the exact erf GELU, another function.
const TANH_GELU: readonly string[] = ['gelu_new', 'gelu_pytorch_tanh', 'gelu_python_tanh', 'gelu_fast', 'gelu_accurate'];

// The config fields readHFConfig does not read, which this engine does not let vary: each with what GPT-2 computes
// (which transformers also assumes where the field is absent) and whether a value asks for that. A value that asks
// for anything else would load and then compute other logits than the checkpoint's, so it is refused.
// reorder_and_upcast_attn is not among them: it changes only the precision of 16-bit attention in PyTorch, not
// what is computed; nor add_cross_attention, whose weights no GPT-2 here has and which run only given an encoder's
// states (an extra tensor is refused by name).
const COMPUTE_FIELDS: readonly { field: string; gpt2: string; accepts: (value: unknown, c: Record<string, unknown>) => boolean }[] = [
  { field: 'activation_function', gpt2: `tanh GELU (${TANH_GELU.map((name) => `"${name}"`).join(', ')})`, accepts: (v) => TANH_GELU.includes(v as string) },
  { field: 'layer_norm_epsilon', gpt2: '1e-5', accepts: (v) => v === 1e-5 },
  { field: 'scale_attn_weights', gpt2: 'true (attention scores divided by sqrt(head size))', accepts: (v) => v === true },
  { field: 'scale_attn_by_inverse_layer_idx', gpt2: 'false (no further division of layer i\'s scores by i + 1)', accepts: (v) => v === false || v === null },
  { field: 'n_inner', gpt2: 'null or 4 x n_embd (the MLP\'s width)', accepts: (v, c) => v === null || (typeof c.n_embd === 'number' && v === 4 * c.n_embd) },
];

function checkComputeConfig(file: string, c: Record<string, unknown>): void {
  for (const { field, gpt2, accepts } of COMPUTE_FIELDS) {
    if (c[field] !== undefined && !accepts(c[field], c)) {
      throw new Error(`${file}: field "${field}" is ${JSON.stringify(c[field])}; dixie computes GPT-2's ${gpt2} only`);
    }
  }
}

// The config.json Hugging Face transformers loads as GPT2LMHeadModel.
export function hfConfigJson(config: GPT2Config): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    n_layer: config.nLayer,
    n_head: config.nHead,
    n_embd: config.nEmbd,
    n_positions: config.nCtx,
    n_ctx: config.nCtx,
    vocab_size: config.vocabSize,
    layer_norm_epsilon: 1e-5,
    activation_function: 'gelu_new',
    initializer_range: 0.02,
    resid_pdrop: 0.0,
    embd_pdrop: 0.0,
    attn_pdrop: 0.0,
    scale_attn_weights: true,
    tie_word_embeddings: true,
    bos_token_id: 50256,
    eos_token_id: 50256,
    torch_dtype: 'float32',
  };
}

// The tensors of a safetensors file that a model of `params` (Hugging Face names and shapes) loads, checked from its
// header alone, so that the server can refuse a broken checkpoint before it loads: each a GPT-2 parameter (with or
// without "transformer."), once, of the shape `configFile` implies, in a float dtype, and none missing. The
// lm_head.weight, which must repeat wte.weight (a tied head), is named apart for its bytes to be compared.
export function safetensorsToLoad(file: SafetensorsReader, configFile: string, params: ReadonlyMap<string, readonly number[]>): { tensors: { entry: TensorEntry; name: string }[]; lmHead: string | null } {
  const tensors: { entry: TensorEntry; name: string }[] = [];
  const seen = new Set<string>();
  let lmHead: string | null = null;
  // Weights beside the config of another model (one written over the other, a file copied in) differ first in their
  // layers, which the checks by tensor would call a stray tensor or missing ones, naming the weights alone.
  const layers = (names: Iterable<string>): number => Math.max(0, ...[...names].map((n) => Number(/^(?:transformer\.)?h\.(\d+)\./.exec(n)?.[1] ?? -1) + 1));
  const [held, implied] = [layers(file.tensors.map((t) => t.name)), layers(params.keys())];
  if (held !== implied) {
    throw new Error(`${file.path} holds the weights of ${held} layers but ${configFile} is the config of ${implied}: the two files are not of one model (written apart?)`);
  }
  for (const entry of file.tensors) {
    if (IGNORED_SUFFIXES.some((s) => entry.name.endsWith(s))) continue;
    if (entry.name === LM_HEAD) {
      lmHead = entry.name;
      continue;
    }
    const name = entry.name.startsWith(TRANSFORMER_PREFIX) ? entry.name.slice(TRANSFORMER_PREFIX.length) : entry.name;
    const shape = params.get(name);
    if (!shape) throw new Error(`${entry.file}: tensor "${entry.name}" is not a GPT-2 parameter`);
    if (seen.has(name)) throw new Error(`${file.path}: tensor "${name}" appears twice (with and without "${TRANSFORMER_PREFIX}")`);
    if (!sameShape(entry.shape, shape)) {
      throw new Error(`${entry.file}: tensor "${entry.name}" has shape [${entry.shape.join(', ')}] but ${configFile} implies [${shape.join(', ')}]`);
    }
    if (entry.dtype !== 'F32' && entry.dtype !== 'F16' && entry.dtype !== 'BF16') {
      throw new Error(`${entry.file}: tensor "${entry.name}" has dtype ${entry.dtype}; weights must be F32, F16 or BF16`);
    }
    tensors.push({ entry, name });
    seen.add(name);
  }
  const missing = [...params.keys()].filter((name) => !seen.has(name));
  if (missing.length > 0) {
    throw new Error(`${file.path}: missing tensor${missing.length > 1 ? 's' : ''} ${missing.map((m) => `"${m}"`).join(', ')}`);
  }
  return { tensors, lmHead };
}

// Tensors go into native memory a slab of rows at a time, through one buffer per load: a fresh array per tensor
// would leave a model's worth of garbage behind (at 1558M, hundreds of MB of a process's resident memory until the
// collector runs). A slab holds whole groups of 32 rows, as a q8_0 model takes its layer matrices.
const SLAB_BYTES = 16 << 20;

// The buffers of one load: the slab, and float32 room for the values of a 16-bit slab that an adapter changes,
// widened before its delta is added (made at its first use, twice the slab's bytes).
interface Slabs {
  buffer: ArrayBuffer;
  wide: Float32Array | null;
}

// Where a tensor holds a NaN or an infinity, and which; null when every value is finite. Such weights load
// without complaint and then generate nothing but "?", so loading refuses them. Tested on the bits, as stored
// (a float's exponent all ones), in one pass over data already in memory.
function firstNonFinite(data: Float32Array | Uint16Array, dtype: 'F32' | 'F16' | 'BF16'): { index: number; value: string } | null {
  const bits = data instanceof Float32Array ? new Uint32Array(data.buffer, data.byteOffset, data.length) : data;
  const exponent = dtype === 'F32' ? 0x7f800000 : dtype === 'F16' ? 0x7c00 : 0x7f80;
  const sign = dtype === 'F32' ? 0x80000000 : 0x8000;
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    if ((b & exponent) !== exponent) continue;
    const value = (b & ~sign & ~exponent) !== 0 ? 'a NaN' : b & sign ? '-Infinity' : '+Infinity';
    return { index: i, value };
  }
  return null;
}

const GGUF_EMBEDDING = 'token_embd.weight';

// The bits of each value a ggml type keeps (a float's significand; a block type's quantized value, its scales aside).
const VALUE_BITS: Readonly<Record<string, number>> = {
  f32: 24, f16: 11, bf16: 8, q8_0: 8, q6_K: 6, q5_0: 5, q5_1: 5, q5_K: 5, q4_0: 4, q4_1: 4, q4_K: 4, iq4_nl: 4, iq4_xs: 4, q3_K: 3, q2_K: 2,
};

// The relative RMS error of a type's values: a block's step is its largest value over 2^(bits - 1), and the largest
// of 32 embedding values is under 4 times their RMS, heavy tails and all, so the error (step / sqrt(12)) is under
// 2.3 x 2^-bits of the RMS (measured: q4_0 0.09 to 0.13, q8_0 0.005 to 0.008; floats far less).
function relativeError(type: number): number {
  return 2.3 * 2 ** -VALUE_BITS[ggmlTypeName(type)];
}

// The tensor the tied embeddings load from: null without an output.weight (newer converters leave it out) or with one
// of token_embd.weight's very bytes. llama.cpp's older convert_hf_to_gguf.py wrote output.weight as a copy of the
// embeddings, which llama-quantize then quantizes to another type (token_embd q4_K, output q6_K): the two are taken
// for one matrix when their values differ by no more than twice the two types' errors together (capped: a 2-bit type
// would otherwise take anything), where an untied head, a matrix of its own, differs by about its whole size. Of the
// two, the more precise is loaded, usually output.weight, as llama-quantize gives the head more bits: the logits
// depend on the head's precision more than on the input embeddings'.
function tiedEmbedding(g: GgufFile): GgufTensorInfo | null {
  const head = g.tensor(GGUF_OUTPUT);
  const wte = g.tensor(GGUF_EMBEDDING);
  if (!head || !wte) return null;
  const untied = `${g.path}: tensor "${GGUF_OUTPUT}" (${ggmlTypeName(head.type)})`;
  if (!sameShape(head.dims, wte.dims)) {
    throw new Error(`${untied} has dims [${head.dims.join(', ')}] but ${GGUF_EMBEDDING} [${wte.dims.join(', ')}]; dixie ties the output head to the token embeddings and cannot load an untied head`);
  }
  if (head.type === wte.type && Buffer.from(g.read(head)).equals(Buffer.from(g.read(wte)))) return null;
  const [cols, rows] = wte.dims;
  const step = Math.max(1, Math.floor((1 << 20) / cols));
  let diff = 0;
  let norm = 0;
  for (let r0 = 0; r0 < rows; r0 += step) {
    const r1 = Math.min(rows, r0 + step);
    const [a, b] = [head, wte].map((t) => rowsAsF32(g, t, cols, r0, r1));
    for (let i = 0; i < a.length; i++) {
      diff += (a[i] - b[i]) ** 2;
      norm += b[i] ** 2;
    }
  }
  const relative = Math.sqrt(diff / norm);
  const bound = Math.min(0.5, 2 * Math.hypot(relativeError(head.type), relativeError(wte.type)));
  if (!(relative <= bound)) {
    throw new Error(`${untied} differs from ${GGUF_EMBEDDING} (${ggmlTypeName(wte.type)}) by ${relative.toPrecision(3)} of its RMS, more than the two types' quantization error allows (${bound.toPrecision(3)}); dixie ties the output head to the token embeddings and cannot load an untied head`);
  }
  return relativeError(head.type) <= relativeError(wte.type) ? head : wte;
}

function rowsAsF32(g: GgufFile, t: GgufTensorInfo, cols: number, r0: number, r1: number): Float32Array {
  const type = g.valueType(t);
  const n = (r1 - r0) * cols;
  const dst = type === 'F32' ? new Float32Array(n) : new Uint16Array(n);
  g.readRows(t, false, r1 - r0, cols, r0, r1, dst);
  return dst instanceof Float32Array ? dst : (type === 'F16' ? f16ToF32 : bf16ToF32)(dst);
}

// What the loader adds to the weights of an adapter it merges, checked against the base first; null without one,
// or when the adapter's factors go on training (`lora`) rather than merge.
function mergedDeltas(adapter: PeftAdapter | null, config: GPT2Config, source: ConfigSource, options: ModelOptions): Map<string, MergeRows> | null {
  if (!adapter) return null;
  if (!options.lora) return adapterDeltas(adapter, config, source);
  checkFactorsOnly(adapter, 'training an adapter over its base', 'train over the merged folder');
  checkAdapterFits(adapter, config, source);
  return null;
}

function checkLora(lora: LoraOptions, base: string | null): ModelLora {
  if (!Number.isSafeInteger(lora.rank) || lora.rank < 1) throw new Error(`lora.rank must be a whole number >= 1, got ${lora.rank}`);
  if (!Number.isFinite(lora.alpha) || lora.alpha <= 0) throw new Error(`lora.alpha must be a number > 0, got ${lora.alpha}`);
  const unknown = lora.targets.find((t) => !LORA_TARGETS.includes(t));
  if (unknown !== undefined || lora.targets.length === 0) {
    throw new Error(`lora.targets must name some of ${LORA_TARGETS.join(', ')}, got ${quoted(unknown ?? lora.targets)}`);
  }
  const dropout = lora.dropout ?? 0;
  if (!(dropout >= 0 && dropout < 1)) throw new Error(`lora.dropout must be a number in [0, 1), got ${dropout}`);
  return { rank: lora.rank, alpha: lora.alpha, rslora: lora.rslora ?? false, targets: LORA_TARGETS.filter((t) => lora.targets.includes(t)), dropout, base };
}

// The key of Model's native handle (see Model[NATIVE]).
export const NATIVE = Symbol('dixie native model');

// The rank Model.addAdapter holds each module of an adapter at, its modules' largest, refused past what the backend
// decodes unmerged, as is an adapter that replaces tensors of the base (checked where an adapter is configured to be
// served, before its base loads).
export function servedRank(adapter: PeftAdapter): number {
  checkFactorsOnly(adapter, 'an adapter decoded unmerged beside its base (as the server serves adapters)', 'serve the merged folder');
  const largest = adapter.modules.reduce((x, m) => (m.rank > x.rank ? m : x));
  const most = maxServedRank();
  if (largest.rank > most) {
    throw new Error(`${adapter.dir}: ${largest.path} has rank ${largest.rank}, and an adapter decoded unmerged beside its base (as the server serves adapters) has rank ${most} at most: merge this one into its base (bin/merge-lora) and serve the merged folder`);
  }
  return largest.rank;
}

// A model's options as the addon takes them: an adapter's alpha as its scaling, the compute defaults filled in.
function nativeOptionsOf(options: ModelOptions): NativeOptions {
  const { lora, ...rest } = options;
  return {
    ...rest,
    device: options.device ?? computeDefaults.device,
    precision: options.precision ?? computeDefaults.precision,
    ...(lora ? { lora: { rank: lora.rank, scaling: loraScaling(lora.alpha, lora.rank, lora.rslora ?? false), targets: [...lora.targets], dropout: lora.dropout ?? 0, seed: lora.seed ?? 0 } } : {}),
  };
}

// Whether a model made with these options runs on a GPU: one asked for, or with 'auto' where one is usable.
export function runsOnGpu(options: ModelOptions = {}): boolean {
  const device = nativeOptionsOf(options).device ?? 'auto';
  return device === 'cuda' || (device === 'auto' && loadAddon().cudaAvailable());
}

// The memory a model of this config takes with these options, as the CPU backend plans it (lib/engine/memory_plan.ts),
// known before anything is allocated.
export function plannedModelBytes(config: GPT2Config, options: ModelOptions): number {
  return plannedMemoryBytes(config, nativeOptionsOf(options));
}

export class Model {
  readonly config: GPT2Config;
  // What makes it a chat model, as the folder it loaded from (or the adapter merged into it) records it; NO_CHAT for
  // a created model. save writes it, so that a chat model saved is served and exported as the chat model it was.
  readonly chat: ChatRecord;
  // The sampling defaults of the folder's generation_config.json (formats/generation_config.ts), which a Generator
  // takes where a request sets none, and save writes back; null where it has none, and for a created model.
  readonly generationConfig: GenerationConfig | null;
  readonly adapter: ModelAdapter | null;
  readonly lora: ModelLora | null;
  readonly tensors: readonly NativeTensorInfo[];
  // The tensors with gradients and optimizer state: all of them, or an adapter's factors alone.
  private readonly trainedTensors: readonly NativeTensorInfo[];
  private readonly native: NativeModel;
  private readonly byName: Map<string, NativeTensorInfo>;
  private readonly trainableFlags: Uint8Array;
  private readonly decayFlags: Uint8Array;
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;
  private weightChanges = 0;

  private constructor(config: GPT2Config, private readonly options: ModelOptions, source: ConfigSource, chat: ChatRecord, generationConfig: GenerationConfig | null, adapter: PeftAdapter | null = null, base: string | null = null) {
    this.config = { ...config };
    this.chat = chat;
    this.generationConfig = generationConfig;
    this.adapter = adapter && { dir: adapter.dir, config: adapter.config };
    this.lora = options.lora ? checkLora(options.lora, base) : null;
    const nativeOptions = nativeOptionsOf(options);
    // The CUDA backend names what did not fit itself; on the CPU the allocation would fail with a bare "out of memory".
    if (!runsOnGpu(options)) checkMemoryPlan(this.config, nativeOptions, source.where, source.fieldName);
    this.native = new (loadAddon().Model)(this.config, nativeOptions);
    this.tensors = this.native.layout();
    this.byName = new Map(this.tensors.map((t) => [t.name, t]));
    this.trainedTensors = this.lora ? this.tensors.filter((t) => isAdapterFactor(t.name)) : this.tensors;
    this.trainableFlags = new Uint8Array(this.tensors.length).fill(1);
    this.decayFlags = Uint8Array.from(this.tensors, (t) => (t.isMatrix ? 1 : 0));
  }

  // With `adapter`, a PEFT LoRA adapter folder: checked against the base before anything is allocated, and merged
  // into each weight it changes as the weight streams in (writeSlabs), so that every weight type holds the merged
  // values (q8_0 quantizes them). With `lora` as well, its factors are the trained adapter's instead.
  // `dir` may be a folder inspected already (inspectModelFolder, resolveModel), which is not read twice.
  static async load(dir: string | ModelFolder, options: ModelLoadOptions = {}): Promise<Model> {
    const { adapter: adapterDir, ...modelOptions } = options;
    const folder = typeof dir === 'string' ? inspectModelFolder(dir) : dir;
    const adapter = adapterDir === undefined ? null : readPeftAdapter(adapterDir);
    const chatAdapter = adapter === null || modelOptions.lora ? undefined : adapter.dir;
    if (folder.kind === 'gguf') {
      // Opened once: the chat record and the sampling defaults are read from its header too.
      const g = openGguf(folder.weights);
      try {
        const generation = folder.config === null ? null : readGenerationConfig(folder.dir, folder.config.vocabSize, g);
        return await Model.loadGguf(g, modelOptions, readChatRecord(folder.dir, chatAdapter, g), generation, adapter, path.resolve(folder.dir));
      } finally {
        g.close();
      }
    }
    const generation = folder.config === null ? null : readGenerationConfig(folder.dir, folder.config.vocabSize);
    const chat = readChatRecord(folder.dir, chatAdapter);
    if (folder.kind !== 'huggingface' || folder.config === null || folder.configFile === null) {
      throw new Error(`${folder.dir}: holds a TensorFlow checkpoint; convert it first with \`bin/import-tf ${folder.dir} <output folder>\``);
    }
    const json = readJsonObject(folder.configFile);
    checkComputeConfig(folder.configFile, json);
    const fields = hfConfigFields(json);
    const source: ConfigSource = { where: folder.configFile, fieldName: (key) => fields[key] };
    const deltas = mergedDeltas(adapter, folder.config, source, modelOptions);
    const file = openSafetensorsWeights(folder.weights);
    let model: Model | null = null;
    try {
      model = new Model(folder.config, modelOptions, source, chat, generation, modelOptions.lora ? null : adapter, path.resolve(folder.dir));
      await model.loadWeights(file, folder.configFile, deltas);
      if (modelOptions.lora) model.startAdapter(adapter);
      return model;
    } catch (err) {
      model?.dispose();
      throw err;
    } finally {
      file.close();
    }
  }

  // A GGUF file of llama.cpp's "gpt2" architecture (formats/gguf.ts): the config from its metadata, the tensors by
  // llama.cpp's names, quantized ones expanded to float32 as ggml expands them (formats/ggml_quants.ts; q8_0's are
  // quantized again into the very same blocks when the model stores q8_0).
  private static async loadGguf(g: GgufFile, options: ModelOptions, chat: ChatRecord, generation: GenerationConfig | null, adapter: PeftAdapter | null, base: string): Promise<Model> {
    const file = g.path;
    let model: Model | null = null;
    try {
      const config = ggufConfig(g);
      const quantized = g.tensors.find((t) => GGML_QUANTS.has(t.type));
      if (quantized && (options.trainable ?? true) && !options.lora) {
        throw new Error(`${file}: tensor "${quantized.name}" is ${ggmlTypeName(quantized.type)}: quantized weights are for inference, or the frozen base of a LoRA adapter, and dixie does not fine-tune them whole (load with trainable: false, train an adapter with lora, or train from a float32, f16 or bf16 model)`);
      }
      const source: ConfigSource = { where: file, fieldName: (key) => GGUF_FIELDS[key] };
      const deltas = mergedDeltas(adapter, config, source, options);
      model = new Model(config, options, source, chat, generation, options.lora ? null : adapter, base);
      await model.loadGgufWeights(g, deltas);
      if (options.lora) model.startAdapter(adapter);
      return model;
    } catch (err) {
      model?.dispose();
      throw err;
    }
  }

  static create(config: GPT2Config, options: ModelOptions & { seed?: number } = {}): Model {
    checkConfig(CREATED.where, config);
    const { seed = 0, ...nativeOptions } = options;
    const model = new Model(config, nativeOptions, CREATED, NO_CHAT, null);
    const rng = new Rng(seed);
    const residualStd = 0.02 / Math.sqrt(2 * config.nLayer);
    for (const t of model.tensors) {
      if (isAdapterFactor(t.name)) continue;
      const data = new Float32Array(t.numel);
      if (t.isMatrix) {
        const std = t.name.endsWith('.c_proj.weight') ? residualStd : 0.02;
        for (let i = 0; i < data.length; i++) data[i] = rng.normal() * std;
      } else if (/ln_\w+\.weight$/.test(t.name)) {
        data.fill(1);
      }
      model.native.writeParams(t.offset, data, 'f32');
    }
    if (model.lora) model.startAdapter(null);
    return model;
  }

  // The adapter's factors at the start of training: those of `adapter`, which must have the model's rank, alpha
  // and targets, or PEFT's initialisation: A uniform in +-1/sqrt(in) (kaiming_uniform_ with a = sqrt(5)), B zero.
  private startAdapter(adapter: PeftAdapter | null): void {
    const lora = this.lora as ModelLora;
    const factors = this.tensors.filter((t) => isAdapterFactor(t.name));
    if (!adapter) {
      const rng = new Rng(this.options.lora?.seed ?? 0);
      for (const t of factors) {
        const data = new Float32Array(t.numel);
        if (t.name.endsWith('.lora_A.weight')) {
          const bound = 1 / Math.sqrt(t.shape[1]);
          for (let i = 0; i < data.length; i++) data[i] = (2 * rng.uniform() - 1) * bound;
        }
        this.native.writeParams(t.offset, data, 'f32');
      }
      return;
    }
    const where = `${adapter.dir}: the adapter to train on`;
    if (adapter.config.useRslora !== lora.rslora) {
      throw new Error(`${where} has use_rslora ${adapter.config.useRslora} (scaled by lora_alpha / ${adapter.config.useRslora ? 'sqrt(r)' : 'r'}), but this training asks for rslora ${lora.rslora}`);
    }
    for (const m of adapter.modules) {
      if (m.rank !== lora.rank || m.alpha !== lora.alpha) {
        throw new Error(`${where} has rank ${m.rank} and alpha ${m.alpha} for ${m.path}, but this training asks for rank ${lora.rank} and alpha ${lora.alpha}`);
      }
    }
    const given = new Map(adapter.modules.map((m) => [`h.${m.layer}.${m.kind}`, m]));
    const used = new Set<string>();
    for (const t of factors) {
      const module = t.name.replace(/\.lora_[AB]\.weight$/, '');
      const m = given.get(module);
      if (!m) throw new Error(`${where} has no factors for ${module}, one of the targets ${lora.targets.join(', ')}`);
      const data = t.name.endsWith('.lora_A.weight') ? m.a : m.b;
      if (data.length !== t.numel) throw new Error(`${where}: ${module} has ${data.length} values in ${t.name.endsWith('.lora_A.weight') ? 'lora_A' : 'lora_B'}, expected ${t.numel} ([${t.shape.join(', ')}])`);
      this.native.writeParams(t.offset, data, 'f32');
      used.add(module);
    }
    const extra = [...given.keys()].filter((module) => !used.has(module));
    if (extra.length > 0) throw new Error(`${where} also adapts ${extra.join(', ')}, outside the targets ${lora.targets.join(', ')}`);
  }

  // Writes tensor `info` ([rows, cols], or a vector) a slab of rows at a time through `slabs`: fill(r0, r1, dst) puts
  // rows [r0, r1) into dst, values of `dtype`, which are checked for NaNs and infinities (named after `where`).
  // addRows, an adapter's delta of the tensor, is added to each slab in float32 before it is written. The event
  // loop runs between slabs: a server loading one model keeps answering for the others (a slab takes milliseconds,
  // a whole model up to seconds).
  private async writeSlabs(info: NativeTensorInfo, dtype: 'F32' | 'F16' | 'BF16', slabs: Slabs, where: string,
    fill: (r0: number, r1: number, dst: Float32Array | Uint16Array) => void, addRows?: MergeRows): Promise<void> {
    const [rows, cols] = info.shape.length === 2 ? info.shape : [1, info.numel];
    const { buffer } = slabs;
    const bytes = dtype === 'F32' ? 4 : 2;
    const step = Math.max(32, Math.floor(buffer.byteLength / bytes / cols / 32) * 32);
    for (let r0 = 0; r0 < rows; r0 += step) {
      await new Promise((resolve) => setImmediate(resolve));
      const r1 = Math.min(rows, r0 + step);
      const n = (r1 - r0) * cols;
      const dst = dtype === 'F32' ? new Float32Array(buffer, 0, n) : new Uint16Array(buffer, 0, n);
      fill(r0, r1, dst);
      const bad = firstNonFinite(dst, dtype);
      if (bad) throw new Error(`${where} has ${bad.value} at element ${r0 * cols + bad.index}`);
      if (addRows) {
        let merged: Float32Array;
        if (dst instanceof Float32Array) {
          merged = dst;
        } else {
          slabs.wide ??= new Float32Array(buffer.byteLength / 2);
          merged = (dtype === 'F16' ? f16ToF32 : bf16ToF32)(dst, slabs.wide.subarray(0, n));
        }
        addRows(r0, r1, merged);
        this.native.writeParams(info.offset + r0 * cols, merged, 'f32');
      } else {
        this.native.writeParams(info.offset + r0 * cols, dst, dtype === 'F32' ? 'f32' : dtype === 'F16' ? 'f16' : 'bf16');
      }
    }
  }

  // Buffers for writeSlabs that take every tensor's slabs: at least 32 rows of the widest.
  private slabBuffers(): Slabs {
    return { buffer: new ArrayBuffer(Math.max(SLAB_BYTES, ...this.tensors.map((t) => 32 * 4 * (t.shape.length === 2 ? t.shape[1] : t.numel)))), wide: null };
  }

  // Streams the file's tensors into native memory one at a time, checked first (safetensorsToLoad), adding an
  // adapter's deltas (by tensor name) to the tensors they change.
  private async loadWeights(file: SafetensorsReader, configFile: string, deltas: ReadonlyMap<string, MergeRows> | null): Promise<void> {
    const params = new Map(this.tensors.filter((t) => !isAdapterFactor(t.name)).map((t) => [t.name, t.shape]));
    const { tensors, lmHead } = safetensorsToLoad(file, configFile, params);
    const slabs = this.slabBuffers();
    for (const { entry, name } of tensors) {
      const info = this.byName.get(name) as NativeTensorInfo;
      const cols = info.shape.length === 2 ? info.shape[1] : info.numel;
      await this.writeSlabs(info, entry.dtype as 'F32' | 'F16' | 'BF16', slabs, `${entry.file}: tensor "${entry.name}"`,
        (r0, _r1, dst) => file.readRange(entry, r0 * cols * dst.BYTES_PER_ELEMENT, dst), deltas?.get(name));
    }
    if (lmHead) this.checkTiedHead(file, lmHead);
  }

  // Every tensor of a GGUF file into native memory, one at a time: names, dims (innermost first) and completeness
  // checked as for safetensors; an output.weight must be token_embd.weight (tiedEmbedding), the head being tied. An
  // adapter's deltas are added as for safetensors.
  private async loadGgufWeights(g: GgufFile, deltas: ReadonlyMap<string, MergeRows> | null): Promise<void> {
    const slabs = this.slabBuffers();
    const loaded = new Set<string>();
    const embedding = tiedEmbedding(g);
    for (const tensor of g.tensors) {
      if (tensor.name === GGUF_OUTPUT) continue;
      const t = tensor.name === GGUF_EMBEDDING && embedding ? embedding : tensor;
      const hf = hfTensorOf(tensor.name);
      const info = hf ? this.byName.get(hf.name) : undefined;
      if (!hf || !info) throw new Error(`${g.path}: tensor "${tensor.name}" is not a parameter of llama.cpp's "gpt2" architecture`);
      // ggml's dims are innermost first; a Conv1D matrix is stored [out][in], its dims [in, out].
      const dims = hf.transposed ? info.shape : [...info.shape].reverse();
      if (!sameShape(t.dims, dims)) {
        throw new Error(`${g.path}: tensor "${t.name}" has dims [${t.dims.join(', ')}] but the metadata implies [${dims.join(', ')}]`);
      }
      const [rows, cols] = info.shape.length === 2 ? info.shape : [1, info.numel];
      await this.writeSlabs(info, g.valueType(t), slabs, `${g.path}: tensor "${t.name}" (${ggmlTypeName(t.type)})`,
        (r0, r1, dst) => g.readRows(t, hf.transposed, rows, cols, r0, r1, dst), deltas?.get(info.name));
      loaded.add(info.name);
    }
    const missing = this.tensors.filter((t) => !loaded.has(t.name) && !isAdapterFactor(t.name)).map((t) => t.name);
    if (missing.length > 0) {
      throw new Error(`${g.path}: missing tensor${missing.length > 1 ? 's' : ''} for ${missing.map((m) => `"${m}"`).join(', ')}`);
    }
  }

  // Compares the file's bytes of lm_head.weight and wte.weight (same dtype and shape required).
  private checkTiedHead(file: SafetensorsReader, name: string): void {
    const head = file.tensor(name);
    const wte = file.tensor(file.has(`${TRANSFORMER_PREFIX}wte.weight`) ? `${TRANSFORMER_PREFIX}wte.weight` : 'wte.weight');
    if (head.dtype !== wte.dtype || !sameShape(head.shape, wte.shape)) {
      throw new Error(`${head.file}: tensor "${name}" is ${head.dtype} [${head.shape.join(', ')}] but the tied wte.weight is ${wte.dtype} [${wte.shape.join(', ')}]`);
    }
    const a = new Uint8Array(head.end - head.begin);
    const b = new Uint8Array(wte.end - wte.begin);
    file.readInto(head, a);
    file.readInto(wte, b);
    if (!Buffer.from(a.buffer).equals(Buffer.from(b.buffer))) {
      throw new Error(`${head.file}: tensor "${name}" differs from wte.weight; dixie ties the output head to wte and cannot load an untied head`);
    }
  }

  // ---- the queue ----

  private enqueue<T>(fn: () => Promise<T> | T): Promise<T> {
    this.pending++;
    const run = this.tail.then(fn).finally(() => {
      this.pending--;
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  // Counts the changes of the weights through this object (optimizer steps, setParam), so that what was computed
  // from earlier weights (a KV cache a later prompt could reuse) is known to be stale.
  get weightsVersion(): number {
    return this.weightChanges;
  }

  // The native handle, for this package's own tests: not part of the API (lib/index.ts does not export NATIVE).
  get [NATIVE](): NativeModel {
    return this.native;
  }

  // How the weights are held: f32, or f16, bf16 or q8_0.
  get weightDtype(): WeightDType {
    return this.options.weightDtype ?? 'f32';
  }

  // What the model runs on: "cpu (2 threads, avx2 fma; f32 weights)", "cuda:0 ...".
  device(): string {
    return this.native.device();
  }

  // Runs fn with the native model when the calls queued before it are done (the way decoding drives it).
  run<T>(fn: (native: NativeModel) => Promise<T> | T): Promise<T> {
    return this.enqueue(() => fn(this.native));
  }

  // With `training` a training forward, which drops the adapter's inputs (lora.dropout) with the masks its step and
  // micro-batch key; without, an evaluation, which drops nothing.
  forward(inputs: Int32Array, targets: Int32Array | null, B: number, T: number, logitsOut?: Float32Array, training?: NativeTraining): Promise<number> {
    return this.enqueue(() => this.native.forward(inputs, targets, B, T, logitsOut ?? null, training ?? null));
  }

  // Adds the gradients of the last forward with targets (of at most maxBatch sequences) to those held. On the CPU
  // each is a fixed tree over the sequences, so a batch split over data-parallel ranks sums to the same bits.
  backward(): Promise<void> {
    return this.enqueue(() => this.native.backward());
  }

  step(options: NativeStepOptions): Promise<number> {
    return this.enqueue(() => {
      this.weightChanges++;
      return this.native.step(options);
    });
  }

  // Immediate when nothing is queued; otherwise runs after the queued calls. Either way the errors it can meet
  // (disposed, no gradients) are thrown here.
  zeroGrad(): void {
    if (this.native.memory().grads === 0) throw new Error('zeroGrad: the model has no gradients (trainable: false, or 16-bit or 8-bit weights)');
    if (this.pending === 0) this.native.zeroGrad();
    else this.enqueue(() => this.native.zeroGrad()).catch(() => undefined);
  }

  // ---- parameters by name ----

  private info(name: string): NativeTensorInfo {
    const key = name.startsWith(TRANSFORMER_PREFIX) ? name.slice(TRANSFORMER_PREFIX.length) : name;
    const info = this.byName.get(key);
    if (!info) throw new Error(`unknown tensor "${name}" (GPT-2 names look like "h.0.attn.c_attn.weight")`);
    return info;
  }

  getParam(name: string): Float32Array {
    const info = this.info(name);
    const out = new Float32Array(info.numel);
    this.native.readParams(info.offset, out);
    return out;
  }

  setParam(name: string, data: Float32Array): void {
    const info = this.info(name);
    if (data.length !== info.numel) {
      throw new Error(`tensor "${name}" has ${info.numel} elements ([${info.shape.join(', ')}]), got ${data.length}`);
    }
    const bad = firstNonFinite(data, 'F32');
    if (bad) throw new Error(`setParam: tensor "${name}" has ${bad.value} at element ${bad.index}; weights must be finite`);
    this.native.writeParams(info.offset, data, 'f32');
    this.weightChanges++;
  }

  getGrad(name: string): Float32Array {
    const info = this.info(name);
    const out = new Float32Array(info.numel);
    this.native.readGrads(info.offset, out);
    return out;
  }

  setTrainable(isTrainable: (name: string) => boolean): void {
    this.tensors.forEach((t, i) => (this.trainableFlags[i] = isTrainable(t.name) ? 1 : 0));
    this.native.setParamFlags(this.trainableFlags, this.decayFlags);
  }

  setWeightDecay(isDecayed: (name: string) => boolean): void {
    this.tensors.forEach((t, i) => (this.decayFlags[i] = isDecayed(t.name) ? 1 : 0));
    this.native.setParamFlags(this.trainableFlags, this.decayFlags);
  }

  // ---- files ----

  // config.json and model.safetensors (float32), the chat record (`chat`, by default the model's own: the
  // audiences in audiences.json, an earlier model's there removed) and the generation_config.json the model was loaded
  // with (one left there by another model removed), written together (writeFilesAtomic): a failure
  // leaves a folder's files as they were. onProgress after each tensor, with the bytes written so far. With
  // `tokenizer`, its vocabulary too, with the chat template, so that the folder loads with the vocabulary the model
  // was trained on rather than GPT-2's with a warning; another model's tokenizer files there (its tokenizer.json,
  // added_tokens.json, special_tokens_map.json) are removed, so that the folder loads with this one's tokens.
  save(dir: string, options: { tokenizer?: Tokenizer; chat?: ChatRecord; onProgress?: (bytes: number, totalBytes: number) => void } = {}): Promise<void> {
    const { tokenizer, chat = this.chat } = options;
    if (tokenizer && tokenizer.vocabSize > this.config.vocabSize) {
      return Promise.reject(new Error(`save: options.tokenizer has ${tokenizer.vocabSize} tokens, more than the model's vocabSize ${this.config.vocabSize}: pass the tokenizer the model was made for`));
    }
    return this.enqueue(async () => {
      if (this.lora) throw new Error('save: the model trains a LoRA adapter, which saveAdapter writes (bin/merge-lora merges it into its base)');
      const totalBytes = this.tensors.reduce((n, t) => n + 4 * t.numel, 0);
      let bytes = 0;
      const tensors: TensorToWrite[] = this.tensors.map((t) => ({
        name: t.name,
        dtype: 'F32',
        shape: t.shape,
        data: () => {
          const data = this.getParam(t.name);
          bytes += data.byteLength;
          options.onProgress?.(bytes, totalBytes);
          return data;
        },
      }));
      const record = chatRecordToWrite(dir, chat, tokenizer !== undefined);
      const generationFile = path.join(dir, GENERATION_CONFIG_FILE);
      const generation = this.generationConfig;
      const vocabulary = tokenizer ? vocabularyFiles(tokenizer.vocab, dir, { nCtx: this.config.nCtx, ...(chat.template !== null && { chatTemplate: chat.template }) }) : { write: [], remove: [] };
      await writeFilesAtomic([
        safetensorsToWrite(path.join(dir, WEIGHTS_FILE), tensors, { format: 'pt' }),
        textToWrite(path.join(dir, CONFIG_FILE), `${JSON.stringify(hfConfigJson(this.config), null, 2)}\n`),
        ...record.write,
        ...(generation ? [textToWrite(generationFile, `${JSON.stringify(generation.json, null, 2)}\n`)] : []),
        ...vocabulary.write,
      ], [...record.remove, ...(generation ? [] : [generationFile]), ...vocabulary.remove]);
    });
  }

  // A PEFT adapter (a folder, or one read already) for the requests that name it, decoded unmerged beside the base's
  // weights, so that requests for different adapters of one base decode in one batch: checked against the model,
  // then its factors copied into the backend's memory (milliseconds; on a GPU, device memory). The backend decodes
  // every module of an adapter at one rank and scaling, so each module is held at the adapter's largest rank, a
  // smaller one (rank_pattern) padded with rows of A and columns of B that are zero and add nothing, and with its own
  // scaling (alpha_pattern, use_rslora) folded into its B.
  async addAdapter(adapter: PeftAdapter | string): Promise<ServedAdapter> {
    const peft = typeof adapter === 'string' ? readPeftAdapter(adapter) : adapter;
    checkAdapterFits(peft, this.config, { where: 'the model', fieldName: (key) => key });
    const rank = servedRank(peft);
    const { nLayer } = this.config;
    const modules = new Uint8Array(nLayer * 4);
    const ordered = peft.modules.map((m) => ({ m, at: m.layer * 4 + LORA_TARGETS.indexOf(m.kind as LoraTarget) })).sort((x, y) => x.at - y.at);
    const factors = new Float32Array(ordered.reduce((n, { m }) => n + rank * (m.inputs + m.outputs), 0));
    let offset = 0;
    for (const { m, at } of ordered) {
      modules[at] = 1;
      factors.set(m.a, offset);
      offset += rank * m.inputs;
      for (let o = 0; o < m.outputs; o++) {
        for (let k = 0; k < m.rank; k++) factors[offset + o * rank + k] = m.scaling * m.b[o * m.rank + k];
      }
      offset += rank * m.outputs;
    }
    return this.enqueue(() => {
      const id = this.native.kvAddAdapter(rank, 1, modules, factors);
      return { id, dir: peft.dir, bytes: factors.byteLength, model: this };
    });
  }

  // Frees an adapter of addAdapter, once no request that names it runs or waits.
  removeAdapter(adapter: ServedAdapter): Promise<void> {
    if (adapter.model !== this) return Promise.reject(new Error(`removeAdapter: ${adapter.dir} was added to another model`));
    return this.enqueue(() => this.native.kvRemoveAdapter(adapter.id));
  }

  // The adapter the model trains, as a PEFT adapter folder (formats/peft.ts) over its base.
  saveAdapter(dir: string): Promise<void> {
    return this.enqueue(async () => {
      const lora = this.lora;
      if (!lora) throw new Error('saveAdapter: the model trains no LoRA adapter (load it with the lora option)');
      const tensors: Record<string, { a: Float32Array; b: Float32Array }> = {};
      for (const t of this.trainedTensors) {
        const module = t.name.replace(/\.lora_[AB]\.weight$/, '');
        tensors[module] ??= { a: new Float32Array(0), b: new Float32Array(0) };
        tensors[module][t.name.endsWith('.lora_A.weight') ? 'a' : 'b'] = this.getParam(t.name);
      }
      await writePeftAdapter(dir, { baseModel: lora.base, r: lora.rank, alpha: lora.alpha, useRslora: lora.rslora, dropout: lora.dropout, targets: [...lora.targets], tensors });
    });
  }

  // Adam's moments as tensors m.<name> and v.<name>. Data-parallel with ZeRO-1 each rank holds a shard of them and
  // reading is collective: rank 0, which writes the file in an order of the writer's choosing, announces each
  // tensor before reading it, and the other ranks read along (followOptimizerSave) until it announces the end.
  private optimizerTensors(): TensorToWrite[] {
    const tensors: TensorToWrite[] = [];
    for (const slot of ['m', 'v'] as const) {
      for (const t of this.trainedTensors) {
        const index = tensors.length;
        tensors.push({
          name: `${slot}.${t.name}`,
          dtype: 'F32',
          shape: t.shape,
          data: () => {
            this.rank0OptimizerRead(index);
            const out = new Float32Array(t.numel);
            this.native.readOptimizerState(slot, t.offset, out);
            return out;
          },
        });
      }
    }
    return tensors;
  }

  // The index of the tensor rank 0 reads next (-1: none), on every rank of a ZeRO-1 job, where rank 0 passes it
  // and the others anything; elsewhere the index passed.
  private rank0OptimizerRead(index: number): number {
    if (this.options.dataParallel?.zero !== 1) return index;
    const word = new Float64Array([index]);
    loadAddon().initDistributed().broadcast(new Uint8Array(word.buffer), 0);
    return word[0];
  }

  saveOptimizer(file: string): Promise<void> {
    return this.enqueue(async () => {
      try {
        await writeSafetensors(file, this.optimizerTensors(), { step: String(this.native.optimizerStepCount()) });
      } finally {
        this.rank0OptimizerRead(-1);
      }
    });
  }

  // The other ranks' part of saveOptimizer under ZeRO-1 (see optimizerTensors); nothing otherwise.
  followOptimizerSave(): Promise<void> {
    return this.enqueue(() => {
      if (this.options.dataParallel?.zero !== 1) return;
      for (let index = this.rank0OptimizerRead(-1); index >= 0; index = this.rank0OptimizerRead(-1)) {
        const t = this.trainedTensors[index % this.trainedTensors.length];
        this.native.readOptimizerState(index < this.trainedTensors.length ? 'm' : 'v', t.offset, new Float32Array(t.numel));
      }
    });
  }

  loadOptimizer(file: string): Promise<void> {
    return this.enqueue(() => {
      const st = openSafetensors(file);
      try {
        const step = Number(st.metadata.step);
        if (!Number.isSafeInteger(step) || step < 0) {
          throw new Error(`${file}: metadata "step" must be a non-negative integer, got ${quoted(st.metadata.step)}`);
        }
        for (const slot of ['m', 'v'] as const) {
          for (const t of this.trainedTensors) {
            const name = `${slot}.${t.name}`;
            if (!st.has(name)) throw new Error(`${file}: missing tensor "${name}"`);
            const entry = st.tensor(name);
            if (entry.dtype !== 'F32' || !sameShape(entry.shape, t.shape)) {
              throw new Error(`${file}: tensor "${name}" is ${entry.dtype} [${entry.shape.join(', ')}], expected F32 [${t.shape.join(', ')}]`);
            }
          }
        }
        for (const slot of ['m', 'v'] as const) {
          for (const t of this.trainedTensors) this.native.writeOptimizerState(slot, t.offset, st.readF32(`${slot}.${t.name}`));
        }
        this.native.setOptimizerStepCount(step);
      } finally {
        st.close();
      }
    });
  }

  memory(): NativeMemory {
    return this.native.memory();
  }

  // Refused while calls are queued or running, which would lose the memory they work in; disposing twice is harmless.
  dispose(): void {
    if (this.pending > 0) {
      throw new Error(`dispose: ${this.pending} call${this.pending === 1 ? ' is' : 's are'} still queued or running on this model: await ${this.pending === 1 ? 'it' : 'them'}, then dispose()`);
    }
    this.native.dispose();
  }
}
