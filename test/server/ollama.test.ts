// Ollama's API over real HTTP on 127.0.0.1, driven by the official `ollama` client (and fetch, for the stream
// Ollama sends by default): the listing from the model folders, the replies /v1/chat/completions gives for the same
// messages and settings (Ollama's repeat_penalty as dixie's penalize), streamed lines that add up, a model loaded by
// an empty request, log-probabilities, more stop strings than OpenAI takes, and errors naming the field.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Ollama } from 'ollama';
import { parameterCount } from '../../lib/formats/model_folder';
import { TINY, inFlightAfterLeaving, request, serveApiModels, startServer, type ApiModels, type Running } from './helpers';

const API_KEY = 'ollama-test-key-0123456789';
const PROMPT = 'How big is the earth?';
const LENGTH = 12;
const AUTH = { Authorization: `Bearer ${API_KEY}` };

let served: ApiModels;
let dir: string;
let greedy: string;
let srv: Running;
let ollama: Ollama;

t.before(async () => {
  served = await serveApiModels('ollama', API_KEY, PROMPT, LENGTH);
  ({ dir, greedy, srv } = served);
  ollama = new Ollama({ host: srv.url, headers: AUTH });
});
t.teardown(() => served.close());

// /v1/chat/completions' reply to the same messages, for comparison.
async function chatCompletion(body: Record<string, unknown>): Promise<{ content: string; logprobs: unknown }> {
  const r = await request(`${srv.url}/v1/chat/completions`, { body, headers: AUTH });
  t.equal(r.status, 200, r.text);
  const choice = (r.json().choices as { message: { content: string }; logprobs: { content: unknown } | null }[])[0];
  return { content: choice.message.content, logprobs: choice.logprobs?.content };
}

t.test('the listing: every configured model as <key>:latest, its size, time and parameter count from its folder', async (t) => {
  const { models } = await ollama.list();
  t.same(models.map((m) => m.name), ['general:latest', 'chatbot:latest', 'long:latest', 'lenient:latest']);
  const weights = fs.statSync(path.join(dir, 'alpha', 'model.safetensors'));
  t.match(models[0], {
    model: 'general:latest', size: weights.size,
    details: { family: 'gpt2', families: ['gpt2'], format: 'safetensors', parameter_size: `${(parameterCount(TINY) / 1e6).toFixed(2)}M`, quantization_level: 'F32' },
  });
  t.equal(new Date(models[0].modified_at).getTime(), Math.floor(weights.mtimeMs), 'the weights\' time');
  t.match(models[0].digest, /^[0-9a-f]{64}$/);
  t.equal(parameterCount({ nLayer: 12, nHead: 12, nEmbd: 768, nCtx: 1024, vocabSize: 50257 }), 124_439_808, "GPT-2 124M's count");
  const show = await ollama.show({ model: 'chatbot' });
  t.match(show.model_info, { 'general.architecture': 'gpt2', 'gpt2.context_length': TINY.nCtx, 'gpt2.embedding_length': TINY.nEmbd, 'gpt2.block_count': TINY.nLayer });
  t.match(show.parameters, /^num_predict 12\ntemperature 0\.3\ntop_k 40\ntop_p 0\.9\nrepeat_penalty 1\.176471\nrepeat_last_n -1\nnum_ctx 128$/, "the model's sampling defaults and its context as Modelfile parameters");
  t.same(show.capabilities, ['completion', 'tools', 'embedding']);
  const byName = await request(`${srv.url}/api/show`, { body: { name: 'chatbot:latest' }, headers: AUTH });
  t.same([byName.status, byName.json().model_info], [200, show.model_info], '`name`, the older field Ollama still takes, names the model too');
  const version = await request(`${srv.url}/api/version`, { headers: AUTH });
  t.same(version.json(), { version: '0.12.11', dixie_version: (JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string }).version }, 'the Ollama release whose API this is, and dixie\'s own');
});

