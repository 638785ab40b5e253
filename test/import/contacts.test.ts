// --contacts: address books exported as vCards (test/fixtures/contacts: macOS Contacts' vCard 3.0 with
// grouped properties and escapes, Android's 2.1 with quoted-printable names folded over lines) name the people a
// Mac's chat.db knows only by number or address; --audience-map takes either name; bad files are refused.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { addressKey, readContacts } from '../../lib/import/contacts';
import { REPO, fixture, importInto } from './helpers';

const MACOS = path.join(REPO, 'test', 'fixtures', 'contacts', 'macos.vcf');
const ANDROID = path.join(REPO, 'test', 'fixtures', 'contacts', 'android.vcf');
const CHAT_DB = fixture('imessage', 'chat.db');

t.test('numbers match on their last ten digits, addresses in any case, names not at all', async (t) => {
  t.equal(addressKey('+1 (555) 123-4567'), '5551234567');
  t.equal(addressKey('555.123.4567'), '5551234567');
  t.equal(addressKey('\u202a+1\u00a0555\u00a0123\u00a04567\u202c'), '5551234567', "WhatsApp's way: direction marks and no-break spaces");
  t.equal(addressKey('+49 151 2345678'), '1512345678');
  t.equal(addressKey('Mom.Smith@Example.com'), 'mom.smith@example.com');
  t.equal(addressKey('Mom Smith'), null);
  t.equal(addressKey('Family, 2'), null);
});

t.test('the cards of both exports, each number and address under its card\'s name', async (t) => {
  const contacts = readContacts([MACOS, ANDROID]);
  t.same(Object.fromEntries(contacts), {
    '5551234567': 'Mom', 'mom.smith@example.com': 'Mom', 'dad@example.com': 'Dad', '5557654321': 'Sam Lee',
    '1512345678': 'Jürgen Müller', '15550100': 'Pizza Place',
  });
});

t.test("a chat.db's people named from the address book; --audience-map by the contact's name or the number", async (t) => {
  const { files, summary } = await importInto(t.testdir(), [CHAT_DB], { contacts: [MACOS] });
  t.same(Object.keys(files), ['family.train', 'mom.train', 'sam-lee.train']);
  t.same(files['mom.train'].slice(0, 2), ['0|Mom|Are you coming for dinner Sunday? <EOM>', '1|Mom|Yes! Can I bring anything? 🍰 <EOM>']);
  t.same(summary.warnings, []);
  const mapped = await importInto(t.testdir(), [CHAT_DB], { contacts: [MACOS], audienceMap: { Mom: 'mother', '+15557654321': 'sam' } });
  t.same(Object.keys(mapped.files), ['family.train', 'mother.train', 'sam.train']);
  t.same(mapped.summary.warnings, []);
  const unrelated = await importInto(t.testdir(), [CHAT_DB], { contacts: [ANDROID] });
  t.same(unrelated.summary.warnings, ["--contacts: none of its 2 numbers and addresses is one of the chats'"]);
});

t.test('a file with no vCard, and one cut short, are refused naming the file', async (t) => {
  const dir = t.testdir({ 'notes.vcf': 'Mom: 555 123 4567\n', 'cut.vcf': fs.readFileSync(MACOS, 'utf8').slice(0, 300) });
  const out = path.join(dir, 'out');
  await t.rejects(importInto(out, [CHAT_DB], { contacts: [path.join(dir, 'notes.vcf')] }), {
    message: `${path.join(dir, 'notes.vcf')}: no vCard in it (BEGIN:VCARD ... END:VCARD): --contacts takes an address book exported as .vcf`,
  });
  await t.rejects(importInto(out, [CHAT_DB], { contacts: [path.join(dir, 'cut.vcf')] }), {
    message: `${path.join(dir, 'cut.vcf')}:11: this vCard has no END:VCARD: the file is cut short; export it again`,
  });
  t.notOk(fs.existsSync(out), 'nothing written');
});
