// Exports handed out as tar archives (test/fixtures/tars/, made by make_tars.py from the fixtures): read where they
// are as zips are, entries named under the tar's path, long paths as POSIX, GNU and pax tars write them; a damaged
// tar, or a compressed one, is an error naming it.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import t from 'tap';
import { ChatImportErrors, importChats } from '../../lib/import';
import { TarArchive } from '../../lib/util/tar';
import { REPO, fixture, importInto } from './helpers';

const TARS = path.join(REPO, 'test', 'fixtures', 'tars');
const SKYPE_TAR = path.join(TARS, '8_live_jane.doe_export.tar');
const LONG_FOLDER = 'Skype export of Jane Doe made on 28 April 2025, a week before Skype closed, with every conversation — 2025-04-28/';

t.test("a tar's entries are the files it was made from, long paths in each tar format", async (t) => {
  const messages = fs.readFileSync(fixture('skype', 'messages.json'));
  for (const name of ['ustar-long-names.tar', 'gnu-long-names.tar', 'pax-long-names.tar']) {
    const tar = TarArchive.open(path.join(TARS, name));
    t.teardown(() => tar.close());
    t.same(tar.entries.map((e) => e.name), [`${LONG_FOLDER}messages.json`, `${LONG_FOLDER}media/table.jpg`], name);
    t.same(tar.read(tar.entries[0]), messages, name);
  }
});

t.test('a folder of tars: each read, the same chats in several exports kept once', async (t) => {
  const { files, summary } = await importInto(t.testdir(), [TARS]);
  const once = await importInto(t.testdir(), [SKYPE_TAR]);
  t.same(files, once.files);
  t.same(summary.formats, { skype: 4 });
  t.match(summary, { read: 4 * once.summary.read, kept: once.summary.kept });
  t.equal(summary.dropped.duplicate, 3 * 16, "the messages of the conversations imported, in each tar after the first");
  t.match(summary.warnings, [/^skipped 1 file in the folders and zips that is no chat export: .*photos\.tar$/]);
});

t.test('damaged tars, a compressed one, and a tar of no export: an error naming the tar, and nothing written', async (t) => {
  const whole = fs.readFileSync(SKYPE_TAR);
  const damaged = Buffer.from(whole);
  damaged[0] = 'M'.charCodeAt(0);
  const dir = t.testdir({ 'cut.tar': whole.subarray(0, 4096), 'damaged.tar': damaged, out: {} });
  const error = (await importChats([path.join(dir, 'cut.tar'), path.join(dir, 'damaged.tar')], { out: path.join(dir, 'out') }).catch((e: unknown) => e)) as ChatImportErrors;
  t.type(error, ChatImportErrors);
  t.same(error.message.split('\n').map((line) => line.replace(dir + path.sep, '')), [
    'cut.tar: a tar archive cut short (an entry ends past the end of the file): an interrupted download or copy; get it again',
    'damaged.tar: a damaged tar archive (the header at byte 0 fails its checksum)',
  ]);
  t.same(fs.readdirSync(path.join(dir, 'out')), [], 'nothing written');

  const gzipped = path.join(dir, 'export.tar.gz');
  fs.writeFileSync(gzipped, zlib.gzipSync(whole));
  await t.rejects(importChats([gzipped], { out: path.join(dir, 'out') }), { message: `${gzipped}: compressed with gzip (.gz, .tgz): decompress it first, then import the .tar or the files it holds` });
  const photos = path.join(TARS, 'photos.tar');
  await t.rejects(importChats([photos], { out: path.join(dir, 'out') }), { message: `${photos}: a tar archive with no .txt, .json, .jsonl, .xml or .db file in it, so no chat export` });
});
