// A fine-tuning job's training within the server's memory budget (memory_budget_mb), which the served models share
// with it: a job that needs more than the whole budget fails saying what to change; one that needs the room of an
// idle model has it unloaded; one that needs the room of a model in use waits, saying so, until the model is free;
// a request for a model that will not fit beside a training job is refused at once, saying so.
// Over real HTTP, with the openai client, and the budget checked in the server's own accounts.
import fs from 'node:fs';
import t, { type Test } from 'tap';
import OpenAI, { toFile } from 'openai';
import type { FineTuningJob } from 'openai/resources/fine-tuning/jobs/jobs';
import { trainingMemoryBytes } from '../../lib/train/train';
import { TINY, makeModels, startServer, tempDir, type Running } from './helpers';

const MB = 1024 * 1024;
const QUESTION = 'Hi, how are you today?';
const LINE = `${JSON.stringify({ messages: [{ role: 'user', content: QUESTION }, { role: 'assistant', content: 'Fine, thanks.' }] })}\n`;

let dir: string;
t.before(async () => {
  dir = tempDir('fine-tuning-memory');
  await makeModels(dir, { general: 1 }, QUESTION, 4);
});
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

async function serve(t: Test, budgetMb: number, ftDir: string): Promise<{ srv: Running; client: OpenAI }> {
  const srv = await startServer({ memory_budget_mb: budgetMb, models: [{ key: 'general', restore_from: 'general' }], fine_tuning: { dir: ftDir, threads: 1 } }, dir);
  t.teardown(() => srv.close());
  return { srv, client: new OpenAI({ apiKey: 'unused', baseURL: `${srv.url}/v1`, maxRetries: 0 }) };
}

async function startJob(client: OpenAI, epochs = 1): Promise<FineTuningJob> {
  const file = await client.files.create({ file: await toFile(Buffer.from(LINE.repeat(8)), 'train.jsonl'), purpose: 'fine-tune' });
  return client.fineTuning.jobs.create({ model: 'general', training_file: file.id, method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: epochs } } } });
}

async function waitFor(client: OpenAI, id: string, done: (job: FineTuningJob) => boolean, look: () => Promise<unknown> = async () => undefined): Promise<FineTuningJob> {
  for (const until = Date.now() + 120_000; Date.now() < until; await new Promise((r) => setTimeout(r, 50))) {
    await look();
    const job = await client.fineTuning.jobs.retrieve(id);
    if (done(job)) return job;
  }
  throw new Error(`job ${id}: not there in 120 s`);
}

async function messages(client: OpenAI, id: string): Promise<string[]> {
  return (await client.fineTuning.jobs.listEvents(id, { limit: 100 })).data.map((e) => e.message).reverse();
}

t.test('a job whose training needs more than the whole budget fails, saying what to change', async (t) => {
  // Room for the model served (about 37 MB with its requests' KV caches), not for training it (about 50 MB).
  const { client } = await serve(t, 42, 'ft-small');
  const job = await startJob(client);
  const failed = await waitFor(client, job.id, (j) => j.status === 'failed');
  t.match(failed.error, { code: 'training_failed', message: /^training needs \d+ MB, more than the server's whole memory budget: raise memory_budget_mb in the server's config, or train a LoRA adapter \(hyperparameters\.lora_rank\), which needs less$/ });
  t.notOk((await messages(client, job.id)).includes('Fine-tuning job started'), 'it never started');
});

t.test('an idle model is unloaded to make room for training; one in use is waited for', async (t) => {
  // Room for the model or for the training, not both.
  const trainingMb = trainingMemoryBytes({ batch_size: 1, context_length: TINY.nCtx }, TINY) / MB;
  const { srv, client } = await serve(t, Math.ceil(trainingMb) + 10, 'ft-shared');
  const registry = srv.server.service.registry;
  const budget = (Math.ceil(trainingMb) + 10) * MB;
  const usage: number[] = [];
  const sampler = setInterval(() => usage.push(registry.reservedBytes), 5);
  t.teardown(() => clearInterval(sampler));

  // Loaded and idle: unloaded for the job.
  await client.completions.create({ model: 'general', prompt: QUESTION, max_tokens: 2 });
  t.equal(registry.status()[0].state, 'loaded');
  const first = await startJob(client);
  t.equal((await waitFor(client, first.id, (j) => j.status === 'succeeded' || j.status === 'failed')).status, 'succeeded');
  const evicted = srv.logs.find((l) => l.msg === 'evicting model to make room');
  t.match(evicted, { model: 'general', for: `fine-tuning job ${first.id}` }, 'the idle model made room');
  t.notOk((await messages(client, first.id)).some((m) => m.startsWith('Waiting for')), 'nothing to wait for');

  // In use (a request's lease, held here): the job waits, says so, and trains once the model is free.
  const lease = await registry.acquire('general');
  const second = await startJob(client);
  let said: string[] = [];
  const waiting = await waitFor(client, second.id, () => said.some((m) => m.startsWith('Waiting for')), async () => (said = await messages(client, second.id)));
  t.equal(waiting.status, 'queued', 'queued while it waits');
  t.match(said.find((m) => m.startsWith('Waiting for')), /^Waiting for \d+ MB of the server's memory budget \(memory_budget_mb\) to train in: the models in use hold it$/);
  t.notOk(said.includes('Fine-tuning job started'));
  t.ok(lease.value.generator, 'the lease is still good');
  lease.release();
  t.equal((await waitFor(client, second.id, (j) => j.status === 'succeeded' || j.status === 'failed')).status, 'succeeded');
  t.ok(usage.every((bytes) => bytes <= budget), `the budget held throughout (at most ${Math.max(...usage)} of ${budget} bytes)`);
  t.ok(srv.logs.some((l) => l.msg === 'memory released' && l.for === `fine-tuning job ${second.id}`), 'the room given back');

  // The model serves again after the job.
  const reply = await client.completions.create({ model: 'general', prompt: QUESTION, max_tokens: 2 });
  t.equal(reply.choices.length, 1);
});

t.test('while a job trains, a request for a model that does not fit beside it is refused at once, saying why', async (t) => {
  const trainingMb = trainingMemoryBytes({ batch_size: 1, context_length: TINY.nCtx }, TINY) / MB;
  const { srv, client } = await serve(t, Math.ceil(trainingMb) + 10, 'ft-crowded');
  const job = await startJob(client, 1000);
  await waitFor(client, job.id, (j) => j.status === 'running');

  const started = Date.now();
  const answer = await fetch(`${srv.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'general', prompt: QUESTION, max_tokens: 2 }) });
  t.ok(Date.now() - started < 5000, 'not left to wait for the request timeout');
  t.equal(answer.status, 503);
  t.equal(answer.headers.get('retry-after'), '60');
  const body = await answer.json() as { error: { message: string; type: string } };
  t.match(body.error.message, new RegExp(`^model "general" \\(\\d+ MB\\) does not fit in the memory budget of \\d+ MB \\(memory_budget_mb\\) beside the memory held by fine-tuning job ${job.id} \\(\\d+ MB\\) until it ends or is paused: the model can load after that$`));

  // Paused, the job gives its memory back, and the model serves.
  let said: string[] = [];
  await client.fineTuning.jobs.pause(job.id);
  await waitFor(client, job.id, () => said.some((m) => m.startsWith('Paused at step')), async () => (said = await messages(client, job.id)));
  const reply = await client.completions.create({ model: 'general', prompt: QUESTION, max_tokens: 2 });
  t.equal(reply.choices.length, 1);
  await client.fineTuning.jobs.cancel(job.id);
});
