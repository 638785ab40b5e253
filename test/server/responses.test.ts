// OpenAI's Responses API over real HTTP on 127.0.0.1, driven by the official `openai` client's responses.create
// and responses.stream (whose accumulator checks the order of the stream's events) and by fetch with
// eventsource-parser: the reply chat completions give for the same messages, the chat format for a chat model,
// instructions, assistant turns given back as output items, log-probabilities, and errors naming the field.
import t from 'tap';
import OpenAI from 'openai';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { inFlightAfterLeaving, serveApiModels, type ApiModels, type Running } from './helpers';

const API_KEY = 'responses-test-key-0123456789';
const PROMPT = 'How big is the earth?';
const LENGTH = 12;

let served: ApiModels;
let greedy: string;
let srv: Running;
let client: OpenAI;

t.before(async () => {
  served = await serveApiModels('responses', API_KEY, PROMPT, LENGTH);
  ({ greedy, srv } = served);
  client = new OpenAI({ apiKey: API_KEY, baseURL: `${srv.url}/v1`, maxRetries: 0 });
});
t.teardown(() => served.close());

t.test('a text input: the greedy text, "incomplete" at max_output_tokens, usage as chat completions count it', async (t) => {
  const r = await client.responses.create({ model: 'general', input: PROMPT, max_output_tokens: LENGTH, temperature: 0 });
  t.match(r, { object: 'response', status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, model: 'general', error: null, store: false, temperature: 0 });
  t.match(r.id, /^resp_/);
  t.equal(r.output_text, greedy, 'the text the engine generates greedily');
  t.equal(r.output.length, 1);
  t.match(r.output[0], { type: 'message', role: 'assistant', status: 'incomplete', content: [{ type: 'output_text', text: greedy, annotations: [] }] });
  const chat = await client.chat.completions.create({ model: 'general', messages: [{ role: 'user', content: PROMPT }], max_tokens: LENGTH, temperature: 0 });
  t.equal(r.output_text, chat.choices[0].message.content, 'the reply chat completions give');
  t.same([r.usage?.input_tokens, r.usage?.output_tokens, r.usage?.total_tokens], [chat.usage?.prompt_tokens, chat.usage?.completion_tokens, chat.usage?.total_tokens]);
  const short = await client.responses.create({ model: 'general', input: PROMPT, max_output_tokens: 3, temperature: 0 });
  t.equal(short.usage?.output_tokens, 3, 'max_output_tokens is the length');
  t.equal(short.output_text, greedy.slice(0, short.output_text.length));
});

