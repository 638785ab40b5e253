// What ptxas makes of Hopper's attention kernels (wgmma fed by TMA), checked where there is no GPU to time them:
// their products stay asynchronous, and nothing spills. A function call anywhere in such a kernel (printf is one)
// makes ptxas serialize every wgmma in it, waiting for each product before the next issues, which the emulator
// cannot see and ptxas only mentions (C7510).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';

const ROOT = path.join(__dirname, '..', '..', '..');
const run = promisify(execFile);
const nvcc = path.join(process.env.CUDA_HOME ?? '/usr/local/cuda', 'bin', 'nvcc');

t.setTimeout(5 * 60_000);

t.test('ptxas keeps the Hopper attention kernels\' wgmma asynchronous and their registers unspilled', { skip: !fs.existsSync(nvcc) && `no nvcc at ${nvcc}` }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-ptxas-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { stdout, stderr } = await run(
    nvcc,
    ['-std=c++17', '-O3', '-Inative', '-DDIXIE_CUDA_SM90A', '--generate-code=arch=compute_90a,code=[sm_90a]', '-Xptxas', '-v', '-c', 'native/cuda/attention.cu', '-o', path.join(dir, 'attention.o')],
    { cwd: ROOT, maxBuffer: 64 << 20 },
  );
  const report = stdout + stderr;
  // C75xx are ptxas's notes on the wgmma pipeline: C7510 and C7518 serialize every product, C7517 makes a thread
  // wait for its products where the code did not (a register of theirs written or read before its wait).
  t.notMatch(report, /C75\d\d|serialized|warpgroup\.wait is injected/, 'no wgmma serialized, no wait injected');
  // ptxas's report of each kernel: "Compiling entry function '<name>'", then its stack, spills and registers.
  const hopper = report.split("Compiling entry function '").slice(1).filter((entry) => entry.startsWith('_Z') && entry.split("'")[0].includes('TmaFeed'));
  t.equal(hopper.length, 3, 'the forward, dQ and dK/dV passes');
  for (const entry of hopper) {
    const pass = /(ForwardRows|DqRows|DkvRows)/.exec(entry)?.[1] ?? entry.split("'")[0];
    t.match(entry, /0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads/, `${pass}: no stack, no spills`);
    t.comment(`${pass}: ${/Used (\d+) registers/.exec(entry)?.[1] ?? '?'} registers`);
  }
});
