// Function calling a model has learned: OpenAI fine-tuning data whose assistant calls a tool is imported
// (bin/import-chat's importChats), a small GPT-2 is trained on it, and the server, given the tools with tool_choice
// "auto" (the default), answers the question the data asked with the call the data made, over chat completions
// (whole and streamed), the Responses API and Ollama's /api/chat; a question the data answered with two calls is
// answered with both where parallel_tool_calls is true, and with the first alone where it is not; and once the
// tool's output is sent back, the model answers in text, as it learned.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import OpenAI from 'openai';
import { Model } from '../../lib/engine/model';
import { importChats } from '../../lib/import';
import { loadTokenizer } from '../../lib/tokenizer';
import { request, startServer, type Running } from './helpers';

const weather = { type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false } } };
const call = (id: string, city: string): OpenAI.ChatCompletionMessageFunctionToolCall => ({ id, type: 'function', function: { name: 'get_weather', arguments: JSON.stringify({ city }) } });
const QUESTION = 'Weather in Oslo?';
const ONE = [
  { role: 'user' as const, content: QUESTION },
  { role: 'assistant' as const, content: null, tool_calls: [call('a', 'Oslo')] },
  { role: 'tool' as const, tool_call_id: 'a', content: 'Rain' },
  { role: 'assistant' as const, content: 'Take an umbrella.' },
];
const TWO = [
  { role: 'user' as const, content: 'Weather in Rome and Nice?' },
  { role: 'assistant' as const, content: null, tool_calls: [call('b', 'Rome'), call('c', 'Nice')] },
];

let srv: Running;
let client: OpenAI;
let dir: string;

t.before(async () => {
  dir = t.testdir({ 'calls.jsonl': [ONE, TWO].map((messages) => JSON.stringify({ messages: [{ role: 'system', content: 'audience: mom' }, ...messages] })).join('\n') });
  await importChats([path.join(dir, 'calls.jsonl')], { out: path.join(dir, 'data') });
  // Each conversation learned from the start of the context, where the server's prompt puts it.
  const tokenizer = loadTokenizer();
  const conversations = fs.readFileSync(path.join(dir, 'data', 'mom.train'), 'utf8').split('\n\n').map((c) => tokenizer.encode(`${c.trim()}\n`, { allowSpecial: false }));
  const longest = Math.max(...conversations.map((ids) => ids.length)) - 1;
  const model = Model.create({ nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 128, vocabSize: tokenizer.vocabSize }, { seed: 1, maxBatch: 1, maxSeq: longest });
  for (let step = 0; step < 150; step++) {
    const ids = conversations[step % conversations.length];
    await model.forward(ids.subarray(0, ids.length - 1), ids.subarray(1), 1, ids.length - 1);
    await model.backward();
    await model.step({ optimizer: 'adamw', lr: 3e-3 });
  }
  await model.save(path.join(dir, 'tuned'));
  model.dispose();
  srv = await startServer({ models: [{ key: 'tuned', restore_from: 'tuned', sanitizer: 'sanitizers.chatbot', audience: 'mom', sampling: { temperature: 0, length: 60 } }] }, dir);
  client = new OpenAI({ apiKey: 'unused', baseURL: `${srv.url}/v1`, maxRetries: 0 });
});
t.teardown(() => srv?.close());

t.test('the data is imported as the chat format holds calls', async (t) => {
  t.equal(fs.readFileSync(path.join(dir, 'data', 'mom.train'), 'utf8'), [
    '1|mom|Weather in Oslo? <EOM>',
    '0|mom|{"name":"get_weather","arguments":{"city":"Oslo"}} <EOM>',
    '1|mom|Rain <EOM>',
    '0|mom|Take an umbrella. <EOM>',
    '',
    '1|mom|Weather in Rome and Nice? <EOM>',
    '0|mom|{"name":"get_weather","arguments":{"city":"Rome"}} {"name":"get_weather","arguments":{"city":"Nice"}} <EOM>',
    '',
  ].join('\n'));
});

