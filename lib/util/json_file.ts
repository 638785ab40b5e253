// Reading the JSON files users write (configs, model folders, training state): every failure names the file.
import fs from 'node:fs';

export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${file}: cannot read: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON: ${(err as Error).message}`);
  }
}

export function readJsonObject(file: string): Record<string, unknown> {
  const value = readJsonFile(file);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${file}: must be a JSON object`);
  return value as Record<string, unknown>;
}
