// A fine-tuning job through the server's OpenAI API against lib/train on the same data: the first 1,000 messages of
// each of the quick start's chat logs written as OpenAI's fine-tuning JSONL (a conversation of up to 8 messages, the
// audience named by a system message), uploaded to /v1/files, one epoch of a job over a small random GPT-2; then
// train() alone on the job's own training data with the job's settings. The job should train as fast as lib/train does; the table also gives
// the time the job took to read its files, and from its creation to its model answering. Then a server's chat latency
// while training runs beside it, at the process's priority and in the background, as a job's does.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Model } from '../lib/engine/model';
import { createServer } from '../lib/server/app';
import { FINE_TUNING_DEFAULTS, validateServerConfig } from '../lib/server/config';
import { readMetrics, type TrainRecord } from '../lib/train/metrics';
import { train } from '../lib/train/train';
import { median } from './stats';

const REPO = path.resolve(__dirname, '..', '..');
const CHAT = path.join(REPO, 'examples', 'chat', 'train');
const SMALL = { nLayer: 4, nHead: 4, nEmbd: 256, nCtx: 256, vocabSize: 50257 };
const PER_CONVERSATION = 8;
const MESSAGES_PER_FILE = 1000;

// The chat-format lines of each file as conversations: the user's messages (side 1) as "user", the others' as
// "assistant", as the server's own chat endpoints take them.
function fineTuningJsonl(): string {
  const lines: string[] = [];
  for (const file of fs.readdirSync(CHAT).sort()) {
    const messages = fs.readFileSync(path.join(CHAT, file), 'utf8').split('\n').flatMap((line) => {
      const m = /^([01])\|([^|]+)\|(.*) <EOM>$/.exec(line);
      return m ? [{ side: m[1], audience: m[2], text: m[3] }] : [];
    }).slice(0, MESSAGES_PER_FILE);
    for (let i = 0; i < messages.length; i += PER_CONVERSATION) {
      const part = messages.slice(i, i + PER_CONVERSATION);
      const turns = part.map((m) => ({ role: m.side === '1' ? 'user' : 'assistant', content: m.text }));
      lines.push(JSON.stringify({ messages: [{ role: 'system', content: `audience: ${part[0].audience}` }, ...turns] }));
    }
  }
  return `${lines.join('\n')}\n`;
}

async function api(url: string, init: RequestInit = {}): Promise<Record<string, unknown>> {
  const res = await fetch(url, init);
  const body = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${url}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

const tokensPerSecond = (records: TrainRecord[]): number => median(records.map((r) => r.tokens_per_s));
const trainSteps = (runDir: string): TrainRecord[] => readMetrics(path.join(runDir, 'metrics.jsonl')).filter((r): r is TrainRecord => r.type === 'train');
// The two take turns, so that neither has the machine's quieter minutes to itself.
const ROUNDS = 2;

interface JobRun {
  steps: TrainRecord[];
  batchSize: number;
  contextLength: number;
  validatedMs: number;
  answeredMs: number;
  trainingData: string;
}

// One job on a server of its own, from the upload to its model's first answer; the status is asked for twice a second.
async function fineTuningJob(dir: string, threads: number, jsonl: string): Promise<JobRun> {
  const config = validateServerConfig({ models: [{ key: 'small', restore_from: 'small' }], fine_tuning: { dir: 'ft', threads } }, 'bench', dir);
  const server = createServer(config, { log: () => undefined });
  try {
    const { port } = await server.listen(0, '127.0.0.1');
    const url = `http://127.0.0.1:${port}/v1`;
    const form = new FormData();
    form.append('purpose', 'fine-tune');
    form.append('file', new Blob([jsonl]), 'chat.jsonl');
    const file = await api(`${url}/files`, { method: 'POST', body: form });
    const created = performance.now();
    let job = await api(`${url}/fine_tuning/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'small', training_file: file.id, hyperparameters: { n_epochs: 1 }, seed: 1 }),
    });
    let validatedMs = 0;
    while (job.status !== 'succeeded') {
      if (job.status === 'failed' || job.status === 'cancelled') throw new Error(`the job ${String(job.status)}: ${JSON.stringify(job.error)}`);
      await new Promise((r) => setTimeout(r, validatedMs === 0 ? 20 : 500));
      job = await api(`${url}/fine_tuning/jobs/${String(job.id)}`);
      if (validatedMs === 0 && job.status !== 'validating_files') validatedMs = performance.now() - created;
    }
    const reply = await api(`${url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: job.fine_tuned_model, messages: [{ role: 'user', content: 'How was your day?' }], max_tokens: 16 }),
    });
    if (!Array.isArray(reply.choices)) throw new Error('the fine-tuned model gave no answer');
    const answeredMs = performance.now() - created;
    const jobDir = path.join(dir, 'ft', 'jobs', String(job.id));
    const steps = trainSteps(jobDir);
    const batchSize = (job.hyperparameters as { batch_size: number }).batch_size;
    return { steps, batchSize, contextLength: Number(job.trained_tokens) / steps.length / batchSize, validatedMs, answeredMs, trainingData: path.join(jobDir, 'training.train') };
  } finally {
    await server.shutdown();
  }
}

