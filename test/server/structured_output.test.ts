// Structured outputs over real HTTP on 127.0.0.1, each API with its own field: OpenAI's response_format (through the
// official `openai` client, whole and streamed, for a raw model and a chat model with the chatbot sanitizer), the
// Responses API's text.format, Ollama's format, llama.cpp's grammar and json_schema. Every reply parses and keeps to
// its schema (checked by Ajv) or grammar; a mistake in a schema or grammar is a 400 that says where; and the same
// seeded request gives the same reply twice, the second from the grammar the server kept. Forced tool calls are
// tool_calls.test.ts's.
import t, { type Test } from 'tap';
import Ajv from 'ajv';
import OpenAI from 'openai';
import * as thread from '../../lib/generate/grammar/thread';
import { request, serveApiModels, type ApiModels, type Running } from './helpers';

const API_KEY = 'structured-test-key-0123456789';
const AUTH = { Authorization: `Bearer ${API_KEY}` };
const PROMPT = 'A person:';
const SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 12 },
    age: { type: 'integer', minimum: 0, maximum: 120 },
    pets: { type: 'array', items: { enum: ['cat', 'dog'] }, maxItems: 2 },
  },
  required: ['name', 'age', 'pets'],
  additionalProperties: false,
};
const valid = new Ajv().compile(SCHEMA);

let served: ApiModels;
let srv: Running;
let client: OpenAI;

t.before(async () => {
  served = await serveApiModels('structured', API_KEY, PROMPT, 12);
  ({ srv } = served);
  client = new OpenAI({ apiKey: API_KEY, baseURL: `${srv.url}/v1`, maxRetries: 0 });
});
t.teardown(() => served.close());

function keepsToSchema(t: Test, text: string, what: string): void {
  let value: unknown;
  t.doesNotThrow(() => (value = JSON.parse(text)), `${what}: parses: ${text}`);
  t.ok(valid(value), `${what}: keeps to the schema: ${text} ${JSON.stringify(valid.errors)}`);
}

const RESPONSE_FORMAT = { type: 'json_schema', json_schema: { name: 'person', schema: SCHEMA, strict: true } } as const;

t.test('OpenAI: response_format json_schema and json_object, whole and streamed, raw and chat models', async (t) => {
  for (const model of ['general', 'chatbot']) {
    for (const seed of [1, 2, 3]) {
      const r = await client.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 200, temperature: 1, seed, response_format: RESPONSE_FORMAT });
      t.equal(r.choices[0].finish_reason, 'stop', `${model}, seed ${seed}: ended with its JSON`);
      keepsToSchema(t, r.choices[0].message.content ?? '', `${model}, seed ${seed}`);
    }
    const stream = await client.chat.completions.create({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 200, temperature: 1, seed: 4, stream: true, response_format: RESPONSE_FORMAT });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    keepsToSchema(t, text, `${model}, streamed`);
  }
  const object = await client.chat.completions.create({ model: 'general', messages: [{ role: 'user', content: PROMPT }], max_tokens: 200, temperature: 0, response_format: { type: 'json_object' } });
  if (object.choices[0].finish_reason === 'stop') {
    const value: unknown = JSON.parse(object.choices[0].message.content ?? '');
    t.ok(typeof value === 'object' && value !== null && !Array.isArray(value), `json_object: an object: ${object.choices[0].message.content}`);
  } else {
    t.match(object.choices[0].message.content, /^\{/, `json_object, cut at max_tokens: the start of an object: ${object.choices[0].message.content}`);
  }
  const completion = await client.completions.create({ model: 'general', prompt: PROMPT, max_tokens: 200, temperature: 1, seed: 5, response_format: RESPONSE_FORMAT } as OpenAI.CompletionCreateParamsNonStreaming);
  keepsToSchema(t, completion.choices[0].text, 'completions');
  const text = await client.chat.completions.create({ model: 'general', messages: [{ role: 'user', content: PROMPT }], max_tokens: 5, temperature: 0, response_format: { type: 'text' } });
  t.equal(text.choices[0].finish_reason, 'length', '{"type": "text"}: free text, as without it');
});

