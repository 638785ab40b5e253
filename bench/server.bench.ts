// bin/serve under load: 16 concurrent clients for DIXIE_BENCH_SECONDS (default 60) against a small model,
// with requests/s, p50/p99 latency, errors and the server's RSS at start (after a short warm-up) and end; then the aggregate tokens/s
// at 1, 4 and 16 clients (a quarter of the duration each), which grows with clients thanks to batching; then hot-swapping:
// 400 requests from 16 clients to one model, and 400 alternating between two models under a memory budget that
// holds one, with the loads each took; then streaming, /invocations beside OpenAI's /v1/chat/completions and
// /v1/responses, Ollama's /api/chat and llama.cpp's /completion: time to the first text and aggregate tokens/s at 1, 4 and 16 clients
// (`--streams`: these alone); then embeddings, /v1/embeddings of a text a request beside /v1/completions of the same
// text and one token, and of 16 texts a request: input tokens/s at 1, 4 and 16 clients (`--embeddings`: these
// alone); then a chat of 12 turns whose history grows past the context, at
// GPT-2 124M's shapes: time to the first token of each turn with prefix reuse and without (`--chat`: these alone).
// Where a GPU is usable, the same model of 124M's shapes served from it ("device": "cuda"), decode steps as they run
// by default and as CUDA graphs (DIXIE_CUDA_GRAPHS=1): aggregate tokens/s at 1, 16 and 32 clients (`--gpu`: these
// alone, or an error where no GPU is usable).
// The model: DIXIE_BENCH_MODEL (a model folder, e.g. models/124M), else a small random GPT-2 made here (and a
// random one of 124M's shapes for the chat).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { Model } from '../lib/engine/model';
import { loadAddon } from '../lib/engine/native';
import { inspectModelFolder, type GPT2Config } from '../lib/formats/model_folder';
import { estimateModelBytes } from '../lib/server/engine';

const SERVE = path.resolve(__dirname, '..', '..', 'bin', 'serve');
const SMALL = { nLayer: 4, nHead: 4, nEmbd: 256, nCtx: 256, vocabSize: 50257 };
const GPT2_124M = { nLayer: 12, nHead: 12, nEmbd: 768, nCtx: 1024, vocabSize: 50257 };
const CHAT_TURNS = 12;
// A user's message of about 60 tokens, numbered so that no two are alike.
const chatMessage = (turn: number): string => `Turn ${turn}: ${'we talked about the garden, the rain and the new neighbours again, and about dinner on Sunday '.repeat(3)}`;
const LENGTH = 32;
const SLOTS = 16;
const SWAP_REQUESTS = 400;
const PROMPTS = [
  'How big is the earth?',
  'Tell me about your day.',
  'What should we cook tonight?',
  'The meeting moved to Thursday, right?',
  'I finally finished the report',
  'Do you remember the name of that band?',
];

interface Server {
  url: string;
  proc: ChildProcess;
}

// bin/serve with the model under each key in `keys`, more settings and more environment.
async function startServer(modelDir: string, dir: string, keys: string[], settings: Record<string, unknown> = {}, env: Record<string, string> = {}): Promise<Server> {
  const config = path.join(dir, 'server_config.json');
  fs.writeFileSync(config, JSON.stringify({
    port: 0,
    batch_slots: SLOTS,
    max_queue: 256,
    models: keys.map((key) => ({ key, restore_from: modelDir, sampling: { length: LENGTH, temperature: 0.8, top_k: 40, top_p: 0.95, penalize: 0.85 } })),
    ...settings,
  }));
  const proc = spawn(process.execPath, [SERVE, '--config', config], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  const port = await new Promise<number>((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`bin/serve exited with ${code}`)));
    readline.createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const entry = JSON.parse(line) as { msg: string; port?: number };
      if (entry.msg === 'listening') resolve(entry.port as number);
    });
  });
  return { url: `http://127.0.0.1:${port}`, proc };
}

function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;
}

interface Load {
  requests: number;
  errors: number;
  tokens: number;
  latencies: number[];
  seconds: number;
}

