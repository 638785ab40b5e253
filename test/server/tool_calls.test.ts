// Function calling over real HTTP on 127.0.0.1, through the official `openai` client (chat completions and the
// Responses API) and Ollama's /api/chat: a forced call is a call whose arguments keep to the tool's parameters
// (checked by Ajv), whole and streamed; "auto" answers in text where the model does not begin a call (one that
// does: tool_calls_learned.test.ts); a conversation sent back with its calls and their
// outputs makes the prompt it should (llama.cpp's /apply-template shows it), which every API answers alike; and a
// mistake is a 400 that names the field.
import t from 'tap';
import Ajv from 'ajv';
import OpenAI from 'openai';
import { request, serveApiModels, type ApiModels, type Running } from './helpers';

const API_KEY = 'tools-test-key-0123456789';
const AUTH = { Authorization: `Bearer ${API_KEY}` };

let served: ApiModels;
let srv: Running;
let client: OpenAI;

t.before(async () => {
  served = await serveApiModels('tools', API_KEY, 'What is the weather in Oslo?', 12);
  ({ srv } = served);
  client = new OpenAI({ apiKey: API_KEY, baseURL: `${srv.url}/v1`, maxRetries: 0 });
});
t.teardown(() => served.close());

// Parameters as Pydantic writes them: a nested model under $defs, referred to from the root.
const weather = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { $ref: '#/$defs/City' }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'], additionalProperties: false, $defs: { City: { type: 'string', maxLength: 10 } } },
  },
};
const alarm = { type: 'function' as const, function: { name: 'set_alarm', parameters: { type: 'object', properties: { hour: { type: 'integer', minimum: 0, maximum: 23 } }, required: ['hour'], additionalProperties: false } } };
const validArguments = { get_weather: new Ajv().compile({ ...weather.function.parameters }), set_alarm: new Ajv().compile(alarm.function.parameters) };

