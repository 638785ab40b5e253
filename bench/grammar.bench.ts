// Generation held to a JSON schema (lib/generate/grammar) against free text, end to end through lib/generate on 2
// threads, at the quick start's 7.2M shape (where a step takes a millisecond or two, so the grammar's work shows
// most) and at 124M's (random weights, float32): tokens/s of one request with a new schema (its grammar's token masks
// worked out as it goes), with the same schema again (the masks kept), and of free text; then 8 requests together.
// Below it, what one token mask of GPT-2's vocabulary costs at four points of a JSON text (maskTable), and what a
// mask costs the native sampler (samplerTable).
// `npm run bench -- grammar`.
import { Model, NATIVE, type GPT2Config } from '../lib/engine/model';
import { Generator, Grammar } from '../lib/generate';
import { GrammarMatcher, GrammarVocabulary } from '../lib/generate/grammar';
import { loadTokenizer, type Tokenizer } from '../lib/tokenizer';
import { prompt } from './decode.bench';
import { median } from './stats';

const THREADS = 2;
const SHAPES: readonly (readonly [string, GPT2Config])[] = [
  ['7.2M (the quick start\'s)', { nLayer: 4, nHead: 4, nEmbd: 128, nCtx: 128, vocabSize: 50257 }],
  ['124M', { nLayer: 12, nHead: 12, nEmbd: 768, nCtx: 1024, vocabSize: 50257 }],
];
const SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 24 },
    age: { type: 'integer', minimum: 0, maximum: 120 },
    tags: { type: 'array', items: { type: 'string', maxLength: 12 }, maxItems: 3 },
    member: { type: 'boolean' },
  },
  required: ['name', 'age', 'tags', 'member'],
  additionalProperties: false,
};
const SAMPLING = { temperature: 1, topK: 40, maxTokens: 96 };
const RUNS = 5;

interface Row {
  free: number;
  cold: number;
  warm: number;
  tokens: number;  // generated under the schema, median
}

// Medians over RUNS requests (after one warm-up of free text) of tokens/s, each request alone or `batch` together.
async function measure(model: Model, batch: number): Promise<Row> {
  const gen = new Generator(model, loadTokenizer(), { slots: batch });
  try {
    const run = async (seed: number, grammar?: Grammar): Promise<{ tps: number; tokens: number }> => {
      const t0 = performance.now();
      const results = await Promise.all(Array.from({ length: batch }, (_, i) => gen.generate(prompt(16, seed * 31 + i), { ...SAMPLING, seed: seed * 31 + i, grammar })));
      const tokens = results.reduce((n, r) => n + r.tokens.length, 0);
      return { tps: batch === 1 ? results[0].timings.tokensPerSecond : tokens / ((performance.now() - t0) / 1000), tokens: tokens / batch };
    };
    await run(0);
    const free: number[] = [];
    const cold: number[] = [];
    const warm: number[] = [];
    const tokens: number[] = [];
    const kept = Grammar.fromJsonSchema(SCHEMA);
    await run(0, kept);
    for (let r = 1; r <= RUNS; r++) {
      free.push((await run(r)).tps);
      const first = await run(r, Grammar.fromJsonSchema(SCHEMA));  // a new Grammar: no masks yet
      cold.push(first.tps);
      tokens.push(first.tokens);
      warm.push((await run(r, kept)).tps);
    }
    return { free: median(free), cold: median(cold), warm: median(warm), tokens: median(tokens) };
  } finally {
    await gen.close();
  }
}

export async function run(): Promise<void> {
  const tps = (x: number): string => x.toFixed(0);
  console.log('| model | requests | free text tok/s | JSON schema, new tok/s | JSON schema, kept tok/s | kept / free | tokens a reply |');
  console.log('|---|---|---|---|---|---|---|');
  for (const [name, config] of SHAPES) {
    const model = Model.create(config, { seed: 3, threads: THREADS, trainable: false });
    try {
      for (const batch of [1, 8]) {
        const r = await measure(model, batch);
        console.log(`| ${name} | ${batch} | ${tps(r.free)} | ${tps(r.cold)} | ${tps(r.warm)} | ${(r.warm / r.free).toFixed(2)}x | ${r.tokens.toFixed(0)} |`);
      }
    } finally {
      model.dispose();
    }
  }
  console.log();
  maskTable();
  console.log();
  samplerTable();
}

// A token mask of GPT-2's vocabulary (padded to 50,304 logits, as the models hold it) at four points of a JSON text,
// for a schema and for any JSON object: worked out cold (a new grammar: neither its automaton nor its masks yet),
// with the automaton's states known but no mask kept, and kept.
const MASK_SCHEMA = {
  type: 'object',
  properties: { name: { type: 'string' }, age: { type: 'integer' }, email: { type: 'string', format: 'uuid' }, tags: { type: 'array', items: { type: 'string' } } },
  required: ['name', 'age'],
};
const POINTS: readonly (readonly [string, string])[] = [
  ['before "{"', ''],
  ['after "{"', '{'],
  ['inside a string', '{"name": "Alice Lid'],
  ['after a number', '{"name": "Alice", "age": 42'],
];