// A JSON request, and the tokens its answer counts (generated, or embedded).
interface Ask {
  path: string;
  body: Record<string, unknown>;
  tokens: (answer: Record<string, unknown>) => number;
}

// `clients` loops of /invocations requests, for `seconds` or until `requests` are sent; request i asks model keyOf(i).
function drive(url: string, clients: number, until: { seconds: number } | { requests: number }, keyOf = (_i: number) => 'chatbot'): Promise<Load> {
  return driveAsks(url, clients, until, (i) => ({
    path: '/invocations',
    body: { model_key: keyOf(i), raw_text: PROMPTS[i % PROMPTS.length] },
    tokens: (answer) => (answer.tokens as number[] | undefined)?.length ?? 0,
  }));
}

// `clients` loops of request after request, request i being ask(i).
async function driveAsks(url: string, clients: number, until: { seconds: number } | { requests: number }, ask: (i: number) => Ask): Promise<Load> {
  const load: Load = { requests: 0, errors: 0, tokens: 0, latencies: [], seconds: 0 };
  const started = performance.now();
  const more = 'seconds' in until ? () => performance.now() < started + until.seconds * 1000 : (i: number) => i < until.requests;
  let next = 0;
  await Promise.all(Array.from({ length: clients }, async () => {
    for (let i = next++; more(i); i = next++) {
      const t0 = performance.now();
      const { path: route, body, tokens } = ask(i);
      try {
        const res = await fetch(`${url}${route}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json' },
          body: JSON.stringify(body),
        });
        const answer = (await res.json()) as Record<string, unknown>;
        if (res.status !== 200) throw new Error(`status ${res.status}`);
        load.tokens += tokens(answer);
        load.requests++;
        load.latencies.push(performance.now() - t0);
      } catch {
        load.errors++;
      }
    }
  }));
  load.seconds = (performance.now() - started) / 1000;
  return load;
}

interface Streamed {
  requests: number;
  errors: number;
  tokens: number;
  firstText: number[];  // ms from sending to the first piece of text
  seconds: number;
}

// The streaming APIs, each with its request and its stream's framing: `read` takes one message of the stream (an
// event's type and data, or a line) to the text it carries and, at the end, the reply's token count.
interface StreamApi {
  name: string;
  path: string;
  body: (prompt: string) => Record<string, unknown>;
  framing: 'events' | 'lines';
  read: (event: string, data: string) => { text?: string; tokens?: number };
}
const STREAM_APIS: readonly StreamApi[] = [
  {
    name: '`/invocations`', path: '/invocations', framing: 'events',
    body: (prompt) => ({ model_key: 'chatbot', raw_text: prompt, stream: true }),
    read: (event, data) => {
      const json = JSON.parse(data) as { text?: string; tokens?: number[] };
      return event === 'text' ? { text: json.text } : event === 'done' ? { tokens: json.tokens?.length ?? 0 } : {};
    },
  },
  {
    name: '`/v1/chat/completions`', path: '/v1/chat/completions', framing: 'events',
    body: (prompt) => ({ model: 'chatbot', messages: [{ role: 'user', content: prompt }], stream: true, stream_options: { include_usage: true } }),
    read: (_event, data) => {
      if (data === '[DONE]') return {};
      const json = JSON.parse(data) as { choices?: { delta?: { content?: string } }[]; usage?: { completion_tokens: number } };
      return { text: json.choices?.[0]?.delta?.content, tokens: json.usage?.completion_tokens };
    },
  },
  {
    name: '`/v1/responses`', path: '/v1/responses', framing: 'events',
    body: (prompt) => ({ model: 'chatbot', input: prompt, stream: true }),
    read: (event, data) => {
      const json = JSON.parse(data) as { delta?: string; response?: { usage?: { output_tokens: number } } };
      return event === 'response.output_text.delta' ? { text: json.delta } : { tokens: json.response?.usage?.output_tokens };
    },
  },
  {
    name: '`/api/chat` (Ollama)', path: '/api/chat', framing: 'lines',
    body: (prompt) => ({ model: 'chatbot', messages: [{ role: 'user', content: prompt }] }),
    read: (_event, data) => {
      const json = JSON.parse(data) as { message: { content: string }; done: boolean; eval_count?: number };
      return json.done ? { tokens: json.eval_count } : { text: json.message.content };
    },
  },
  {
    name: '`/completion` (llama.cpp)', path: '/completion', framing: 'events',
    body: (prompt) => ({ model: 'chatbot', prompt, stream: true }),
    read: (_event, data) => {
      const json = JSON.parse(data) as { content: string; stop: boolean; tokens_predicted?: number };
      return json.stop ? { tokens: json.tokens_predicted } : { text: json.content };
    },
  },
];

// `clients` loops of streamed requests to `api` for `seconds`.
async function driveStreams(url: string, clients: number, seconds: number, api: StreamApi): Promise<Streamed> {
  const load: Streamed = { requests: 0, errors: 0, tokens: 0, firstText: [], seconds: 0 };
  const started = performance.now();
  const separator = api.framing === 'events' ? '\n\n' : '\n';
  let next = 0;
  await Promise.all(Array.from({ length: clients }, async () => {
    while (performance.now() < started + seconds * 1000) {
      const prompt = PROMPTS[next++ % PROMPTS.length];
      const t0 = performance.now();
      try {
        const res = await fetch(`${url}${api.path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(api.body(prompt)) });
        if (res.status !== 200 || !res.body) throw new Error(`status ${res.status}`);
        let first = NaN;
        let buffered = '';
        for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
          buffered += Buffer.from(part).toString('utf8');
          for (let end = buffered.indexOf(separator); end >= 0; end = buffered.indexOf(separator)) {
            const message = buffered.slice(0, end);
            buffered = buffered.slice(end + separator.length);
            const event = api.framing === 'events' ? /^event: (.*)$/m.exec(message)?.[1] ?? '' : '';
            const data = api.framing === 'events' ? /^data: (.*)$/m.exec(message)?.[1] ?? '' : message;
            if (data === '') continue;
            const { text, tokens } = api.read(event, data);
            if (Number.isNaN(first) && text) first = performance.now() - t0;
            load.tokens += tokens ?? 0;
          }
        }
        load.requests++;
        if (!Number.isNaN(first)) load.firstText.push(first);
      } catch {
        load.errors++;
      }
    }
  }));
  load.seconds = (performance.now() - started) / 1000;
  return load;
}

