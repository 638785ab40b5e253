// A log's lines newest first, read from its end a chunk at a time: the same lines as reading it whole, whatever the
// chunk size, with lines longer than a chunk, characters of several bytes across chunk edges, CRLF and blank lines.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { linesFromEnd } from '../../lib/util/lines';

t.test('linesFromEnd gives the non-blank lines last to first, for any chunk size', async (t) => {
  const dir = t.testdir({});
  const lines = ['{"id": 1}', 'naïve café ☕ — 日本語', '', 'x'.repeat(300), '\r', 'a line ending in CRLF\r', '🙂🙂🙂', 'no line feed at the end'];
  const file = path.join(dir, 'events.jsonl');
  fs.writeFileSync(file, lines.join('\n'));
  const expected = lines.map((l) => l.replace(/\r$/, '')).filter((l) => l.trim() !== '').reverse();
  for (const chunk of [1, 2, 3, 7, 64, 1 << 16]) t.same([...linesFromEnd(file, chunk)], expected, `chunks of ${chunk} bytes`);
  fs.writeFileSync(file, `${lines.join('\n')}\n\n`);
  t.same([...linesFromEnd(file, 5)], expected, 'trailing line feeds');
  fs.writeFileSync(file, '');
  t.same([...linesFromEnd(file)], [], 'an empty file');
});

t.test('a reader that stops early reads no further and closes the file', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'log');
  fs.writeFileSync(file, Array.from({ length: 1000 }, (_, i) => `line ${i}`).join('\n'));
  const reads: number[] = [];
  const readSync = fs.readSync;
  t.teardown(() => {
    fs.readSync = readSync;
  });
  fs.readSync = ((...args: Parameters<typeof fs.readSync>) => {
    reads.push(args[0] as number);
    return readSync(...args);
  }) as typeof fs.readSync;
  const newest: string[] = [];
  for (const line of linesFromEnd(file, 64)) {
    newest.push(line);
    if (newest.length === 3) break;
  }
  t.same(newest, ['line 999', 'line 998', 'line 997']);
  t.equal(reads.length, 1, 'one chunk read for the three newest lines');
  t.throws(() => fs.fstatSync(reads[0]), /EBADF/, 'the file closed');
});
