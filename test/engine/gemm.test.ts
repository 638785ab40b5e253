// The CPU GEMM against a double-precision reference, through the dixie_gemm_test program built beside the addon
// (native/tests/gemm_test.cpp): every transpose form, alpha and beta, padded rows, edge and odd shapes, 1 and 2
// threads; it also checks that nothing outside C is written.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import t from 'tap';

t.test('sgemm matches the reference on every case', async (t) => {
  const program = path.resolve(__dirname, '..', '..', '..', 'build', 'Release', 'dixie_gemm_test');
  const run = spawnSync(program, { encoding: 'utf8' });
  t.equal(run.error, undefined, `${program} runs`);
  const summary = /gemm: (\d+) passed, (\d+) failed/.exec(run.stdout ?? '');
  t.ok(summary, 'prints its summary');
  t.ok(Number(summary?.[1]) > 3000, `${summary?.[1]} cases passed`);
  t.equal(Number(summary?.[2]), 0, run.stdout.split('\n').filter((l) => l.startsWith('FAIL')).slice(0, 5).join('\n') || 'no failures');
  t.equal(run.status, 0, 'exit status 0');
});
