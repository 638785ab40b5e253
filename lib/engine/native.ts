// The typed face of the native addon (native/addon). Everything the TypeScript side asks of a compute
// backend goes through these few calls: big buffers in and out, heavy work as promises run off the event loop.
import path from 'node:path';

// How weights are stored: float32, 16-bit, or llama.cpp's 8-bit Q8_0 (the layer matrices as int8 by blocks of 32
// rows with an f16 scale each, the other parameters f16). All but f32 are for inference, or for the frozen base of a
// LoRA adapter that trains over it.
export type WeightDType = 'f32' | 'f16' | 'bf16' | 'q8_0';
export const WEIGHT_DTYPES: readonly WeightDType[] = ['f32', 'f16', 'bf16', 'q8_0'];
// The types of data written into a model (writeParams); a q8_0 model quantizes what it is given.
type SourceDType = 'f32' | 'f16' | 'bf16';
// 'auto': CUDA when the addon was built with it and a GPU is present, else the CPU (with one notice on stderr).
export type DeviceRequest = 'cpu' | 'cuda' | 'auto';
// CUDA only (the CPU computes in float32 either way): 'bf16' is mixed precision, with bf16 activations and
// tensor-core products over float32 master weights, gradients and optimizer state.
export type Precision = 'f32' | 'bf16';

// The layer matrices a LoRA adapter can change, by Hugging Face's module names (native/core/model_spec.h LoraShape).
export type LoraTarget = 'attn.c_attn' | 'attn.c_proj' | 'mlp.c_fc' | 'mlp.c_proj';
export const LORA_TARGETS: readonly LoraTarget[] = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'];

export interface NativeConfig {
  nLayer: number;
  nHead: number;
  nEmbd: number;
  nCtx: number;
  vocabSize: number;
}

export interface NativeOptions {
  threads?: number;        // 0 or absent: one per core
  background?: boolean;    // CPU: the threads at the lowest priority, decoding in the same process going first
  maxBatch?: number;       // training memory is planned once for maxBatch x maxSeq
  maxSeq?: number;         // absent: nCtx
  recompute?: boolean;     // memory-saving gradients
  trainable?: boolean;     // false: inference only (no gradients, optimizer state or training activations)
  weightDtype?: WeightDType;  // f16/bf16/q8_0: inference, or a LoRA adapter's frozen base
  device?: DeviceRequest;     // default 'auto'
  precision?: Precision;      // default 'f32'
  // Train data-parallel with the ranks of this MPI job (initDistributed first): step() averages the gradients over
  // them. zero 1 (ZeRO-1) keeps Adam's moments of this rank's shard only, and makes reading the optimizer state
  // collective. microBatches: backwards per step (the last one may start the reduction on the GPU).
  dataParallel?: { zero?: 0 | 1; microBatches?: number };
  // Train a LoRA adapter over the frozen base (float32, f16, bf16 or q8_0, which training reads as stored, expanded
  // a matrix at a time where the products need it; on CUDA the token embedding and vectors are float32 holding the
  // stored values): the layout appends its factors, h.N.<target>.lora_A.weight [rank, in]
  // and lora_B.weight [out, rank], float32, which alone get gradients and optimizer state; scaling is
  // lora_alpha / rank (lora_alpha / sqrt(rank) for rsLoRA). Decoding adds the adapter too, unmerged. dropout (PEFT's
  // lora_dropout, in [0, 1); default 0): a training forward drops each element of the adapter's input with this
  // probability, with masks drawn from seed and the forward's NativeTraining.
  lora?: { rank: number; scaling: number; targets: LoraTarget[]; dropout?: number; seed?: number };
}

// What marks a forward as training's (native/core/backend.h ForwardOptions): only such a forward drops the adapter's
// inputs, its masks keyed by the step and the micro-batch within it, which a checkpoint keeps.
export interface NativeTraining {
  step: number;
  microBatch: number;
}

export interface NativeTensorInfo {
  name: string;           // Hugging Face name without the "transformer." prefix
  shape: number[];
  offset: number;         // in floats, into the flat parameter buffer
  numel: number;
  isMatrix: boolean;
}

// Bytes by kind.
export interface NativeMemory {
  params: number;  // the weights (on the CPU, a 16-bit or 8-bit model's layer matrices are stored in panel layout)
  grads: number;
  optimizer: number;
  activations: number;
  kvCache: number;  // all of decoding: the KV cache, its scratch, and on the CPU a float32 model's panel copy of its layer matrices
}

export interface NativeStepOptions {
  optimizer: 'adamw' | 'sgd';
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  gradScale?: number;     // multiplies the accumulated gradient first (1 / micro-batches)
  gradClip?: number;      // global-norm clip when > 0
}