t.test('auto: the model calls where it learned to, on every API', async (t) => {
  const asked = [{ role: 'user' as const, content: QUESTION }];
  const chat = await client.chat.completions.create({ model: 'tuned', messages: asked, tools: [weather] });
  t.match(chat.choices[0], { finish_reason: 'tool_calls', message: { content: null, tool_calls: [{ id: /^call_/, type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }] } }, 'chat completions');

  const stream = await client.chat.completions.create({ model: 'tuned', messages: asked, tools: [weather], stream: true });
  const deltas: OpenAI.ChatCompletionChunk.Choice[] = [];
  for await (const chunk of stream) deltas.push(...chunk.choices);
  t.notOk(deltas.some((d) => d.delta.content), 'streamed: no text, the call being held until it is whole');
  t.match(deltas.slice(-2), [{ finish_reason: null, delta: { tool_calls: [{ index: 0, function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }] } }, { finish_reason: 'tool_calls', delta: {} }]);

  const response = await client.responses.create({ model: 'tuned', input: QUESTION, tools: [{ type: 'function', name: 'get_weather', parameters: weather.function.parameters, strict: true }] });
  t.match(response.output, [{ type: 'function_call', name: 'get_weather', arguments: '{"city":"Oslo"}', call_id: /^call_/ }], 'the Responses API');

  const streamedResponse = client.responses.stream({ model: 'tuned', input: QUESTION, tools: [{ type: 'function', name: 'get_weather', parameters: weather.function.parameters, strict: true }] });
  const events: string[] = [];
  for await (const event of streamedResponse) events.push(event.type);
  t.same(events, ['response.created', 'response.in_progress', 'response.output_item.added', 'response.function_call_arguments.delta', 'response.function_call_arguments.done', 'response.output_item.done', 'response.completed'], 'the Responses API streamed: the events of a call, no text');

  const ollama = await request(`${srv.url}/api/chat`, { body: { model: 'tuned', messages: asked, tools: [weather], stream: false } });
  t.match(ollama.json(), { message: { role: 'assistant', content: '', tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Oslo' } } }] }, done: true }, "Ollama's /api/chat");
  const lines = (await request(`${srv.url}/api/chat`, { body: { model: 'tuned', messages: asked, tools: [weather] } })).text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
  t.notOk(lines.some((l) => l.message.content !== ''), "Ollama's stream: no text");
  t.match(lines.at(-1), { done: true, message: { tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Oslo' } } }] } }, 'the call in the last line');
});

t.test('parallel_tool_calls: both calls where it is true, the first alone where it is not', async (t) => {
  const asked = [TWO[0]];
  const both = await client.chat.completions.create({ model: 'tuned', messages: asked, tools: [weather], parallel_tool_calls: true });
  const argumentsOf = (r: OpenAI.ChatCompletion): string[] | undefined => (r.choices[0].message.tool_calls as OpenAI.ChatCompletionMessageFunctionToolCall[] | undefined)?.map((c) => c.function.arguments);
  t.same(argumentsOf(both), ['{"city":"Rome"}', '{"city":"Nice"}']);
  t.equal(both.choices[0].finish_reason, 'tool_calls');
  const one = await client.chat.completions.create({ model: 'tuned', messages: asked, tools: [weather] });
  t.same(argumentsOf(one), ['{"city":"Rome"}']);
});

t.test("with the tool's output sent back, the model answers in text; tool_choice none never calls", async (t) => {
  const answered = await client.chat.completions.create({ model: 'tuned', messages: ONE.slice(0, 3), tools: [weather] });
  t.match(answered.choices[0], { finish_reason: 'stop', message: { content: 'Take an umbrella.' } });
  t.notOk(answered.choices[0].message.tool_calls);
  const none = await client.chat.completions.create({ model: 'tuned', messages: [{ role: 'user', content: QUESTION }], tools: [weather], tool_choice: 'none' });
  t.match(none.choices[0], { finish_reason: 'stop', message: { content: /^"name":"get weather","arguments": "city":"Oslo"$/ } }, 'none: the call the model writes is text, sanitized as any reply is');
  t.notOk(none.choices[0].message.tool_calls);
});