t.test('show: a model whose config sizes no reply has num_predict of the length it answers with, half its context of 128', async (t) => {
  const own = await startServer({ models: [{ key: 'unsized', restore_from: 'alpha' }] }, dir);
  t.teardown(() => own.close());
  const show = await new Ollama({ host: own.url }).show({ model: 'unsized' });
  t.match(show.parameters, new RegExp(`^num_predict ${TINY.nCtx / 2}\n`));
});

t.test('chat: the reply chat completions give, whole and streamed, with the counts; options as dixie\'s sampling', async (t) => {
  const messages = [{ role: 'user', content: PROMPT }];
  const r = await ollama.chat({ model: 'general', messages, options: { temperature: 0 } });
  t.equal(r.message.content, greedy, 'the greedy text');
  t.match(r, { model: 'general', done: true, done_reason: 'length', eval_count: LENGTH, message: { role: 'assistant' } });
  t.ok(r.prompt_eval_count > 0 && r.total_duration > 0 && r.eval_duration >= 0);
  const tagged = await ollama.chat({ model: 'general:latest', messages, options: { temperature: 0 } });
  t.equal(tagged.message.content, greedy, 'by its listed name too');
  t.equal(tagged.model, 'general:latest', 'named as asked');

  // Greedy, the tiny model repeats itself: the penalty changes the reply.
  const penalized = await ollama.chat({ model: 'general', messages, options: { temperature: 0, num_predict: 40, repeat_penalty: 1.25 } });
  const unpenalized = await ollama.chat({ model: 'general', messages, options: { temperature: 0, num_predict: 40 } });
  t.not(penalized.message.content, unpenalized.message.content, 'the penalty matters here');
  t.equal(penalized.message.content, (await chatCompletion({ model: 'general', messages, temperature: 0, max_tokens: 40, penalize: 0.8 })).content, 'repeat_penalty 1.25 is penalize 0.8');
  const settings = { temperature: 1.2, top_k: 40, top_p: 0.9, min_p: 0.02, seed: 5, num_predict: 8, presence_penalty: 0.5, stop: ['\n\n'] };
  const ours = await ollama.chat({ model: 'chatbot', messages: [{ role: 'user', content: 'How are you?' }], options: settings });
  const theirs = await chatCompletion({
    model: 'chatbot', messages: [{ role: 'user', content: 'How are you?' }], temperature: 1.2, top_k: 40, top_p: 0.9, min_p: 0.02, seed: 5, max_tokens: 8, presence_penalty: 0.5, stop: ['\n\n'],
  });
  t.equal(ours.message.content, theirs.content, 'the other options keep their meaning');

  const stream = await ollama.chat({ model: 'chatbot', messages: [{ role: 'user', content: 'How are you?' }], options: settings, stream: true });
  const parts: string[] = [];
  let last: { done: boolean; eval_count?: number } = { done: false };
  for await (const part of stream) {
    parts.push(part.message.content);
    last = part;
  }
  t.equal(parts.join(''), ours.message.content, 'the streamed pieces add up to the reply');
  t.match(last, { done: true, eval_count: ours.eval_count });

  // Streamed unless told otherwise, as Ollama is: what `curl -d` gets (its body said to be a form, read as JSON).
  const res = await fetch(`${srv.url}/api/chat`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/x-www-form-urlencoded' }, body: JSON.stringify({ model: 'general', messages, options: { temperature: 0 } }) });
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^application\/x-ndjson/);
  const lines = (await res.text()).trimEnd().split('\n').map((l) => JSON.parse(l) as { message: { content: string }; done: boolean });
  t.ok(lines.length >= 2 && lines.slice(0, -1).every((l) => !l.done) && lines[lines.length - 1].done);
  t.equal(lines.map((l) => l.message.content).join(''), greedy);
});