export interface NativeSampling {
  temperature: number;    // 0: greedy
  topK: number;           // 0: off
  topP: number;           // 1: off
  minP: number;           // in [0, 1): keep tokens at least this fraction as likely as the most likely; 0: off
  penalize: number;       // 0: off
  logitBias?: { tokens: Int32Array; values: Float32Array };  // values[i] added to the logit of tokens[i]
  allowed?: Uint32Array;  // a grammar's constraint: a bitset of the vocabulary (word i, bit j: token 32i + j), the only tokens drawn
}

// What kvForward writes (native/core/backend.h KvOutput): the logits of each slot's last new token [slots.length, V];
// those of every new token [tokens.length, V], for a prompt's log-probabilities; or the final hidden state of every
// new token (after ln_f: the head's input) [tokens.length, nEmbd], for embeddings.
export type KvOutput = 'lastLogits' | 'tokenLogits' | 'tokenStates';

// Log-probabilities computed natively (native/core/backend.h token_logprobs) from rows of logits, into the arrays
// given: the log-softmax over the ids `allowed` holds (a bitset as NativeSampling's; null: all), each row's
// log-probability of its target (kvForward's: `targets`, one per row; kvStep's: the token it draws), and the `top`
// likeliest allowed ids, most likely first, ties by lower id, -1 past the last where fewer are allowed.
export interface NativeLogprobs {
  top: number;
  allowed: Uint32Array | null;
  targets?: Int32Array;
  logprob: Float64Array;      // [rows]
  topTokens: Int32Array;      // [rows * top]
  topLogprobs: Float64Array;  // [rows * top]
}

export interface NativeModel {
  layout(): NativeTensorInfo[];
  numParams(): number;
  memory(): NativeMemory;
  device(): string;

  // A q8_0 model takes its layer matrices in whole groups of 32 rows (it quantizes them by blocks of 32 rows).
  writeParams(offset: number, src: Float32Array | Uint16Array, dtype: SourceDType): void;
  readParams(offset: number, dst: Float32Array): void;
  readGrads(offset: number, dst: Float32Array): void;
  writeOptimizerState(slot: 'm' | 'v', offset: number, src: Float32Array): void;
  readOptimizerState(slot: 'm' | 'v', offset: number, dst: Float32Array): void;
  optimizerStepCount(): number;
  setOptimizerStepCount(t: number): void;
  setParamFlags(trainable: Uint8Array, decay: Uint8Array): void;  // one byte per layout() entry

  // training: null for an evaluation (validation, a test), which drops nothing.
  forward(inputs: Int32Array, targets: Int32Array | null, B: number, T: number, logitsOut: Float32Array | null, training: NativeTraining | null): Promise<number>;
  zeroGrad(): void;
  backward(): Promise<void>;
  step(options: NativeStepOptions): Promise<number>;  // resolves to the gradient norm before clipping

  kvReserve(nSlots: number): number;  // returns the rows of logits it plans: at least nSlots (see kvForward)
  // out: what `output` asks (default lastLogits); tokenLogits of at most the rows of logits kvReserve planned,
  // tokenStates of any number of tokens on the CPU (on a GPU, thousands: native/core/backend.h kv_forward).
  // logprobs (tokenLogits only): those of every row too, computed off the event loop.
  kvForward(slots: Int32Array, nNew: Int32Array, tokens: Int32Array, out: Float32Array, output?: KvOutput, logprobs?: NativeLogprobs): Promise<void>;
  kvTruncate(slot: number, length: number): void;  // keeps the slot's first `length` tokens (0 empties it)
  kvLength(slot: number): number;
  // One decoding step (native/core/backend.h kv_step): kvForward's feed, then sample()'s draw for the entries
  // sampleRows (ascending indices into slots), off the event loop. params, two rngState words (advanced in place)
  // and one out token per sampled row. A row's penalty history is what its slot holds after the feed (the native
  // side keeps each slot's tokens). logitsOut: null, or [sampleRows.length, vocabSize] for the sampled rows' logits;
  // with it, logprobs: those of the drawn tokens, computed off the event loop.
  kvStep(slots: Int32Array, nNew: Int32Array, tokens: Int32Array, sampleRows: Int32Array, params: NativeSampling[],
    rngState: BigUint64Array, out: Int32Array, logitsOut: Float32Array | null, logprobs?: NativeLogprobs): Promise<void>;
  // LoRA adapters decoded unmerged, a different one per slot if need be (native/core/backend.h kv_add_adapter):
  // modules, one byte per layer and layer matrix (layer by layer, in LORA_TARGETS' order), says which it changes;
  // factors holds A [rank, in] then B [out, rank] of each, in that order. Returns its id, never reused.
  kvAddAdapter(rank: number, scaling: number, modules: Uint8Array, factors: Float32Array): number;
  kvRemoveAdapter(id: number): void;            // unbinds and empties the slots bound to it
  kvSetAdapter(slot: number, id: number): void;  // -1: none; empties the slot when its binding changes
  // rngState: two 64-bit words per row, advanced in place; histories: tokens seen by each row
  dispose(): void;  // frees the native memory now rather than at garbage collection
  sample(logits: Float32Array, params: NativeSampling[], rngState: BigUint64Array, histories: Int32Array[], out: Int32Array): void;
}

