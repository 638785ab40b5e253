// Exports as the apps hand them out, zipped (test/fixtures/zips/, made by make_zips.py from the unzipped fixtures):
// an iPhone's WhatsApp export and a Facebook download in two parts import as their unzipped files do, entries
// named under the zip's path; what is in a zip but no export is skipped; a damaged zip is an error naming it.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import t from 'tap';
import { ChatImportErrors, importChats } from '../../lib/import';
import { ZipArchive } from '../../lib/util/zip';
import { REPO, fixture, importInto } from './helpers';

const ZIPS = path.join(REPO, 'test', 'fixtures', 'zips');
const WHATSAPP_ZIP = path.join(ZIPS, 'WhatsApp Chat - Matti.zip');
const FACEBOOK_ZIPS = ['facebook-janedoe-2024-part1.zip', 'facebook-janedoe-2024-part2.zip'].map((name) => path.join(ZIPS, name));

t.test("a zip's entries are the files it was made from", async (t) => {
  const zip = ZipArchive.open(WHATSAPP_ZIP);
  t.teardown(() => zip.close());
  t.same(zip.entries.map((e) => e.name), ['_chat.txt', '00000007-PHOTO-2023-01-01-12-00-00.jpg', '__MACOSX/._chat.txt']);
  t.same(zip.read(zip.entries[0]), fs.readFileSync(fixture('whatsapp', 'ios-fi', 'WhatsApp Chat - Matti', '_chat.txt')), 'deflated');
  t.equal(zip.read(zip.entries[1]).length, zip.entries[1].size, 'stored');
  const part2 = ZipArchive.open(FACEBOOK_ZIPS[1]);
  t.teardown(() => part2.close());
  const message2 = part2.entries.find((e) => e.name.endsWith('message_2.json'));
  t.same(message2 && part2.read(message2), fs.readFileSync(fixture('messenger', 'your_facebook_activity', 'messages', 'inbox', 'mariemartin_10158', 'message_2.json')), 'stored behind a ZIP64 local header');
});

t.test("an iPhone's WhatsApp zip imports as its _chat.txt, the chat named by the zip", async (t) => {
  const dir = t.testdir();
  const unzipped = await importInto(path.join(dir, 'unzipped'), [fixture('whatsapp', 'ios-fi')], { me: ['Jane Doe'] });
  const zipped = await importInto(path.join(dir, 'zipped'), [WHATSAPP_ZIP], { me: ['Jane Doe'] });
  t.same(Object.keys(zipped.files), ['matti.train']);
  t.same(zipped.files, unzipped.files);
  t.same(zipped.summary.formats, { whatsapp: 1 });
  t.same(zipped.summary.warnings, [], 'the photo and the Mac resource fork are not read');

  // Told by its content, not its name: a zip renamed still opens.
  const renamed = path.join(dir, 'export');
  fs.copyFileSync(WHATSAPP_ZIP, renamed);
  const progress: string[] = [];
  const summary = await importChats([renamed], { out: path.join(dir, 'renamed'), me: ['Jane Doe'], onProgress: (p) => progress.push(p.file) });
  t.match(summary, { read: zipped.summary.read, kept: zipped.summary.kept });
  t.same(progress, [path.join(renamed, '_chat.txt')]);
});

t.test('a Facebook download in two zips imports as its unzipped folder, one chat across the parts', async (t) => {
  const dir = t.testdir();
  const unzipped = await importInto(path.join(dir, 'unzipped'), [fixture('messenger')], { me: ['Jane Doe'] });
  const zipped = await importInto(path.join(dir, 'zipped'), FACEBOOK_ZIPS, { me: ['Jane Doe'] });
  t.same(Object.keys(zipped.files), ['marie-martin.train']);
  t.same(zipped.files, unzipped.files, 'message_1.json and message_2.json, in different zips, make one conversation');
  t.match(zipped.summary, { read: unzipped.summary.read, kept: unzipped.summary.kept });
  t.match(zipped.summary.warnings, [/^skipped 2 files in the folders and zips that are no chat export: .*part1\.zip\/your_facebook_activity\/personal_information\/profile_information\/profile_information\.json, .*part2\.zip\/your_facebook_activity\/messages\/autofill_information\.json$/]);

  // The download unzipped and zipped at once: the same chat, its messages read twice and kept once.
  const both = await importInto(path.join(dir, 'both'), [fixture('messenger'), ...FACEBOOK_ZIPS], { me: ['Jane Doe'] });
  t.same(both.files, unzipped.files);

  // A folder of downloads: its zips are opened too.
  const folder = await importInto(path.join(dir, 'folder'), [ZIPS], { me: ['Jane Doe'] });
  t.same(Object.keys(folder.files), [
    'climbing-club.train', 'general.train', 'hiking-crew.train', 'lena-fischer-omar-haddad.train', 'marie-martin.train', 'matti.train', 'mia-rossi.train', 'omar-haddad.train',
    'priya-shah.train',
  ], 'Google Takeout\'s, Telegram\'s, Element\'s and Slack\'s zips among them');
  t.same(folder.files['marie-martin.train'], unzipped.files['marie-martin.train']);
});

