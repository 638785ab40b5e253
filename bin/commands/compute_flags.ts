// --device and --precision, shared by every command that loads a model: they set the process's defaults
// (lib/engine/model.ts setComputeDefaults) before the command's work begins.
import { setComputeDefaults } from '../../lib/engine/model';
import type { DeviceRequest, Precision } from '../../lib/engine/native';

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

export function applyComputeFlags(argv: { device: DeviceRequest; precision: Precision }): void {
  setComputeDefaults({ device: argv.device, precision: argv.precision });
}
