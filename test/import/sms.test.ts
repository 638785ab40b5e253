// SMS Backup & Restore's XML: SMS and MMS, sent and received told by the backup itself, a group MMS's sender
// from its addresses, emoji written as two character references, drafts and bare pictures dropped, and the same
// messages in two backups kept once.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ChatImportError } from '../../lib/import';
import { looksLikeSms, parseSms } from '../../lib/import/sms';
import { fixture, importInto } from './helpers';

const BACKUP = fixture('sms', 'sms-20210102120000.xml');

t.test('a backup: a chat per number (whatever its form), group MMS named by their contacts; no --me needed', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [BACKUP]);
  t.same(files, {
    'mom-dad.train': ['0|Mom, Dad|Lunch at 1? <EOM>', "1|Mom, Dad|Sure! Here's the place <EOM>"],
    'mom.train': ['0|Mom|Happy new year sweetie! 😊 <EOM>', '1|Mom|Thanks Mom! & happy new year to Dad too <EOM>'],
  });
  t.match(summary, { read: 6, kept: 4, sent: 2, dropped: { 'not sent': 1, media: 1 } });
  const chats = parseSms('sms.xml', fs.readFileSync(BACKUP, 'utf8'));
  t.same(chats[1].messages.map((m) => [m.sender, m.mine, m.line]), [['Dad', false, 8], ['you', true, 18], ['Mom', false, 30]]);
});

t.test('two backups that overlap: their messages once', async (t) => {
  const dir = t.testdir({ backups: {} });
  fs.copyFileSync(BACKUP, path.join(dir, 'backups', 'sms-a.xml'));
  fs.copyFileSync(BACKUP, path.join(dir, 'backups', 'sms-b.xml'));
  const once = await importInto(path.join(dir, 'once'), [BACKUP]);
  const twice = await importInto(path.join(dir, 'twice'), [path.join(dir, 'backups')]);
  t.same(twice.files, once.files);
  t.equal(twice.summary.dropped.duplicate, 6);
});

t.test('backups that overlap, the contact saved between them: its messages once, named as in the newest', async (t) => {
  const sms = (address: string, name: string, date: number, type: number, body: string): string =>
    `  <sms address="${address}" date="${date}" type="${type}" body="${body}" contact_name="${name}" />`;
  const backup = (address: string, name: string, count: number): string =>
    `<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>\n<smses count="${count}">\n` +
    [sms(address, name, 1609452900000, 1, 'Dinner?'), sms(address, name, 1609452960000, 2, 'Yes'), sms(address, name, 1609453020000, 1, 'See you')].slice(0, count).join('\n') +
    '\n</smses>\n';
  const dir = t.testdir({ backups: { 'sms-20210101.xml': backup('+15551234567', '(Unknown)', 2), 'sms-20210102.xml': backup('+1 555-123-4567', 'Mom', 3) } });
  const { files, summary } = await importInto(path.join(dir, 'out'), [path.join(dir, 'backups')]);
  t.same(files, { 'mom.train': ['0|Mom|Dinner? <EOM>', '1|Mom|Yes <EOM>', '0|Mom|See you <EOM>'] });
  t.match(summary, { read: 5, kept: 3, sent: 1, dropped: { duplicate: 2 } });
});

t.test('a backup cut short, and XML that is not a backup', async (t) => {
  const text = fs.readFileSync(BACKUP, 'utf8');
  t.throws(() => parseSms('sms.xml', text.slice(0, 2000)), { name: 'ChatImportError', line: 10, message: /^sms\.xml:10: the XML stops before <\/smses>: the backup is truncated/ });
  const error = t.throws(() => parseSms('calls.xml', "<?xml version='1.0' ?>\n<calls count=\"1\">\n</calls>\n")) as ChatImportError;
  t.match(error, { line: 2, message: 'calls.xml:2: not an SMS Backup & Restore backup: it starts with <calls>, not <smses>' });
});

t.test('told by its declarations and comments before <smses>, and a text of many declarations is no backup, told at once', (t) => {
  t.ok(looksLikeSms("<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>\n<!-- File Created By SMS Backup & Restore --->\n<?xml-stylesheet type=\"text/xsl\" href=\"sms.xsl\"?>\n<smses count=\"0\">\n</smses>\n"));
  t.notOk(looksLikeSms('<?xml version="1.0"?>\n<!-- <smses> -->\n<notes/>\n'));
  // Each "<?a?>" may be read as its own declaration or as part of a longer one: 2^59 ways to try before a fix, which
  // would not end.
  t.notOk(looksLikeSms(`${'<?a?>'.repeat(60)}<notes/>`));
  t.end();
});

// An iPhone's tapback to an SMS arrives as a text quoting the message, in the reacting phone's language.
// Why each of a backup's texts with Mom (type 1: received, 2: sent), a minute apart, is dropped (null: kept).
function droppedOf(bodies: readonly [type: number, body: string][]): (string | null)[] {
  const sms = bodies.map(([type, body], i) => `  <sms address="+15551234567" date="${1609452900000 + i * 60000}" type="${type}" body="${body}" contact_name="Mom" />`);
  const chats = parseSms('sms.xml', `<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>\n<smses count="${sms.length}">\n${sms.join('\n')}\n</smses>\n`);
  return chats[0].messages.map((m) => m.dropped);
}

t.test("an iPhone's tapbacks, texts that quote an earlier message, are reactions; the same words quoting no message are kept", async (t) => {
  const bodies: [type: number, body: string][] = [
    [2, 'See you at 7'],
    [1, 'Loved “See you at 7”'],
    [2, 'Dinner was great, thank you so much for having us over last night, the kids loved it'],
    [1, 'Laughed at “Dinner was great, thank you so much for having us…”'],
    [1, 'Removed a heart from “See you at 7”'],
    [2, 'À demain'],
    [1, 'A aimé « À demain »'],
    [2, 'Bis morgen'],
    [1, 'Gefällt „Bis morgen“'],
    [1, 'Loved “Dune”'],
    [2, 'Liked “Dune” too!'],
  ];
  t.same(droppedOf(bodies), [null, 'reaction', null, 'reaction', 'reaction', null, 'reaction', null, 'reaction', null, null]);
});

t.test('a cut quote is a tapback only where an earlier message begins with its words: "…" alone, or the start of a later message, is kept', async (t) => {
  const bodies: [type: number, body: string][] = [
    [2, 'Anything at all'],
    [1, 'Loved “…”'],
    [1, 'Liked “Tomorrow we should tr…”'],
    [2, 'Tomorrow we should try the new place on Main Street'],
    [1, 'Loved “Tomorrow we should tr…”'],
    [1, 'Laughed at “Anything…”'],
    [1, 'Laughed at “Anything else…”'],
  ];
  t.same(droppedOf(bodies), [null, null, null, null, 'reaction', 'reaction', null]);
});