// A matcher of `grammar` after the tokens of `prefix`, reached without asking for a mask, so that the automaton holds
// only the states on the way.
function matcherAfter(grammar: Grammar, vocab: GrammarVocabulary, tokenizer: Tokenizer, prefix: string): GrammarMatcher {
  const matcher = new GrammarMatcher(grammar, vocab);
  for (const token of tokenizer.encode(prefix, { allowSpecial: false })) matcher.accept(token);
  return matcher;
}

function maskTable(): void {
  const tokenizer = loadTokenizer();
  let t0 = performance.now();
  const vocab = GrammarVocabulary.of(tokenizer, 50304);
  console.log(`vocabulary trie: ${vocab.byteAt.length} nodes, built once in ${(performance.now() - t0).toFixed(1)} ms\n`);
  console.log('| grammar | point | tokens allowed | cold ms | automaton known, ms | kept, µs |');
  console.log('|---|---|---|---|---|---|');
  for (const [name, fresh] of [['schema', () => Grammar.fromJsonSchema(MASK_SCHEMA)], ['any object', () => Grammar.fromJsonSchema({ type: 'object' })]] as const) {
    for (const [point, prefix] of POINTS) {
      for (let i = 0; i < 5; i++) matcherAfter(fresh(), vocab, tokenizer, prefix).allowed();  // the JIT's warm-up
      const cold: number[] = [];
      const walk: number[] = [];
      const kept: number[] = [];
      let allowed = 0;
      for (let i = 0; i < 15; i++) {
        const grammar = fresh();
        const matcher = matcherAfter(grammar, vocab, tokenizer, prefix);
        t0 = performance.now();
        const mask = matcher.allowed();
        cold.push(performance.now() - t0);
        allowed = mask.reduce((n, word) => n + popcount(word), 0);
        grammar.automaton.masks.delete(vocab);
        t0 = performance.now();
        matcher.allowed();
        walk.push(performance.now() - t0);
        t0 = performance.now();
        for (let k = 0; k < 1000; k++) matcher.allowed();
        kept.push(performance.now() - t0);  // ms for 1000: µs for one
      }
      console.log(`| ${name} | ${point} | ${allowed} | ${median(cold).toFixed(3)} | ${median(walk).toFixed(3)} | ${median(kept).toFixed(2)} |`);
    }
  }
}

function popcount(word: number): number {
  let n = 0;
  for (let w = word; w !== 0; w &= w - 1) n++;
  return n;
}

// The native sampler alone (one row, one thread) on GPT-2's 50,257 logits, drawn at top-k 40 and greedily: without a
// mask, under the schema's masks inside a string (nearly every token allowed) and after a number (a thousand), and
// under a reply in text beside tool calls (tool_choice "auto": every token allowed).
function samplerTable(): void {
  const tokenizer = loadTokenizer();
  const V = tokenizer.vocab.size;
  const vocab = GrammarVocabulary.of(tokenizer, V);
  const maskAt = (prefix: string): Uint32Array => matcherAfter(Grammar.fromJsonSchema(MASK_SCHEMA), vocab, tokenizer, prefix).allowed();
  const model = Model.create({ nLayer: 1, nHead: 1, nEmbd: 8, nCtx: 8, vocabSize: V }, { seed: 3, threads: 1, trainable: false });
  const logits = Float32Array.from({ length: V }, (_, i) => Math.sin(i * 12.9898) * 4);
  const rng = new BigUint64Array([1n, 2n]);
  const out = new Int32Array(1);
  const perRow = (temperature: number, allowed: Uint32Array | undefined): number => {
    const params = [{ temperature, topK: 40, topP: 1, minP: 0, penalize: 0, ...(allowed && { allowed }) }];
    const times: number[] = [];
    for (let r = 0; r < 7; r++) {
      const t0 = performance.now();
      for (let i = 0; i < 500; i++) model[NATIVE].sample(logits, params, rng, [new Int32Array(0)], out);
      times.push(performance.now() - t0);
    }
    return (median(times) * 1000) / 500;
  };
  try {
    console.log('| mask | tokens allowed | sampled, µs a row | greedy, µs a row |');
    console.log('|---|---|---|---|');
    const textBesideCalls = matcherAfter(Grammar.parse('root ::= "{}" | [^{] .*'), vocab, tokenizer, 'Hi').allowed();
    for (const [name, mask] of [['none', undefined], ['inside a string', maskAt(POINTS[2][1])], ['after a number', maskAt(POINTS[3][1])], ['text beside tool calls', textBesideCalls]] as const) {
      const allowed = mask ? mask.reduce((n, word) => n + popcount(word), 0) : V;
      console.log(`| ${name} | ${allowed} | ${perRow(1, mask).toFixed(1)} | ${perRow(0, mask).toFixed(1)} |`);
    }
  } finally {
    model.dispose();
  }
}
