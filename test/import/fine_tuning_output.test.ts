// --out FILE.jsonl: the conversations as OpenAI's chat fine-tuning JSONL, an example a line, which bin/import-chat
// reads back as the .train output it stands for, byte for byte; conversations the audience wrote nothing in left
// out and counted; a conversation too long for one example split at its longest pauses; a wrong --out refused.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { formatImportSummary, importChats } from '../../lib/import';
import { EXPORTS, fixture, outputBytes } from './helpers';
import { WRITTEN_RECORD } from '../../lib/import/train_output';

const ME = ['Jane Doe', 'jane_d'];

interface Example {
  messages: { role: string; content: string }[];
}

function examples(file: string): Example[] {
  return fs.readFileSync(file, 'utf8').replace(/\n$/, '').split('\n').map((line) => JSON.parse(line) as Example);
}

// A WhatsApp chat (Android's, in German) of `days` days, a session a day of `perDay` messages a minute apart,
// Jane and Papa taking turns; each message says its day and place in the day.
function whatsAppDays(days: number, perDay: number): string {
  const lines: string[] = [];
  for (let day = 0; day < days; day++) {
    for (let i = 0; i < perDay; i++) {
      const at = new Date(Date.UTC(2023, 0, 1 + day, 18, i));
      const stamp = `${String(at.getUTCDate()).padStart(2, '0')}.${String(at.getUTCMonth() + 1).padStart(2, '0')}.23, 18:${String(i).padStart(2, '0')}`;
      lines.push(`${stamp} - ${i % 2 === 0 ? 'Jane Doe' : 'Papa'}: day ${day} message ${i}, and a few more words about how the day went`);
    }
  }
  return `${lines.join('\n')}\n`;
}

t.test('the JSONL is read back as the .train output it stands for, byte for byte, from every app\'s exports', async (t) => {
  const dir = t.testdir();
  const jsonl = path.join(dir, 'chats.jsonl');
  const summary = await importChats([EXPORTS], { out: jsonl, me: ME });
  t.same(summary.examples, { written: 46, split: 0, unanswered: 0 }, 'every conversation an example: nothing split, nothing left out');
  t.same(summary.files, [jsonl]);
  t.equal(summary.bytes, fs.statSync(jsonl).size);
  t.match(summary, { read: 347, kept: 183, sent: 76 }, 'the same messages kept as for .train');

  await importChats([EXPORTS], { out: path.join(dir, 'straight.train'), me: ME });
  const back = await importChats([jsonl], { out: path.join(dir, 'back.train') });
  t.same([back.read, back.kept, back.dropped], [183, 183, {}], 'read back, every message kept and none dropped: the system message naming the audience is no message');
  t.equal(fs.readFileSync(path.join(dir, 'back.train'), 'utf8'), fs.readFileSync(path.join(dir, 'straight.train'), 'utf8'), 'one combined file: the same conversations in the same order');

  await importChats([EXPORTS], { out: path.join(dir, 'straight'), me: ME });
  await importChats([jsonl], { out: path.join(dir, 'back') });
  t.same(outputBytes(path.join(dir, 'back')), outputBytes(path.join(dir, 'straight')), 'a file per audience: the same files');
  t.same(fs.readdirSync(dir).filter((name) => name.startsWith('.') && name !== WRITTEN_RECORD), [], 'no temporary file left behind');
});