t.test('chat completions: a forced call (tool_choice required or named) is a call whose arguments keep to the tool\'s parameters; auto may answer in text', async (t) => {
  const messages = [{ role: 'user' as const, content: 'What is the weather in Oslo?' }];
  const named = await client.chat.completions.create({ model: 'general', messages, tools: [weather, alarm], tool_choice: { type: 'function', function: { name: 'get_weather' } }, max_tokens: 200, temperature: 1, seed: 2 });
  t.equal(named.choices[0].finish_reason, 'stop', 'a call to the function the request named ends as "stop", as OpenAI\'s does');
  t.equal(named.choices[0].message.content, null, 'no text beside the call');
  const call = named.choices[0].message.tool_calls?.[0];
  t.match(call, { id: /^call_/, type: 'function', function: { name: 'get_weather' } }, 'the named tool, called');
  const args: unknown = JSON.parse((call as { function: { arguments: string } }).function.arguments);
  t.ok(validArguments.get_weather(args), `its arguments keep to its parameters: ${JSON.stringify(args)}`);
  const names = new Set<string>();
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    const r = await client.chat.completions.create({ model: 'chatbot', messages, tools: [weather, alarm], tool_choice: 'required', max_tokens: 200, temperature: 1, seed });
    const c = r.choices[0].message.tool_calls?.[0] as { function: { name: 'get_weather' | 'set_alarm'; arguments: string } };
    t.ok(validArguments[c.function.name](JSON.parse(c.function.arguments)), `required, seed ${seed}: ${c.function.name}(${c.function.arguments})`);
    names.add(c.function.name);
  }
  t.equal(names.size, 2, 'either tool may be called');
  const stream = await client.chat.completions.create({ model: 'general', messages, tools: [alarm], tool_choice: 'required', max_tokens: 200, temperature: 1, seed: 3, stream: true });
  const deltas: OpenAI.ChatCompletionChunk.Choice[] = [];
  for await (const chunk of stream) deltas.push(...chunk.choices);
  t.equal(deltas[0].delta.role, 'assistant', 'streamed: the role first');
  const [called, last] = deltas.slice(-2);
  t.match(called, { finish_reason: null, delta: { tool_calls: [{ index: 0, id: /^call_/, type: 'function', function: { name: 'set_alarm' } }] } }, 'the call whole in one chunk');
  t.ok(validArguments.set_alarm(JSON.parse(called.delta.tool_calls?.[0].function?.arguments ?? '')), 'its arguments keep to the parameters');
  t.same([last.delta, last.finish_reason], [{}, 'tool_calls'], 'then, as OpenAI ends a stream, a chunk of the finish reason alone');
  // The client's stream helper takes a call for done at the chunk with a finish reason after it.
  const helper = client.chat.completions.stream({ model: 'general', messages, tools: [{ ...alarm, function: { ...alarm.function, strict: true } }], tool_choice: 'required', max_tokens: 200, temperature: 1, seed: 3, n: 2 });
  const done: { index: number; parsed_arguments: unknown }[] = [];
  helper.on('tool_calls.function.arguments.done', (e) => done.push(e));
  const final = await helper.finalChatCompletion();
  const finalCalls = final.choices.map((c) => JSON.parse((c.message.tool_calls?.[0] as OpenAI.ChatCompletionMessageFunctionToolCall).function.arguments) as unknown);
  // In either order: the choices' calls end as each choice does (the event names no choice), and sort() would compare
  // objects as one string, "[object Object]".
  const inAnyOrder = (calls: unknown[]) => calls.map((call) => JSON.stringify(call)).sort();
  t.same(inAnyOrder(done.map((e) => e.parsed_arguments)), inAnyOrder(finalCalls), "stream(): each choice's call is done, parsed as strict asks, as finalChatCompletion() gives it");
  const namedHelper = client.chat.completions.stream({ model: 'general', messages, tools: [weather, alarm], tool_choice: { type: 'function', function: { name: 'get_weather' } }, max_tokens: 200, temperature: 1, seed: 2 });
  const namedDone: string[] = [];
  namedHelper.on('tool_calls.function.arguments.done', (e) => namedDone.push(e.arguments));
  const namedFinal = await namedHelper.finalChatCompletion();
  t.equal(namedFinal.choices[0].finish_reason, 'stop', 'streamed, the named call ends as "stop" too');
  t.same(namedDone, [(call as { function: { arguments: string } }).function.arguments], 'and the stream helper takes the call for done, the same call as the whole answer\'s');
  const auto = await client.chat.completions.create({ model: 'general', messages, tools: [weather], max_tokens: 5, temperature: 0 });
  t.match(auto.choices[0], { finish_reason: 'length', message: { content: /./ } }, 'auto (the default with tools): an answer in text');
  t.notOk(auto.choices[0].message.tool_calls?.length, 'and no call');
  const autoStream = await client.chat.completions.create({ model: 'general', messages, tools: [weather], max_tokens: 5, temperature: 0, stream: true });
  const pieces: string[] = [];
  for await (const chunk of autoStream) for (const choice of chunk.choices) if (choice.delta.content) pieces.push(choice.delta.content);
  t.equal(pieces.join(''), auto.choices[0].message.content, 'streamed, a reply in text comes as it is written');
  t.ok(pieces.length > 1, `in ${pieces.length} pieces`);
  const unread = { type: 'function' as const, function: { name: 'tag', parameters: { type: 'object', properties: { tags: { type: 'array', uniqueItems: true } } } } };
  const text = await client.chat.completions.create({ model: 'general', messages, tools: [unread], tool_choice: 'auto', max_tokens: 3, temperature: 0 });
  t.equal(text.choices[0].finish_reason, 'length', 'under auto, a tool whose parameters no grammar holds (uniqueItems) is one the model cannot call, not a request refused');
  const cut = await client.chat.completions.create({ model: 'general', messages, tools: [weather], tool_choice: 'required', max_tokens: 3, temperature: 0 });
  t.match(cut.choices[0], { finish_reason: 'length', message: { content: /^\{/ } }, 'a call cut at max_tokens: the text so far, no call');
  for (const [body, param, message] of [
    [{ tools: [weather], tool_choice: { type: 'function', function: { name: 'get_time' } } }, 'tool_choice.function.name', /"get_time" is not among the tools/],
    [{ tool_choice: 'required' }, 'tool_choice', /needs at least one tool/],
    [{ tools: [weather, weather] }, 'tools[1].function.name', /the name of an earlier tool/],
    [{ tools: [{ type: 'function', function: { name: 'x', parameters: { type: 'object', properties: { n: { type: 'number', minimum: 1 } } } } }], tool_choice: 'required' }, 'tools[0].function.parameters', /^tools\[0\]\.function\.parameters\.properties\.n\.minimum: /],
    [{ tools: [{ type: 'web_search' }] }, 'tools[0]', /must be \{"type": "function"/],
    [{ tools: [weather], parallel_tool_calls: 'yes' }, 'parallel_tool_calls', /true or false/],
  ] as const) {
    const r = await request(`${srv.url}/v1/chat/completions`, { headers: AUTH, body: { model: 'general', messages, ...body } });
    t.match([r.status, r.json().error], [400, { param, message }], `${JSON.stringify(body).slice(0, 120)}: ${r.text}`);
  }
});

t.test("OpenAI's older function calling: functions and function_call, answered as message.function_call", async (t) => {
  const messages = [{ role: 'user', content: 'What is the weather in Oslo?' }];
  const body = { model: 'general', messages, functions: [weather.function], function_call: { name: 'get_weather' }, max_tokens: 200, temperature: 1, seed: 2 };
  const r = await request(`${srv.url}/v1/chat/completions`, { headers: AUTH, body });
  const choice = (r.json().choices as Record<string, any>[])[0];
  t.match(choice, { finish_reason: 'stop', message: { role: 'assistant', content: null, function_call: { name: 'get_weather' } } }, r.text);
  t.notOk(choice.message.tool_calls, 'no tool_calls beside it');
  t.ok(validArguments.get_weather(JSON.parse(choice.message.function_call.arguments)), `its arguments keep to the parameters: ${choice.message.function_call.arguments}`);
  const tools = await client.chat.completions.create({ model: 'general', messages: [{ role: 'user', content: 'What is the weather in Oslo?' }], tools: [weather], tool_choice: { type: 'function', function: { name: 'get_weather' } }, max_tokens: 200, temperature: 1, seed: 2 });
  t.equal(choice.message.function_call.arguments, (tools.choices[0].message.tool_calls?.[0] as OpenAI.ChatCompletionMessageFunctionToolCall).function.arguments, 'the call the same request makes through tools');
  const streamed = (await request(`${srv.url}/v1/chat/completions`, { headers: AUTH, body: { ...body, stream: true } })).text.split('\n').filter((l) => l.startsWith('data: {')).map((l) => JSON.parse(l.slice(6)) as Record<string, any>);
  t.match(streamed.at(-2)?.choices[0], { finish_reason: null, delta: { function_call: { name: 'get_weather', arguments: choice.message.function_call.arguments } } }, 'streamed: the call whole in one chunk');
  t.match(streamed.at(-1)?.choices[0], { finish_reason: 'stop', delta: {} }, 'then the finish reason alone: "stop", as OpenAI ends a call to the function the request named');

  // Sent back: the call in the assistant's function_call, the output in a function message, the prompt the tools' way makes.
  const template = async (sent: unknown[]): Promise<unknown> => (await request(`${srv.url}/apply-template`, { headers: AUTH, body: { model: 'chatbot', messages: sent } })).json().prompt;
  const older = [messages[0], { role: 'assistant', content: null, function_call: { name: 'get_weather', arguments: ARGUMENTS } }, { role: 'function', name: 'get_weather', content: OUTPUT }];
  t.equal(await template(older), await template(CHAT_MESSAGES), 'the same prompt as tool_calls and a tool message make');

  for (const [extra, param, message] of [
    [{ functions: [weather.function], tools: [weather] }, 'functions', /cannot come with tools or tool_choice/],
    [{ functions: [weather.function], function_call: 'required' }, 'function_call', /must be "none", "auto" or \{"name"\}/],
    [{ functions: [weather.function], function_call: { name: 'get_time' } }, 'function_call.name', /"get_time" is not among the functions/],
    [{ function_call: { name: 'get_weather' } }, 'function_call.name', /is not among the functions/],
    [{ functions: [{ ...weather.function, strict: true }] }, 'functions[0].strict', /unsupported field/],
  ] as const) {
    const refused = await request(`${srv.url}/v1/chat/completions`, { headers: AUTH, body: { model: 'general', messages, ...extra } });
    t.match([refused.status, refused.json().error], [400, { param, message }], JSON.stringify(extra).slice(0, 100));
  }
});

// A conversation that called get_weather once, as each API sends it back.
const QUESTION = 'What is the weather in Oslo?';
const ARGUMENTS = '{"city": "Oslo", "unit": "c"}';
const OUTPUT = 'Sunny, 3 degrees';
const CALL_TEXT = '{"name":"get_weather","arguments":{"city":"Oslo","unit":"c"}}';
const ASKED = { role: 'user' as const, content: QUESTION };
const CALLED = { role: 'assistant' as const, content: null, tool_calls: [{ id: 'call_1', type: 'function' as const, function: { name: 'get_weather', arguments: ARGUMENTS } }] };
const TOLD = { role: 'tool' as const, tool_call_id: 'call_1', content: OUTPUT };
const CHAT_MESSAGES = [ASKED, CALLED, TOLD];

t.test('a conversation sent back with its calls and their outputs: the prompt it makes, answered alike by every API', async (t) => {
  const template = async (model: string): Promise<string> => (await request(`${srv.url}/apply-template`, { headers: AUTH, body: { model, messages: CHAT_MESSAGES } })).json().prompt as string;
  t.equal(await template('chatbot'), `1|mom|${QUESTION} <EOM>\n0|mom|${CALL_TEXT} <EOM>\n1|mom|${OUTPUT} <EOM>\n0|mom|`, "a chat model: the call in the bot's words, its output on the user's side");
  const raw = await template('general');
  t.equal(raw, `${QUESTION}\n${CALL_TEXT}\n${OUTPUT}`, 'a raw model: one a line');

  // The raw model at temperature 0: each API's reply to the conversation is the continuation of that prompt, the
  // same tokens at the same log-probabilities, which a prompt short of the tool's output does not give.
  const length = 6;
  const logprobs = { logprobs: true, top_logprobs: 2 } as const;
  const chat = await client.chat.completions.create({ model: 'general', messages: CHAT_MESSAGES, tools: [weather], max_tokens: length, temperature: 0, ...logprobs });
  const expected = chat.choices[0].logprobs?.content ?? [];
  t.equal(expected.length, length, 'chat completions: a log-probability a token');
  const completion = await client.completions.create({ model: 'general', prompt: raw, max_tokens: length, temperature: 0, logprobs: 2 });
  t.same(completion.choices[0].logprobs?.token_logprobs, expected.map((l) => l.logprob), 'the prompt /apply-template shows, continued alike');
  const without = await client.completions.create({ model: 'general', prompt: `${QUESTION}\n${CALL_TEXT}`, max_tokens: length, temperature: 0, logprobs: 2 });
  t.notSame(without.choices[0].logprobs?.token_logprobs, expected.map((l) => l.logprob), "and not as the prompt without the tool's output");
  const ask = {
    model: 'general',
    input: [
      { role: 'user' as const, content: QUESTION },
      { type: 'function_call' as const, call_id: 'call_1', name: 'get_weather', arguments: ARGUMENTS },
      { type: 'function_call_output' as const, call_id: 'call_1', output: OUTPUT },
    ],
    max_output_tokens: length,
    temperature: 0,
    include: ['message.output_text.logprobs' as const],
    top_logprobs: 2,
  };
  const responses = await client.responses.create(ask);
  t.same(responses.output[0].type === 'message' && responses.output[0].content[0], { type: 'output_text', text: chat.choices[0].message.content, annotations: [], logprobs: expected }, 'the Responses API');
  // With the tool given, under "auto": the reply in text streams, and its deltas carry every token's log-probability.
  const streamed = client.responses.stream({ ...ask, tools: [{ type: 'function', name: 'get_weather', parameters: weather.function.parameters, strict: true }] });
  let streamedText = '';
  const streamedLogprobs: unknown[] = [];
  for await (const event of streamed) {
    if (event.type !== 'response.output_text.delta') continue;
    streamedText += event.delta;
    streamedLogprobs.push(...event.logprobs);
  }
  t.same([streamedText, streamedLogprobs], [chat.choices[0].message.content, expected], 'the Responses API streamed, with the tool');
  const ollama = await request(`${srv.url}/api/chat`, {
    headers: AUTH,
    body: {
      model: 'general',
      messages: [{ role: 'user', content: QUESTION }, { role: 'assistant', content: '', tool_calls: [{ function: { name: 'get_weather', arguments: JSON.parse(ARGUMENTS) as unknown } }] }, { role: 'tool', content: OUTPUT, tool_name: 'get_weather' }],
      stream: false,
      options: { temperature: 0, num_predict: length },
      ...logprobs,
    },
  });
  t.same([ollama.json().message, ollama.json().logprobs], [{ role: 'assistant', content: chat.choices[0].message.content }, expected], "Ollama's /api/chat");

  // The loop as a client runs it: the forced call's message sent back as the client got it, with the tool's output.
  const called = await client.chat.completions.create({ model: 'chatbot', messages: [{ role: 'user', content: QUESTION }], tools: [weather], tool_choice: 'required', max_tokens: 200, temperature: 1, seed: 4 });
  const message = called.choices[0].message;
  const id = message.tool_calls?.[0]?.id ?? '';
  const answered = await client.chat.completions.create({ model: 'chatbot', messages: [{ role: 'user', content: QUESTION }, message, { role: 'tool', tool_call_id: id, content: OUTPUT }], tools: [weather], max_tokens: 5, seed: 4 });
  t.match(answered.choices[0], { message: { role: 'assistant', content: /./ } }, `the call's output answered in text: ${JSON.stringify(answered.choices[0].message.content)}`);
});

t.test('the Responses API: a forced call is a function_call item, whole and streamed', async (t) => {
  const tool = { type: 'function' as const, name: 'get_weather', description: 'The weather in a city', parameters: weather.function.parameters, strict: true };
  const ask = { model: 'general', input: QUESTION, tools: [tool], max_output_tokens: 200, temperature: 0 };
  const r = await client.responses.create({ ...ask, tool_choice: 'required' });
  t.equal(r.status, 'completed');
  t.equal(r.output.length, 1, 'one item');
  const item = r.output[0];
  t.match(item, { type: 'function_call', id: /^fc_/, call_id: /^call_/, name: 'get_weather', status: 'completed' });
  t.ok(item.type === 'function_call' && validArguments.get_weather(JSON.parse(item.arguments)), `its arguments keep to the parameters: ${item.type === 'function_call' ? item.arguments : ''}`);
  t.match(r, { tools: [tool], tool_choice: 'required' }, 'the tools and the choice reported back');
  const named = await client.responses.create({ ...ask, tool_choice: { type: 'function', name: 'get_weather' } });
  t.same(named.output[0].type === 'function_call' && named.output[0].arguments, item.type === 'function_call' && item.arguments, 'named: the same call, at temperature 0');

  const stream = client.responses.stream({ ...ask, tool_choice: 'required' });
  const types: string[] = [];
  let streamedArguments = '';
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === 'response.function_call_arguments.delta') streamedArguments += event.delta;
  }
  const final = await stream.finalResponse();
  t.same(types, ['response.created', 'response.in_progress', 'response.output_item.added', 'response.function_call_arguments.delta', 'response.function_call_arguments.done', 'response.output_item.done', 'response.completed'], 'the events of a call');
  t.equal(streamedArguments, item.type === 'function_call' ? item.arguments : null, 'the arguments, as whole');
  t.match(final.output[0], { type: 'function_call', name: 'get_weather' });

  const cut = await client.responses.create({ ...ask, tool_choice: 'required', max_output_tokens: 3 });
  t.match(cut, { status: 'incomplete', output: [{ type: 'message', content: [{ text: /^\{/ }] }] }, 'a call cut at max_output_tokens: the text so far');
  const auto = await client.responses.create({ ...ask, max_output_tokens: 4 });
  t.match(auto.output[0], { type: 'message' }, 'auto (the default with tools): an answer in text');
});

