// Atomic writes: many writes of one file at once each land whole (the last rename wins), a write the disk cuts
// short fails without touching the file, and none leaves a temporary file behind.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { RENAMES_FILE, finishInterruptedSave, textToWrite, writeFilesAtomic, writeTextAtomic } from '../../lib/util/atomic_file';
import { withFileSizeLimit } from '../helpers/file_size_limit';
import { killedBetweenRenames } from '../helpers/folder_lock';
import { LOCK_FILE } from '../../lib/util/folder_lock';

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

t.test('a write that the disk cuts short fails, the file under its name left as it was', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-atomic-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const target = path.join(dir, 'state.json');
  fs.writeFileSync(target, 'the previous state\n');
  const script = `require(${JSON.stringify(path.join(__dirname, '..', '..', 'lib', 'util', 'atomic_file.js'))})
    .writeTextAtomic(${JSON.stringify(target)}, 'x'.repeat(3000))
    .catch((err) => { console.error(err.message); process.exitCode = 1; });`;
  const limited = withFileSizeLimit(2, [process.execPath, '-e', script]);
  const r = spawnSync(limited.file, limited.args, { env: limited.env, encoding: 'utf8' });
  t.equal(r.status, 1, r.stderr);
  t.equal(r.stderr.trim(), `${target}: EFBIG: file too large, write`, 'the error names the file and the cause');
  t.equal(fs.readFileSync(target, 'utf8'), 'the previous state\n', 'the previous file is kept whole');
  t.same(fs.readdirSync(dir), ['state.json'], 'no temporary file left');
});

t.test('a write of several files killed between its renames is finished by the next write into the folder, before its own', async (t) => {
  const dir = t.testdir({ 'weights.bin': 'old weights\n', 'config.json': 'old config\n', 'audiences.json': 'old audiences\n' });
  const pid = killedBetweenRenames(dir, { 'weights.bin': 'new weights\n', 'config.json': 'new config\n' }, ['weights.bin'], ['audiences.json']);
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (message: string) => warnings.push(message);
  try {
    await writeFilesAtomic([textToWrite(path.join(dir, 'vocab.json'), 'vocab\n'), textToWrite(path.join(dir, 'merges.txt'), 'merges\n')]);
  } finally {
    console.warn = warn;
  }
  const read = (name: string): string => fs.readFileSync(path.join(dir, name), 'utf8');
  t.same(fs.readdirSync(dir).sort(), ['config.json', 'merges.txt', 'vocab.json', 'weights.bin'], 'the removal done, no journal or temporary file left');
  t.same(['weights.bin', 'config.json', 'vocab.json', 'merges.txt'].map(read), ['new weights\n', 'new config\n', 'vocab\n', 'merges\n'], 'the killed write finished, and this one written');
  t.same(warnings, [`warning: ${dir}: a save of weights.bin, config.json by process ${pid} was stopped midway, between its renames; it is finished (config.json put in place), so the folder holds what that save wrote`]);
});

t.test('a list of renames that is not one is named, and left for a person to look at', async (t) => {
  const dir = t.testdir({ 'config.json': 'config\n', [RENAMES_FILE]: '{"renames": [["../elsewhere", "config.json"]], "remove": []}\n' });
  t.throws(() => finishInterruptedSave(dir), { message: `${path.join(dir, RENAMES_FILE)}: not a list of renames ("renames": [[temporary file, file]], "remove": [file]): finish or undo them by hand, then remove it` });
  t.equal(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'), 'config\n', 'nothing renamed');
  t.ok(fs.existsSync(path.join(dir, RENAMES_FILE)), 'the list kept');
});

t.test('a rename that fails after others succeeded leaves its list, and the next load finishes the save', async (t) => {
  const dir = t.testdir({ 'weights.bin': 'old weights\n', 'config.json': 'old config\n' });
  const config = path.join(dir, 'config.json');
  // Written last, this file puts a folder in the config's place once the check for folders is past: the weights'
  // rename succeeds, the config's fails.
  const inTheWay = { target: path.join(dir, 'vocab.json'), fill: (fd: number) => {
    fs.writeSync(fd, 'vocab\n');
    fs.rmSync(config);
    fs.mkdirSync(path.join(config, 'in the way'), { recursive: true });
  } };
  const err = await writeFilesAtomic([textToWrite(path.join(dir, 'weights.bin'), 'new weights\n'), textToWrite(config, 'new config\n'), inTheWay]).catch((e: Error) => e);
  t.match((err as Error).message, new RegExp(`: the save into ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} stopped between its renames, 1 of 3 done; the next load or save of the folder finishes them \\(\\.dixie-renames\\.json\\)$`));
  t.equal(fs.readFileSync(path.join(dir, 'weights.bin'), 'utf8'), 'new weights\n', 'the first rename is kept');
  t.ok(fs.existsSync(path.join(dir, RENAMES_FILE)), 'the list of renames kept');
  fs.rmSync(config, { recursive: true });
  const warn = console.warn;
  console.warn = () => {};
  try {
    finishInterruptedSave(dir);
  } finally {
    console.warn = warn;
  }
  t.same(['weights.bin', 'config.json', 'vocab.json'].map((name) => fs.readFileSync(path.join(dir, name), 'utf8')), ['new weights\n', 'new config\n', 'vocab\n'], 'the save finished');
  t.same(fs.readdirSync(dir).sort(), ['config.json', 'vocab.json', 'weights.bin'], 'no list or temporary file left');
});

t.test('a load that finds another load finishing the renames (ranks of one mpirun, two commands at once) waits for it, rather than fail', async (t) => {
  const dir = t.testdir({ 'weights.bin': 'old weights\n', 'config.json': 'old config\n' });
  killedBetweenRenames(dir, { 'weights.bin': 'new weights\n', 'config.json': 'new config\n' }, ['weights.bin'], []);
  // The other load: it holds the lock while it finishes them, a moment after this one looks.
  const other = `
    const { finishInterruptedSave } = require(${JSON.stringify(path.join(__dirname, '..', '..', 'lib', 'util', 'atomic_file.js'))});
    const fs = require('node:fs');
    fs.writeFileSync(${JSON.stringify(path.join(dir, LOCK_FILE))}, JSON.stringify({ pid: process.pid, started: Date.now(), holder: 'the load' }) + '\\n', { flag: 'wx' });
    console.log('locked');
    setTimeout(() => {
      fs.rmSync(${JSON.stringify(path.join(dir, LOCK_FILE))});
      console.warn = () => {};
      finishInterruptedSave(${JSON.stringify(dir)});
    }, 500);`;
  const child = spawn(process.execPath, ['-e', other], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await new Promise((resolve) => child.stdout.once('data', resolve));
  t.doesNotThrow(() => finishInterruptedSave(dir), 'waited for the other load');
  t.equal(await exited, 0);
  t.same(['weights.bin', 'config.json'].map((name) => fs.readFileSync(path.join(dir, name), 'utf8')), ['new weights\n', 'new config\n'], 'the save finished');
  t.same(fs.readdirSync(dir).sort(), ['config.json', 'weights.bin'], 'no journal or lock left');
});
