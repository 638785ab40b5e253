// Grammars built on a worker thread, for the server: a JSON schema's or a GBNF text's grammar takes up to hundreds of
// milliseconds to compile and parse (128 tools' calls, 1,200 patterns under anyOf, an enum of 16,000 strings), which
// on the event loop would stall every other client meanwhile. The worker builds the grammar as Grammar.parse,
// fromJsonSchema or withJsonSchema do, checks that it can begin (Automaton.start), and sends back its rules as a few
// typed arrays (FlatRules), transferred, not copied, which the automaton reads as they are: rebuilt as the rules'
// objects, an enum of 16,000 strings' rules held the event loop 40 to 60 ms. With them come the stacks its start
// state holds (16,000 for such an enum at the root, tens of milliseconds to work out again).
// Its errors come back as they were thrown: a GrammarError with its message, which names the field and the path.
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Stack } from './automaton';
import { Grammar, type NamedFlatRules } from './grammar';
import { GrammarError } from './syntax';

// What to build: a GBNF text (Grammar.parse), a JSON schema (Grammar.fromJsonSchema), or a GBNF text whose rule
// `name` is a JSON schema's (Grammar.withJsonSchema); `where` is the request's field, for errors.
export type GrammarSource =
  | { gbnf: string; where: string }
  | { schema: unknown; where: string }
  | { gbnf: string; name: string; schema: unknown; where: string };

export interface BuildRequest {
  id: number;
  source: GrammarSource;
}

// The start state's stacks, flat: each stack's length, then its positions.
export type BuildReply = { id: number; rules: NamedFlatRules; start: Int32Array } | { id: number; error: { grammar: boolean; message: string } };

// The grammar of `source`, built and checked where it is called: the worker's side.
export function buildGrammar(source: GrammarSource): Grammar {
  let grammar: Grammar;
  if (!('schema' in source)) grammar = Grammar.parse(source.gbnf, source.where);
  else if ('gbnf' in source) grammar = Grammar.withJsonSchema(source.gbnf, source.name, source.schema, source.where);
  else grammar = Grammar.fromJsonSchema(source.schema, source.where);
  void grammar.automaton.start;  // a grammar too ambiguous to begin is refused here, not once it runs
  return grammar;
}

// The reply to a build: the grammar's flat rules and its start state's stacks, with the buffers that go to the main
// thread as they are (transferred, not copied).
export function builtReply(id: number, grammar: Grammar): { reply: BuildReply; transfer: ArrayBuffer[] } {
  const rules = grammar.flatRules;
  const start = startToWire(grammar);
  const arrays = [rules.alternatives, rules.lengths, rules.elements, rules.ranges, rules.setStarts, start];
  return { reply: { id, rules, start }, transfer: arrays.map((a) => a.buffer as ArrayBuffer) };
}

function startToWire(grammar: Grammar): Int32Array {
  const flat: number[] = [];
  for (const stack of grammar.automaton.start.stacks) flat.push(stack.length, ...stack);
  return Int32Array.from(flat);
}

// The grammar of a build's reply, read on the main thread: its arrays wrapped as they came.
export function grammarOfReply(reply: { rules: NamedFlatRules; start: Int32Array }): Grammar {
  return Grammar.ofFlatRules(reply.rules, startFromWire(reply.start));
}

function startFromWire(flat: Int32Array): Stack[] {
  const stacks: Stack[] = [];
  for (let at = 0; at < flat.length; at += 1 + flat[at]) stacks.push(Array.from(flat.subarray(at + 1, at + 1 + flat[at])));
  return stacks;
}

// One worker thread for the process, started with the first grammar built; idle, it does not keep the process alive.
let worker: Worker | null = null;
const pending = new Map<number, { resolve: (grammar: Grammar) => void; reject: (err: Error) => void }>();
let nextId = 0;
let posted = 0;

// How many builds this process has sent to the worker thread (the server's metrics report it).
export function grammarsBuilt(): number {
  return posted;
}

function failAll(err: Error): void {
  worker = null;
  for (const { reject } of pending.values()) reject(err);
  pending.clear();
}

function startWorker(): Worker {
  const started = new Worker(path.join(__dirname, 'worker.js'));
  started.on('message', (reply: BuildReply) => {
    const waiting = pending.get(reply.id);
    pending.delete(reply.id);
    if (pending.size === 0) started.unref();
    if (waiting === undefined) return;
    if ('rules' in reply) waiting.resolve(grammarOfReply(reply));
    else waiting.reject(reply.error.grammar ? new GrammarError(reply.error.message) : new Error(reply.error.message));
  });
  // A thread that failed is replaced at the next build; its 'exit', which follows its 'error', is not the new one's.
  started.on('error', (err) => worker === started && failAll(err));
  started.on('exit', (code) => worker === started && failAll(new Error(`the grammar worker thread ended (exit code ${code})`)));
  started.unref();  // after its listeners: a 'message' listener holds the thread again
  return started;
}

// The grammar of `source`, built on the worker thread; the same grammar, or the same error, as built here.
export function buildOffThread(source: GrammarSource): Promise<Grammar> {
  worker ??= startWorker();
  const id = nextId++;
  // Posted before anything waits for it: a source the copy to the thread cannot take (a schema nested some thousands
  // deep) throws here, and would otherwise leave its wait behind, holding the process alive.
  worker.postMessage({ id, source } satisfies BuildRequest);
  posted++;
  if (pending.size === 0) worker.ref();
  return new Promise<Grammar>((resolve, reject) => pending.set(id, { resolve, reject }));
}