t.test('messages: a chat model answers in the chat format, as the audience instructions name, assistant turns given back as output items', async (t) => {
  const since = srv.logs.length;
  const input: OpenAI.Responses.ResponseInput = [
    { role: 'user', content: 'How are you?' },
    { type: 'message', role: 'assistant', id: 'msg_1', status: 'completed', content: [{ type: 'output_text', text: 'Fine, thanks.', annotations: [] }] },
    { role: 'user', content: [{ type: 'input_text', text: 'And the ' }, { type: 'input_text', text: 'garden?' }] },
  ];
  const r = await client.responses.create({ model: 'chatbot', instructions: 'audience: grandma', input, temperature: 0 });
  t.equal(srv.logs.slice(since).find((l) => l.msg === 'generated')?.prompt, '1|grandma|How are you? <EOM>\n0|grandma|Fine, thanks. <EOM>\n1|grandma|And the garden? <EOM>\n0|grandma|');
  t.notMatch(r.output_text, /\||<EOM>|<\|endoftext\|>/, 'sanitized');
  const chat = await client.chat.completions.create({
    model: 'chatbot', temperature: 0,
    messages: [{ role: 'system', content: 'audience: grandma' }, { role: 'user', content: 'How are you?' }, { role: 'assistant', content: 'Fine, thanks.' }, { role: 'user', content: 'And the garden?' }],
  });
  t.equal(r.output_text, chat.choices[0].message.content, 'the reply chat completions give for the same messages');

  const refused = await client.responses.create({ model: 'chatbot', instructions: 'You are a pirate.', input: 'hi' }).catch((e: unknown) => e);
  t.ok(refused instanceof OpenAI.BadRequestError && refused.param === 'instructions', 'instructions a chat model cannot take are refused, naming instructions');
  const lenient = await client.responses.create({ model: 'lenient', instructions: 'You are a pirate.', input: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hi' }], temperature: 0 }).withResponse();
  t.equal(lenient.response.headers.get('x-dixie-ignored-messages'), 'instructions,0', 'left out where the model is configured so, named as the request names them');
  const plain = await client.responses.create({ model: 'lenient', input: 'hi', temperature: 0 });
  t.equal(lenient.data.output_text, plain.output_text, 'the reply is the one without them');
});

t.test("streamed: Responses' events in order, the deltas adding up to the reply, the final response the same as whole", async (t) => {
  const whole = await client.responses.create({ model: 'general', input: PROMPT, temperature: 0 });
  const stream = client.responses.stream({ model: 'general', input: PROMPT, temperature: 0 });
  const types: string[] = [];
  const sequence: number[] = [];
  let text = '';
  for await (const event of stream) {
    types.push(event.type);
    sequence.push(event.sequence_number);
    if (event.type === 'response.output_text.delta') text += event.delta;
  }
  const final = await stream.finalResponse();
  t.equal(text, whole.output_text, 'the deltas add up to the reply');
  t.equal(final.output_text, whole.output_text);
  t.match(final, { status: 'incomplete', usage: { output_tokens: whole.usage?.output_tokens } });
  t.same(sequence, types.map((_, i) => i), 'sequence numbers count the events');
  t.same(types.slice(0, 4), ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
  t.same(types.slice(-4), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.incomplete']);
  t.ok(types.slice(4, -4).length >= 2 && types.slice(4, -4).every((type) => type === 'response.output_text.delta'), 'deltas between');

  // What a client no one here wrote reads: each event named by its type.
  const res = await fetch(`${srv.url}/v1/responses`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ model: 'chatbot', input: 'How are you?', stream: true }),
  });
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/event-stream/);
  const events: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (e) => events.push(e) });
  const decoder = new TextDecoder();
  for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) parser.feed(decoder.decode(part, { stream: true }));
  t.ok(events.every((e) => e.event === (JSON.parse(e.data) as { type: string }).type), 'event: names the type');
  const last = JSON.parse(events[events.length - 1].data) as { type: string; response: { status: string; output: { content: { text: string }[] }[] } };
  t.equal(last.type, `response.${last.response.status}`, 'the last event is named for how the response ended');
  const deltas = events.filter((e) => e.event === 'response.output_text.delta').map((e) => (JSON.parse(e.data) as { delta: string }).delta);
  t.equal(deltas.join(''), last.response.output[0].content[0].text);
});

t.test('log-probabilities: those chat completions give, whole and streamed', async (t) => {
  const request = { model: 'general', input: PROMPT, max_output_tokens: 5, temperature: 0, include: ['message.output_text.logprobs' as const], top_logprobs: 2 };
  const r = await client.responses.create(request);
  const content = r.output[0].type === 'message' ? r.output[0].content[0] : null;
  const logprobs = content?.type === 'output_text' ? content.logprobs ?? [] : [];
  t.equal(logprobs.length, 5, 'one a token');
  t.ok(logprobs.every((l) => l.top_logprobs.length === 2), 'two alternatives each');
  const chat = await client.chat.completions.create({ model: 'general', messages: [{ role: 'user', content: PROMPT }], max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 2 });
  t.same(logprobs, chat.choices[0].logprobs?.content, 'the same tokens, log-probabilities and alternatives');
  const streamed: unknown[] = [];
  for await (const event of client.responses.stream(request)) if (event.type === 'response.output_text.delta') streamed.push(...event.logprobs);
  t.same(streamed, logprobs, "the deltas' together are the reply's");
  const plain = await client.responses.create({ model: 'general', input: PROMPT, max_output_tokens: 5, temperature: 0 });
  t.match(plain.output[0], { content: [{ logprobs: [] }] }, 'none unless included');
});

