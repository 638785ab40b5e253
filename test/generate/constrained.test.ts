// Generation held to a grammar through the one Batcher: a random GPT-2's replies parse and keep to their JSON schema
// or GBNF grammar, sampled or greedy; a reply ends when its grammar is complete, or is cut at maxTokens; the
// requests decoded beside a constrained one give the very tokens they give alone; and the same seed gives the same
// reply whether the grammar's token masks are worked out afresh or kept from an earlier request.
import t from 'tap';
import Ajv from 'ajv';
import { Grammar, type GenerateResult } from '../../lib/generate';
import { testGenerator, tokenizer } from './helpers';

const CONFIG = { nLayer: 2, nHead: 2, nEmbd: 32, nCtx: 256, vocabSize: 50257 };
const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 16 },
    age: { type: 'integer', minimum: 0, maximum: 120 },
    pets: { type: 'array', items: { enum: ['cat', 'dog', 'fish'] }, maxItems: 3 },
    member: { type: 'boolean' },
  },
  required: ['name', 'age', 'pets'],
  additionalProperties: false,
};
const validPerson = new Ajv().compile(PERSON);

t.test('replies held to a JSON schema parse and keep to it, sampled and greedy, and end with the JSON', async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 4 });
  const grammar = Grammar.fromJsonSchema(PERSON);
  const runs: Promise<GenerateResult>[] = [];
  for (let seed = 0; seed < 12; seed++) runs.push(gen.generate('A person:', { grammar, maxTokens: 200, temperature: 1, topK: 40, seed }));
  runs.push(gen.generate('A person:', { grammar, maxTokens: 200, temperature: 0 }));
  for (const r of await Promise.all(runs)) {
    t.equal(r.finishReason, 'stop', `ended by its grammar: ${r.text}`);
    let value: unknown;
    t.doesNotThrow(() => (value = JSON.parse(r.text)), `parses: ${r.text}`);
    t.ok(validPerson(value), `keeps to the schema: ${r.text} ${JSON.stringify(validPerson.errors)}`);
    t.equal(tokenizer.decode(r.tokens), r.text, 'the text is its tokens\' (no <|endoftext|> among them)');
  }
});

t.test('a GBNF grammar: only its sentences; <|endoftext|> only where it may end; cut at maxTokens', async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 2 });
  // "yes" or "no", then one or more "!": the text may end after the first "!", or go on.
  const grammar = Grammar.parse('root ::= ("yes" | "no") "!"+');
  const seen = new Set<string>();
  for (let seed = 0; seed < 10; seed++) {
    const r = await gen.generate('Answer:', { grammar, maxTokens: 12, temperature: 1.5, seed });
    t.match(r.text, /^(yes|no)!+$/, `seed ${seed}: ${JSON.stringify(r.text)} (${r.finishReason})`);
    if (r.finishReason === 'length') t.equal(r.tokens.length, 12, 'cut at maxTokens');
    else t.equal(r.finishReason, 'stop', 'or ended where the grammar may end');
    seen.add(r.text.replace(/!+$/, ''));
  }
  t.ok(seen.size === 2, `both answers drawn over ten seeds: ${[...seen].join(', ')}`);
  const cut = await gen.generate('Answer:', { grammar: Grammar.fromJsonSchema({ type: 'array', items: { type: 'integer' } }), maxTokens: 3, temperature: 1, seed: 3 });
  t.equal(cut.finishReason, 'length', `a reply cut at maxTokens says so: ${cut.text}`);
  t.match(cut.text, /^\[/, 'and is the start of the JSON');
});