t.test('a conversation a line: the audience named by the system message, your messages "user", theirs "assistant"', async (t) => {
  const out = path.join(t.testdir(), 'papa.jsonl');
  await importChats([fixture('whatsapp', 'android-de'), fixture('line')], { out, me: ['Jane Doe'] });
  const written = examples(out);
  t.same(written[0], {
    messages: [
      { role: 'system', content: 'audience: Papa' },
      { role: 'assistant', content: 'Frohes neues Jahr!' },
      { role: 'user', content: 'Danke, dir auch 😊' },
      { role: 'user', content: 'Wann kommst du?' },
      { role: 'assistant', content: 'Um 8' },
    ],
  }, 'a message each, in time order; consecutive ones of one side each their own');
  t.equal(written.length, 2);
  t.equal(written[1].messages[0].content, 'audience: Yuki');
  t.same(new Set(written[1].messages.slice(1).map((m) => m.role)), new Set(['user', 'assistant']));
  t.match(fs.readFileSync(out, 'utf8'), /^\{"messages":\[\{"role":"system","content":"audience: Papa"\},\{"role":"assistant","content":"Frohes neues Jahr!"\}/, 'compact, a line each');
});

t.test('conversations the audience wrote nothing in are left out, and counted', async (t) => {
  const dir = t.testdir({
    'WhatsApp Chat with Sam.txt': '1/20/24, 9:00 AM - Jane Doe: are you there?\n1/20/24, 9:05 AM - Jane Doe: call me\n',
    'WhatsApp Chat with Mom.txt': '1/21/24, 9:00 AM - Jane Doe: hi Mom\n1/21/24, 9:01 AM - Mom: hi!\n',
  });
  const out = path.join(dir, 'chats.jsonl');
  const summary = await importChats([dir], { out, me: ['Jane Doe'] });
  t.same(examples(out).map((e) => e.messages[0].content), ['audience: Mom']);
  t.same(summary.examples, { written: 1, split: 0, unanswered: 1 });
  t.match(summary, { read: 4, kept: 2, sent: 1, dropped: { unanswered: 2 } }, 'its messages counted dropped, not kept');
  t.match(summary.audiences.find((a) => a.audience === 'Sam'), { kept: 0, sent: 0, dropped: { unanswered: 2 }, file: null });
  t.match(summary.audiences.find((a) => a.audience === 'Mom'), { kept: 2, file: out });
  const text = formatImportSummary(summary);
  t.match(text, /^import: 2 export files \(WhatsApp 2\), 4 messages read, 2 kept \(1 sent, 1 received\), 2 dropped \(unanswered 2\)$/m);
  t.match(text, /^ {2}Sam: 1 conversation, 2 read, 0 kept \(0 sent\), dropped unanswered 2$/m);
  t.match(text, "\n  left out: 1 unanswered example (2 messages), a conversation or part of one that the audience wrote nothing in: OpenAI's fine-tuning takes no example without an assistant message\n");
  t.match(text, `\nwrote 1 example of OpenAI's chat fine-tuning format, a line each, to ${out} (131 B)\nwarning: OpenAI's fine-tuning takes a file of at least 10 examples; import more chats`);
  t.equal(fs.statSync(out).size, 131);
  t.notMatch(text, /GPT-2/, 'no word of GPT-2, which does not take this file');
});

t.test('a conversation too long for one example is split at its longest pauses, each part within the limit', async (t) => {
  const dir = t.testdir({ 'WhatsApp Chat mit Papa.txt': whatsAppDays(60, 40) });
  const out = path.join(dir, 'papa.jsonl');
  const summary = await importChats([path.join(dir, 'WhatsApp Chat mit Papa.txt')], { out, me: ['Jane Doe'] });
  const written = examples(out);
  t.ok(written.length > 1, `${written.length} examples`);
  t.same(summary.examples, { written: written.length, split: 1, unanswered: 0 });
  for (const [index, example] of written.entries()) {
    // Counted from above as the writer counts: a token at most a byte, four more a message.
    const tokens = example.messages.reduce((sum, m) => sum + Buffer.byteLength(m.content, 'utf8') + 4, 0);
    t.ok(tokens <= 16_385, `example ${index}: at most ${tokens} tokens`);
    t.ok(tokens > 16_385 / 2 || index === written.length - 1, `example ${index}: not cut short (${tokens} tokens)`);
    t.match(example.messages[1].content, /^day \d+ message 0,/, `example ${index} starts a day's talk`);
    t.equal(example.messages[0].content, 'audience: Papa', `example ${index} names the audience`);
  }
  t.equal(written.reduce((sum, e) => sum + e.messages.length - 1, 0), 60 * 40, 'every message in one example');
  t.match(formatImportSummary(summary), '\n  split: 1 conversation longer than an example may be (16,385 tokens), each into several at its longest pauses\n');

  // Read back, each part is a conversation of its own: the same lines, a blank line between the parts.
  const straight = path.join(dir, 'straight.train');
  const back = path.join(dir, 'back.train');
  await importChats([path.join(dir, 'WhatsApp Chat mit Papa.txt')], { out: straight, me: ['Jane Doe'] });
  await importChats([out], { out: back });
  const backText = fs.readFileSync(back, 'utf8');
  t.equal(backText.split('\n\n').length, written.length);
  t.equal(backText.replace(/\n\n/g, '\n'), fs.readFileSync(straight, 'utf8'));
});

t.test('a wrong --out is refused before any export is read, saying what --out takes', async (t) => {
  const dir = t.testdir();
  for (const name of ['chats.json', 'chats.txt', 'chats.CSV']) {
    await t.rejects(importChats([path.join(dir, 'no such export')], { out: path.join(dir, name), me: ['Jane Doe'] }), {
      message: `--out ${path.join(dir, name)}: give a folder (a .train file per audience), a file ending in .train (every conversation in one file) or in .jsonl (OpenAI's chat fine-tuning format), not a ${path.extname(name).toLowerCase()} file`,
    }, name);
  }
  t.same(fs.readdirSync(dir), []);
});
