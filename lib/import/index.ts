// Chat exports of messaging apps made training data: `importChats(['exports/'], { me: ['Jane'], out: 'data' })`
// reads every export (detect.ts and an importer per app), decides what to write (train_output.ts) and, only
// when every input was read without an error, writes the .train files (or the one JSONL file), each atomically.
import fs from 'node:fs';
import path from 'node:path';
import { datasetFiles } from '../data/files';
import { ExportFormat, ExportedChat, ChatImportError, ChatImportErrors, MAX_TEXT_BYTES, tooLargeError } from './chat_export';
import { readContacts } from './contacts';
import { Companion, CompanionFile, HTML_EXPORT_ADVICE, ReadOptions, UnknownExportError, readExport } from './detect';
import { TELEGRAM_PAGE } from './telegram_html';
import { X_DIRECT_MESSAGES } from './x_archive';
import { realPath } from '../util/paths';
import { isTar, TarArchive } from '../util/tar';
import { isZip, ZipArchive } from '../util/zip';
import { ChatImportSummary, OutputOptions, RedactKind, notWrittenBeside, outputKind, planOutput, writeOutput } from './train_output';
import { DateOrder, datedWhatsApp } from './whatsapp';
import { MARKDOWN_HEAD, SIGNAL_MARKDOWN_ADVICE, isSignalMarkdown } from './signal';
import { readHead } from '../util/file_bytes';

export { EXPORT_FORMATS, FORMAT_NAMES, ChatImportError, ChatImportErrors } from './chat_export';
export type { DropReason, ExportFormat } from './chat_export';
export { REDACT_KINDS, formatImportSummary } from './train_output';
export type { AudienceSummary, ChatImportSummary, RedactKind, SkippedChat } from './train_output';
export { DATE_ORDERS } from './whatsapp';
export type { DateOrder } from './whatsapp';

export interface ChatImportOptions {
  out: string;                                    // a folder (a .train file per audience), one .train file, or one .jsonl file
  me?: readonly string[];                         // the user's names or ids as the apps show them
  format?: ExportFormat;                          // every input is this app's export (default: detected)
  encoding?: string;                              // the inputs' text encoding (default: UTF-8, or UTF-16 by BOM)
  dateOrder?: DateOrder;                          // WhatsApp's dates (default: guessed from all the exports of each chat)
  audienceMap?: Readonly<Record<string, string>>; // a chat's name in the app (or its contact's) -> the audience to write
  contacts?: readonly string[];                   // .vcf address books that name the people known by number or address
  groups?: boolean;                               // false: leave group chats out (default true)
  redact?: readonly RedactKind[];                 // replace links, e-mail addresses, phone numbers
  force?: boolean;                                // replace files that an import did not write too
  onProgress?: (progress: ChatImportProgress) => void;
}

export interface ChatImportProgress {
  file: string;
  index: number;   // 0-based, of `files`
  files: number;
  bytes: number;   // the file's size
}

// Files inside a folder or an archive are read when their extension is an export's; the rest (photos, voice notes)
// is not. Archives are opened wherever they are: an iPhone's WhatsApp export and Facebook's and Instagram's
// downloads come as zips, Skype's export as a tar.
const EXPORT_EXTENSIONS = new Set(['.txt', '.json', '.jsonl', '.xml', '.db']);
const ARCHIVE_EXTENSIONS = new Set(['.zip', '.tar']);
// An X archive holds a .js file per kind of data, tweets too: only its direct messages are read (X_DIRECT_MESSAGES).
// Of the web pages of an export, only the pages of Telegram Desktop's chats are.

function isExportName(name: string): boolean {
  const base = path.basename(name);
  return EXPORT_EXTENSIONS.has(path.extname(name).toLowerCase()) || X_DIRECT_MESSAGES.test(base) || TELEGRAM_PAGE.test(base);
}