// The ranks of an MPI job (native/core/collective.h). Every rank makes the same calls in the same order.
export interface NativeRanks {
  rank: number;
  size: number;
  localSize: number;   // among them, the ranks on this machine
  library: string;     // the MPI library, e.g. "Open MPI v4.1.4 (libmpi.so.40)"
  allreduceSum(data: Float64Array): void;  // in place
  broadcast(data: Uint8Array, root: number): void;
  barrier(timed: boolean): Promise<void>;  // leaving the cores to the ranks that work; within the timeout where timed
  setTimeout(seconds: number): void;       // a collective waiting longer ends the job (0: never)
  reduceSeconds(): number;                 // time in the gradient and parameter collectives so far
  finalize(): void;
  abort(code: number): never;              // ends every rank of the job
}

export interface NativeAddon {
  Model: new (config: NativeConfig, options: NativeOptions) => NativeModel;
  cpuFeatures(): string[];  // vector units the addon was compiled for, e.g. ['avx2', 'fma']
  cudaAvailable(): boolean;  // built with CUDA and a device is usable
  maxServedRank: number;  // the largest rank kvAddAdapter takes (native/core/adapter_table.h kMaxServedRank)
  // kvForward's logprobs of rows of logits held here, one row per target, computed on the calling thread.
  tokenLogprobs(logits: Float32Array, logprobs: NativeLogprobs): void;
  // What a CPU model takes to decode `slots` sequences at their full context, in bytes, computed by the native code
  // that allocates it (native/core/backend.h plan_decode_memory), without allocating.
  planDecodeMemory(config: NativeConfig, weightDtype: WeightDType, slots: number, threads: number): { params: number; kvCache: number; activations: number };
  // The sampler's own table of accepted settings (native/core/checks.h): null, or the first field refused and its rule.
  checkSampling(params: NativeSampling, vocabSize: number): { field: keyof NativeSampling; rule: string } | null;
  // `values` (a whole number of the type's blocks) as ggml's blocks of `type` (q4_0, q4_1, q5_0, q5_1, q8_0, q4_K, q5_K,
  // q6_K), the bytes llama.cpp's quantizer writes for them (native/core/ggml_quantize.h); made off the event loop.
  quantizeGgml(type: string, values: Float32Array, threads: number): Promise<Uint8Array>;
  mpiLauncher(): string | null;  // the MPI launcher that started this process ("Open MPI's mpirun"), or null
  initDistributed(): NativeRanks;  // loads libmpi and initialises MPI (once); throws naming what to install
}

let addon: NativeAddon | undefined;

// native/prebuilds.js, plain JavaScript that `npm install` runs too, is found from the package root at run time.
type Prebuilds = typeof import('../../native/prebuilds');

// The addon DIXIE_ADDON names (another build: a debug or CUDA one, say), else the one compiled from source
// (`npm run build:native`), else the prebuilt one for the best vector units this CPU has.
export function loadAddon(): NativeAddon {
  if (!addon) {
    const root = path.join(__dirname, '..', '..', '..');
    const { file, origin } = (require(path.join(root, 'native', 'prebuilds.js')) as Prebuilds).locateAddon(root);
    try {
      addon = require(file) as NativeAddon;
    } catch (err) {
      throw new Error(`the native addon (${origin}: ${file}) does not load: run \`npm run build:native\`\n${(err as Error).message}`);
    }
    // npm hides what its install step chose, and a slow variant is otherwise invisible.
    if (process.env.DIXIE_VERBOSE === '1') process.stderr.write(`dixie: native addon: ${origin} (${file}), compiled for ${addon.cpuFeatures().join(' ') || 'no vector extensions'}\n`);
  }
  return addon;
}

// The largest rank of an adapter decoded unmerged, as the addon that decodes it says.
export function maxServedRank(): number {
  return loadAddon().maxServedRank;
}