t.test('requests beside a constrained one give the tokens they give alone; kept masks give the same reply as fresh ones', async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 4 });
  const free = (seed: number): Promise<GenerateResult> => gen.generate('The cat sat', { maxTokens: 24, temperature: 1, seed });
  const alone = [(await free(1)).tokens, (await free(2)).tokens];
  const grammar = Grammar.fromJsonSchema(PERSON);
  const [a, constrained, b] = await Promise.all([free(1), gen.generate('A person:', { grammar, maxTokens: 200, temperature: 1, seed: 7 }), free(2)]);
  t.same([a.tokens, b.tokens], alone, 'the free requests decoded beside it drew their own tokens');
  const again = await gen.generate('A person:', { grammar, maxTokens: 200, temperature: 1, seed: 7 });
  const fresh = await gen.generate('A person:', { grammar: Grammar.fromJsonSchema(PERSON), maxTokens: 200, temperature: 1, seed: 7 });
  t.same([again.tokens, fresh.tokens], [constrained.tokens, constrained.tokens], 'the same seed: the same reply with kept masks and with fresh ones');
});

t.test('a request whose masks take long does not hold back those beside it: they draw while its masks are worked out', async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 2 });
  // Its first mask reads the 16,000 ways its text begins: hundreds of milliseconds, many slices of work.
  const words = Array.from({ length: 16000 }, (_, i) => `"w${i}"`);
  const grammar = Grammar.parse(`root ::= ${words.join(' | ')}`);
  let freeDrawn = 0;
  let freeDrawnBeforeConstrained = -1;
  const constrained = gen.generate('A word:', { grammar, maxTokens: 8, temperature: 1, seed: 3, logprobs: 0, onLogprob: () => {
    if (freeDrawnBeforeConstrained < 0) freeDrawnBeforeConstrained = freeDrawn;
  } });
  const free = gen.generate('The cat sat', { maxTokens: 100, temperature: 1, seed: 1, logprobs: 0, onLogprob: () => freeDrawn++ });
  const [c, f] = await Promise.all([constrained, free]);
  t.ok(words.includes(JSON.stringify(c.text)), `the constrained reply is one of its words: ${c.text}`);
  t.equal(f.tokens.length, 100, 'the free request ran its length');
  // Worked out inside the step, the mask held the free request's draw back to the constrained request's.
  t.ok(freeDrawnBeforeConstrained >= 2, `the free request drew ${freeDrawnBeforeConstrained} tokens before the constrained one drew its first`);
});

t.test('a request whose masks are quick to work out draws at every step beside another, not at every other one', async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 2 });
  // Every token a state of its own, whose mask no request has worked out before, each within a slice of work.
  const digits = '0123456789'.repeat(4);
  const grammar = Grammar.parse(`root ::= "${digits}"`);
  const draws: string[] = [];
  const constrained = gen.generate('Digits:', { grammar, maxTokens: 64, temperature: 1, seed: 3, logprobs: 0, onLogprob: () => draws.push('c') });
  const free = gen.generate('The cat sat', { maxTokens: 200, temperature: 1, seed: 1, logprobs: 0, onLogprob: () => draws.push('f') });
  const [c] = await Promise.all([constrained, free]);
  t.equal(c.text, digits);
  const between = draws.slice(draws.indexOf('c'), draws.lastIndexOf('c') + 1);
  const freeBetween = between.filter((d) => d === 'f').length;
  t.ok(freeBetween <= c.tokens.length, `the free request drew ${freeBetween} tokens while the constrained one drew its ${c.tokens.length}: ${between.join('')}`);
});

t.test('a request stopped as its grammar costs too much frees its slot for the requests waiting for one', async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 1 });
  // Its text may not end before a "b", which it is kept from drawing: it reads a's until it costs too much.
  const noB = Object.fromEntries(Array.from({ length: tokenizer.vocabSize }, (_, id) => id).filter((id) => tokenizer.decode([id]).includes('b')).map((id) => [id, -100]));
  const costly = gen.generate('A:', { grammar: Grammar.parse('root ::= ("a"?){3000} "b"'), maxTokens: 400, temperature: 1, seed: 1, logitBias: noB });
  const waiting = gen.generate('The cat sat', { maxTokens: 5, temperature: 1, seed: 1 });
  await t.rejects(costly, { name: 'GrammarError', message: /^the grammar is too ambiguous to follow/ });
  const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('still waiting'), 30_000).unref());
  t.equal(await Promise.race([waiting.then((r) => `${r.tokens.length} tokens`), timeout]), '5 tokens', 'the waiting request ran');
});
