// OpenAI's fine-tuning API over real HTTP on 127.0.0.1, driven by the official `openai` client: a file of
// conversations uploaded, a job that fine-tunes a tiny model on it until it answers as the file taught, the job's
// events, checkpoints and result file against its run's metrics log, the model served under its ft: name (and again
// after a restart), a job paused and resumed and one interrupted by a shutdown going on from their checkpoints with
// no step trained twice, a queued job cancelled, and the errors.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import OpenAI, { toFile } from 'openai';
import type { FineTuningJob } from 'openai/resources/fine-tuning/jobs/jobs';
import { readMetrics } from '../../lib/train/metrics';
import { listCheckpoints } from '../../lib/train/checkpoint';
import { makeModels, request, startServer, tempDir, type Running } from './helpers';

const QUESTION = 'Hi, how are you today?';
const ANSWER = 'I am a tiny model and I am doing fine.';
const OTHER_ANSWER = 'Another answer, to another question.';

let dir: string;
let config: Record<string, unknown>;
let srv: Running;
let client: OpenAI;

function conversations(count: number, answer = ANSWER): string {
  return Array.from({ length: count }, () => `${JSON.stringify({ messages: [{ role: 'user', content: QUESTION }, { role: 'assistant', content: answer }] })}\n`).join('');
}

async function start(): Promise<void> {
  srv = await startServer(config, dir);
  client = new OpenAI({ apiKey: 'unused', baseURL: `${srv.url}/v1`, maxRetries: 0 });
}

async function upload(name: string, text: string): Promise<string> {
  return (await client.files.create({ file: await toFile(Buffer.from(text), name), purpose: 'fine-tune' })).id;
}

const FINISHED = ['succeeded', 'failed', 'cancelled'];

async function waitFor(id: string, done: (job: FineTuningJob) => boolean, what: string): Promise<FineTuningJob> {
  for (const until = Date.now() + 120_000; Date.now() < until; await new Promise((r) => setTimeout(r, 50))) {
    const job = await client.fineTuning.jobs.retrieve(id);
    if (done(job)) return job;
    if (FINISHED.includes(job.status)) throw new Error(`job ${id} ended ${job.status} before ${what}: ${JSON.stringify(job.error)}`);
  }
  throw new Error(`job ${id}: no ${what} in 120 s`);
}

async function chat(model: string): Promise<string | null> {
  const r = await client.chat.completions.create({ model, messages: [{ role: 'user', content: QUESTION }], temperature: 0, max_tokens: 24 });
  return r.choices[0].message.content;
}

t.before(async () => {
  dir = tempDir('fine-tuning');
  await makeModels(dir, { general: 1 }, QUESTION, 4);
  // A rate for a tiny random model to learn one answer by heart in a few dozen steps.
  config = { models: [{ key: 'general', restore_from: 'general', sampling: { top_k: 7 } }], fine_tuning: { dir: 'ft', learning_rate: 0.01, lora_learning_rate: 0.03, threads: 1 } };
  await start();
});
t.teardown(() => srv.close());