t.test('tool_choice "allowed_tools": its mode over the tools it names, the others sent but never called', async (t) => {
  const messages = [{ role: 'user' as const, content: 'What is the weather in Oslo?' }];
  for (const [allowed, other] of [['set_alarm', 'get_weather'], ['get_weather', 'set_alarm']] as const) {
    for (const seed of [1, 2, 3]) {
      const r = await client.chat.completions.create({
        model: 'chatbot', messages, tools: [weather, alarm], max_tokens: 200, temperature: 1, seed,
        tool_choice: { type: 'allowed_tools', allowed_tools: { mode: 'required', tools: [{ type: 'function', function: { name: allowed } }] } },
      });
      const call = r.choices[0].message.tool_calls?.[0] as OpenAI.ChatCompletionMessageFunctionToolCall;
      t.equal(call.function.name, allowed, `required over ${allowed}, seed ${seed}: ${other} is never called`);
      t.ok(validArguments[allowed](JSON.parse(call.function.arguments)), call.function.arguments);
    }
  }
  const flatTools = [weather, alarm].map((tool) => ({ type: 'function' as const, name: tool.function.name, parameters: tool.function.parameters, strict: true }));
  const response = await client.responses.create({ model: 'chatbot', input: 'What is the weather in Oslo?', tools: flatTools, max_output_tokens: 200, temperature: 1, tool_choice: { type: 'allowed_tools', mode: 'required', tools: [{ type: 'function', name: 'get_weather' }] } });
  t.match(response, { output: [{ type: 'function_call', name: 'get_weather' }], tool_choice: { type: 'allowed_tools', mode: 'required' } }, 'the Responses API\'s, flat');
  const auto = await client.chat.completions.create({ model: 'general', messages, tools: [weather, alarm], max_tokens: 5, temperature: 0, tool_choice: { type: 'allowed_tools', allowed_tools: { mode: 'auto', tools: [{ type: 'function', function: { name: 'set_alarm' } }] } } });
  t.match(auto.choices[0], { finish_reason: 'length', message: { content: /./ } }, 'auto: the model may answer in text');
  for (const [allowedTools, param, message] of [
    [{ mode: 'required', tools: [{ type: 'function', function: { name: 'get_time' } }] }, 'tool_choice.allowed_tools.tools[0].function.name', /"get_time" is not among the tools/],
    [{ mode: 'always', tools: [] }, 'tool_choice.allowed_tools.mode', /"auto" or "required"/],
    [{ mode: 'required', tools: [] }, 'tool_choice.allowed_tools.tools', /must name at least one of the tools, which "required" calls/],
    [{ mode: 'auto', tools: [{ type: 'function', name: 'set_alarm' }] }, 'tool_choice.allowed_tools.tools[0]', /must be \{"type": "function", "function": \{"name"\}\}/],
  ] as const) {
    const r = await request(`${srv.url}/v1/chat/completions`, { headers: AUTH, body: { model: 'general', messages, tools: [weather, alarm], tool_choice: { type: 'allowed_tools', allowed_tools: allowedTools } } });
    t.match([r.status, r.json().error], [400, { param, message }], JSON.stringify(allowedTools));
  }
});

