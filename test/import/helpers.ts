// What the import tests share: the export fixtures (test/fixtures/exports/, each in its app's real layout) and an
// import into a fresh folder whose .train files come back as lines.
import fs from 'node:fs';
import path from 'node:path';
import { type Test } from 'tap';
import { ChatImportOptions, ChatImportSummary, importChats } from '../../lib/import';
import { WRITTEN_RECORD } from '../../lib/import/train_output';

export const REPO = path.resolve(__dirname, '..', '..', '..');
export const EXPORTS = path.join(REPO, 'test', 'fixtures', 'exports');

export function fixture(...parts: string[]): string {
  return path.join(EXPORTS, ...parts);
}

export interface Imported {
  summary: ChatImportSummary;
  files: Record<string, string[]>;  // .train file name -> its lines
}

// The files an import wrote under `dir`, without the record of them (WRITTEN_RECORD), by name.
export function written(dir: string): string[] {
  return fs.readdirSync(dir).filter((name) => name !== WRITTEN_RECORD).sort();
}

// The .train files under `dir`, by name, as lines (the last line break dropped).
export function trainFiles(dir: string): Record<string, string[]> {
  if (!fs.existsSync(dir)) return {};
  const files: Record<string, string[]> = {};
  for (const name of written(dir)) files[name] = fs.readFileSync(path.join(dir, name), 'utf8').replace(/\n$/, '').split('\n');
  return files;
}

// The files under `dir`, by name, as their bytes (base64): to compare two imports byte for byte.
export function outputBytes(dir: string): Record<string, string> {
  return Object.fromEntries(written(dir).map((name) => [name, fs.readFileSync(path.join(dir, name)).toString('base64')]));
}

export async function importInto(out: string, inputs: string[], options: Omit<ChatImportOptions, 'out'> = {}): Promise<Imported> {
  const summary = await importChats(inputs, { out, ...options });
  return { summary, files: trainFiles(out) };
}

// An import of a folder holding `exports` (file name -> content), made in the test's own folder.
export async function importFolder(t: Test, exports: Record<string, string>, options: Omit<ChatImportOptions, 'out'>): Promise<Imported> {
  const dir = t.testdir({ exports });
  return importInto(path.join(dir, 'out'), [path.join(dir, 'exports')], options);
}

// The warning for files of a folder that are no export.
export const NOT_AN_EXPORT = /^skipped 1 file in the folders and zips that is no chat export: .*notes\.txt$/;