t.test('generate: a prompt as the user\'s message to a chat model, after `system`; `raw` sends it as it is', async (t) => {
  let since = srv.logs.length;
  const r = await ollama.generate({ model: 'chatbot', prompt: 'How are you?', system: 'audience: grandma', options: { temperature: 0 } });
  t.equal(srv.logs.slice(since).find((l) => l.msg === 'generated')?.prompt, '1|grandma|How are you? <EOM>\n0|grandma|');
  const chat = await chatCompletion({ model: 'chatbot', temperature: 0, messages: [{ role: 'system', content: 'audience: grandma' }, { role: 'user', content: 'How are you?' }] });
  t.equal(r.response, chat.content, 'the reply chat completions give');
  since = srv.logs.length;
  await ollama.generate({ model: 'chatbot', prompt: '1|sam|Hi <EOM>\n0|sam|', raw: true, options: { temperature: 0 } });
  t.equal(srv.logs.slice(since).find((l) => l.msg === 'generated')?.prompt, '1|sam|Hi <EOM>\n0|sam|', 'raw: the prompt as it is');
  const general = await ollama.generate({ model: 'general', prompt: PROMPT });
  t.equal(general.response, greedy, 'a raw model continues the prompt');
  const refused = await ollama.generate({ model: 'chatbot', prompt: 'hi', system: 'You are a pirate.' }).catch((e: unknown) => e);
  t.match(refused, { status_code: 400, message: /^system: a chat model has no system prompt/ }, 'a system prompt a chat model cannot take is refused, naming system');
});

t.test('generate: the context an answer gives, sent back, goes on from its prompt and reply', async (t) => {
  const tokenizer = await srv.server.service.tokenizer('general');
  const options = { temperature: 0, num_predict: 5 };
  const first = await ollama.generate({ model: 'general', prompt: PROMPT, options });
  t.equal(tokenizer.decode(first.context), PROMPT + first.response, 'the prompt\'s tokens and the reply\'s');
  const next = await ollama.generate({ model: 'general', prompt: ' And then', context: first.context, options });
  // The same tokens, posted as ids to llama.cpp's /completion.
  const ids = [...first.context, ...tokenizer.encode(' And then', { allowSpecial: false })];
  const reference = await request(`${srv.url}/completion`, { body: { model: 'general', prompt: ids, n_predict: 5, temperature: 0 }, headers: AUTH });
  t.equal(next.response, reference.json().content, 'the reply to the context\'s tokens and the prompt\'s');
  t.same(next.context.slice(0, ids.length), ids, 'and its context goes on from there');
  t.equal(tokenizer.decode(next.context), PROMPT + first.response + ' And then' + next.response);
  const lines: { done: boolean; context?: number[] }[] = [];
  for await (const line of await ollama.generate({ model: 'general', prompt: ' And then', context: first.context, options, stream: true })) lines.push(line);
  t.same(lines.at(-1)?.context, next.context, 'streamed: in the last line');
  t.same(lines.slice(0, -1).filter((l) => l.context !== undefined), [], 'and only there');
  const chat = await ollama.generate({ model: 'chatbot', prompt: 'How are you?', options });
  t.equal(chat.context, undefined, 'a chat model\'s conversation: none, as it is /api/chat\'s to go on');
  // A reply cut at a stop string: the context ends where the reply does, without the stop string's tokens.
  const long = await ollama.generate({ model: 'general', prompt: PROMPT, options: { temperature: 0, num_predict: 16 } });
  const stop = (long.response as string).slice(6, 9);
  const cut = await ollama.generate({ model: 'general', prompt: PROMPT, options: { temperature: 0, num_predict: 16, stop: [stop] } });
  t.equal(cut.done_reason, 'stop', `cut at ${JSON.stringify(stop)}`);
  t.equal(tokenizer.decode(cut.context), PROMPT + cut.response, 'a reply cut at a stop string: its context ends with it');
  // A prompt longer than the context is cut to its last tokens: the context holds those the model saw, then the reply.
  const longPrompt = Array.from({ length: 100 }, (_, i) => `word${i}`).join(' ');
  const longIds = [...tokenizer.encode(longPrompt, { allowSpecial: false })];
  const fitted = await ollama.generate({ model: 'general', prompt: longPrompt, options });
  t.ok(longIds.length > TINY.nCtx, `a prompt of ${longIds.length} tokens, past the context of ${TINY.nCtx}`);
  t.equal(fitted.prompt_eval_count, TINY.nCtx - 5, 'cut to leave the reply its 5 tokens');
  t.same(fitted.context.slice(0, fitted.prompt_eval_count), longIds.slice(-fitted.prompt_eval_count), 'its context: the prompt\'s tokens the model saw');
  t.equal(tokenizer.decode(fitted.context.slice(fitted.prompt_eval_count)), fitted.response, 'then the reply\'s');
  const fittedNext = await ollama.generate({ model: 'general', prompt: ' And then', context: fitted.context, options });
  t.equal(fittedNext.context.length, TINY.nCtx, 'sent back, the next context is cut to what the model saw as well');
});

