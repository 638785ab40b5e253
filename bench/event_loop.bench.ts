// What one client's heavy request costs the others: the server (lib/server, as bin/serve runs it) in this process
// over a small random GPT-2 of 124M's width (2 layers, 768 channels, GPT-2's vocabulary and context), and its
// clients in two worker threads. For each kind of heavy request the server takes, sent one after another: the
// server's event-loop time a request (performance.eventLoopUtilization over REQUESTS of them, sent with nothing else
// to do), then, while they are sent again, the gaps a "victim" client sees between the chunks of its own short
// streamed completions: median, p90 and the worst. The first row, "none", is the victim alone.
// `--only <kind>` (repeatable) runs those kinds alone.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { Model } from '../lib/engine/model';
import { createServer } from '../lib/server/app';
import { validateServerConfig } from '../lib/server/config';

const CONFIG = { nLayer: 2, nHead: 12, nEmbd: 768, nCtx: 1024, vocabSize: 50257 };
const REQUESTS = 6;
const PARAGRAPH = 'The meeting moved to Thursday, and the garden needs rain before the neighbours come for dinner on Sunday. ';
// About 500 tokens of text.
const LONG_TEXT = PARAGRAPH.repeat(24);

interface Ask {
  method?: string;
  path: string;
  body?: unknown;
  raw?: string;                    // a body sent as it is
  headers?: Record<string, string>;
}

// A kind of heavy request.
interface Kind {
  name: string;
  ask: (url: string) => Promise<Ask[]>;  // the requests of one round, sent in turn (a batch's file uploaded first)
}

