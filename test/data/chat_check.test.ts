// The chat-format checker: every malformed line with file:line and why, and the summary; which audiences are names.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ChatChecker, formatChatReport } from '../../lib/data/chat_check';
import { AUDIENCE_RULE, checkAudience, isAudience, parseMessage } from '../../lib/data/chat_format';
import { chatbotOptions } from '../../lib/sanitize';
import { trainedAudiences } from '../../lib/formats/chat_record';
import { checkDataset } from '../../lib/train/train';

t.test('well-formed lines, including | in the message and \\r\\n endings', async (t) => {
  for (const line of ['1|mom|Hi! <EOM>', '0|mom|I am fine | thanks <EOM>', '1|the team|a|b|c <EOM>', '0|dad|Ok.<EOM>', '1|mom|Hi <EOM>  ']) {
    t.same(parseMessage(line).reasons, [], line);
  }
  const checker = new ChatChecker();
  checker.add('a.train', '1|mom|Hi! <EOM>\r\n0|mom|Hi Son. <EOM>\r\n\r\n1|sam|yo | sup <EOM>\r\n');
  const s = checker.summary();
  t.same(s.issues, []);
  t.equal(s.messages, 3);
  t.same(s.audiences, [{ audience: 'mom', sent: 1, received: 1 }, { audience: 'sam', sent: 1, received: 0 }]);
});

t.test('malformed lines: file:line and why', async (t) => {
  const text = [
    '1|mom|Hi! <EOM>',            // 1 ok
    'hello there',                 // 2 no fields, no EOM
    '2|mom|Hi <EOM>',              // 3 bad flag
    '1|mom|   <EOM>',              // 4 empty message
    '0|mom|no end marker',         // 5 no EOM
    '1||Hi <EOM>',                 // 6 empty audience
    '',                            // 7 blank: fine
    'yes|mom|<EOM>',               // 8 flag and empty message
    '1|mom <EOM>',                 // 9 one separator
  ].join('\r\n');
  const checker = new ChatChecker();
  checker.add('chats/x.train', text);
  const s = checker.summary();
  t.same(
    s.issues.map((i) => [i.line, i.reasons]),
    [
      [2, ["missing fields: expected flag|audience|message <EOM> (found no '|')", 'no <EOM> at the end']],
      [3, ['flag must be 0 or 1, got "2"']],
      [4, ['empty message']],
      [5, ['no <EOM> at the end']],
      [6, ['missing field: empty audience']],
      [8, ['flag must be 0 or 1, got "yes"', 'empty message']],
      [9, ["missing fields: expected flag|audience|message <EOM> (found one '|')"]],
    ],
  );
  t.equal(s.messages, 1);
  t.equal(s.lines, 8);
  const report = formatChatReport(s, 42);
  t.match(report, /^chats\/x\.train:2: missing fields/m);
  t.match(report, /^chats\/x\.train:3: flag must be 0 or 1, got "2": "2\|mom\|Hi <EOM>"$/m);
  t.match(report, /1 message \(1 sent, 0 received\), 124 B of text, 42 tokens, 7 malformed lines/);
  t.match(report, /warning: .* a 124M model overfits on less than about 2 MB/);
  t.match(formatChatReport(s, null, 2), /\.\.\. and 5 more malformed lines/);
});

t.test('bin/train --check reports a dataset folder (lib API); a byte order mark is no part of the first line', async (t) => {
  const dir = t.testdir({ 'a.train': '\uFEFF1|mom|Hi <EOM>\n0|mom|Hello <EOM>\n', 'b.train': '1|dad|Hey <EOM>\n1|dad\n' });
  const { report, summary } = await checkDataset(dir);
  t.equal(summary?.issues.length, 1);
  t.match(report, new RegExp(`^${path.join(dir, 'b.train')}:2: missing fields`, 'm'));
  t.match(report, /3 messages \(2 sent, 1 received\)/);
  t.match(report, /per audience: mom 2 \(1 sent\), dad 1 \(1 sent\)/);
  fs.writeFileSync(path.join(dir, 'b.train'), '1|dad|Hey <EOM>\n');
  t.equal((await checkDataset(dir)).summary?.issues.length, 0);
});

t.test('an audience with a control character (NUL, escape, tab) is refused wherever audiences are read', async (t) => {
  for (const name of ['mo\u0000m', 'mom\u001b[31m', 'mom\tdad', 'dad\u007f', 'x\u0085y']) {
    t.notOk(isAudience(name), JSON.stringify(name));
    t.throws(() => checkAudience(name), { message: `audience must be ${AUDIENCE_RULE}, got ${JSON.stringify(name)}` });
  }
  t.ok(isAudience('Grandma Rosé 👵'), 'any printable name');
  const checker = new ChatChecker();
  checker.add('a.train', '1|mom|Hi <EOM>\n0|m\u0001om|Hello <EOM>\n');
  t.same(checker.summary().issues.map((i) => [i.line, i.reasons]), [[2, ['a control character (U+0001) in the audience']]]);
  const dir = t.testdir();
  const checkpoint = path.join(dir, 'model-1');
  fs.mkdirSync(checkpoint);
  fs.writeFileSync(path.join(checkpoint, 'state.json'), JSON.stringify({ audiences: [{ audience: 'mo\u0000m' }, { audience: 'dad' }] }));
  t.same(trainedAudiences(checkpoint), ['dad'], "a training record's audiences");
  const merged = path.join(dir, 'merged');
  fs.mkdirSync(merged);
  fs.writeFileSync(path.join(merged, 'audiences.json'), JSON.stringify({ audiences: [{ audience: 'mo\u0000m' }, { audience: 'grandma' }] }));
  t.same(trainedAudiences(merged), ['grandma'], "the audiences a model folder made from a chat checkpoint keeps (bin/merge-lora's)");
  fs.writeFileSync(path.join(checkpoint, 'audiences.json'), JSON.stringify({ audiences: [{ audience: 'grandma' }] }));
  t.same(trainedAudiences(checkpoint), ['dad'], 'a training record first');
  t.throws(() => chatbotOptions({ names: ['dad', 'mo\u0000m'] }, 'cfg.sanitizer_options'), { message: `cfg.sanitizer_options.names[1]: must be a name of ${AUDIENCE_RULE} (got "mo\\u0000m")` }, "a sanitizer's names");
  const chat = spawnSync(process.execPath, [path.join(__dirname, '..', '..', 'bin', 'commands', 'chat.js'), '--audience', 'mo\u0001m'], { encoding: 'utf8' });
  t.equal(chat.status, 1);
  t.match(chat.stderr, `--audience must be ${AUDIENCE_RULE}, got "mo\\u0001m"`, 'bin/chat --audience');
});
