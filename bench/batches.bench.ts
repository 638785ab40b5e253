// OpenAI's Batch API against the same chat completions sent by a client: 32 requests (the quick start's chat
// messages, 32 tokens of reply each, greedy) to a small random GPT-2, sent one after another, all at once, and as a
// batch (/v1/files, /v1/batches, polled until completed), which sends at most half of the batch slots at a time.
// Then what a batch costs the server's other clients: one chat request's latency alone, and while a batch runs.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Model } from '../lib/engine/model';
import { createServer } from '../lib/server/app';
import { validateServerConfig } from '../lib/server/config';
import { median } from './stats';

const REPO = path.resolve(__dirname, '..', '..');
const CHAT = path.join(REPO, 'examples', 'chat', 'train');
const SMALL = { nLayer: 4, nHead: 4, nEmbd: 256, nCtx: 256, vocabSize: 50257 };
const REQUESTS = 32;
const REPLY_TOKENS = 32;
const BATCH_SLOTS = 8;
const ROUNDS = 2;

// The first messages of the quick start's chat logs, as the users' questions.
function questions(): string[] {
  const file = path.join(CHAT, fs.readdirSync(CHAT).sort()[0]);
  return fs.readFileSync(file, 'utf8').split('\n').flatMap((line) => /^1\|[^|]+\|(.*) <EOM>$/.exec(line)?.[1] ?? []).slice(0, REQUESTS);
}

async function api(url: string, init: RequestInit = {}): Promise<Record<string, unknown>> {
  const res = await fetch(url, init);
  const body = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${url}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

const chatBody = (content: string): Record<string, unknown> => ({ model: 'small', messages: [{ role: 'user', content }], max_tokens: REPLY_TOKENS, temperature: 0 });
const post = (url: string, body: unknown): Promise<Record<string, unknown>> => api(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

async function timed(work: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await work();
  return performance.now() - t0;
}

async function runBatch(url: string, asks: readonly string[]): Promise<void> {
  const lines = asks.map((q, i) => JSON.stringify({ custom_id: `q${i}`, method: 'POST', url: '/v1/chat/completions', body: chatBody(q) }));
  const form = new FormData();
  form.append('purpose', 'batch');
  form.append('file', new Blob([`${lines.join('\n')}\n`]), 'asks.jsonl');
  const file = await api(`${url}/files`, { method: 'POST', body: form });
  let batch = await post(`${url}/batches`, { input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
  while (batch.status !== 'completed') {
    if (batch.status !== 'in_progress' && batch.status !== 'finalizing') throw new Error(`batch ${String(batch.status)}`);
    await new Promise((r) => setTimeout(r, 20));
    batch = await api(`${url}/batches/${String(batch.id)}`);
  }
  const counts = batch.request_counts as { completed: number };
  if (counts.completed !== asks.length) throw new Error(`batch answered ${counts.completed} of ${asks.length}`);
}

export async function run(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-bench-batches-'));
  const model = Model.create(SMALL, { seed: 1, trainable: false });
  await model.save(path.join(dir, 'small'));
  model.dispose();
  const config = validateServerConfig({ batch_slots: BATCH_SLOTS, models: [{ key: 'small', restore_from: 'small', sampling: { penalize: 0 } }], fine_tuning: { dir: 'kept' } }, 'bench', dir);
  const server = createServer(config, { log: () => undefined });
  try {
    const { port } = await server.listen(0, '127.0.0.1');
    const url = `http://127.0.0.1:${port}/v1`;
    const asks = questions();
    const chat = (q: string): Promise<unknown> => post(`${url}/chat/completions`, chatBody(q));
    await chat(asks[0]);  // loads the model
    const times: Record<string, number[]> = { sequential: [], 'all at once': [], batch: [], alone: [], beside: [] };
    for (let round = 0; round < ROUNDS; round++) {
      times.sequential.push(await timed(async () => {
        for (const q of asks) await chat(q);
      }));
      times['all at once'].push(await timed(() => Promise.all(asks.map(chat))));
      times.batch.push(await timed(() => runBatch(url, asks)));
      for (let i = 0; i < 4; i++) times.alone.push(await timed(() => chat(asks[i])));
      const batch = runBatch(url, asks);
      await new Promise((r) => setTimeout(r, 200));
      for (let i = 0; i < 4; i++) times.beside.push(await timed(() => chat(asks[i])));
      await batch;
    }
    const tokens = REQUESTS * REPLY_TOKENS;
    console.log(`${REQUESTS} chat completions of ${REPLY_TOKENS} tokens, a ${SMALL.nLayer}-layer ${SMALL.nEmbd}-wide GPT-2 on ${os.cpus().length} cores, batch_slots ${BATCH_SLOTS}; medians of ${ROUNDS} rounds\n`);
    console.log('| sent | s | tokens/s |');
    console.log('|---|---|---|');
    for (const name of ['sequential', 'all at once', 'batch']) {
      const ms = median(times[name]);
      console.log(`| ${name === 'batch' ? `a batch (${BATCH_SLOTS / 2} at a time)` : name} | ${(ms / 1000).toFixed(2)} | ${Math.round(tokens / (ms / 1000))} |`);
    }
    console.log('\n| one chat request | ms (median of 4 a round) |');
    console.log('|---|---|');
    console.log(`| alone | ${median(times.alone).toFixed(0)} |`);
    console.log(`| while a batch runs | ${median(times.beside).toFixed(0)} |`);
  } finally {
    await server.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
