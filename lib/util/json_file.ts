// Reading the JSON files users write (configs, model folders, training state): every failure names the file.
import fs from 'node:fs';
import { isJsonObject } from './json_object';

export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${file}: cannot read: ${(err as Error).message}`);
  }
  return parseJsonAt(file, text);
}

// JSON.parse with the failure placed at its line and column, which Node's message leaves out: these are files people
// edit by hand.
export function parseJsonAt(file: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const position = /at position (\d+)/.exec(message);
    const offset = position ? Number(position[1]) : text.length;
    const before = text.slice(0, offset).split('\n');
    throw new Error(`${file}:${before.length}:${before[before.length - 1].length + 1}: not valid JSON: ${message}`);
  }
}

export function readJsonObject(file: string): Record<string, unknown> {
  const value = readJsonFile(file);
  if (!isJsonObject(value)) throw new Error(`${file}: must be a JSON object`);
  return value;
}