t.test('an empty request loads the model, which /api/ps then lists', async (t) => {
  const before = (await ollama.ps()).models.map((m) => m.name);
  const loaded = await new Ollama({ host: srv.url, headers: AUTH }).chat({ model: 'chatbot', messages: [] });
  t.match(loaded, { done: true, done_reason: 'load', message: { role: 'assistant', content: '' } });
  const { models } = await ollama.ps();
  t.ok(models.some((m) => m.name === 'chatbot:latest' && m.size > 0), `chatbot loaded (before: ${before.join(', ') || 'none'})`);
  const generated = await ollama.generate({ model: 'general', prompt: '' });
  t.match(generated, { done: true, done_reason: 'load', response: '' });
  const unloaded = await ollama.generate({ model: 'general', prompt: '', keep_alive: 0 });
  t.match(unloaded, { done: true, done_reason: 'unload', response: '' }, 'keep_alive 0: unloaded, as Ollama documents it');
  t.notOk((await ollama.ps()).models.some((m) => m.name === 'general:latest'), '/api/ps no longer lists it');
  const answered = await ollama.chat({ model: 'general', messages: [{ role: 'user', content: PROMPT }], keep_alive: '0s', options: { num_predict: 2 } });
  t.equal(answered.done, true, 'a request with keep_alive 0 is answered');
  t.notOk((await ollama.ps()).models.some((m) => m.name === 'general:latest'), 'and its model then unloaded');
});

t.test("log-probabilities: those chat completions give, whole and line by line", async (t) => {
  const messages = [{ role: 'user', content: PROMPT }];
  const r = await ollama.chat({ model: 'general', messages, options: { temperature: 0, num_predict: 5 }, logprobs: true, top_logprobs: 2 });
  const theirs = await chatCompletion({ model: 'general', messages, temperature: 0, max_tokens: 5, logprobs: true, top_logprobs: 2 });
  t.same(r.logprobs, theirs.logprobs);
  const streamed: unknown[] = [];
  for await (const part of await ollama.chat({ model: 'general', messages, options: { temperature: 0, num_predict: 5 }, logprobs: true, top_logprobs: 2, stream: true })) streamed.push(...(part.logprobs ?? []));
  t.same(streamed, r.logprobs, "the lines' together are the reply's");
});