t.test('a job fine-tunes the model on the uploaded conversations, and its model answers as they taught', async (t) => {
  const before = await chat('general');
  t.not(before, ANSWER, 'the model did not know the answer before');
  const training = await upload('train.jsonl', conversations(30));
  const validation = await upload('valid.jsonl', conversations(8));
  const created = await client.fineTuning.jobs.create({
    model: 'general', training_file: training, validation_file: validation, suffix: 'tiny', seed: 7,
    method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 12 } } }, metadata: { purpose: 'test' },
  });
  t.match(created, { object: 'fine_tuning.job', model: 'general', status: 'validating_files', training_file: training, validation_file: validation, seed: 7, fine_tuned_model: null, hyperparameters: { n_epochs: 12, batch_size: 'auto', learning_rate_multiplier: 'auto' } });
  const job = await waitFor(created.id, (j) => j.status === 'succeeded', 'success');

  const name = `ft:general:personal:tiny:${created.id.slice('ftjob-'.length, 'ftjob-'.length + 8)}`;
  t.equal(job.fine_tuned_model, name, "the model is named by OpenAI's pattern");
  t.match(job.hyperparameters, { n_epochs: 12, batch_size: 1, learning_rate_multiplier: 1 }, 'the hyperparameters as trained');
  t.ok(job.finished_at !== null && job.finished_at >= job.created_at);

  // The run on disk, which the API's answers must agree with.
  const runDir = path.join(dir, 'ft', 'jobs', created.id);
  const metrics = readMetrics(path.join(runDir, 'metrics.jsonl'));
  const steps = metrics.filter((r) => r.type === 'train');
  t.same(steps.map((r) => r.step), Array.from({ length: steps.length }, (_, i) => i + 1), 'every step once, in order');
  t.equal(steps.length % 12, 0, 'twelve epochs of whole steps');
  const contextLength = (job.trained_tokens as number) / steps.length;
  t.ok(Number.isInteger(contextLength) && contextLength > 8 && contextLength <= 128, `trained_tokens: steps x ${contextLength} tokens`);
  t.ok(steps[steps.length - 1].loss < steps[0].loss / 4, `the loss fell: ${steps[0].loss.toFixed(3)} -> ${steps[steps.length - 1].loss.toFixed(3)}`);
  t.ok(metrics.some((r) => r.type === 'val'), 'the validation file was validated on');

  // The result file: a line per step, as the metrics log has them.
  t.equal(job.result_files.length, 1);
  const result = await client.files.retrieve(job.result_files[0]);
  t.match(result, { purpose: 'fine-tune-results', filename: 'step_metrics.csv' });
  const csv = (await (await client.files.content(job.result_files[0])).text()).trim().split('\n');
  t.equal(csv[0], 'step,train_loss,valid_loss');
  t.same(csv.slice(1).map((line) => Number(line.split(',')[1])), steps.map((r) => r.loss), 'the losses of the metrics log');

  // Events, newest first, paged as the SDK pages them.
  const events = [];
  for await (const e of client.fineTuning.jobs.listEvents(created.id, { limit: 7 })) events.push(e);
  t.match(events[0], { object: 'fine_tuning.job.event', level: 'info', message: 'The job has successfully completed' });
  t.ok(events.some((e) => e.message === `New fine-tuned model created: ${name}`));
  const stepEvents = events.filter((e) => e.type === 'metrics' && (e.data as { train_loss?: number }).train_loss !== undefined);
  t.same(stepEvents.map((e) => (e.data as { step: number }).step), steps.map((r) => r.step).reverse(), 'a metrics event per step, newest first, across pages');
  t.same(stepEvents.map((e) => (e.data as { train_loss: number }).train_loss), steps.map((r) => r.loss).reverse());
  t.equal(new Set(events.map((e) => e.id)).size, events.length, 'no event twice across pages');

  // Checkpoints: the last three epochs', as the run folder keeps them.
  const checkpoints = [];
  for await (const c of client.fineTuning.jobs.checkpoints.list(created.id)) checkpoints.push(c);
  const kept = listCheckpoints(runDir).map((c) => c.step).reverse();
  t.equal(kept.length, 3);
  t.same(checkpoints.map((c) => c.step_number), kept, 'the checkpoints on disk, newest first');
  t.same(checkpoints.map((c) => c.fine_tuned_model_checkpoint), kept.map((s) => `${name}:ckpt-step-${s}`));
  t.same(checkpoints.map((c) => c.metrics.train_loss), kept.map((s) => steps[s - 1].loss), "each one's training loss");

  // The model, served beside the others.
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  t.same(ids, ['general', name]);
  t.equal(await chat(name), ANSWER, 'the fine-tuned model answers as the file taught it');
  t.equal(await chat('general'), before, 'the model it started from is unchanged');

  const listed = await client.fineTuning.jobs.list({ metadata: { purpose: 'test' } } as never);
  t.same(listed.data.map((j) => j.id), [created.id], 'found by its metadata');

  // A restart serves it again, from what is on disk.
  await srv.close();
  await start();
  t.equal(await chat(name), ANSWER, 'served again after a restart');
  t.equal((await client.fineTuning.jobs.retrieve(created.id)).status, 'succeeded');

  // An adapter of the fine-tuned model, taught another answer: served over it, as a config entry of it would be.
  const another = await upload('another.jsonl', conversations(30, OTHER_ANSWER));
  const loraJob = await client.fineTuning.jobs.create({ model: name, training_file: another, hyperparameters: { n_epochs: 8, lora_rank: 4 } as never, suffix: 'lora', seed: 7 });
  const lora = await waitFor(loraJob.id, (j) => j.status === 'succeeded', 'the adapter');
  const adapterName = lora.fine_tuned_model as string;
  t.match(lora.hyperparameters, { lora_rank: 4, learning_rate_multiplier: 1 });
  const adapterDir = listCheckpoints(path.join(dir, 'ft', 'jobs', lora.id)).at(-1)?.dir as string;
  t.ok(fs.existsSync(path.join(adapterDir, 'adapter_model.safetensors')), 'its checkpoints are PEFT adapters');
  const served = (await request(`${srv.url}/models/list`)).json().models as { model_key: string; adapter: string | null; base: string | null; sampling: { top_k: number } }[];
  t.match(served.find((m) => m.model_key === adapterName), { adapter: path.basename(adapterDir), base: name }, 'an adapter over the model it was trained over');
  t.same(served.map((m) => m.sampling.top_k), [7, 7, 7], "each with the sampling defaults of the model it was trained from, general's");
  const adapted = await chat(adapterName);
  t.not(adapted, ANSWER, 'it answers otherwise than the model it adapts');
  const configured = await startServer({ models: [
    { key: 'ft', restore_from: path.relative(dir, listCheckpoints(runDir).at(-1)?.dir as string), system_messages: 'ignore' },
    { key: 'adapter', base: 'ft', adapter: path.relative(dir, adapterDir), system_messages: 'ignore' },
  ] }, dir);
  const viaConfig = await new OpenAI({ apiKey: 'unused', baseURL: `${configured.url}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'adapter', messages: [{ role: 'user', content: QUESTION }], temperature: 0, max_tokens: 24 });
  await configured.close();
  t.equal(adapted, viaConfig.choices[0].message.content, 'the same reply as the adapter configured by hand');
  const refused = await client.models.delete(name).catch((e: unknown) => e);
  t.ok(refused instanceof OpenAI.BadRequestError && refused.message.includes(`${adapterName} is an adapter over "${name}": delete it first`), 'a model with an adapter over it is not deleted');
  t.same(await client.models.delete(adapterName), { id: adapterName, object: 'model', deleted: true });

  // Deleted: served no more, now or after a restart; its weights stay in the job's folder.
  t.same(await client.models.delete(name), { id: name, object: 'model', deleted: true });
  const gone = await chat(name).catch((e: unknown) => e);
  t.ok(gone instanceof OpenAI.NotFoundError, 'a request for it: 404');
  const notDeleted = await client.models.delete('general').catch((e: unknown) => e);
  t.ok(notDeleted instanceof OpenAI.NotFoundError && /only the models of this server's fine-tuning jobs/.test(notDeleted.message), 'a configured model is not deleted');
  await srv.close();
  await start();
  const after = [];
  for await (const m of client.models.list()) after.push(m.id);
  t.same(after, ['general'], 'not served after a restart either');
  t.equal(listCheckpoints(runDir).length, 3, 'its checkpoints kept');
  t.equal((await client.fineTuning.jobs.retrieve(created.id)).fine_tuned_model, name, 'the job still names it');
});

t.test('a job paused goes on from its checkpoint when resumed, and one interrupted by a shutdown when the server starts again', async (t) => {
  // In the chat format, as bin/import-chat writes it: trained on as it is.
  const training = await upload('mom.train', `1|mom|${QUESTION} <EOM>\n0|mom|${OTHER_ANSWER} <EOM>\n\n`.repeat(30));
  const job = await client.fineTuning.jobs.create({ model: 'general', training_file: training, hyperparameters: { n_epochs: 20 }, seed: 3 });
  const metricsFile = path.join(dir, 'ft', 'jobs', job.id, 'metrics.jsonl');
  const trainedSteps = () => readMetrics(metricsFile).filter((r) => r.type === 'train').length;
  await waitFor(job.id, (j) => j.status === 'running' && trainedSteps() >= 5, 'five steps');

  const paused = await client.fineTuning.jobs.pause(job.id);
  t.equal(paused.status, 'paused');
  const pausedAt = await new Promise<number>((resolve) => {
    const poll = () => {
      void client.fineTuning.jobs.listEvents(job.id, { limit: 1 }).then((page) => {
        const m = /^Paused at step (\d+), saved$/.exec(page.data[0]?.message ?? '');
        if (m) resolve(Number(m[1]));
        else setTimeout(poll, 20);
      });
    };
    poll();
  });
  const runDir = path.join(dir, 'ft', 'jobs', job.id);
  t.equal(listCheckpoints(runDir).at(-1)?.step, pausedAt, 'a checkpoint of the step it paused at');
  await new Promise((r) => setTimeout(r, 300));
  t.equal(trainedSteps(), pausedAt, 'no step while paused');

  t.equal((await client.fineTuning.jobs.resume(job.id)).status, 'queued');
  await waitFor(job.id, () => trainedSteps() >= pausedAt + 5, 'five more steps');
  await srv.close();
  const stoppedAt = trainedSteps();
  t.equal(listCheckpoints(runDir).at(-1)?.step, stoppedAt, 'the shutdown saved the step it stopped at');
  t.equal((JSON.parse(fs.readFileSync(path.join(runDir, 'job.json'), 'utf8')) as { job: FineTuningJob }).job.status, 'running', 'on disk, still to be trained');

  await start();
  const done = await waitFor(job.id, (j) => j.status === 'succeeded', 'success after the restart');
  const steps = readMetrics(metricsFile).filter((r) => r.type === 'train').map((r) => r.step);
  t.same(steps, Array.from({ length: steps.length }, (_, i) => i + 1), 'every step once: none lost, none trained twice');
  t.equal((done.trained_tokens as number) % steps.length, 0);
  const messages = [];
  for await (const e of client.fineTuning.jobs.listEvents(job.id, { limit: 100 })) messages.push(e.message);
  const order = ['Fine-tuning job paused', `Paused at step ${pausedAt}, saved`, 'Fine-tuning job resumed', `The server is stopping: the job saved step ${stoppedAt} and goes on from it when the server starts again`, 'The server restarted: the job goes on from its last checkpoint', 'The job has successfully completed'];
  t.same(messages.filter((m) => order.includes(m)).reverse(), order, 'the events tell what happened, in order');
  const served = (await request(`${srv.url}/models/list`)).json().models as { model_key: string; audience: string; prompt_format: string }[];
  t.match(served.find((m) => m.model_key === done.fine_tuned_model), { prompt_format: 'chat', audience: 'mom' }, 'a chatbot answering as the audience of its chat-format data');
  t.equal(await chat(done.fine_tuned_model as string), OTHER_ANSWER, 'as the file taught it');
});

t.test('a queued job cancelled never trains; a finished job cannot be cancelled', async (t) => {
  const training = await upload('c.jsonl', conversations(10));
  // Jobs train in the order their files are read: the second is created once the first trains.
  const first = await client.fineTuning.jobs.create({ model: 'general', training_file: training, hyperparameters: { n_epochs: 200 } });
  await waitFor(first.id, (j) => j.status === 'running', 'the first running');
  const second = await client.fineTuning.jobs.create({ model: 'general', training_file: training });
  await waitFor(second.id, (j) => j.status !== 'validating_files', 'the second read');
  t.equal((await client.fineTuning.jobs.retrieve(second.id)).status, 'queued', 'one job trains at a time');
  t.equal((await client.fineTuning.jobs.cancel(second.id)).status, 'cancelled');
  t.equal((await client.fineTuning.jobs.cancel(first.id)).status, 'cancelled');
  await new Promise((r) => setTimeout(r, 500));
  t.same(listCheckpoints(path.join(dir, 'ft', 'jobs', second.id)), [], 'the queued job never trained');
  t.equal((await client.fineTuning.jobs.retrieve(first.id)).fine_tuned_model, null, 'a cancelled job has no model');
  const again = await client.fineTuning.jobs.cancel(first.id).catch((e: unknown) => e);
  t.ok(again instanceof OpenAI.BadRequestError && again.code === 'invalid_job_state', 'cancelled already: 400');
});

t.test('bad requests are refused naming the field; bad files fail the job with the reason', async (t) => {
  const training = await upload('ok.jsonl', conversations(10));
  const refused = async (body: Record<string, unknown>) => {
    const r = await request(`${srv.url}/v1/fine_tuning/jobs`, { body });
    return [r.status, (r.json().error as Record<string, unknown>).param, (r.json().error as Record<string, unknown>).message];
  };
  t.match(await refused({ model: 'nope', training_file: training }), [404, 'model', /no model "nope"/]);
  t.match(await refused({ model: 'general', training_file: 'file-missing' }), [400, 'training_file', /no file "file-missing"/]);
  t.match(await refused({ model: 'general' }), [400, 'training_file', /must be the id of a file/]);
  t.match(await refused({ model: 'general', training_file: training, method: { type: 'dpo' } }), [400, 'method.type', /must be "supervised"/]);
  t.match(await refused({ model: 'general', training_file: training, hyperparameters: { n_epochs: 0 } }), [400, 'hyperparameters.n_epochs', /"auto" or an integer/]);
  t.match(await refused({ model: 'general', training_file: training, hyperparameters: { warmup: 3 } }), [400, 'hyperparameters.warmup', /unsupported hyperparameter/]);
  t.match(await refused({ model: 'general', training_file: training, suffix: 'a:b' }), [400, 'suffix', /letters, digits/]);
  t.match(await refused({ model: 'general', training_file: training, integrations: [{ type: 'wandb', wandb: { project: 'p' } }] }), [400, 'integrations', /not supported/]);
  t.match(await refused({ model: 'general', training_file: training, hyperparameters: {}, method: { type: 'supervised', supervised: { hyperparameters: {} } } }), [400, 'hyperparameters', /not both/]);
  const missing = await client.fineTuning.jobs.retrieve('ftjob-nope').catch((e: unknown) => e);
  t.ok(missing instanceof OpenAI.NotFoundError, 'an unknown job: 404');

  // Nothing to learn (a system message alone, which the chat format has no place for): the job fails, saying why.
  const silent = await upload('system.jsonl', `${JSON.stringify({ messages: [{ role: 'system', content: 'You are helpful.' }] })}\n`);
  const job = await client.fineTuning.jobs.create({ model: 'general', training_file: silent });
  const failed = await waitFor(job.id, (j) => j.status === 'failed', 'failure');
  t.match(failed, { status: 'failed', error: { code: 'invalid_file', param: 'training_file', message: /system\.jsonl holds no message to train on/ } });
  t.match((await client.fineTuning.jobs.listEvents(job.id, { limit: 1 })).data[0], { level: 'error', message: failed.error?.message });
  // The model's folder has no vocabulary of its own, which a warning says: by the folder's name, not where it lies.
  const events = (await client.fineTuning.jobs.listEvents(job.id, { limit: 100 })).data.map((e) => e.message);
  t.ok(events.includes("general has no vocabulary (encoder.json + vocab.bpe, vocab.json + merges.txt, or tokenizer.json): using GPT-2's, whose size its vocab_size (50257) matches"), events.join('\n'));
  t.notOk(events.some((message) => message.includes(dir)), 'no event tells where the server keeps its files');
});

t.test('with fine-tuning off, its routes say how to turn it on', async (t) => {
  const off = await startServer({ models: [{ key: 'general', restore_from: 'general' }] }, dir);
  t.teardown(() => off.close());
  const r = await request(`${off.url}/v1/fine_tuning/jobs`);
  t.equal(r.status, 404);
  t.match(r.json(), { error: { message: /bin\/serve --fine_tuning/ } });
});