t.test('damaged zips, and zips of no export: an error naming the zip or the entry, and nothing written', async (t) => {
  const whole = fs.readFileSync(WHATSAPP_ZIP);
  const zip = ZipArchive.open(WHATSAPP_ZIP);
  const chat = zip.entries[0];
  zip.close();
  const corrupt = Buffer.from(whole);
  // The deflated data's first block given the reserved block type 3, which no inflater reads past.
  const dataAt = chat.localOffset + 30 + corrupt.readUInt16LE(chat.localOffset + 26) + corrupt.readUInt16LE(chat.localOffset + 28);
  corrupt[dataAt] |= 0x06;
  // The central directory's first entry (_chat.txt) made to say it holds 10 bytes: inflating stops there.
  const understated = Buffer.from(whole);
  understated.writeUInt32LE(10, understated.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02])) + 24);
  const dir = t.testdir({ 'cut.zip': whole.subarray(0, 300), 'corrupt.zip': corrupt, 'understated.zip': understated, out: {} });
  const inputs = [path.join(dir, 'cut.zip'), path.join(dir, 'corrupt.zip'), path.join(dir, 'understated.zip'), fixture('whatsapp', 'android-de')];
  const error = (await importChats(inputs, { out: path.join(dir, 'out'), me: ['Jane Doe'] }).catch((e: unknown) => e)) as ChatImportErrors;
  t.type(error, ChatImportErrors);
  t.match(error.message.split('\n').map((line) => line.replace(dir + path.sep, '')), [
    /^corrupt\.zip\/_chat\.txt: damaged compressed data \(.+\)$/,
    'cut.zip: a zip archive cut short (no central directory at its end): an interrupted download or copy; get it again',
    'understated.zip/_chat.txt: inflates to more than the 10 bytes the zip says it holds',
  ]);
  t.same(fs.readdirSync(path.join(dir, 'out')), [], 'nothing written');

  const photos = path.join(ZIPS, 'photos.zip');
  await t.rejects(importChats([photos], { out: path.join(dir, 'out') }), { message: `${photos}: a zip archive with no .txt, .json, .jsonl, .xml or .db file in it, so no chat export` });
  const folder = await importInto(path.join(dir, 'folder'), [ZIPS], { me: ['Jane Doe'] });
  t.match(folder.summary.warnings, [/^skipped 3 files in the folders and zips that are no chat export: .*photos\.zip, .*profile_information\.json, .*autofill_information\.json$/], 'found in a folder, it is skipped');
});