t.test('options.stop takes more stop strings than OpenAI\'s 4, as Ollama does: the fifth stops the reply', async (t) => {
  const messages = [{ role: 'user', content: PROMPT }];
  // Four characters of the greedy reply that first appear as late in it as any.
  const firsts = Array.from({ length: greedy.length }, (_, i) => i).filter((i) => greedy.slice(i, i + 4).trim().length === 4 && greedy.indexOf(greedy.slice(i, i + 4)) === i);
  const at = firsts[firsts.length - 1] ?? -1;
  t.ok(at > 0, `a stop string to find in ${JSON.stringify(greedy)}`);
  const word = greedy.slice(at, at + 4);
  const others = ['<never 1>', '<never 2>', '<never 3>', '<never 4>'];
  t.notOk(others.some((s) => greedy.includes(s)), 'the others are nowhere in the reply');
  const r = await ollama.chat({ model: 'general', messages, options: { temperature: 0, stop: [...others, word] } });
  t.match(r, { message: { content: greedy.slice(0, at) }, done_reason: 'stop' }, `cut where "${word}" begins`);
  const most = Array.from({ length: 16 }, (_, i) => `<never ${i + 1}>`);
  const sixteen = await ollama.chat({ model: 'general', messages, options: { temperature: 0, stop: most } });
  t.match(sixteen, { message: { content: greedy }, done_reason: 'length' }, '16 taken, none met');
  const err = await ollama.chat({ model: 'general', messages, options: { stop: [...most, word] } }).catch((e: unknown) => e);
  t.match(err, { status_code: 400, message: /^options\.stop: must be a non-empty string or an array of at most 16 of them/ }, 'a bound all the same');
});

