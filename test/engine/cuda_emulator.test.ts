// Decode steps as CUDA graphs (DIXIE_CUDA_GRAPHS=1) checked where there is no GPU: the checks program built on the
// CPU emulation of CUDA (native/tests/cuda_emulator) runs one decoding script as graphs and eagerly, and the two
// must give the same tokens, RNG states and logits exactly, with the graphs launched on every step they should be.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';

const ROOT = path.join(__dirname, '..', '..', '..');
const run = promisify(execFile);
const cudaHeaders = path.join(process.env.CUDA_HOME ?? '/usr/local/cuda', 'include', 'cuda_runtime.h');

t.setTimeout(15 * 60_000);

// The emulator's fibers switch stacks in x86-64 assembly.
const skip = process.arch !== 'x64' ? `the emulator runs on x86-64, this is ${process.arch}` : !fs.existsSync(cudaHeaders) && `no CUDA headers at ${cudaHeaders}`;

t.test('decode graphs on the CUDA emulator give the eager steps\' tokens exactly', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-emu-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await run('bash', [path.join(ROOT, 'native', 'tests', 'cuda_emulator', 'build.sh'), dir], { cwd: ROOT, maxBuffer: 64 << 20 });
  const result = await run(path.join(dir, 'emu_check'), ['graphs', '--small'], { cwd: ROOT, maxBuffer: 64 << 20 }).catch(
    (e: { stdout?: string; stderr?: string; code?: number }) => ({ stdout: e.stdout ?? '', stderr: `${e.stderr ?? ''} (exit status ${e.code})` }),
  );
  const lines = result.stdout.split('\n').filter((l) => /^(PASS|FAIL)/.test(l));
  t.equal(lines.length, 2, `one line for f32 and one for bf16:\n${result.stdout}${result.stderr}`);
  for (const line of lines) t.match(line, /^PASS {2}graphs (f32|bf16): .* 0 tokens differ, RNG states equal, logits max \|diff\| 0\.00e\+00, (\d+) graph launches \(expected \2\)$/, line);
});
