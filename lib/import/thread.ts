// importChats on a worker thread, for the server: an export of 50 MB takes seconds to read, which on the event loop
// would stall every other request meanwhile. Errors come back as importChats throws them, rebuilt from their fields:
// MeNotFoundError with its senders, ChatImportError with its file and line, ChatImportErrors with each of them.
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ChatImportError, ChatImportErrors } from './chat_export';
import type { ChatImportOptions } from './index';
import { MeNotFoundError, type ChatImportSummary } from './train_output';

export type ThreadImportOptions = Omit<ChatImportOptions, 'onProgress'>;

export interface ImportJob {
  inputs: readonly string[];
  options: ThreadImportOptions;
}

export type WireError =
  | { kind: 'me'; me: readonly string[]; senders: { name: string; messages: number }[] }
  | { kind: 'input'; file: string; line: number | null; reason: string }
  | { kind: 'inputs'; errors: WireError[] }
  | { kind: 'other'; message: string; stack?: string };

export type ImportReply = { summary: ChatImportSummary } | { error: WireError };

export function toWire(err: unknown): WireError {
  if (err instanceof MeNotFoundError) return { kind: 'me', me: err.me, senders: err.senders };
  if (err instanceof ChatImportError) return { kind: 'input', file: err.file, line: err.line, reason: err.reason };
  if (err instanceof ChatImportErrors) return { kind: 'inputs', errors: err.errors.map(toWire) };
  return { kind: 'other', message: (err as Error)?.message ?? String(err), stack: (err as Error)?.stack };
}

function fromWire(wire: WireError): Error {
  switch (wire.kind) {
    case 'me': return new MeNotFoundError(wire.me, new Map(wire.senders.map((s) => [s.name, s.messages])));
    case 'input': return new ChatImportError(wire.file, wire.line, wire.reason);
    case 'inputs': return new ChatImportErrors(wire.errors.map(fromWire));
    case 'other': return Object.assign(new Error(wire.message), { stack: wire.stack });
  }
}

export function importChatsOffThread(inputs: readonly string[], options: ThreadImportOptions): Promise<ChatImportSummary> {
  return new Promise((resolve, reject) => {
    const job: ImportJob = { inputs, options };
    const worker = new Worker(path.join(__dirname, 'worker.js'), { workerData: job });
    let reply: ImportReply | null = null;
    worker.on('message', (message: ImportReply) => {
      reply = message;
    });
    worker.on('error', reject);
    worker.on('exit', (code) => {
      if (reply === null) reject(new Error(`the chat import's worker thread ended (exit code ${code}) without an answer`));
      else if ('error' in reply) reject(fromWire(reply.error));
      else resolve(reply.summary);
    });
  });
}
