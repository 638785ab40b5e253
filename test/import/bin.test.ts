// bin/import-chat on the command line: its help, an import whose output bin/train --check accepts, its flags, and
// exit status 1 with the reason on bad input.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { EXPORTS, REPO, fixture } from './helpers';
import { runCommand, startCommand } from '../helpers/run_command';
import { holdLock } from '../helpers/folder_lock';
import { LOCK_FILE } from '../../lib/util/folder_lock';
import { withFileSizeLimit } from '../helpers/file_size_limit';
import { WRITTEN_RECORD } from '../../lib/import/train_output';


t.test('--help: what it reads, every flag, examples', async (t) => {
  const { status, stdout } = runCommand('import-chat', ['--help']);
  t.equal(status, 0);
  for (const flag of ['--me', '--out', '--format', '--audience-map', '--groups', '--redact', '--date-order', '--encoding']) t.match(stdout, flag);
  t.match(stdout, /WhatsApp "Export chat" \.txt/);
  t.match(stdout, /Slack's workspace export/);
  t.match(stdout, /\[default: "data"\]/);
  t.match(stdout, /Examples:[^]*--me "Jane Doe"/);
  t.match(stdout, /a file ending in\s+\.jsonl\s+for\s+OpenAI's\s+chat\s+fine-tuning\s+format/);
  t.match(stdout, /Examples:[^]*chats\.jsonl/);
});

t.test('an import that bin/train --check accepts', async (t) => {
  const out = path.join(t.testdir(), 'data');
  const imported = runCommand('import-chat', [EXPORTS, '--me', 'Jane Doe', '--me', 'jane_d', '--out', out]);
  t.equal(imported.status, 0, imported.stderr);
  t.match(imported.stdout, /^import: 42 export files \(Discord 1, Element \(Matrix\) 3, Google Chat 2, Messages \(macOS\) 1, Messenger 3, KakaoTalk 3, LINE 1, OpenAI fine-tuning JSONL 1, ShareGPT 1, Signal 2, Skype 1, Slack 5, SMS Backup & Restore 1, Snapchat 1, Telegram 5, WhatsApp 9, X \(Twitter\) 2\), 347 messages read, 183 kept \(76 sent, 107 received\)/);
  t.match(imported.stdout, `  Mom: 3 conversations, 17 read, 11 kept (4 sent), dropped media 2, system 2, deleted 1, not sent 1 -> ${path.join(out, 'mom.train')}`);
  // A size a person reads, not 0.008 MB: that of the files written.
  t.match(imported.stdout, /wrote 40 files in .* \(8\.4 kB\)\nwarning: 8\.4 kB of chat is little/);
  const written = fs.readdirSync(out).filter((file) => file.endsWith('.train'));
  t.equal(written.length, 40);
  t.equal(Math.round(written.reduce((sum, file) => sum + fs.statSync(path.join(out, file)).size, 0) / 100), 84);
  t.match(imported.stdout, `\nnext: bin/train --dataset ${out} --check; then fine-tune GPT-2 on it: bin/download-model 124M, and bin/train --dataset ${out} --model_name 124M\n`, 'the way on, too little to hold data out of');
  const checked = runCommand('train', ['--check', '--dataset', out]);
  t.equal(checked.status, 0, checked.stdout);
  t.match(checked.stdout, /chat check: 40 files, 183 messages \(76 sent, 107 received\)[^]*0 malformed lines/);
});

t.test('the way on from more chat holds a tenth out for validation, and bin/train runs it', async (t) => {
  // A year of a WhatsApp chat, a message every few hours.
  const lines = Array.from({ length: 1500 }, (_, i) => {
    const day = new Date(Date.UTC(2023, 0, 1) + i * 4 * 3_600_000 + (i % 7) * 60_000);
    const stamp = `${day.getUTCMonth() + 1}/${day.getUTCDate()}/23, ${day.getUTCHours() % 12 || 12}:${String(day.getUTCMinutes()).padStart(2, '0')} ${day.getUTCHours() < 12 ? 'AM' : 'PM'}`;
    return `${stamp} - ${i % 3 === 0 ? 'Jane Doe' : 'Mom'}: message ${i} about the ${['garden', 'weekend', 'dinner', 'train'][i % 4]}, and how it went`;
  });
  const dir = t.testdir({ 'WhatsApp Chat with Mom.txt': `${lines.join('\n')}\n` });
  const imported = runCommand('import-chat', [path.join(dir, 'WhatsApp Chat with Mom.txt'), '--me', 'Jane Doe', '--out', 'data'], { cwd: dir });
  t.equal(imported.status, 0, imported.stderr);
  const written = fs.statSync(path.join(dir, 'data', 'mom.train')).size;
  t.ok(written >= 50_000, `${written} bytes written`);
  const next = /^next: .*, and bin\/train (.*) \((.*)\)$/m.exec(imported.stdout);
  t.ok(next, 'a way on that names bin/train\'s flags');
  const command = (next as RegExpExecArray)[1].split(' ');
  t.same(command, ['--dataset', 'data', '--model_name', '124M', '--val_split', '0.1', '--val_every', '200']);
  t.equal((next as RegExpExecArray)[2], 'a tenth held out, the newest messages: checkpoint/run1/best is then the checkpoint that does best on them');

  // 124M is not downloaded here: a fresh model of its context (1,024 tokens) stands in, for one step.
  const tiny = ['--fresh_model', '--n_layer', '1', '--n_head', '2', '--n_embd', '32', '--stop_after', '1', '--sample_every', '0', '--val_batch_count', '4', '--threads', '2'];
  const trained = runCommand('train', [...command.filter((a) => a !== '--model_name' && a !== '124M'), ...tiny], { cwd: dir });
  t.equal(trained.status, 0, trained.stderr);
  const total = Number(/^dataset: ([\d,]+) tokens in 1 chunk from/m.exec(trained.stdout)?.[1].replace(/,/g, ''));
  const held = Number(/^held out for validation: the last 10% of each chunk, ([\d,]+) tokens$/m.exec(trained.stdout)?.[1].replace(/,/g, ''));
  t.ok(held >= 1025 && held >= Math.floor(total * 0.1), `${held} of ${total} tokens held out: room for a window of 1,024 tokens and the next`);
  t.match(trained.stdout, /^\[0 \| \S+\] validation loss \d+\.\d{4}$/m, 'validated on it');
});

t.test('one combined file, audiences renamed from a JSON file, everything redacted', async (t) => {
  const dir = t.testdir({ 'names.json': JSON.stringify({ 'Sam Lee': 'sam' }) });
  const out = path.join(dir, 'all.train');
  const r = runCommand('import-chat', [fixture('whatsapp', 'ios-en-us'), '--me', 'Jane Doe', '--out', out, '--audience-map', path.join(dir, 'names.json'), '--redact']);
  t.equal(r.status, 0, r.stderr);
  t.same(fs.readFileSync(out, 'utf8').split('\n'), [
    '0|sam|Hey, are we still on for lunch? <EOM>',
    '1|sam|Yes! 12:30 at the usual place <EOM>',
    '1|sam|Call me at [phone] or mail [email] <EOM>',
    '0|sam|See [link]. <EOM>',
    '',
  ]);
  const pairs = runCommand('import-chat', [fixture('whatsapp', 'ios-en-us'), '--me', 'Jane Doe', '--out', out, '--audience-map', 'Sam Lee=sammy', '--redact', 'emails']);
  t.equal(pairs.status, 0, pairs.stderr);
  t.match(fs.readFileSync(out, 'utf8'), '1|sammy|Call me at +1 (555) 123-4567 or mail [email] <EOM>');
});

t.test("--out FILE.jsonl: OpenAI's chat fine-tuning format, which bin/import-chat reads back as the .train it stands for", async (t) => {
  const dir = t.testdir();
  const exports = [fixture('whatsapp'), fixture('telegram'), fixture('messenger'), fixture('slack'), fixture('sms')];
  const jsonl = path.join(dir, 'chats.jsonl');
  const imported = runCommand('import-chat', [...exports, '--me', 'Jane Doe', '--out', jsonl]);
  t.equal(imported.status, 0, imported.stderr);
  t.match(imported.stdout, `\nwrote 18 examples of OpenAI's chat fine-tuning format, a line each, to ${jsonl} (`);
  t.match(imported.stdout, `\nnext: fine-tune on ${jsonl} with OpenAI (upload it with purpose "fine-tune"), a tool that takes OpenAI's chat format (Axolotl, TRL, unsloth), or bin/serve --fine_tuning <folder>, whose POST /v1/files takes it; for bin/train, which takes the chat format, import with --out data/ instead\n`);
  const lines = fs.readFileSync(jsonl, 'utf8').split('\n');
  t.equal(lines.pop(), '', 'the last line ends in a line break');
  const examples = lines.map((line) => JSON.parse(line) as { messages: { role: string; content: string }[] });
  t.equal(examples.length, 18);
  for (const { messages } of examples) {
    t.match(messages[0], { role: 'system', content: /^audience: \S/ });
    t.ok(messages.slice(1).every((m) => (m.role === 'user' || m.role === 'assistant') && m.content !== ''), 'user and assistant messages, none empty');
    t.ok(messages.some((m) => m.role === 'assistant'), 'an assistant message in each');
  }
  const mom = examples.find((e) => e.messages[0].content === 'audience: Mom' && e.messages[1].content === "Happy New Year's Eve! 🎉");
  t.same(mom?.messages.slice(1, 4), [
    { role: 'assistant', content: "Happy New Year's Eve! 🎉" }, { role: 'assistant', content: 'Are you coming tomorrow?' }, { role: 'user', content: "Yes! I'll bring the cake" },
  ], "Jane's messages the user's, Mom's the assistant's");

  const straight = runCommand('import-chat', [...exports, '--me', 'Jane Doe', '--out', path.join(dir, 'straight.train')]);
  t.equal(straight.status, 0, straight.stderr);
  const back = runCommand('import-chat', [jsonl, '--out', path.join(dir, 'back.train')]);
  t.equal(back.status, 0, back.stderr);
  t.equal(fs.readFileSync(path.join(dir, 'back.train'), 'utf8'), fs.readFileSync(path.join(dir, 'straight.train'), 'utf8'), 'read back: byte for byte the .train of the exports');
});

t.test('bad input: exit 1 and the reason; nothing written', async (t) => {
  const dir = t.testdir({ 'notes.txt': 'Shopping list\n' });
  const out = path.join(dir, 'data');
  const unknown = runCommand('import-chat', [path.join(dir, 'notes.txt'), '--me', 'Jane', '--out', out]);
  t.equal(unknown.status, 1);
  t.match(unknown.stderr, `import-chat: ${path.join(dir, 'notes.txt')}:1: a file that begins "Shopping list", not a WhatsApp, LINE or KakaoTalk chat`);
  const noMe = runCommand('import-chat', [fixture('whatsapp', 'android-de'), '--out', out]);
  t.equal(noMe.status, 1);
  t.match(noMe.stderr, 'import-chat: say which sender is you with --me "<your name>"');
  t.match(noMe.stderr, 'the senders found, with their messages: Papa (4), Jane Doe (2)');
  const badRedact = runCommand('import-chat', [fixture('whatsapp', 'android-de'), '--me', 'Jane Doe', '--redact', 'links,faces', '--out', out]);
  t.equal(badRedact.status, 1);
  t.match(badRedact.stderr, 'import-chat: --redact: unknown faces (give any of links, emails, phones)');
  const badMap = runCommand('import-chat', [fixture('whatsapp', 'android-de'), '--me', 'Jane Doe', '--audience-map', 'Papa', '--out', out]);
  t.equal(badMap.status, 1);
  t.match(badMap.stderr, 'import-chat: --audience-map "Papa": expected "Name in the app=audience" or a JSON file');
  fs.writeFileSync(path.join(dir, 'names.json'), '{"Papa": "dad",}');
  const badMapFile = runCommand('import-chat', [fixture('whatsapp', 'android-de'), '--me', 'Jane Doe', '--audience-map', path.join(dir, 'names.json'), '--out', out]);
  t.equal(badMapFile.status, 1);
  t.match(badMapFile.stderr, `import-chat: ${path.join(dir, 'names.json')}:1:16: not valid JSON: `, 'a broken map file is named');
  const badOut = runCommand('import-chat', [fixture('whatsapp', 'android-de'), '--me', 'Jane Doe', '--out', `${out}.json`]);
  t.equal(badOut.status, 1);
  t.equal(badOut.stderr, `import-chat: --out ${out}.json: give a folder (a .train file per audience), a file ending in .train (every conversation in one file) or in .jsonl (OpenAI's chat fine-tuning format), not a .json file\n`);
  t.notOk(fs.existsSync(`${out}.json`));
  // --format naming another app: LINE's reading finds no message in a WhatsApp export, Telegram's no JSON.
  const whatsapp = path.join(fixture('whatsapp', 'android-de'), 'WhatsApp Chat mit Papa.txt');
  for (const [format, app] of [['line', 'LINE'], ['telegram', 'Telegram']]) {
    const misnamed = runCommand('import-chat', [whatsapp, '--me', 'Jane Doe', '--format', format, '--out', out]);
    t.equal(misnamed.status, 1, format);
    t.equal(misnamed.stderr, `import-chat: ${whatsapp}: an export of WhatsApp, not of ${app} as --format ${format} says: leave --format out, and each file's app is told from its content\n`);
  }
  t.notOk(fs.existsSync(out));
});

t.test('an import that fails between two files leaves the files it wrote its own: the next import replaces them without --force', async (t) => {
  const dir = t.testdir();
  const out = path.join(dir, 'data');
  // Mom's chat comes first and is small; Dad's, second, outgrows a file size limit of 64 KiB.
  const exportOf = (name: string, momLast: string): string => {
    const folder = path.join(dir, name);
    fs.mkdirSync(folder);
    fs.writeFileSync(path.join(folder, 'WhatsApp Chat with Mom.txt'), `01/01/2021, 10:00 - Mom: Hello dear\n01/01/2021, 10:01 - Jane: Hi Mom\n01/01/2021, 10:02 - Mom: ${momLast}\n`);
    const dad = Array.from({ length: 2000 }, (_, i) => `02/01/2021, 11:${String(i % 60).padStart(2, '0')} - ${i % 2 ? 'Jane' : 'Dad'}: message ${i} about the garden and the weather\n`);
    fs.writeFileSync(path.join(folder, 'WhatsApp Chat with Dad.txt'), dad.join(''));
    return folder;
  };
  const first = exportOf('first', 'See you');
  const newer = exportOf('newer', 'See you on Sunday');
  const command = withFileSizeLimit(64, [process.execPath, path.join(REPO, 'bin', 'import-chat'), first, '--me', 'Jane', '--out', out]);
  const failed = spawnSync(command.file, command.args, { env: command.env, encoding: 'utf8' });
  t.equal(failed.status, 1);
  t.equal(failed.stderr, `import-chat: ${path.join(out, 'dad.train')}: EFBIG: file too large, write\n`);
  t.same(fs.readdirSync(out).sort(), [WRITTEN_RECORD, 'mom.train'], "Mom's file written, Dad's not");
  const momFirst = fs.readFileSync(path.join(out, 'mom.train'), 'utf8');
  t.match(momFirst, /0\|Mom\|See you <EOM>\n$/);

  const rerun = runCommand('import-chat', [newer, '--me', 'Jane', '--out', out]);
  t.equal(rerun.status, 0, rerun.stderr);
  t.match(fs.readFileSync(path.join(out, 'mom.train'), 'utf8'), /0\|Mom\|See you on Sunday <EOM>\n$/, 'the file the failed import wrote is replaced');
  t.equal(fs.readFileSync(path.join(out, 'dad.train'), 'utf8').split('\n').length, 2001);

  // The user's own words are still told from an import's.
  fs.appendFileSync(path.join(out, 'mom.train'), '1|Mom|added by hand <EOM>\n');
  const refused = runCommand('import-chat', [first, '--me', 'Jane', '--out', out]);
  t.equal(refused.status, 1);
  t.match(refused.stderr, `${path.join(out, 'mom.train')} exists, and was not written by an import (or changed since)`);
});

t.test('two bin/import-chat runs into one folder at once: each writes, or is refused naming the lock; the record lists every file written', async (t) => {
  const out = path.join(t.testdir(), 'data');
  const imports = [
    { export: fixture('whatsapp', 'android-en-us', 'WhatsApp Chat with Mom.txt'), writes: 'mom.train' },
    { export: fixture('whatsapp', 'android-de', 'WhatsApp Chat mit Papa.txt'), writes: 'papa.train' },
  ];
  const args = (file: string): string[] => [file, '--me', 'Jane Doe', '--out', out];
  const results = await Promise.all(imports.map((i) => startCommand('import-chat', args(i.export))));
  const wrote = imports.filter((_, i) => results[i].status === 0);
  const refused = imports.filter((_, i) => results[i].status !== 0);
  for (const [i, r] of results.entries()) {
    if (r.status !== 0) t.match(r.stderr, `import-chat: ${out} is in use by process `, `${imports[i].writes}: refused`);
    if (r.status !== 0) t.match(r.stderr, ` (an import), which is writing there: an import is refused (run it again when that is done; the lock is ${path.join(out, LOCK_FILE)}`, 'for the lock');
  }
  t.ok(wrote.length >= 1, 'one import at least wrote');
  const record = (): string[] => Object.keys(JSON.parse(fs.readFileSync(path.join(out, WRITTEN_RECORD), 'utf8')) as object).sort();
  t.same(record(), wrote.map((i) => i.writes).sort(), 'the record lists the files of every import that wrote');
  for (const i of refused) t.equal(runCommand('import-chat', args(i.export)).status, 0, `${i.writes}, run again, writes`);
  t.same(record(), ['mom.train', 'papa.train']);
  t.same(fs.readdirSync(out).sort(), [WRITTEN_RECORD, 'mom.train', 'papa.train'], 'no lock left');
});

t.test("a folder another process's import holds is refused naming the lock and the process; a lock left by a killed one is taken over", async (t) => {
  const out = path.join(t.testdir(), 'data');
  const args = [fixture('whatsapp', 'android-en-us', 'WhatsApp Chat with Mom.txt'), '--me', 'Jane Doe', '--out', out];
  const lock = path.join(out, LOCK_FILE);
  const holder = await holdLock(t, out, 'an import');
  const refused = runCommand('import-chat', args);
  t.equal(refused.status, 1);
  t.equal(refused.stderr.trim(), `import-chat: ${out} is in use by process ${holder.pid} (an import), which is writing there: an import is refused (run it again when that is done; the lock is ${lock}: remove it if that process is not dixie's)`);
  t.same(fs.readdirSync(out), [LOCK_FILE], 'nothing written, the lock kept');
  await holder.stop();
  const imported = runCommand('import-chat', args);
  t.equal(imported.status, 0, imported.stderr);
  t.match(imported.stderr, `warning: ${lock}: taken over from process ${holder.pid} (an import), which is no longer running`);
  t.same(fs.readdirSync(out).sort(), [WRITTEN_RECORD, 'mom.train'], 'written, and the lock gone');
});