t.test('truncation "disabled" refuses a conversation that does not fit the context, where "auto" drops its oldest messages', async (t) => {
  const turn = 'Tell me everything about the garden, the flowers, the trees and the birds that sing there in the morning.';
  const input = Array.from({ length: 8 }, (_, i) => ({ role: i % 2 === 0 ? 'user' as const : 'assistant' as const, content: turn }));
  const auto = await client.responses.create({ model: 'chatbot', input, temperature: 0, max_output_tokens: 8 });
  t.ok(auto.usage && auto.usage.input_tokens < 128 - 8, `auto: answered from the newest messages (${auto.usage?.input_tokens} tokens)`);
  const refused = await client.responses.create({ model: 'chatbot', input, temperature: 0, max_output_tokens: 8, truncation: 'disabled' }).catch((e: unknown) => e);
  t.ok(refused instanceof OpenAI.BadRequestError && refused.param === 'input' && refused.code === 'context_length_exceeded', 'disabled: 400 context_length_exceeded, naming input');
  t.match((refused as Error).message, /truncation "disabled" keeps the whole prompt within the context of model "chatbot": \d+ tokens and a reply of 8 pass 128/);
  const fits = await client.responses.create({ model: 'chatbot', input: input.slice(-1), temperature: 0, max_output_tokens: 8, truncation: 'disabled' });
  const fitsAuto = await client.responses.create({ model: 'chatbot', input: input.slice(-1), temperature: 0, max_output_tokens: 8 });
  t.equal(fits.output_text, fitsAuto.output_text, 'a conversation that fits: answered as under auto');
});

t.test('X-Dixie-Ignored-Messages names the input item left out, past calls folded into the message before them', async (t) => {
  const input = [
    { role: 'user', content: 'Will it rain?' },
    { role: 'assistant', content: 'Let me look.' },
    { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Oslo"}' },
    { type: 'function_call_output', call_id: 'call_1', output: '{"rain":true}' },
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'So?' },
  ] as OpenAI.Responses.ResponseInput;
  const r = await client.responses.create({ model: 'lenient', input, temperature: 0, max_output_tokens: 4 }).withResponse();
  t.equal(r.response.headers.get('x-dixie-ignored-messages'), '4');
});

