// importChats on a worker thread, for the server: an export of 50 MB takes seconds to read, which on the event loop
// would stall every other request meanwhile (offThread runs the server's other long reads of files so too). Errors
// come back as they were thrown, rebuilt from their fields: MeNotFoundError with its senders, ChatImportError with its
// file and line, ChatImportErrors with each of them.
import path from 'node:path';
import { Worker, type MessagePort } from 'node:worker_threads';
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
  return offThread<ImportJob, ChatImportSummary>(path.join(__dirname, 'worker.js'), { inputs, options }, "the chat import's worker thread");
}

// What a worker thread of offThread posts: its result, or its error as toWire writes it.
export type ThreadReply<Result> = { result: Result } | { error: WireError };

// The work of `script` (a worker thread that is given `job` as its workerData, and posts one ThreadReply before it
// ends) on a thread of its own; its error is thrown here as toWire wrote it. `what` names the thread in the error of
// one that ends without a reply.
export function offThread<Job, Result>(script: string, job: Job, what: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(script, { workerData: job });
    let reply: ThreadReply<Result> | null = null;
    worker.on('message', (message: ThreadReply<Result>) => {
      reply = message;
    });
    worker.on('error', reject);
    worker.on('exit', (code) => {
      if (reply === null) reject(new Error(`${what} ended (exit code ${code}) without an answer`));
      else if ('error' in reply) reject(fromWire(reply.error));
      else resolve(reply.result);
    });
  });
}

// The worker thread's side of offThread: posts what `work` gives or the error it throws.
export function replyFromThread<Result>(port: MessagePort, work: Promise<Result>): void {
  work.then(
    (result) => port.postMessage({ result } satisfies ThreadReply<Result>),
    (err: unknown) => port.postMessage({ error: toWire(err) } satisfies ThreadReply<Result>),
  );
}
