// The CPU GEMM that training runs on (native/cpu/gemm.cpp): GFLOP/s on GPT-2 124M's training shapes at 1 and 2
// threads, printed by the dixie_gemm_bench program that `npm run build:native` builds beside the addon.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export async function run(): Promise<void> {
  const program = path.join(__dirname, '..', '..', 'build', 'Release', 'dixie_gemm_bench');
  if (!fs.existsSync(program)) throw new Error(`${program} is not built: run \`npm run build:native\``);
  process.stdout.write(execFileSync(program, { encoding: 'utf8' }));
}