// Telegram Desktop's export "in HTML and JSON" holds every chat twice: the pages of a chat whose result.json is beside
// them (one chat's export) or two folders up (the account's: chats/chat_001/messages.html) are not read, the JSON
// being the exact one. `paths` is node's path for files on disk, its posix flavour for names in a zip.
function isTelegramPageOfJson(file: string, files: ReadonlySet<string>, paths: path.PlatformPath): boolean {
  if (!TELEGRAM_PAGE.test(paths.basename(file))) return false;
  const folder = paths.dirname(file);
  const accountExport = /^chat_\d+$/.test(paths.basename(folder)) && paths.basename(paths.dirname(folder)) === 'chats';
  return files.has(paths.join(folder, 'result.json')) || (accountExport && files.has(paths.join(folder, '..', '..', 'result.json')));
}

export async function importChats(inputs: readonly string[], options: ChatImportOptions): Promise<ChatImportSummary> {
  if (inputs.length === 0) throw new Error('no export to import: give files or folders');
  // A wrong --out is told before the exports are read, not after minutes of reading them.
  const outFile = outputKind(options.out) === 'folder' ? null : options.out;
  const archives: Archive[] = [];
  try {
    return await importSources(exportSources(inputs, archives, outFile), options);
  } finally {
    for (const archive of archives) archive.close();
  }
}

async function importSources({ sources, notExports }: { sources: ExportSource[]; notExports: string[] }, options: ChatImportOptions): Promise<ChatImportSummary> {
  const contacts = readContacts(options.contacts ?? []);
  const read: ReadOptions = { format: options.format, encoding: options.encoding };
  const chats: ExportedChat[] = [];
  const errors: Error[] = [];
  const warnings: string[] = [];
  for (const [index, source] of sources.entries()) {
    options.onProgress?.({ file: source.file, index, files: sources.length, bytes: source.size });
    try {
      for (const chat of await readExport(source.file, source.read(), read, warnings, source.companion)) chats.push(chat);
    } catch (err) {
      // An error of the system's (a file too large to read, a text too long for a string) has a code, and no file
      // named: it is named by the file it came from.
      const error = !(err instanceof Error) || 'code' in err ? new ChatImportError(source.file, null, err instanceof Error ? err.message : String(err)) : err;
      if (error instanceof UnknownExportError && !source.named) notExports.push(source.file);
      // A companion's problem (Slack's broken channels.json) is met by every export that reads it: reported once.
      else if (!errors.includes(error)) errors.push(error);
    }
  }
  errors.push(...datedWhatsApp(chats, options.dateOrder, warnings));
  if (errors.length > 0) throw new ChatImportErrors(errors);
  if (chats.length === 0) throw new ChatImportErrors([new Error(`no chat export among ${sources.length === 1 ? sources[0].file : `${sources.length} files`}`)]);
  const output: OutputOptions = {
    out: options.out, me: options.me ?? [], audienceMap: options.audienceMap ?? {}, contacts, groups: options.groups ?? true,
    redact: options.redact ?? [],
  };
  const planned = planOutput(chats, output);
  planned.summary.warnings.push(...warnings);
  if (notExports.length > 0) {
    const shown = notExports.slice(0, 3).join(', ');
    planned.summary.warnings.push(`skipped ${notExports.length} file${notExports.length === 1 ? '' : 's'} in the folders and zips that ${notExports.length === 1 ? 'is' : 'are'} no chat export: ${shown}${notExports.length > 3 ? ', ...' : ''}`);
  }
  planned.summary.warnings.push(...notWrittenBeside(planned));
  await writeOutput(planned, options.force);
  return planned.summary;
}

// A file to read as an export: on disk, or an entry of an archive, named as its path in the archive under the
// archive's path (exports/WhatsApp Chat - Mom.zip/_chat.txt).
interface ExportSource {
  file: string;
  named: boolean;   // named itself on the command line: it must be an export
  size: number;
  read: () => Buffer;
  companion: Companion;
}

