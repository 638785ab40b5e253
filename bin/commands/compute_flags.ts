// --device and --precision, shared by every command that loads a model: they set the process's defaults
// (lib/engine/model.ts setComputeDefaults) before the command's work begins.
import { setComputeDefaults } from '../../lib/engine/model';
import { loadAddon, type DeviceRequest, type Precision } from '../../lib/engine/native';

export const COMPUTE_FLAGS = {
  device: {
    choices: ['auto', 'cpu', 'cuda'] as const,
    default: 'auto' as DeviceRequest,
    describe: 'where models run: cuda (an NVIDIA GPU), cpu, or auto (cuda when a GPU is present)',
  },
  precision: {
    choices: ['f32', 'bf16'] as const,
    default: 'f32' as Precision,
    describe: 'GPU arithmetic: f32, or bf16 mixed precision (float32 master weights; the CPU computes in f32)',
  },
};

// Whether the addon has a CUDA backend, usable here or not: asked for a GPU model, an addon built without one
// says so, and one built with it names what is missing.
function builtWithCuda(): boolean {
  try {
    new (loadAddon().Model)({ nLayer: 1, nHead: 1, nEmbd: 8, nCtx: 8, vocabSize: 16 }, { device: 'cuda' }).dispose();
    return true;
  } catch (err) {
    return !/built without CUDA/.test((err as Error).message);
  }
}

// `notice` writes a line as the command logs (bin/serve: a JSON line). 'auto' on a machine with no usable GPU is
// the CPU; an addon built for GPUs says so once, here, in words a user reads, rather than in the driver's.
export function applyComputeFlags(argv: { device: DeviceRequest; precision: Precision }, notice: (message: string) => void): void {
  let device = argv.device;
  if (device === 'auto' && !loadAddon().cudaAvailable()) {
    device = 'cpu';
    if (builtWithCuda()) notice('no GPU found, running on the CPU');
  }
  setComputeDefaults({ device, precision: argv.precision });
}
