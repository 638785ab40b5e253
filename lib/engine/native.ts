// The typed face of the native addon (native/addon). Everything the TypeScript side asks of a compute
// backend goes through these few calls: big buffers in and out, heavy work as promises run off the event loop.
import path from 'node:path';

export type WeightDType = 'f32' | 'f16' | 'bf16';
// 'auto': CUDA when the addon was built with it and a GPU is present, else the CPU (with one notice on stderr).
export type DeviceRequest = 'cpu' | 'cuda' | 'auto';
// CUDA only (the CPU computes in float32 either way): 'bf16' is mixed precision, with bf16 activations and
// tensor-core products over float32 master weights, gradients and optimizer state.
export type Precision = 'f32' | 'bf16';

export interface NativeConfig {
  nLayer: number;
  nHead: number;
  nEmbd: number;
  nCtx: number;
  vocabSize: number;
}

export interface NativeOptions {
  threads?: number;        // 0 or absent: one per core
  maxBatch?: number;       // training memory is planned once for maxBatch x maxSeq
  maxSeq?: number;         // absent: nCtx
  recompute?: boolean;     // memory-saving gradients
  trainable?: boolean;     // false: inference only (no gradients, optimizer state or training activations)
  weightDtype?: WeightDType;  // f16/bf16: inference only
  device?: DeviceRequest;     // default 'auto'
  precision?: Precision;      // default 'f32'
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
  params: number;  // the weights (on the CPU, a 16-bit model's layer matrices are stored in panel layout)
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
  penalize: number;       // 0: off
}

export interface NativeModel {
  layout(): NativeTensorInfo[];
  numParams(): number;
  memory(): NativeMemory;
  device(): string;

  writeParams(offset: number, src: Float32Array | Uint16Array, dtype: WeightDType): void;
  readParams(offset: number, dst: Float32Array): void;
  readGrads(offset: number, dst: Float32Array): void;
  writeOptimizerState(slot: 'm' | 'v', offset: number, src: Float32Array): void;
  readOptimizerState(slot: 'm' | 'v', offset: number, dst: Float32Array): void;
  optimizerStepCount(): number;
  setOptimizerStepCount(t: number): void;
  setParamFlags(trainable: Uint8Array, decay: Uint8Array): void;  // one byte per layout() entry

  forward(inputs: Int32Array, targets: Int32Array | null, B: number, T: number, logitsOut: Float32Array | null): Promise<number>;
  zeroGrad(): void;
  backward(): Promise<void>;
  step(options: NativeStepOptions): Promise<number>;  // resolves to the gradient norm before clipping

  kvReserve(nSlots: number): void;
  kvForward(slots: Int32Array, nNew: Int32Array, tokens: Int32Array, logitsOut: Float32Array): Promise<void>;
  kvTruncate(slot: number, length: number): void;  // keeps the slot's first `length` tokens (0 empties it)
  kvLength(slot: number): number;
  // rngState: two 64-bit words per row, advanced in place; histories: tokens seen by each row
  dispose(): void;  // frees the native memory now rather than at garbage collection
  sample(logits: Float32Array, params: NativeSampling[], rngState: BigUint64Array, histories: Int32Array[], out: Int32Array): void;
}

export interface NativeAddon {
  Model: new (config: NativeConfig, options: NativeOptions) => NativeModel;
  cpuFeatures(): string[];  // vector units the addon was compiled for, e.g. ['avx2', 'fma']
  cudaAvailable(): boolean;  // built with CUDA and a device is usable
}

let addon: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  if (!addon) {
    // DIXIE_ADDON points at another build of the addon (a debug or CUDA build, say).
    const file = process.env.DIXIE_ADDON ?? path.join(__dirname, '..', '..', '..', 'build', 'Release', 'dixie_native.node');
    try {
      addon = require(file) as NativeAddon;
    } catch (err) {
      throw new Error(`the native addon is not built (${file}): run \`npm run build:native\`\n${(err as Error).message}`);
    }
  }
  return addon;
}
