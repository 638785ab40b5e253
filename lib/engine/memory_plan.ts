// What a model will take in memory on the CPU, known from its config before anything is allocated: a config with
// an absurd size (an n_ctx of a billion, a typo in n_embd) is refused with the field named, where the native
// allocation would fail with a bare "out of memory" (or, with lazily mapped pages, much later).
import os from 'node:os';
import type { NativeConfig, NativeOptions } from './native';

interface MemoryPlan {
  weights: number;      // the parameters, and the decoder's panel copy of the layer matrices
  training: number;     // gradients and Adam's two moments (trainable float32 models)
  activations: number;  // the forward (and backward) pass's buffers for maxBatch x maxSeq tokens
  total: number;
}

// GPT-2's largest release (1558M): the field of a model too large for the machine that is furthest above its
// value is the one to look at first.
const LARGEST_GPT2: Readonly<Record<keyof NativeConfig, number>> = { nLayer: 48, nHead: 25, nEmbd: 1600, nCtx: 1024, vocabSize: 50257 };

// The large buffers the CPU backend allocates (native/cpu/cpu_backend.cpp and decoder.cpp), in bytes; padding,
// buffers of a few numbers per token, and the KV cache (sized later, by the number of sequences decoded together)
// are left out.
function plannedMemory(config: NativeConfig, options: NativeOptions): MemoryPlan {
  const { nLayer: L, nHead: NH, nEmbd: C, nCtx, vocabSize: V } = config;
  const matrices = 12 * L * C * C;
  const params = V * C + nCtx * C + matrices + 13 * L * C + 2 * C;
  const dtype = options.weightDtype ?? 'f32';
  const weightBytes = dtype === 'f32' ? 4 : 2;
  // 16-bit and 8-bit weights train only as the frozen base of an adapter.
  const trainable = (options.trainable ?? true) && (dtype === 'f32' || options.lora !== undefined);
  // q8_0: the layer matrices and the token embedding at 34 bytes a block of 32 values, the other parameters at 2 bytes.
  const quantized = matrices + V * C;
  const weights = dtype === 'q8_0' ? (params - quantized) * 2 + (quantized / 32) * 34 : (params + matrices) * weightBytes;
  // With an adapter only its factors have gradients and moments: r x (in + out) per targeted matrix and layer.
  const widths: Record<string, number> = { 'attn.c_attn': 4 * C, 'attn.c_proj': 2 * C, 'mlp.c_fc': 5 * C, 'mlp.c_proj': 5 * C };
  const adapter = options.lora ? L * options.lora.rank * options.lora.targets.reduce((n, t) => n + widths[t], 0) : 0;
  const training = trainable ? 3 * (options.lora ? adapter : params) * 4 : 0;
  let activations = 0;
  if (dtype === 'f32' || trainable) {
    const N = (options.maxBatch ?? 1) * (options.maxSeq || nCtx);
    const layerSets = trainable && !options.recompute ? L : 1;
    const residuals = trainable ? L + 1 : 2;
    // An adapter's dropout keeps one dropped input of the widest matrix it adapts.
    const dropped = trainable && (options.lora?.dropout ?? 0) > 0 ? (options.lora?.targets.includes('mlp.c_proj') ? 4 * C : C) : 0;
    const floats = N * (layerSets * (11 * C + NH) + residuals * C + 7 * C + V + (trainable ? 6 * C : 0) + dropped);
    // A narrow base's layer matrix (or as many token-embedding rows) expanded to float32 at a time.
    activations = (floats + (dtype === 'f32' ? 0 : 4 * C * C)) * 4;
  }
  const factors = dtype === 'f32' ? 0 : adapter * 4;  // in float32 beside a narrow base
  return { weights: weights + factors, training, activations, total: weights + factors + training + activations };
}

// The bytes a model of this config and these options allocates, for a caller that must fit it in a budget.
export function plannedMemoryBytes(config: NativeConfig, options: NativeOptions): number {
  return plannedMemory(config, options).total;
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(bytes < 2 ** 30 ? 3 : 1)} GiB`;
}

// Throws when the plan needs more than the machine's memory. `where` names the config (its file), `fieldName`
// a config key as that file spells it.
export function checkMemoryPlan(config: NativeConfig, options: NativeOptions, where: string, fieldName: (key: keyof NativeConfig) => string): void {
  const plan = plannedMemory(config, options);
  const available = os.totalmem();
  if (plan.total <= available) return;
  const tokens = `${options.maxBatch ?? 1} x ${options.maxSeq || config.nCtx} tokens`;
  const parts = [`weights ${gib(plan.weights)}`, ...(plan.training > 0 ? [`gradients and optimizer state ${gib(plan.training)}`] : []), `activations for ${tokens} ${gib(plan.activations)}`];
  const need = `the model would need ${gib(plan.total)} of memory (${parts.join(', ')}), more than this machine's ${gib(available)}`;
  const keys = Object.keys(LARGEST_GPT2) as (keyof NativeConfig)[];
  const suspect = keys.reduce((a, b) => (config[b] / LARGEST_GPT2[b] > config[a] / LARGEST_GPT2[a] ? b : a));
  if (config[suspect] > LARGEST_GPT2[suspect]) {
    throw new RangeError(`${where}: field "${fieldName(suspect)}" is ${config[suspect]}, larger than in any GPT-2 (${LARGEST_GPT2[suspect]}): ${need}`);
  }
  const sizes = keys.map((k) => `${fieldName(k)} ${config[k]}`).join(', ');
  throw new RangeError(`${where}: ${need} (${sizes})`);
}