t.test('a tool that gives no parameters takes none, as OpenAI documents: a forced call\'s arguments are {}', async (t) => {
  const messages = [{ role: 'user' as const, content: QUESTION }];
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({ model: 'general', messages, tools: [{ type: 'function', function: { name: 'ring_bell' } }], tool_choice: 'required', max_tokens: 50, temperature: 1.5, seed });
    const call = r.choices[0].message.tool_calls?.[0];
    t.same(call?.type === 'function' && [call.function.name, call.function.arguments], ['ring_bell', '{}'], `chat completions, seed ${seed}`);
  }
  const tool = { type: 'function' as const, name: 'ring_bell', parameters: null, strict: false };
  const r = await client.responses.create({ model: 'general', input: QUESTION, tools: [tool], tool_choice: 'required', max_output_tokens: 50, temperature: 1.5 });
  t.match(r.output[0], { type: 'function_call', name: 'ring_bell', arguments: '{}' }, 'the Responses API\'s parameters null alike');
});

t.test('calls and outputs out of place, or malformed, are 400s that name the field', async (t) => {
  const [question, assistant, output, call] = [ASKED, CALLED, TOLD, CALLED.tool_calls[0]];
  for (const [messages, param, message] of [
    [[question, { ...output, tool_call_id: 'call_9' }], 'messages[1].tool_call_id', /must be the id of a call in an earlier assistant message/],
    [[question, output, assistant], 'messages[1].tool_call_id', /earlier assistant message/],
    [[question, { ...assistant, tool_calls: [{ ...call, function: { name: 'get_weather', arguments: '{city' } }] }], 'messages[1].tool_calls[0].function.arguments', /this is not JSON/],
    [[question, { ...assistant, tool_calls: [{ ...call, function: { arguments: ARGUMENTS } }] }], 'messages[1].tool_calls[0].function.name', /the name of the function called/],
    [[question, { ...assistant, tool_calls: call }], 'messages[1].tool_calls', /must be an array/],
    [[question, { role: 'assistant', content: null, function_call: { name: 'get_weather', arguments: '{city' } }], 'messages[1].function_call.arguments', /this is not JSON/],
  ] as const) {
    const r = await request(`${srv.url}/v1/chat/completions`, { headers: AUTH, body: { model: 'general', messages } });
    t.match([r.status, r.json().error], [400, { param, message }], `${param}: ${r.text}`);
  }
  for (const [input, param, message] of [
    [[{ type: 'function_call_output', call_id: 'call_1', output: OUTPUT }], 'input[0].call_id', /an earlier function_call item/],
    [[{ type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{' }], 'input[0].arguments', /this is not JSON/],
    [[{ type: 'function_call', name: 'get_weather', arguments: ARGUMENTS }], 'input[0].call_id', /the id of the call/],
  ] as const) {
    const r = await request(`${srv.url}/v1/responses`, { headers: AUTH, body: { model: 'general', input } });
    t.match([r.status, r.json().error], [400, { param, message }], `${param}: ${r.text}`);
  }
  const named = await request(`${srv.url}/v1/responses`, { headers: AUTH, body: { model: 'general', input: QUESTION, tools: [{ type: 'function', name: 'get_weather' }], tool_choice: { type: 'function', name: 'get_time' } } });
  t.match([named.status, named.json().error], [400, { param: 'tool_choice.name', message: /"get_time" is not among the tools/ }], named.text);
  const ollama = await request(`${srv.url}/api/chat`, { headers: AUTH, body: { model: 'general', stream: false, messages: [{ role: 'assistant', content: '', tool_calls: [{ function: { name: 'get_weather', arguments: ARGUMENTS } }] }] } });
  t.match([ollama.status, ollama.json().error], [400, /^messages\[0\]\.tool_calls\[0\]: must be \{"function": \{"name", "arguments"\}\}, the arguments an object/], ollama.text);
});

t.test("more tools than OpenAI's 128 are a 400 naming the field, before their grammar is built; 128 are called", async (t) => {
  const tools = (n: number) => Array.from({ length: n }, (_, i) => ({ type: 'function', function: { name: `tool_${i}`, parameters: alarm.function.parameters } }));
  const most = await request(`${srv.url}/v1/chat/completions`, { headers: AUTH, body: { model: 'general', messages: [ASKED], tools: tools(128), tool_choice: { type: 'function', function: { name: 'tool_127' } }, max_tokens: 50 } });
  t.equal(most.status, 200, most.text);
  const calls = (most.json().choices as { message: { tool_calls: { function: { name: string } }[] } }[])[0].message.tool_calls;
  t.equal(calls[0].function.name, 'tool_127', 'the last of 128 tools called');
  const flat = tools(129).map(({ function: fn }) => ({ type: 'function', ...fn }));
  for (const [path, body, param] of [
    ['/v1/chat/completions', { messages: [ASKED], tools: tools(129), tool_choice: 'required' }, 'tools'],
    ['/v1/chat/completions', { messages: [ASKED], functions: tools(129).map((tool) => tool.function), function_call: 'auto' }, 'functions'],
    ['/v1/responses', { input: QUESTION, tools: flat, tool_choice: 'required' }, 'tools'],
    ['/api/chat', { stream: false, messages: [ASKED], tools: tools(129) }, 'tools'],
  ] as const) {
    const r = await request(`${srv.url}${path}`, { headers: AUTH, body: { model: 'general', ...body } });
    // Ollama's error is its message; OpenAI's also names the field in `param`.
    const error = r.json().error as string | { param: string; message: string };
    t.equal(r.status, 400, `${path}: ${r.text}`);
    t.match(typeof error === 'string' ? error : error.message, new RegExp(`^${param}: has 129 entries, more than the 128 supported`), `${path}: ${param} named`);
    if (typeof error !== 'string') t.equal(error.param, param);
  }
});
