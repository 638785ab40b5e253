// bin/serve under load: 16 concurrent clients for DIXIE_BENCH_SECONDS (default 60) against a small model,
// with requests/s, p50/p99 latency, errors and the server's RSS at start (after a short warm-up) and end; then the aggregate tokens/s
// at 1, 4 and 16 clients (a quarter of the duration each), which grows with clients thanks to batching; then hot-swapping:
// 400 requests from 16 clients to one model, and 400 alternating between two models under a memory budget that
// holds one, with the loads each took.
// The model: DIXIE_BENCH_MODEL (a model folder, e.g. models/124M), else a small random GPT-2 made here.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { Model } from '../lib/engine/model';
import { inspectModelFolder, type GPT2Config } from '../lib/formats/model_folder';
import { estimateModelBytes } from '../lib/server/engine';

const SERVE = path.resolve(__dirname, '..', '..', 'bin', 'serve');
const SMALL = { nLayer: 4, nHead: 4, nEmbd: 256, nCtx: 256, vocabSize: 50257 };
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

// bin/serve with the model under each key in `keys`, and more settings.
async function startServer(modelDir: string, dir: string, keys: string[], settings: Record<string, unknown> = {}): Promise<Server> {
  const config = path.join(dir, 'server_config.json');
  fs.writeFileSync(config, JSON.stringify({
    port: 0,
    batch_slots: SLOTS,
    max_queue: 256,
    models: keys.map((key) => ({ key, restore_from: modelDir, sampling: { length: LENGTH, temperature: 0.8, top_k: 40, top_p: 0.95, penalize: 0.85 } })),
    ...settings,
  }));
  const proc = spawn(process.execPath, [SERVE, '--config', config], { stdio: ['ignore', 'pipe', 'inherit'] });
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

// `clients` loops of request after request, for `seconds` or until `requests` are sent; request i asks model keyOf(i).
async function drive(url: string, clients: number, until: { seconds: number } | { requests: number }, keyOf = (_i: number) => 'chatbot'): Promise<Load> {
  const load: Load = { requests: 0, errors: 0, tokens: 0, latencies: [], seconds: 0 };
  const started = performance.now();
  const more = 'seconds' in until ? () => performance.now() < started + until.seconds * 1000 : (i: number) => i < until.requests;
  let next = 0;
  await Promise.all(Array.from({ length: clients }, async () => {
    for (let i = next++; more(i); i = next++) {
      const t0 = performance.now();
      try {
        const res = await fetch(`${url}/invocations`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json' },
          body: JSON.stringify({ model_key: keyOf(i), raw_text: PROMPTS[i % PROMPTS.length] }),
        });
        const body = (await res.json()) as { tokens?: number[] };
        if (res.status !== 200) throw new Error(`status ${res.status}`);
        load.tokens += body.tokens?.length ?? 0;
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

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export async function run(): Promise<void> {
  const seconds = Number(process.env.DIXIE_BENCH_SECONDS ?? 60);
  if (!(seconds > 0)) throw new Error(`DIXIE_BENCH_SECONDS must be a number of seconds > 0, got ${process.env.DIXIE_BENCH_SECONDS}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-bench-server-'));
  let server: Server | null = null;
  try {
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
    const budgetMb = Math.ceil((1.5 * estimateModelBytes(inspectModelFolder(modelDir).config as GPT2Config, 4, SLOTS)) / (1024 * 1024));
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
  } finally {
    if (server) await stop(server);
    fs.rmSync(dir, { recursive: true, force: true });
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