const batchLines = (n: number): string => Array.from({ length: n }, (_, i) => JSON.stringify({
  custom_id: `r${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'raw', messages: [{ role: 'user', content: `Question ${i}: ${PARAGRAPH}` }], max_tokens: 4 },
})).join('\n');

const fineTuningLines = (n: number): string => Array.from({ length: n }, (_, i) => JSON.stringify({
  messages: [{ role: 'user', content: `${i} ${PARAGRAPH}` }, { role: 'assistant', content: PARAGRAPH }],
})).join('\n');

// Made once, before anything is measured: the bodies are made on this thread, which is the server's.
const once = <T>(make: () => T): (() => T) => {
  let made: T | undefined;
  return () => (made ??= make());
};

function multipart(purpose: string, filename: string, text: string): { raw: string; headers: Record<string, string> } {
  const boundary = '----dixiebench';
  const raw = `--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n${purpose}\r\n`
    + `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: application/jsonl\r\n\r\n${text}\r\n--${boundary}--\r\n`;
  return { raw, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

const trainingUpload = once(() => multipart('fine-tune', 'train.jsonl', fineTuningLines(70_000)));
const batchUpload = once(() => multipart('batch', 'batch.jsonl', batchLines(64)));

const KINDS: Kind[] = [
  { name: 'scored prompt (/v1/completions echo, logprobs 5, ~500 tokens)', ask: async () => [{ path: '/v1/completions', body: { model: 'raw', prompt: LONG_TEXT, echo: true, logprobs: 5, max_tokens: 1 } }] },
  { name: 'chat, 128 tokens, top_logprobs 20', ask: async () => [{ path: '/v1/chat/completions', body: { model: 'raw', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 128, logprobs: true, top_logprobs: 20 } }] },
  { name: 'chat of 2,000 messages (chat format)', ask: async () => [{ path: '/v1/chat/completions', body: { model: 'chat', messages: Array.from({ length: 2000 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: `${i} ${PARAGRAPH}` })), max_tokens: 1 } }] },
  { name: 'stream, n 16, 64 tokens, logprobs 5', ask: async () => [{ path: '/v1/completions', body: { model: 'raw', prompt: 'Hi', n: 16, max_tokens: 64, logprobs: 5, stream: true } }] },
  { name: 'embeddings, 256 short texts', ask: async () => [{ path: '/v1/embeddings', body: { model: 'raw', input: Array.from({ length: 256 }, (_, i) => `${i} the garden`) } }] },
  { name: 'Ollama /api/generate, 128 tokens, top 20', ask: async () => [{ path: '/api/generate', body: { model: 'raw', prompt: 'Hi', stream: false, logprobs: true, top_logprobs: 20, options: { num_predict: 128 } } }] },
  { name: 'llama.cpp /completion, 128 tokens, n_probs 20', ask: async () => [{ path: '/completion', body: { model: 'raw', prompt: 'Hi', n_predict: 128, n_probs: 20 } }] },
  { name: 'files: 20 MB fine-tuning JSONL upload', ask: async () => [{ path: '/v1/files', ...trainingUpload() }] },
  { name: 'batch of 64 chat requests (run, output file)', ask: async (url) => {
    const up = await fetch(`${url}/v1/files`, { method: 'POST', body: batchUpload().raw, headers: batchUpload().headers });
    const file = (await up.json()) as { id: string };
    return [{ path: '/v1/batches', body: { input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' } }];
  } },
  { name: 'metrics', ask: async () => [{ method: 'GET', path: '/metrics' }] },
];

// A worker's part: the victim streams short completions until told to stop, and reports the gaps between its
// chunks; the heavy client sends what it is given and says when each is answered (a batch: when it is done).
async function clientThread(): Promise<void> {
  const { role, url } = workerData as { role: 'victim' | 'heavy'; url: string };
  const port = parentPort as NonNullable<typeof parentPort>;
  if (role === 'victim') {
    let stop = false;
    let gaps: number[] = [];
    port.on('message', (m: string) => {
      if (m === 'report') {
        port.postMessage(gaps);
        gaps = [];
      } else stop = true;
    });
    while (!stop) {
      const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'raw', prompt: 'Once upon a time', max_tokens: 16, stream: true }) });
      let last = performance.now();
      for await (const _ of res.body as unknown as AsyncIterable<Uint8Array>) {
        const now = performance.now();
        gaps.push(now - last);
        last = now;
      }
      gaps.shift();  // from the request to its first chunk: the queue's, not the loop's
    }
    port.postMessage('stopped');
    return;
  }
  port.on('message', async (asks: Ask[]) => {
    for (const a of asks) {
      const res = await fetch(`${url}${a.path}`, { method: a.method ?? 'POST', headers: a.headers ?? { 'content-type': 'application/json' }, body: a.raw ?? (a.body === undefined ? undefined : JSON.stringify(a.body)) });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`${a.path}: ${res.status} ${text.slice(0, 300)}`);
      if (a.path === '/v1/batches') {
        const id = (JSON.parse(text) as { id: string }).id;
        for (;;) {
          const b = (await (await fetch(`${url}/v1/batches/${id}`)).json()) as { status: string; output_file_id?: string };
          if (b.status === 'completed') {
            await (await fetch(`${url}/v1/files/${b.output_file_id}/content`)).text();
            break;
          }
          if (b.status === 'failed') throw new Error(`batch failed: ${JSON.stringify(b)}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
    port.postMessage('done');
  });
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

const next = (w: Worker): Promise<unknown> => new Promise((resolve, reject) => {
  const fail = (err: Error) => reject(err);
  w.once('error', fail);
  w.once('message', (m) => {
    w.off('error', fail);
    resolve(m);
  });
});

export async function run(): Promise<void> {
  const argv = process.argv.slice(2);
  const only = argv.flatMap((a, i) => (argv[i - 1] === '--only' ? [a] : []));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-event-loop-'));
  const model = Model.create(CONFIG, { seed: 1, trainable: false });
  await model.save(path.join(dir, 'model'));
  model.dispose();
  const config = validateServerConfig({
    batch_slots: 16,
    max_queue: 256,
    body_limit_kb: 4096,
    fine_tuning: { dir: path.join(dir, 'fine_tuning'), max_file_mb: 64 },
    models: [
      { key: 'raw', restore_from: 'model', prompt_format: 'raw', sampling: { temperature: 0.8 } },
      { key: 'chat', restore_from: 'model', prompt_format: 'chat', audience: 'mom', sampling: { temperature: 0.8 } },
    ],
  }, 'bench config', dir);
  const server = createServer(config, { log: () => {} });
  const url = `http://127.0.0.1:${(await server.listen(0, '127.0.0.1')).port}`;
  trainingUpload();
  batchUpload();
  const heavy = new Worker(__filename, { workerData: { role: 'heavy', url } });
  const sendAll = async (asks: Ask[]): Promise<void> => {
    heavy.postMessage(asks);
    await next(heavy);
  };
  console.log(`| request | event loop a request (ms) | victim's gap median / p90 / worst (ms) |`);
  console.log('|---|---|---|');
  try {
    // Both models loaded and warm before anything is timed.
    await sendAll([{ path: '/v1/completions', body: { model: 'raw', prompt: 'Hi', max_tokens: 2 } }, { path: '/v1/completions', body: { model: 'chat', prompt: 'Hi', max_tokens: 2 } }]);
    for (const kind of [{ name: 'none', ask: async () => [] as Ask[] }, ...KINDS]) {
      if (only.length > 0 && kind.name !== 'none' && !only.some((o) => kind.name.startsWith(o))) continue;
      let loopMs = 0;
      if (kind.name !== 'none') {
        await sendAll(await kind.ask(url));  // a warm-up
        for (let i = 0; i < REQUESTS; i++) {
          const asks = await kind.ask(url);
          const before = performance.eventLoopUtilization();
          await sendAll(asks);
          loopMs += performance.eventLoopUtilization(before).active;
        }
      }
      const victim = new Worker(__filename, { workerData: { role: 'victim', url } });
      await new Promise((r) => setTimeout(r, 500));
      victim.postMessage('report');
      await next(victim);  // the gaps while it started, left out
      if (kind.name === 'none') await new Promise((r) => setTimeout(r, 4000));
      else for (let i = 0; i < REQUESTS; i++) await sendAll(await kind.ask(url));
      victim.postMessage('report');
      const gaps = (await next(victim)) as number[];
      victim.postMessage('stop');
      await next(victim);
      await victim.terminate();
      const f = (x: number) => x.toFixed(1);
      console.log(`| ${kind.name} | ${kind.name === 'none' ? '' : f(loopMs / REQUESTS)} | ${f(percentile(gaps, 0.5))} / ${f(percentile(gaps, 0.9))} / ${f(percentile(gaps, 1))} |`);
    }
  } finally {
    await heavy.terminate();
    await server.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (!isMainThread) void clientThread();