// A zip of deflated entries, each as given or with the size its central directory is to claim.
function deflatedZip(entries: { name: string; data: Buffer; size?: number }[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const { name, data, size } of entries) {
    const packed = zlib.deflateRawSync(data);
    const nameBytes = Buffer.from(name);
    const header = (signature: number, length: number): Buffer => {
      const b = Buffer.alloc(length);
      b.writeUInt32LE(signature, 0);
      return b;
    };
    const local = header(0x04034b50, 30);
    local.writeUInt16LE(8, 8);
    local.writeUInt32LE(packed.length, 18);
    local.writeUInt32LE(size ?? data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    const central = header(0x02014b50, 46);
    central.writeUInt16LE(8, 10);
    central.writeUInt32LE(packed.length, 20);
    central.writeUInt32LE(size ?? data.length, 24);
    central.writeUInt16LE(nameBytes.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, packed);
    centrals.push(central, nameBytes);
    offset += 30 + nameBytes.length + packed.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

const CHAT = Buffer.from('12/31/20, 10:15 PM - Mom: Hi!\n12/31/20, 10:16 PM - Jane: Hello\n');

t.test('an entry that would unzip to more than a string holds is refused by its size before unzipping, naming it and the limit', async (t) => {
  const dir = t.testdir({ 'bomb.zip': deflatedZip([{ name: 'WhatsApp Chat with Mom.txt', data: Buffer.alloc(1000, 0x61), size: 600 * 2 ** 20 }]), out: {} });
  const error = (await importChats([path.join(dir, 'bomb.zip')], { out: path.join(dir, 'out'), me: ['Jane'] }).catch((e: unknown) => e)) as ChatImportErrors;
  t.type(error, ChatImportErrors);
  t.equal(error.message, `${path.join(dir, 'bomb.zip')}/WhatsApp Chat with Mom.txt: 629,145,600 bytes (600 MiB), more than the 511 MiB an export read as text may hold: export the chat in parts (a shorter time span), or leave its media out`);
  t.same(fs.readdirSync(path.join(dir, 'out')), [], 'nothing written');
});

t.test("a central directory whose size or offset lies past the zip's end is a damaged zip, named", async (t) => {
  const whole = deflatedZip([{ name: 'WhatsApp Chat with Mom.txt', data: CHAT }]);
  const oversized = Buffer.from(whole);
  oversized.writeUInt32LE(0xfffffff0, oversized.length - 22 + 12);
  const misplaced = Buffer.from(whole);
  misplaced.writeUInt32LE(0x7ffffff0, misplaced.length - 22 + 16);
  const dir = t.testdir({ 'oversized.zip': oversized, 'misplaced.zip': misplaced, 'whole.zip': whole });
  for (const name of ['oversized.zip', 'misplaced.zip']) {
    const error = (await importChats([path.join(dir, name)], { out: path.join(dir, 'out'), me: ['Jane'] }).catch((e: unknown) => e)) as Error;
    t.match(error.message, new RegExp(`^${path.join(dir, name).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: damaged zip: \\d+ bytes at \\d+ lie past its end \\(${whole.length} bytes\\)$`), name);
  }
  const { files } = await importInto(path.join(dir, 'out'), [path.join(dir, 'whole.zip')], { me: ['Jane'] });
  t.same(files, { 'mom.train': ['0|Mom|Hi! <EOM>', '1|Mom|Hello <EOM>'] }, 'the zip the test makes reads');
});

t.test('an entry named with "../" is named under the zip, as the zip holds it', async (t) => {
  const dir = t.testdir({ 'chats.zip': deflatedZip([{ name: 'chats/../../notes.txt', data: Buffer.from('caf\xe9\n', 'latin1') }]) });
  await t.rejects(importChats([path.join(dir, 'chats.zip')], { out: path.join(dir, 'out'), me: ['Jane'] }), {
    message: `${path.join(dir, 'chats.zip')}/chats/../../notes.txt:1: not UTF-8 text: the export is in another encoding; give it with --encoding (e.g. --encoding windows-1252)`,
  });
});

t.test('a binary file named .txt in a folder is skipped with a warning, as other files that are no export are', async (t) => {
  const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0xff, 0xd8, 0x01, 0x02]);
  const dir = t.testdir({ exports: { 'WhatsApp Chat with Mom.txt': CHAT, 'photo.txt': png } });
  const { files, summary } = await importInto(path.join(dir, 'out'), [path.join(dir, 'exports')], { me: ['Jane'] });
  t.same(files, { 'mom.train': ['0|Mom|Hi! <EOM>', '1|Mom|Hello <EOM>'] });
  t.match(summary.warnings, [/^skipped 1 file in the folders and zips that is no chat export: .*photo\.txt$/]);
  await t.rejects(importChats([path.join(dir, 'exports', 'photo.txt')], { out: path.join(dir, 'named'), me: ['Jane'] }), { message: /photo\.txt:1: a binary file, no text, not a WhatsApp/ });
});
