// Chat exports of messaging apps made training data: `importChats(['exports/'], { me: ['Jane'], out: 'data' })`
// reads every export (detect.ts and an importer per app), decides what to write (train_output.ts) and, only
// when every input was read without an error, writes the .train files, each atomically.
import fs from 'node:fs';
import path from 'node:path';
import { datasetFiles } from '../data/files';
import { ExportFormat, ExportedChat, ChatImportErrors } from './chat_export';
import { readContacts } from './contacts';
import { ReadOptions, UnknownExportError, readExport } from './detect';
import { ChatImportSummary, OutputOptions, RedactKind, planOutput, writeOutput } from './train_output';
import { DateOrder } from './whatsapp';

export { EXPORT_FORMATS, FORMAT_NAMES, ChatImportError, ChatImportErrors } from './chat_export';
export type { DropReason, ExportFormat } from './chat_export';
export { REDACT_KINDS, formatImportSummary } from './train_output';
export type { AudienceSummary, ChatImportSummary, RedactKind, SkippedChat } from './train_output';
export { DATE_ORDERS } from './whatsapp';
export type { DateOrder } from './whatsapp';

export interface ChatImportOptions {
  out: string;                                    // a folder (a .train file per audience) or one .train file
  me?: readonly string[];                         // the user's names or ids as the apps show them
  format?: ExportFormat;                          // every input is this app's export (default: detected)
  encoding?: string;                              // the inputs' text encoding (default: UTF-8, or UTF-16 by BOM)
  dateOrder?: DateOrder;                          // WhatsApp's dates (default: guessed from the file)
  audienceMap?: Readonly<Record<string, string>>; // a chat's name in the app (or its contact's) -> the audience to write
  contacts?: readonly string[];                   // .vcf address books that name the people known by number or address
  groups?: boolean;                               // false: leave group chats out (default true)
  redact?: readonly RedactKind[];                 // replace links, e-mail addresses, phone numbers
  onProgress?: (progress: ChatImportProgress) => void;
}

export interface ChatImportProgress {
  file: string;
  index: number;   // 0-based, of `files`
  files: number;
  bytes: number;   // the file's size
}

// Files inside a folder are read when their extension is an export's; the rest (photos, voice notes) is not.
const EXPORT_EXTENSIONS = new Set(['.txt', '.json', '.xml', '.db']);

export async function importChats(inputs: readonly string[], options: ChatImportOptions): Promise<ChatImportSummary> {
  if (inputs.length === 0) throw new Error('no export to import: give files or folders');
  const files = exportFiles(inputs);
  const contacts = readContacts(options.contacts ?? []);
  const read: ReadOptions = { format: options.format, encoding: options.encoding, dateOrder: options.dateOrder };
  const chats: ExportedChat[] = [];
  const errors: Error[] = [];
  const notExports: string[] = [];
  const warnings: string[] = [];
  for (const [index, { file, named }] of files.entries()) {
    options.onProgress?.({ file, index, files: files.length, bytes: fs.statSync(file).size });
    try {
      for (const chat of await readExport(file, read, warnings)) chats.push(chat);
    } catch (err) {
      if (err instanceof UnknownExportError && !named) notExports.push(file);
      else errors.push(err instanceof Error ? err : new Error(String(err)));
    }
  }
  if (errors.length > 0) throw new ChatImportErrors(errors);
  if (chats.length === 0) throw new Error(`no chat export among ${files.length === 1 ? files[0].file : `${files.length} files`}`);
  const output: OutputOptions = {
    out: options.out, me: options.me ?? [], audienceMap: options.audienceMap ?? {}, contacts, groups: options.groups ?? true,
    redact: options.redact ?? [],
  };
  const planned = planOutput(chats, output);
  planned.summary.warnings.push(...warnings);
  if (notExports.length > 0) {
    const shown = notExports.slice(0, 3).join(', ');
    planned.summary.warnings.push(`skipped ${notExports.length} file${notExports.length === 1 ? '' : 's'} in the folders that ${notExports.length === 1 ? 'is' : 'are'} no chat export: ${shown}${notExports.length > 3 ? ', ...' : ''}`);
  }
  await writeOutput(planned);
  return planned.summary;
}

// The files the inputs name, in sorted order, each once. A file named itself must be an export; inside a folder
// (or matched by a glob) only files with an export's extension are read, and those that are no export skipped.
function exportFiles(inputs: readonly string[]): { file: string; named: boolean }[] {
  const files = new Map<string, boolean>();
  for (const input of inputs) {
    if (fs.existsSync(input) && fs.statSync(input).isFile()) {
      files.set(path.normalize(input), true);
      continue;
    }
    if (!fs.existsSync(input) && !/[*?[]/.test(input)) throw new Error(`${input}: no such file or folder`);
    const found = datasetFiles(input).filter((file) => EXPORT_EXTENSIONS.has(path.extname(file).toLowerCase()));
    if (found.length === 0) throw new Error(`${input}: no .txt, .json, .xml or .db file in it`);
    for (const file of found) if (!files.has(file)) files.set(file, false);
  }
  return [...files.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([file, named]) => ({ file, named }));
}