t.test('errors name the field; what GPT-2 does not do is refused unless neutral', async (t) => {
  const missing = await ollama.chat({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
  t.match(missing, { status_code: 404, message: /The model "nope" does not exist/ });
  const messages = [{ role: 'user', content: 'x' }];
  const neutral = await ollama.chat({ model: 'general', messages, format: '', think: false, tools: [], keep_alive: '5m', options: { temperature: 0, min_p: 0, mirostat: 0, num_ctx: 8192, num_thread: 2, repeat_last_n: -1, num_predict: -1, seed: -1 } });
  t.equal(neutral.done, true, 'neutral values, machine options and seed -1 (random) accepted');
  // An assistant's turn that only called a tool, as Ollama's clients send it back: its content left out.
  const called = await request(`${srv.url}/api/chat`, {
    headers: AUTH,
    body: { model: 'general', stream: false, options: { num_predict: 2 }, messages: [{ role: 'user', content: 'x' }, { role: 'assistant', tool_calls: [{ function: { name: 'get_time', arguments: {} } }] }, { role: 'tool', content: '12:00' }] },
  });
  t.equal(called.status, 200, `an assistant's calls without content: read as "" (${called.text})`);
  // Home Assistant's integration sends its tools with every message when it may control the home: the model, never
  // taught to call one, answers in text.
  const tools = [{ type: 'function', function: { name: 'HassTurnOn', description: 'Turns on a device', parameters: { type: 'object', properties: { name: { type: 'string' } }, uniqueItems: true } } }];
  const withTools = await ollama.chat({ model: 'general', messages, tools, options: { temperature: 0, num_predict: 4 } });
  t.match(withTools, { done: true, message: { role: 'assistant', content: /./ } }, 'tools: answered in text');
  t.notOk(withTools.message.tool_calls?.length, 'with no call');
  for (const [fields, rule] of [
    [{ format: 'yaml' }, /^format: must be "json" or a JSON schema/],
    [{ format: { type: 'object', minProperties: 1 } }, /^format\.minProperties: is not supported/],
    [{ think: true }, /^think: only false/],
    [{ tools: [{ type: 'function', function: { name: 'lights on' } }] }, /^tools\[0\]\.function\.name: is required: 1 to 64 letters/],
    [{ options: { mirostat: 2 } }, /^options\.mirostat: is not supported/],
    [{ options: { repeat_penalty: 0.9 } }, /^options\.repeat_penalty: must be a number of at least 1/],
    [{ options: { repeat_last_n: 64 } }, /^options\.repeat_last_n: only -1/],
    [{ options: { temperature: 101 } }, /^options\.temperature: must be/],
    [{ options: { seed: -2 } }, /^options\.seed: must be a non-negative integer, or -1 \(random\)/],
    [{ messages: [{ role: 'user', content: 'x', images: ['aGk='] }] }, /^messages\[0\]\.images: are not supported/],
    [{ messages: [{ role: 'function', content: 'x' }] }, /^messages\[0\]\.role: must be/],
  ] as const) {
    const err = await ollama.chat({ model: 'general', messages, ...fields } as Parameters<Ollama['chat']>[0] & { stream?: false }).catch((e: unknown) => e);
    t.match(err, { status_code: 400, message: rule }, JSON.stringify(fields));
  }
  // Ollama passes over fields and options not of its API (/api/chat has no suffix), and so does dixie, naming them
  // URI-encoded, half of a UTF-16 pair as U+FFFD, and not past 1024 characters (so not a name of 2000); options named
  // as Object.prototype's members are options like any other (once a 500, or passed over unnamed).
  const prototypeNames = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'];
  const raw = `{"model": "general", "stream": false, "messages": [{"role": "user", "content": "x"}], "suffix": "x", "\\ud83d": 1, "${'n'.repeat(2000)}": 1, "options": {"num_predict": 2, "warp": 1, ${prototypeNames.map((name) => `"${name}": 1`).join(', ')}}}`;
  const passedOver = await request(`${srv.url}/api/chat`, { raw, headers: { ...AUTH, 'content-type': 'application/json' } });
  t.equal(passedOver.status, 200, passedOver.text);
  t.equal(passedOver.headers.get('x-dixie-ignored-fields'), ['suffix', '%EF%BF%BD', 'options.warp', ...prototypeNames.map((name) => `options.${name}`)].join(','));
  // Fields of /api/chat and /api/generate, foreign to /api/embed: passed over there as well, not read.
  const embedded = await request(`${srv.url}/api/embed`, { body: { model: 'general', input: 'x', think: true, format: { type: 'nothing' }, stream: 'no', logprobs: 1 }, headers: AUTH });
  t.equal(embedded.status, 200, embedded.text);
  t.equal(embedded.headers.get('x-dixie-ignored-fields'), 'think,format,stream,logprobs');
  const oneTool = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: {} } } }];
  const chosen = await request(`${srv.url}/api/chat`, { body: { model: 'general', stream: false, messages: [{ role: 'user', content: 'x' }], tools: oneTool, tool_choice: 'bogus', parallel_tool_calls: 'yes', options: { num_predict: 2 } }, headers: AUTH });
  t.equal(chosen.status, 200, chosen.text);
  t.equal(chosen.headers.get('x-dixie-ignored-fields'), 'tool_choice,parallel_tool_calls');
  const context = await ollama.generate({ model: 'chatbot', prompt: 'x', context: [1, 2] }).catch((e: unknown) => e);
  t.match(context, { status_code: 400, message: /^context: is only taken where the prompt is continued as it is \("raw": true, or a raw model\)/ });
  const notIds = await request(`${srv.url}/api/generate`, { body: { model: 'general', prompt: 'x', context: ['x'] }, headers: AUTH });
  t.match({ status: notIds.status, ...notIds.json() }, { status: 400, field: 'context', error: /^context: must be the token ids an earlier answer gave/ });
  const pastVocabulary = await request(`${srv.url}/api/generate`, { body: { model: 'general', prompt: 'x', context: [50257], stream: false }, headers: AUTH });
  t.match({ status: pastVocabulary.status, ...pastVocabulary.json() }, { status: 400, field: 'context' });
  const denied = await new Ollama({ host: srv.url }).list().catch((e: unknown) => e);
  t.match(denied, { status_code: 401 }, 'the API keys hold here too');
});

t.test('a streaming client that goes away frees its slot at once', async (t) => {
  const stream = await ollama.generate({ model: 'long', prompt: 'Once', options: { num_predict: 1000 }, stream: true });
  for await (const part of stream) {
    if (part.response) break;
  }
  stream.abort();  // how the ollama library closes a stream: leaving the loop alone leaves the connection open
  t.same(await inFlightAfterLeaving(srv, 'long', API_KEY), { inFlight: 0, running: 0 }, 'no request in flight for the model, its batch slot free');
});
