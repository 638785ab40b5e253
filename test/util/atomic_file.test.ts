// Atomic writes: many writes of one file at once each land whole (the last rename wins), and none leaves a
// temporary file behind.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { writeTextAtomic } from '../../lib/util/atomic_file';

t.test('concurrent writes of one file never share a temporary file', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-atomic-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const target = path.join(dir, 'config.json');
  // Contents of different lengths, so that two writers sharing one file would leave a torn mix.
  const contents = Array.from({ length: 32 }, (_, i) => `${JSON.stringify({ writer: i, pad: 'x'.repeat(i * 997) })}\n`);
  const results = await Promise.allSettled(contents.map((c) => writeTextAtomic(target, c)));
  t.same(results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)), [], 'every write succeeds');
  t.ok(contents.includes(fs.readFileSync(target, 'utf8')), 'the file is one of the writes, whole');
  t.same(fs.readdirSync(dir), ['config.json'], 'no temporary file left');
});