t.test("OpenAI's fields for what GPT-2 does not do: neutral values accepted, any other refused naming the field", async (t) => {
  const plain = await client.responses.create({ model: 'general', input: PROMPT, temperature: 0 });
  const neutral = await client.responses.create({
    model: 'general', input: PROMPT, temperature: 0, tools: [], tool_choice: 'none', parallel_tool_calls: false, text: { format: { type: 'text' } },
    store: false, truncation: 'auto', background: false, metadata: { app: 'test' }, user: 'u-1', safety_identifier: 'u-1', prompt_cache_key: 'k',
    service_tier: 'auto', previous_response_id: null, reasoning: { effort: null },
  });
  t.equal(neutral.output_text, plain.output_text, 'the same reply as without them');
  t.match(neutral, { tool_choice: 'none', parallel_tool_calls: false, metadata: { app: 'test' }, user: 'u-1', truncation: 'auto' }, 'echoed in the response');
  const defaults = await client.responses.create({
    model: 'general', input: PROMPT, temperature: 0, text: { format: { type: 'text' }, verbosity: 'medium' }, truncation: 'disabled', prompt_cache_retention: null,
    conversation: null, background: null,
  });
  t.equal(defaults.output_text, plain.output_text, 'OpenAI\'s defaults, and null for "not set": the same reply');
  t.match(defaults, { truncation: 'disabled', text: { verbosity: 'medium' } }, 'the truncation given, echoed');
  for (const [fields, param, rule] of [
    [{ previous_response_id: 'resp_123' }, 'previous_response_id', /dixie keeps no responses; send the conversation in input/],
    [{ conversation: 'conv_123' }, 'conversation', /send the conversation in input/],
    [{ prompt: { id: 'pmpt_123' } }, 'prompt', /keeps no prompt templates/],
    [{ store: true }, 'store', /only false/],
    [{ background: true }, 'background', /only false/],
    [{ text: { format: { type: 'yaml' } } }, 'text.format.type', /must be "text", "json_object" or "json_schema"/],
    [{ text: { format: { type: 'json_schema', schema: {} } } }, 'text.format.name', /is required/],
    [{ tools: [{ type: 'web_search' }] }, 'tools[0]', /must be \{"type": "function", "name", "parameters"\}/],
    [{ reasoning: { effort: 'high' } }, 'reasoning', /GPT-2 does not reason/],
    [{ truncation: 'middle' }, 'truncation', /must be "auto" or "disabled"/],
    [{ text: { verbosity: 'low' } }, 'text.verbosity', /only "medium"/],
    [{ stream: true, stream_options: { include_obfuscation: true } }, 'stream_options.include_obfuscation', /only false/],
    [{ include: ['file_search_call.results'] }, 'include[0]', /only "message\.output_text\.logprobs"/],
    [{ top_logprobs: 2 }, 'top_logprobs', /needs "include"/],
    [{ max_output_tokens: 0 }, 'max_output_tokens', /must be/],
    [{ seed: 1 }, 'seed', /unsupported field/],
    [{ input: [{ type: 'function_call_output', call_id: 'c', output: '{}' }] }, 'input[0].call_id', /an earlier function_call item/],
    [{ input: [{ type: 'reasoning', summary: [] }] }, 'input[0].type', /only messages, function calls and their outputs/],
    [{ input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'https://example.com/x.png' }] }] }, 'input[0].content[0]', /"input_text"/],
    [{ input: [] }, 'input', /non-empty array/],
    [{ input: [{ role: 'tool', content: 'x' }] }, 'input[0].role', /a tool's output is a function_call_output item/],
  ] as const) {
    const err = await client.responses.create({ model: 'general', input: PROMPT, ...fields } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming).catch((e: unknown) => e);
    t.ok(err instanceof OpenAI.BadRequestError, `${JSON.stringify(fields)}: BadRequestError`);
    t.equal((err as InstanceType<typeof OpenAI.APIError>).param, param, `${JSON.stringify(fields)}: names ${param}`);
    t.match((err as Error).message, rule);
  }
  const missing = await client.responses.create({ model: 'nope', input: 'x' }).catch((e: unknown) => e);
  t.ok(missing instanceof OpenAI.NotFoundError && missing.code === 'model_not_found', 'a key not served: NotFoundError');
});

t.test('a response is kept nowhere: retrieve, delete and inputItems.list are 404s that say so', async (t) => {
  const r = await client.responses.create({ model: 'general', input: PROMPT, max_output_tokens: 2 });
  for (const [what, call] of [
    ['retrieve', () => client.responses.retrieve(r.id)],
    ['delete', () => client.responses.delete(r.id)],
    ['inputItems.list', () => client.responses.inputItems.list(r.id)],
  ] as const) {
    const err = await (call as () => Promise<unknown>)().catch((e: unknown) => e);
    t.ok(err instanceof OpenAI.NotFoundError, `${what}: NotFoundError`);
    t.match((err as Error).message, new RegExp(`^404 No response with id "${r.id}": dixie keeps no responses \\(each is answered with store: false\\)`), what);
  }
});

t.test('a streaming client that goes away frees its slot at once', async (t) => {
  const stream = await client.responses.create({ model: 'long', input: 'Once', max_output_tokens: 1000, stream: true });
  for await (const event of stream) {
    if (event.type === 'response.output_text.delta') break;  // leaving the loop aborts the request
  }
  t.same(await inFlightAfterLeaving(srv, 'long', API_KEY), { inFlight: 0, running: 0 }, 'no request in flight for the model, its batch slot free');
});