// The served model's chat answers, each timed from the request to its end, one after another.
async function chatLatencies(url: string, count: number): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await api(`${url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'small', messages: [{ role: 'user', content: 'How was your day?' }], max_tokens: CHAT_TOKENS, temperature: 0 }),
    });
    ms.push(performance.now() - started);
  }
  return ms;
}

const CHAT_TOKENS = 32;
const CHATS = 20;
type Training = 'none' | 'normal' | 'background';

// A server's chat latency while lib/train trains in the same process, as a fine-tuning job does: at the process's
// priority, or in the background (the job's way), where the decoding should keep its latency and the training take
// the cores left.
async function servingWhileTraining(dir: string, threads: number): Promise<void> {
  const config = validateServerConfig({ models: [{ key: 'small', restore_from: 'small' }] }, 'bench', dir);
  const server = createServer(config, { log: () => undefined });
  const rows = new Map<Training, { chat: number[]; training: number[] }>((['none', 'normal', 'background'] as const).map((k) => [k, { chat: [], training: [] }]));
  try {
    const { port } = await server.listen(0, '127.0.0.1');
    const url = `http://127.0.0.1:${port}/v1`;
    await chatLatencies(url, 3);  // loads the model
    for (let round = 0; round < ROUNDS; round++) {
      for (const training of (round % 2 === 0 ? ['none', 'normal', 'background'] : ['background', 'normal', 'none']) as Training[]) {
        const row = rows.get(training) as { chat: number[]; training: number[] };
        if (training === 'none') {
          row.chat.push(...(await chatLatencies(url, CHATS)));
          continue;
        }
        const stop = new AbortController();
        let started: () => void = () => undefined;
        const firstStep = new Promise<void>((resolve) => (started = resolve));
        const steps: number[] = [];
        const run = train(
          {
            dataset: CHAT, model_name: path.join(dir, 'small'), run_name: `beside-${training}-${round}`, checkpoint_dir: dir, context_length: SMALL.nCtx,
            stop_after: 1_000_000, save_every: 0, save_time: 0, sample_every: 0, seed: 1, threads, background: training === 'background',
          },
          {
            log: () => undefined,
            signal: stop.signal,
            onMetrics: (r) => {
              if (r.type !== 'train') return;
              steps.push(r.tokens_per_s);
              started();
            },
          },
        );
        await firstStep;
        row.chat.push(...(await chatLatencies(url, CHATS)));
        stop.abort();
        await run;
        row.training.push(median(steps.slice(1)));
      }
    }
  } finally {
    await server.shutdown();
  }
  const idle = median((rows.get('none') as { chat: number[] }).chat);
  console.log(`
A chat answer of ${CHAT_TOKENS} tokens from the served model (the same GPT-2, ${threads} threads), ${CHATS} in a row, while lib/train trains it on examples/chat/train in the same process (batches of 1 x ${SMALL.nCtx}); ${ROUNDS} rounds, the order reversed in the second
`);
  console.log('| while the server answers | chat median ms | chat p90 ms | vs idle | training tokens/s |');
  console.log('|---|---|---|---|---|');
  const names: Record<Training, string> = { none: 'nothing else', normal: 'training at the process\'s priority', background: 'training in the background (a fine-tuning job\'s way)' };
  for (const [training, row] of rows) {
    const sorted = [...row.chat].sort((a, b) => a - b);
    const p90 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.9))];
    const tokens = training === 'none' ? '' : Math.round(median(row.training)).toLocaleString('en-US');
    console.log(`| ${names[training]} | ${median(row.chat).toFixed(0)} | ${p90.toFixed(0)} | ${(median(row.chat) / idle).toFixed(2)} | ${tokens} |`);
  }
}

export async function run(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-bench-ft-'));
  try {
    const model = Model.create(SMALL, { seed: 1, trainable: false });
    await model.save(path.join(dir, 'small'));
    model.dispose();
    const threads = os.availableParallelism();
    const jsonl = fineTuningJsonl();
    const jobs: JobRun[] = [];
    const alone: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const job = await fineTuningJob(dir, threads, jsonl);
      jobs.push(job);
      const result = await train(
        {
          dataset: job.trainingData,
          model_name: path.join(dir, 'small'),
          run_name: `alone-${round}`,
          checkpoint_dir: dir,
          context_length: job.contextLength,
          batch_size: job.batchSize,
          learning_rate: FINE_TUNING_DEFAULTS.learningRate,
          stop_after: job.steps.length,
          save_every: 0,
          save_time: 0,
          sample_every: 0,
          seed: 1,
          threads,
        },
        { log: () => undefined },
      );
      alone.push(tokensPerSecond(trainSteps(result.runDir)));
    }
    const viaApi = median(jobs.map((j) => tokensPerSecond(j.steps)));
    const direct = median(alone);
    const { steps, batchSize, contextLength } = jobs[0];
    console.log(`GPT-2 ${SMALL.nLayer} layers x ${SMALL.nEmbd}, ${steps.length} steps of ${batchSize} x ${contextLength} tokens (one epoch of ${MESSAGES_PER_FILE.toLocaleString('en-US')} messages of each of examples/chat/train's logs), ${threads} threads, ${ROUNDS} rounds taking turns\n`);
    console.log('| run | tokens/s (median step, median of the rounds) | vs lib/train |');
    console.log('|---|---|---|');
    console.log(`| lib/train alone | ${Math.round(direct).toLocaleString('en-US')} | 1.00 |`);
    console.log(`| a fine-tuning job through /v1/fine_tuning/jobs | ${Math.round(viaApi).toLocaleString('en-US')} | ${(viaApi / direct).toFixed(2)} |`);
    const seconds = (ms: number[]): string => (median(ms) / 1000).toFixed(1);
    console.log(`\na job read its files in ${seconds(jobs.map((j) => j.validatedMs))} s; from its creation to its model's first answer: ${seconds(jobs.map((j) => j.answeredMs))} s (medians)`);
    await servingWhileTraining(dir, threads);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