// The sources the inputs name, in sorted order, each once, and the files found that hold none. A file named
// itself must be an export; inside a folder or an archive (or matched by a glob) only files with an export's
// extension are read, and those that are no export skipped. The archives opened are added to `archives`, for the
// caller to close. `outFile`, the one file the import writes, is never read: named, it is refused, and found in a
// folder (an earlier import's output beside the exports) it is passed over, or each import would add it again.
function exportSources(inputs: readonly string[], archives: Archive[], outFile: string | null): { sources: ExportSource[]; notExports: string[] } {
  const files = new Map<string, boolean>();
  const outPath = outFile === null ? null : realPath(outFile);
  const isOut = (file: string): boolean => outPath !== null && realPath(file) === outPath;
  for (const input of inputs) {
    if (fs.existsSync(input) && fs.statSync(input).isFile()) {
      if (isOut(input)) throw new ChatImportError(input, null, 'is the file the import writes (--out): write the output to another file');
      files.set(path.normalize(input), true);
      continue;
    }
    if (!fs.existsSync(input) && !/[*?[]/.test(input)) throw new ChatImportError(input, null, 'no such file or folder');
    const all = datasetFiles(input);
    const exports = new Set(all.filter((file) => isExportName(file) || ARCHIVE_EXTENSIONS.has(path.extname(file).toLowerCase())));
    const found = [...exports].filter((file) => !isTelegramPageOfJson(file, exports, path) && !isOut(file));
    if (found.length === 0) {
      const markdown = all.find((file) => /\.md$/i.test(file) && isSignalMarkdown(readHead(file, MARKDOWN_HEAD).toString('utf8')));
      if (markdown !== undefined) throw new ChatImportError(markdown, null, SIGNAL_MARKDOWN_ADVICE);
      throw new ChatImportError(input, null, `no .txt, .json, .jsonl, .xml, .db, .zip or .tar file in it${htmlHint(all)}`);
    }
    for (const file of found) if (!files.has(file)) files.set(file, false);
  }
  const sources: ExportSource[] = [];
  const notExports: string[] = [];
  // A companion may be shared by many exports (Google Chat's user_info.json by every conversation of the Takeout,
  // Slack's users.json by every day of every conversation): it is looked for, and read, once, by where it would be.
  const shared = new Map<string, CompanionFile | null>();
  const once = (where: string, find: () => CompanionFile | null): CompanionFile | null => {
    if (!shared.has(where)) shared.set(where, find());
    return shared.get(where) ?? null;
  };
  for (const [file, named] of [...files.entries()].sort((a, b) => compare(a[0], b[0]))) {
    const kind = archiveKind(file);
    if (kind === null) {
      const companion = (name: string): CompanionFile | null => once(path.resolve(path.dirname(file), name), () => {
        const found = companionOnDisk(path.dirname(file), name.split('/'));
        return found === null ? null : { file: found, bytes: fs.readFileSync(found) };
      });
      sources.push({ file, named, size: fs.statSync(file).size, read: () => fs.readFileSync(file), companion });
      continue;
    }
    let archive: Archive;
    try {
      archive = kind === 'zip' ? ZipArchive.open(file) : TarArchive.open(file);
    } catch (err) {
      // Reported in its turn with the other inputs' problems, nothing being written.
      sources.push({ file, named, size: fs.statSync(file).size, read: () => { throw err; }, companion: () => null });
      continue;
    }
    archives.push(archive);
    const names = new Set(archive.entries.filter((e) => isExportEntry(e.name)).map((e) => e.name));
    const entries = archive.entries.filter((e) => names.has(e.name) && !isTelegramPageOfJson(e.name, names, path.posix)).sort((a, b) => compare(a.name, b.name));
    if (entries.length === 0) {
      if (named) throw new ChatImportError(file, null, `a ${kind} archive with no .txt, .json, .jsonl, .xml or .db file in it, so no chat export${htmlHint(archive.entries.map((e) => e.name))}`);
      notExports.push(file);
    }
    const byName = new Map(archive.entries.map((e) => [e.name, e]));
    const entryAt = (where: string): ArchiveEntry | undefined => {
      if (!where.includes('*')) return byName.get(where);
      const pattern = companionPattern(where);
      return archive.entries.filter((e) => pattern.test(e.name)).sort((a, b) => compare(a.name, b.name))[0];
    };
    for (const entry of entries) {
      const companion = (name: string): CompanionFile | null => {
        const where = path.posix.join(path.posix.dirname(entry.name), name);
        return once(`${file}\0${where}`, () => {
          const found = entryAt(where);
          return found ? { file: archive.pathOf(found), bytes: archive.read(found) } : null;
        });
      };
      const where = archive.pathOf(entry);
      // Told by the size the archive gives, before unzipping: a small zip may unzip to gigabytes.
      const read = (): Buffer => {
        if (entry.size > MAX_TEXT_BYTES) throw tooLargeError(where, entry.size);
        return archive.read(entry);
      };
      sources.push({ file: where, named: false, size: entry.size, read, companion });
    }
  }
  return { sources, notExports };
}

// A companion's path (detect.ts) on disk, `segments` of it from `folder` on: the first file, in sorted order.
function companionOnDisk(folder: string, segments: readonly string[]): string | null {
  if (segments.length === 0) return fs.existsSync(folder) && fs.statSync(folder).isFile() ? folder : null;
  const [segment, ...rest] = segments;
  if (!segment.includes('*')) return companionOnDisk(path.join(folder, segment), rest);
  if (!fs.existsSync(folder) || !fs.statSync(folder).isDirectory()) return null;
  const pattern = companionPattern(segment);
  for (const name of fs.readdirSync(folder).sort(compare)) {
    const found = pattern.test(name) ? companionOnDisk(path.join(folder, name), rest) : null;
    if (found !== null) return found;
  }
  return null;
}

// A companion's path, or one folder's name of it, as a test of names: `*` any characters but a slash.
function companionPattern(name: string): RegExp {
  return new RegExp(`^${name.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*')}$`);
}

// Where a folder or zip holds web pages instead: what they are, and what to export instead.
function htmlHint(names: readonly string[]): string {
  const pages = names.filter((name) => /\.html?$/i.test(name)).length;
  return pages === 0 ? '' : `; ${pages === 1 ? 'its .html file is' : `its ${pages} .html files are`} ${HTML_EXPORT_ADVICE}`;
}

// A zip or a tar (ZipArchive, TarArchive), read where it is; an entry is only ever given back to its own archive.
interface ArchiveEntry {
  name: string;
  size: number;
}
interface Archive {
  readonly entries: readonly ArchiveEntry[];
  pathOf(entry: ArchiveEntry): string;
  read(entry: ArchiveEntry): Buffer;
  close(): void;
}

// The archive a file is, by its first bytes, whatever it is called.
function archiveKind(file: string): 'zip' | 'tar' | null {
  const head = readHead(file, 512);
  return isZip(head) ? 'zip' : isTar(head) ? 'tar' : null;
}

// An archive's entry worth reading: not a folder, nor what a Mac's Archive Utility adds (__MACOSX/, ._ resource forks).
function isExportEntry(name: string): boolean {
  const base = name.slice(name.lastIndexOf('/') + 1);
  return base !== '' && !name.startsWith('__MACOSX/') && !base.startsWith('._') && isExportName(base);
}

// Paths in order, a run of digits by its number: Telegram's messages9.html before messages10.html, Messenger's
// message_9.json before message_10.json.
function compare(a: string, b: string): number {
  const as = a.match(DIGITS_OR_CHARACTER) ?? [];
  const bs = b.match(DIGITS_OR_CHARACTER) ?? [];
  for (let i = 0; i < as.length && i < bs.length; i++) {
    if (as[i] === bs[i]) continue;
    const byNumber = /^\d/.test(as[i]) && /^\d/.test(bs[i]) ? Number(as[i]) - Number(bs[i]) : 0;
    return byNumber !== 0 ? byNumber : as[i] < bs[i] ? -1 : 1;
  }
  return as.length - bs.length;
}

const DIGITS_OR_CHARACTER = /\d+|\D/g;