// One conversation of CHAT_TURNS turns on `url`'s chat model, the whole history sent each turn: each turn's time
// to the first token (the server's own timing) and prompt tokens.
async function chatTurns(url: string): Promise<{ firstTokenMs: number; promptTokens: number; cachedTokens: number }[]> {
  // A request first, not counted, so that the first turn's time is its prefill, not the model's load or the
  // first request's start-up in the process (about 3 s here, whichever server runs first).
  await fetch(`${url}/invocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model_key: 'chat', raw_text: 'Warming up.' }) });
  const history: { from: 'user' | 'bot'; text: string }[] = [];
  const turns = [];
  for (let turn = 1; turn <= CHAT_TURNS; turn++) {
    const res = await fetch(`${url}/invocations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ model_key: 'chat', raw_text: chatMessage(turn), history, seed: turn }),
    });
    const body = (await res.json()) as { text: string; prompt_tokens: number; cached_prompt_tokens: number; timings: { first_token_ms: number } };
    if (res.status !== 200) throw new Error(`chat turn ${turn}: status ${res.status}: ${JSON.stringify(body)}`);
    turns.push({ firstTokenMs: body.timings.first_token_ms, promptTokens: body.prompt_tokens, cachedTokens: body.cached_prompt_tokens });
    history.push({ from: 'user', text: chatMessage(turn) }, { from: 'bot', text: body.text });
  }
  return turns;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export async function run(): Promise<void> {
  const seconds = Number(process.env.DIXIE_BENCH_SECONDS ?? 60);
  if (!(seconds > 0)) throw new Error(`DIXIE_BENCH_SECONDS must be a number of seconds > 0, got ${process.env.DIXIE_BENCH_SECONDS}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-bench-server-'));
  let server: Server | null = null;
  try {
    if (process.argv.includes('--chat')) {
      await chatRows(dir, process.env.DIXIE_BENCH_MODEL ?? null);
      return;
    }
    if (process.argv.includes('--gpu')) {
      if (!loadAddon().cudaAvailable()) throw new Error('--gpu: no GPU is usable here (no CUDA device, or an addon built without nvcc; DIXIE_ADDON names another build)');
      await gpuRows(dir, process.env.DIXIE_BENCH_MODEL ?? null, seconds);
      return;
    }
    let modelDir = process.env.DIXIE_BENCH_MODEL;
    let described: string;
    if (modelDir) {
      described = modelDir;
    } else {
      modelDir = path.join(dir, 'small');
      const model = Model.create(SMALL, { seed: 1, trainable: false });
      await model.save(modelDir);
      model.dispose();
      described = `random GPT-2, ${SMALL.nLayer} layers, ${SMALL.nEmbd} channels, context ${SMALL.nCtx}`;
    }
    server = await startServer(modelDir, dir, ['chatbot']);
    if (process.argv.includes('--streams')) {
      console.log(`Model: ${described}; ${LENGTH} tokens a reply; ${os.availableParallelism()} CPUs.`);
      await streamRows(server, seconds);
      return;
    }
    if (process.argv.includes('--embeddings')) {
      console.log(`Model: ${described}; ${os.availableParallelism()} CPUs.`);
      await embeddingRows(server, seconds);
      return;
    }
    // Loads the model and lets the allocator reach its working size before memory is measured.
    await drive(server.url, 16, { seconds: Math.min(5, seconds / 10) });
    const rssStart = rssMb(server.proc.pid as number);
    const main = await drive(server.url, 16, { seconds });
    const rssEnd = rssMb(server.proc.pid as number);
    const sorted = [...main.latencies].sort((a, b) => a - b);
    console.log(`Model: ${described}; ${LENGTH} tokens a reply, temperature 0.8, top_k 40; batch_slots 16; ${os.availableParallelism()} CPUs.\n`);
    console.log('| clients | seconds | requests | requests/s | p50 ms | p99 ms | errors | tokens/s | RSS start MB | RSS end MB |');
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    console.log(`| 16 | ${main.seconds.toFixed(1)} | ${main.requests} | ${(main.requests / main.seconds).toFixed(2)} | ${percentile(sorted, 50).toFixed(0)} | ${percentile(sorted, 99).toFixed(0)} | ${main.errors} | ${(main.tokens / main.seconds).toFixed(1)} | ${rssStart.toFixed(0)} | ${rssEnd.toFixed(0)} |`);
    console.log('\n| clients | requests/s | p50 ms | aggregate tokens/s |');
    console.log('|---|---|---|---|');
    for (const clients of [1, 4, 16]) {
      const load = await drive(server.url, clients, { seconds: seconds / 4 });
      const s = [...load.latencies].sort((a, b) => a - b);
      console.log(`| ${clients} | ${(load.requests / load.seconds).toFixed(2)} | ${percentile(s, 50).toFixed(0)} | ${(load.tokens / load.seconds).toFixed(1)}${load.errors > 0 ? ` (${load.errors} errors)` : ''} |`);
    }
    await stop(server);

    // The same model under two keys, and a budget that holds one of them.
    const budgetMb = Math.ceil((1.5 * estimateModelBytes(inspectModelFolder(modelDir).config as GPT2Config, 'f32', SLOTS)) / (1024 * 1024));
    server = await startServer(modelDir, dir, ['one', 'two'], { memory_budget_mb: budgetMb, max_queue: SWAP_REQUESTS });
    await drive(server.url, 16, { requests: 32 }, () => 'one');
    console.log(`\nHot-swapping: ${SWAP_REQUESTS} requests from 16 clients; memory_budget_mb ${budgetMb} holds one of the two models.\n`);
    console.log('| requests ask for | seconds | requests/s | p50 ms | p99 ms | errors | model loads |');
    console.log('|---|---|---|---|---|---|---|');
    const asks: [string, (i: number) => string][] = [['one model', () => 'one'], ['two models, alternating', (i) => (i % 2 === 0 ? 'one' : 'two')]];
    for (const [what, keyOf] of asks) {
      const before = await modelLoads(server.url);
      const load = await drive(server.url, 16, { requests: SWAP_REQUESTS }, keyOf);
      const loads = (await modelLoads(server.url)) - before;
      const s = [...load.latencies].sort((a, b) => a - b);
      console.log(`| ${what} | ${load.seconds.toFixed(1)} | ${(load.requests / load.seconds).toFixed(2)} | ${percentile(s, 50).toFixed(0)} | ${percentile(s, 99).toFixed(0)} | ${load.errors} | ${loads} |`);
    }
    await stop(server);

    server = await startServer(modelDir, dir, ['chatbot']);
    await streamRows(server, seconds);
    await embeddingRows(server, seconds);
    await stop(server);

    await chatRows(dir, process.env.DIXIE_BENCH_MODEL ?? null);
    if (loadAddon().cudaAvailable()) await gpuRows(dir, process.env.DIXIE_BENCH_MODEL ?? null, seconds);
  } finally {
    if (server) await stop(server);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// The streaming rows: each API's time to the first text and aggregate tokens/s, the APIs taking turns.
async function streamRows(server: Server, seconds: number): Promise<void> {
  await drive(server.url, 16, { seconds: Math.min(5, seconds / 10) });
  console.log('\nStreaming: time to the first text, and aggregate tokens/s.\n');
  console.log('| API | clients | requests | first text p50 ms | first text p99 ms | aggregate tokens/s |');
  console.log('|---|---|---|---|---|---|');
  for (const clients of [1, 4, 16]) {
    for (const api of STREAM_APIS) {
      const load = await driveStreams(server.url, clients, seconds / 8, api);
      const s = [...load.firstText].sort((a, b) => a - b);
      console.log(`| ${api.name} | ${clients} | ${load.requests} | ${percentile(s, 50).toFixed(0)} | ${percentile(s, 99).toFixed(0)} | ${(load.tokens / load.seconds).toFixed(1)}${load.errors > 0 ? ` (${load.errors} errors)` : ''} |`);
    }
  }
}

// The embedding rows: /v1/embeddings of one chat message (about 60 tokens) a request, beside /v1/completions of such
// a text and one token (the same prefill, and one draw), and of 16 messages a request: the inputs' tokens/s. Every
// text is another, so that no prompt is found in the cache.
async function embeddingRows(server: Server, seconds: number): Promise<void> {
  const promptTokens = (answer: Record<string, unknown>): number => (answer.usage as { prompt_tokens: number }).prompt_tokens;
  let texts = 0;
  const text = (): string => chatMessage(texts++);
  const kinds: [string, () => Ask][] = [
    ['`/v1/embeddings`, 1 text', () => ({ path: '/v1/embeddings', body: { model: 'chatbot', input: text() }, tokens: promptTokens })],
    ['`/v1/completions` of such a text, `max_tokens` 1', () => ({ path: '/v1/completions', body: { model: 'chatbot', prompt: text(), max_tokens: 1 }, tokens: promptTokens })],
    ['`/v1/embeddings`, 16 texts', () => ({ path: '/v1/embeddings', body: { model: 'chatbot', input: Array.from({ length: 16 }, text) }, tokens: promptTokens })],
  ];
  await driveAsks(server.url, 4, { seconds: Math.min(5, seconds / 10) }, kinds[0][1]);
  console.log('\nEmbeddings: the inputs\' tokens/s.\n');
  console.log('| request | clients | requests/s | p50 ms | input tokens/s |');
  console.log('|---|---|---|---|---|');
  for (const clients of [1, 4, 16]) {
    for (const [what, ask] of kinds) {
      const load = await driveAsks(server.url, clients, { seconds: seconds / 9 }, ask);
      const s = [...load.latencies].sort((a, b) => a - b);
      console.log(`| ${what} | ${clients} | ${(load.requests / load.seconds).toFixed(2)} | ${percentile(s, 50).toFixed(0)} | ${(load.tokens / load.seconds).toFixed(0)}${load.errors > 0 ? ` (${load.errors} errors)` : ''} |`);
    }
  }
}

// `model` (a folder), else a random model of 124M's shapes made once in `dir`.
async function model124M(dir: string, model: string | null): Promise<string> {
  if (model) return model;
  const made = path.join(dir, '124M');
  if (!fs.existsSync(made)) {
    const random = Model.create(GPT2_124M, { seed: 1, trainable: false });
    await random.save(made);
    random.dispose();
  }
  return made;
}

// The chat rows: a conversation on a model of 124M's shapes (or `model`, a folder), on one server with prefix reuse
// and one without.
async function chatRows(dir: string, model: string | null): Promise<void> {
  const chatDir = await model124M(dir, model);
  const chatModel = { key: 'chat', restore_from: chatDir, prompt_format: 'chat', audience: 'mom', sampling: { length: LENGTH, temperature: 0.8, top_k: 40 } };
  const runs: { firstTokenMs: number; promptTokens: number; cachedTokens: number }[][] = [];
  for (const reuse of [false, true]) {
    const server = await startServer(chatDir, dir, [], { models: [chatModel], prefix_reuse: reuse });
    try {
      runs.push(await chatTurns(server.url));
    } finally {
      await stop(server);
    }
  }
  console.log(`\nA chat of ${CHAT_TURNS} turns, its history sent with each (${model ?? "random GPT-2 of 124M's shapes"}): time to the first token of each turn.\n`);
  console.log('| turn | prompt tokens | found in the cache | first token ms, prefix reuse | first token ms, without | ratio |');
  console.log('|---|---|---|---|---|---|');
  runs[1].forEach((on, i) => {
    const off = runs[0][i];
    console.log(`| ${i + 1} | ${on.promptTokens} | ${on.cachedTokens} | ${on.firstTokenMs.toFixed(0)} | ${off.firstTokenMs.toFixed(0)} | ${(off.firstTokenMs / on.firstTokenMs).toFixed(1)}x |`);
  });
}

// The GPU rows: the model of the chat rows served from the GPU in bf16 with 32 slots, decode steps eager and as
// CUDA graphs, each server warmed up before its clients are timed.
async function gpuRows(dir: string, model: string | null, seconds: number): Promise<void> {
  const modelDir = await model124M(dir, model);
  console.log(`\nOn the GPU (${model ?? "random GPT-2 of 124M's shapes"}, bf16, batch_slots 32): aggregate tokens/s.\n`);
  console.log('| decode steps | clients | requests/s | p50 ms | aggregate tokens/s |');
  console.log('|---|---|---|---|---|');
  for (const [what, env] of [['eager', {}], ['CUDA graphs', { DIXIE_CUDA_GRAPHS: '1' }]] as const) {
    const server = await startServer(modelDir, dir, ['chatbot'], { batch_slots: 32, models: [{ key: 'chatbot', restore_from: modelDir, device: 'cuda', precision: 'bf16', sampling: { length: LENGTH, temperature: 0.8, top_k: 40 } }] }, env);
    try {
      await drive(server.url, 32, { seconds: Math.min(5, seconds / 10) });
      for (const clients of [1, 16, 32]) {
        const load = await drive(server.url, clients, { seconds: seconds / 4 });
        const s = [...load.latencies].sort((a, b) => a - b);
        console.log(`| ${what} | ${clients} | ${(load.requests / load.seconds).toFixed(2)} | ${percentile(s, 50).toFixed(0)} | ${(load.tokens / load.seconds).toFixed(1)}${load.errors > 0 ? ` (${load.errors} errors)` : ''} |`);
      }
    } finally {
      await stop(server);
    }
  }
}

async function stop(server: Server): Promise<void> {
  if (server.proc.exitCode !== null) return;
  const exited = new Promise((r) => server.proc.once('exit', r));
  server.proc.kill('SIGTERM');
  await exited;
}

// The loads of all models so far, from /metrics.
async function modelLoads(url: string): Promise<number> {
  const metrics = await (await fetch(`${url}/metrics`)).text();
  return [...metrics.matchAll(/^dixie_model_loads_total\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
}