t.test('the same seeded request twice: the same reply, the second from the grammar kept', async (t) => {
  const ask = (): Promise<OpenAI.ChatCompletion> => client.chat.completions.create({ model: 'general', messages: [{ role: 'user', content: PROMPT }], max_tokens: 200, temperature: 1, seed: 11, response_format: RESPONSE_FORMAT });
  t.equal((await ask()).choices[0].message.content, (await ask()).choices[0].message.content);
});

t.test('the Responses API: text.format, reported back in the response', async (t) => {
  const format = { type: 'json_schema', name: 'person', schema: SCHEMA } as const;
  const r = await client.responses.create({ model: 'general', input: PROMPT, max_output_tokens: 200, temperature: 1, text: { format } });
  t.equal(r.status, 'completed');
  keepsToSchema(t, r.output_text, 'responses');
  t.same(r.text?.format, format, 'the response reports its format');
});

t.test('Ollama: format "json" and a schema', async (t) => {
  const r = await request(`${srv.url}/api/generate`, { headers: AUTH, body: { model: 'general', prompt: PROMPT, raw: true, stream: false, format: SCHEMA, options: { temperature: 1, seed: 6, num_predict: 200 } } });
  t.equal(r.status, 200, r.text);
  keepsToSchema(t, r.json().response as string, 'ollama, a schema');
  const json = await request(`${srv.url}/api/chat`, { headers: AUTH, body: { model: 'general', messages: [{ role: 'user', content: PROMPT }], stream: false, format: 'json', options: { temperature: 1, seed: 6, num_predict: 300 } } });
  t.equal(json.status, 200, json.text);
  const reply = (json.json().message as { content: string }).content;
  if (json.json().done_reason === 'stop') t.match(JSON.parse(reply), {}, `"json": an object: ${reply}`);
  else t.match(reply, /^\{/, `"json", cut at num_predict: the start of an object: ${reply}`);
});

t.test('llama.cpp: grammar (GBNF) and json_schema', async (t) => {
  for (const seed of [1, 2, 3, 4]) {
    const r = await request(`${srv.url}/completion`, { headers: AUTH, body: { model: 'general', prompt: 'Is it?', n_predict: 10, temperature: 1.5, seed, grammar: 'root ::= ("yes" | "no") "." ' } });
    t.equal(r.status, 200, r.text);
    t.match(r.json(), { content: /^(yes|no)\.$/, stop_type: 'eos' }, `seed ${seed}: ${r.json().content as string}`);
  }
  const r = await request(`${srv.url}/completion`, { headers: AUTH, body: { model: 'general', prompt: PROMPT, n_predict: 200, temperature: 1, seed: 8, json_schema: SCHEMA } });
  t.equal(r.status, 200, r.text);
  keepsToSchema(t, r.json().content as string, 'llama.cpp json_schema');
});

t.test('a mistake in a schema or grammar is a 400 that says where', async (t) => {
  const bad = await client.chat.completions.create({
    model: 'general', messages: [{ role: 'user', content: PROMPT }],
    response_format: { type: 'json_schema', json_schema: { name: 'tagged', schema: { type: 'object', properties: { tags: { type: 'array', uniqueItems: true } } } } },
  }).catch((e: unknown) => e);
  t.ok(bad instanceof OpenAI.BadRequestError, 'a BadRequestError');
  t.match((bad as InstanceType<typeof OpenAI.BadRequestError>).error, { param: 'response_format.json_schema.schema', message: /response_format\.json_schema\.schema\.properties\.tags\.uniqueItems/ });
  for (const [body, param, message] of [
    [{ response_format: { type: 'json_schema', json_schema: { schema: SCHEMA } } }, 'response_format.json_schema.name', /is required/],
    [{ response_format: { type: 'xml' } }, 'response_format.type', /must be "text", "json_object" or "json_schema"/],
    [{ response_format: { type: 'json_object', schema: SCHEMA } }, 'response_format.schema', /unsupported field/],
  ] as const) {
    const r = await request(`${srv.url}/v1/chat/completions`, { headers: AUTH, body: { model: 'general', messages: [{ role: 'user', content: PROMPT }], ...body } });
    t.match([r.status, r.json().error], [400, { param, message }], `${JSON.stringify(body)}: ${r.text}`);
  }
  const gbnf = await request(`${srv.url}/completion`, { headers: AUTH, body: { model: 'general', prompt: 'x', grammar: 'root ::= "a" |\nthing ::= [a-' } });
  t.match([gbnf.status, gbnf.json().error], [400, { field: 'grammar', message: /^grammar:2:\d+: / }], `a GBNF mistake names its line and column: ${gbnf.text}`);
  const undefinedRule = await request(`${srv.url}/completion`, { headers: AUTH, body: { model: 'general', prompt: 'x', grammar: 'root ::= greeting' } });
  t.match([undefinedRule.status, undefinedRule.json().error], [400, { message: /greeting/ }], `an undefined rule is named: ${undefinedRule.text}`);
  const both = await request(`${srv.url}/completion`, { headers: AUTH, body: { model: 'general', prompt: 'x', grammar: 'root ::= "a"', json_schema: SCHEMA } });
  t.match([both.status, both.json().error], [400, { field: 'json_schema' }], 'grammar and json_schema: one or the other');
  const ollama = await request(`${srv.url}/api/generate`, { headers: AUTH, body: { model: 'general', prompt: 'x', stream: false, format: 'yaml' } });
  t.match([ollama.status, ollama.json().error], [400, /^format: must be "json" or a JSON schema/], ollama.text);
});

t.test('a grammar whose rules each begin with the next, two thousand deep, is a 400 before it holds the server up', async (t) => {
  // Before its first character it is entered in two thousand ways, each up to two thousand rules deep: two million
  // positions of open rules, which took seconds of the event loop and hundreds of megabytes to work out.
  const rules = Array.from({ length: 2000 }, (_, i) => `r${i} ::= r${i + 1} "a" | "b"`);
  const grammar = [...rules, 'r2000 ::= "z"', 'root ::= r0'].join('\n');
  const r = await request(`${srv.url}/completion`, { headers: AUTH, body: { model: 'general', prompt: 'x', n_predict: 2, grammar } });
  t.match([r.status, r.json().error], [400, { field: 'grammar', message: /^the grammar nests its rules too deeply/ }], r.text.slice(0, 300));
  const flat = await request(`${srv.url}/completion`, { headers: AUTH, body: { model: 'general', prompt: 'x', n_predict: 2, grammar: 'root ::= ("a" | "b")+' } });
  t.equal(flat.status, 200, 'the server answers on');
});

// Grammars the server has built so far, as its metrics report them.
async function grammarsBuilt(): Promise<number> {
  const metrics = await request(`${srv.url}/metrics`, { headers: AUTH });
  return Number(/^dixie_grammars_built_total (\d+)$/m.exec(metrics.text)?.[1]);
}

t.test('requests that arrive together with the same new schema or grammar wait for one build; a mistake is each one\'s 400', async (t) => {
  const N = 6;
  // 1,200 patterns under anyOf, new to the server: a build of hundreds of milliseconds, which the requests share.
  const patterns = Array.from({ length: 1200 }, (_, i) => ({ type: 'string', pattern: `^together${i}[a-z]{2,8}$` }));
  const schema = { type: 'object', properties: { v: { anyOf: patterns } }, required: ['v'], additionalProperties: false };
  const before = await grammarsBuilt();
  const replies = await Promise.all(Array.from({ length: N }, () => request(`${srv.url}/v1/chat/completions`, {
    headers: AUTH, body: { model: 'general', messages: [{ role: 'user', content: PROMPT }], max_tokens: 1, response_format: { type: 'json_schema', json_schema: { name: 'v', schema } } },
  })));
  for (const r of replies) t.match([r.status, r.json().choices], [200, [{ message: { content: '{' } }]], r.text.slice(0, 200));
  t.equal(await grammarsBuilt(), before + 1, `${N} requests, one build`);

  // A grammar that fails only once its first character is worked out (a chain of rules two thousand deep, a few
  // hundred milliseconds): every request waiting for the build gets the 400.
  const chain = [...Array.from({ length: 2000 }, (_, i) => `r${i} ::= r${i + 1} "a" | "b"`), 'r2000 ::= "y"', 'root ::= r0'].join('\n');
  const failedBefore = await grammarsBuilt();
  const refused = await Promise.all(Array.from({ length: N }, () => request(`${srv.url}/completion`, { headers: AUTH, body: { model: 'general', prompt: 'x', n_predict: 1, grammar: chain } })));
  for (const r of refused) t.match([r.status, r.json().error], [400, { field: 'grammar', message: /^the grammar nests its rules too deeply/ }], r.text.slice(0, 200));
  t.equal(await grammarsBuilt(), failedBefore + 1, `${N} requests, one build that failed`);

  // The same schema with a mistake, at once through two APIs' fields: each 400 names its request's own field.
  const wrong = { type: 'object', properties: { v: { anyOf: [...patterns, { type: 'array', uniqueItems: true }] } } };
  const [llamaCpp, ollama] = await Promise.all([
    request(`${srv.url}/completion`, { headers: AUTH, body: { model: 'general', prompt: 'x', n_predict: 1, json_schema: wrong } }),
    request(`${srv.url}/api/generate`, { headers: AUTH, body: { model: 'general', prompt: 'x', stream: false, format: wrong } }),
  ]);
  t.match([llamaCpp.status, llamaCpp.json().error], [400, { field: 'json_schema', message: /^json_schema\.properties\.v\.anyOf\[1200\]\.uniqueItems: / }], llamaCpp.text.slice(0, 200));
  t.match([ollama.status, ollama.json().error], [400, /^format\.properties\.v\.anyOf\[1200\]\.uniqueItems: /], ollama.text.slice(0, 200));
});

t.test('a schema whose grammar takes long to build does not hold up another client: its stream goes on meanwhile', async (t) => {
  // 1,200 patterns under anyOf, within the 64 KB a body may have: its grammar takes hundreds of milliseconds to build.
  const patterns = Array.from({ length: 1200 }, (_, i) => ({ type: 'string', pattern: `^p${i}[a-z]{2,8}$` }));
  const schema = { type: 'object', properties: { v: { anyOf: patterns } }, required: ['v'], additionalProperties: false };
  const abort = new AbortController();
  const streaming = await fetch(`${srv.url}/v1/chat/completions`, {
    method: 'POST', signal: abort.signal, headers: { ...AUTH, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'long', messages: [{ role: 'user', content: 'Go on:' }], max_tokens: 1000, stream: true }),
  });
  let events = 0;  // the other client's, a token each
  const reading = (async () => {
    for await (const bytes of streaming.body as unknown as AsyncIterable<Uint8Array>) events += Buffer.from(bytes).toString().match(/^data: /gm)?.length ?? 0;
  })().catch(() => {});
  while (events < 3) await new Promise((resolve) => setTimeout(resolve, 1));
  // The events that reach the other client while the grammar is being built.
  const build = thread.buildOffThread;
  const module = thread as { buildOffThread: typeof build };  // the routes call it through the module's exports
  const during: number[] = [];
  module.buildOffThread = async (source) => {
    const before = events;
    try {
      return await build(source);
    } finally {
      during.push(events - before);
    }
  };
  t.teardown(() => {
    module.buildOffThread = build;
  });
  const r = await request(`${srv.url}/v1/chat/completions`, {
    headers: AUTH, body: { model: 'general', messages: [{ role: 'user', content: PROMPT }], max_tokens: 1, response_format: { type: 'json_schema', json_schema: { name: 'v', schema } } },
  });
  abort.abort();
  await reading;
  t.equal(r.status, 200, r.text.slice(0, 300));
  t.match(r.json().choices, [{ message: { content: '{' } }], 'its one token is the JSON\'s first');
  t.equal(during.length, 1, 'its grammar was built once');
  t.ok(during[0] > 0, `the other client got ${during[0]} tokens while the grammar was built`);
});
