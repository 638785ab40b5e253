// Training data uploaded for fine-tuning (routes/files.ts), checked line by line on a worker thread of its own: 20 MB
// of JSONL takes about half a second to parse and check, which on the event loop would hold every other client's
// requests as long.
import fs from 'node:fs';
import path from 'node:path';
import { isUtf8 } from 'node:buffer';
import { parseLines } from '../data/chat_format';
import { ChatImportError, firstNonUtf8Line } from '../import/chat_export';
import { fineTuningFormat, jsonlConversations, parseFineTuning, type FineTuningFormat, type WrittenConversation } from '../import/fine_tuning';
import { offThread } from '../import/thread';
import { trainingDataKind, type TrainingDataKind } from './files';

// Lines of training data checked at once: a file up to the upload limit is never held whole.
const CHECK_CHUNK_BYTES = 4 * 1024 * 1024;

export interface TrainingDataCheck {
  file: string;      // where the upload is
  filename: string;  // its name as uploaded, which errors give
}

// checkTrainingData on a worker thread (training_data_worker.ts); its ChatImportError is thrown here.
export function checkTrainingDataOffThread(file: string, filename: string): Promise<void> {
  return offThread<TrainingDataCheck, void>(path.join(__dirname, 'training_data_worker.js'), { file, filename }, 'the training data check\'s worker thread');
}

// Training data as OpenAI's fine-tuning takes it, a conversation a line ({"messages": [...]}, or ShareGPT's
// {"conversations": [...]}), read as bin/train reads it (lib/import/fine_tuning.ts), or in the chat format, a message a
// line, as bin/import-chat writes it: a mistake is a ChatImportError naming the file as uploaded (`filename`) and the
// line. Run by checkTrainingDataOffThread.
export async function checkTrainingData(file: string, filename: string): Promise<void> {
  let kind: TrainingDataKind | null = null;
  let format: FineTuningFormat | null = null;
  let entries = 0;  // conversations, or messages of the chat format
  const check = (lines: Buffer, firstLine: number) => {
    const offset = firstLine - 1;
    const text = utf8Lines(filename, lines, firstLine);
    kind ??= trainingDataKind(text);
    if (kind === 'chat') {
      for (const parsed of parseLines(text)) {
        if (!parsed.message) throw new ChatImportError(filename, parsed.line + offset, `not a message of the chat format: ${parsed.reasons.join('; ')}`);
        entries++;
      }
      return;
    }
    let found: WrittenConversation[];
    try {
      found = jsonlConversations(filename, text).map((c) => ({ ...c, line: c.line + offset }));
    } catch (err) {
      if (err instanceof ChatImportError && err.line !== null) throw new ChatImportError(filename, err.line + offset, err.reason);
      throw err;
    }
    if (found.length === 0) return;
    format ??= fineTuningFormat(found[0].value) ?? 'openai';
    parseFineTuning(filename, found, format, []);
    entries += found.length;
  };
  let held: Buffer[] = [];
  let heldBytes = 0;
  let line = 1;            // the first line of what is held
  let first = true;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    let bytes = chunk;
    if (first && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
    first = false;
    const end = bytes.lastIndexOf(0x0a);
    if (end < 0 || heldBytes + end < CHECK_CHUNK_BYTES) {
      held.push(bytes);
      heldBytes += bytes.length;
      continue;
    }
    // The lines whole so far, checked; the part of a line after the last line break waits for the rest.
    const lines = Buffer.concat([...held, bytes.subarray(0, end)]);
    check(lines, line);
    line += countLines(lines) + 1;
    held = [bytes.subarray(end + 1)];
    heldBytes = held[0].length;
  }
  check(Buffer.concat(held), line);
  if (entries === 0) throw new ChatImportError(filename, null, 'holds no conversation: training data is a JSON object a line, {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}');
}

function countLines(bytes: Buffer): number {
  let n = 0;
  for (let i = bytes.indexOf(0x0a); i >= 0; i = bytes.indexOf(0x0a, i + 1)) n++;
  return n;
}

// Lines as text, refused at the first that is not UTF-8.
function utf8Lines(filename: string, bytes: Buffer, firstLine: number): string {
  if (isUtf8(bytes)) return bytes.toString('utf8');
  throw new ChatImportError(filename, firstLine - 1 + firstNonUtf8Line(bytes), 'not UTF-8 text: training data is JSONL in UTF-8');
}
