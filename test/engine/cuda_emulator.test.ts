// The CUDA backend checked where there is no GPU: the checks program built on the CPU emulation of CUDA
// (native/tests/cuda_emulator) at small shapes. Its training kernels against the CPU backend (`cpu`), its decoding
// against full forward passes and the CPU (`decode`), and decode steps as CUDA graphs (DIXIE_CUDA_GRAPHS=1) against
// the same steps run eagerly (`graphs`): the same tokens, RNG states and logits exactly, with the graphs launched on
// every step they should be. Hopper's attention kernels (wgmma fed by TMA in warp-specialised blocks), forward
// and backward, against the mma.sync ones and a float64 reference (`attention`); the sampler against the CPU's
// (`sampler`); and training again with the switches of prepared GPU work on.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';

const ROOT = path.join(__dirname, '..', '..', '..');
const run = promisify(execFile);
const cudaHeaders = path.join(process.env.CUDA_HOME ?? '/usr/local/cuda', 'include', 'cuda_runtime.h');
// The emulator's fibers switch stacks in x86-64 assembly.
const skip = process.arch !== 'x64' ? `the emulator runs on x86-64, this is ${process.arch}` : !fs.existsSync(cudaHeaders) && `no CUDA headers at ${cudaHeaders}`;

t.setTimeout(20 * 60_000);

// One section of the checks program: its PASS and FAIL lines, and what else it printed when it failed.
async function section(check: string, name: string, env: Record<string, string> = {}): Promise<{ lines: string[]; output: string }> {
  const result = await run(check, [name, '--small'], { cwd: ROOT, maxBuffer: 64 << 20, env: { ...process.env, ...env } }).catch(
    (e: { stdout?: string; stderr?: string; code?: number }) => ({ stdout: e.stdout ?? '', stderr: `${e.stderr ?? ''} (exit status ${e.code})` }),
  );
  return { lines: result.stdout.split('\n').filter((l) => /^(PASS|FAIL)/.test(l)), output: result.stdout + result.stderr };
}

t.test('the CUDA backend on the emulator', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-emu-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await run('bash', [path.join(ROOT, 'native', 'tests', 'cuda_emulator', 'build.sh'), dir], { cwd: ROOT, maxBuffer: 64 << 20 });
  const check = path.join(dir, 'emu_check');

  t.test('decode steps as graphs give the eager steps\' tokens exactly', async (t) => {
    const { lines, output } = await section(check, 'graphs');
    t.equal(lines.length, 2, `one line for f32 and one for bf16:\n${output}`);
    for (const line of lines) t.match(line, /^PASS {2}graphs (f32|bf16): .* 0 tokens differ, RNG states equal, logits max \|diff\| 0\.00e\+00, (\d+) graph launches \(expected \2\)$/, line);
  });
  // The switches of GPU work prepared before a GPU measured it (docs/building.md), all on.
  const prepared = { DIXIE_HOPPER_ATTENTION: '1', DIXIE_FUSED_ADAMW: '1', DIXIE_BIAS_GRAD_EPILOGUE: '1' };
  const sections: [string, string, number, Record<string, string>][] = [
    ['cpu', 'training agrees with the CPU backend', 11, {}],
    ['cpu', 'training with every prepared switch on agrees with the CPU backend', 11, prepared],
    ['decode', 'decoding agrees with full forward passes and the CPU', 16, {}],
    ['attention', 'the Hopper attention kernels agree with the mma.sync ones and float64', 6, {}],
    ['sampler', 'the GPU sampler draws the CPU sampler\'s tokens', 17, {}],
  ];
  for (const [name, what, least, env] of sections) {
    t.test(`${name}: ${what}`, async (t) => {
      const { lines, output } = await section(check, name, env);
      t.ok(lines.length >= least, `${lines.length} checks:\n${output}`);
      t.same(lines.filter((l) => !l.startsWith('PASS')), [], 'every check passes');
    });
  }
});
