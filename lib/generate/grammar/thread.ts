// Grammars built on a worker thread, for the server: a JSON schema's or a GBNF text's grammar takes up to hundreds of
// milliseconds to compile and parse (128 tools' calls, 1,200 patterns under anyOf, an enum of 16,000 strings), which
// on the event loop would stall every other client meanwhile. The worker builds the grammar as Grammar.parse,
// fromJsonSchema or withJsonSchema do, checks that it can begin (Automaton.start), and sends back its rules as a few
// typed arrays (an enum of 16,000 strings' rules cost the event loop some 15 ms to read so, and over 100 ms as the
// rules' objects themselves) with the stacks its start state holds (16,000 for such an enum at the root, tens of
// milliseconds to work out again).
// Its errors come back as they were thrown: a GrammarError with its message, which names the field and the path.
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Stack } from './automaton';
import { Grammar, type Element, type Rule } from './grammar';
import { GrammarError } from './syntax';

// What to build: a GBNF text (Grammar.parse), a JSON schema (Grammar.fromJsonSchema), or a GBNF text whose rule
// `name` is a JSON schema's (Grammar.withJsonSchema); `where` is the request's field, for errors.
export type GrammarSource =
  | { gbnf: string; where: string }
  | { schema: unknown; where: string }
  | { gbnf: string; name: string; schema: unknown; where: string };

// A grammar's rules, flat: each rule's name and number of alternatives, each alternative's number of elements, and
// each element, a rule's index or, negative, -1 - the index of a character set; the sets' ranges one after another,
// each set's from setStarts[i] to setStarts[i + 1].
export interface WireRules {
  names: string[];
  alternatives: Int32Array;
  lengths: Int32Array;
  elements: Int32Array;
  ranges: Int32Array;
  setStarts: Int32Array;
}

export interface BuildRequest {
  id: number;
  source: GrammarSource;
}

// The start state's stacks, flat: each stack's length, then its positions.
export type BuildReply = { id: number; rules: WireRules; start: Int32Array } | { id: number; error: { grammar: boolean; message: string } };

// The grammar of `source`, built and checked where it is called: the worker's side.
export function buildGrammar(source: GrammarSource): Grammar {
  let grammar: Grammar;
  if (!('schema' in source)) grammar = Grammar.parse(source.gbnf, source.where);
  else if ('gbnf' in source) grammar = Grammar.withJsonSchema(source.gbnf, source.name, source.schema, source.where);
  else grammar = Grammar.fromJsonSchema(source.schema, source.where);
  void grammar.automaton.start;  // a grammar too ambiguous to begin is refused here, not once it runs
  return grammar;
}

export function toWire(rules: readonly Rule[]): WireRules {
  const alternatives: number[] = [];
  const lengths: number[] = [];
  const elements: number[] = [];
  const ranges: number[] = [];
  const setStarts: number[] = [0];
  const setIndex = new Map<string, number>();
  for (const rule of rules) {
    alternatives.push(rule.alternatives.length);
    for (const sequence of rule.alternatives) {
      lengths.push(sequence.length);
      for (const element of sequence) {
        if ('rule' in element) {
          elements.push(element.rule);
          continue;
        }
        const text = element.chars.join(',');
        let index = setIndex.get(text);
        if (index === undefined) {
          index = setStarts.length - 1;
          setIndex.set(text, index);
          ranges.push(...element.chars);
          setStarts.push(ranges.length);
        }
        elements.push(-1 - index);
      }
    }
  }
  return {
    names: rules.map((rule) => rule.name),
    alternatives: Int32Array.from(alternatives),
    lengths: Int32Array.from(lengths),
    elements: Int32Array.from(elements),
    ranges: Int32Array.from(ranges),
    setStarts: Int32Array.from(setStarts),
  };
}

export function startToWire(grammar: Grammar): Int32Array {
  const flat: number[] = [];
  for (const stack of grammar.automaton.start.stacks) flat.push(stack.length, ...stack);
  return Int32Array.from(flat);
}

function startFromWire(flat: Int32Array): Stack[] {
  const stacks: Stack[] = [];
  for (let at = 0; at < flat.length; at += 1 + flat[at]) stacks.push(Array.from(flat.subarray(at + 1, at + 1 + flat[at])));
  return stacks;
}

// The rules back, each element object made once and shared by every place it stands (elements are read-only).
function fromWire(wire: WireRules): Rule[] {
  const ruleElements = wire.names.map((_, rule): Element => ({ rule }));
  const setElements = Array.from({ length: wire.setStarts.length - 1 }, (_, i): Element => ({ chars: Array.from(wire.ranges.subarray(wire.setStarts[i], wire.setStarts[i + 1])) }));
  let alternative = 0;
  let element = 0;
  return wire.names.map((name, r): Rule => ({
    name,
    alternatives: Array.from({ length: wire.alternatives[r] }, () => {
      const length = wire.lengths[alternative++];
      const sequence = Array.from(wire.elements.subarray(element, element + length), (e) => (e >= 0 ? ruleElements[e] : setElements[-1 - e]));
      element += length;
      return sequence;
    }),
  }));
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
    if ('rules' in reply) waiting.resolve(Grammar.ofRules(fromWire(reply.rules), startFromWire(reply.start)));
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
