// Fine-tuning jobs as OpenAI's fine-tuning API has them (routes/fine_tuning.ts): a job takes a file of conversations
// uploaded to /v1/files, fine-tunes one of the served models on it with lib/train, and serves the result under a
// name of OpenAI's pattern, `ft:<model>:personal:<suffix>:<id>`. One job trains at a time; the others wait their turn.
// A job is its folder, <fine_tuning.dir>/jobs/<id>/, which is also its training run: job.json (rewritten atomically
// at each change), events.jsonl (appended), its files made chat-format training data, and the run's checkpoints. A
// job paused, or training when the server stops, saves a checkpoint first and goes on from it when resumed, or when
// the server starts again: no step already trained is lost.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { loadDataset } from '../data/dataset';
import type { GPT2Config } from '../engine/model';
import type { ModelFolder } from '../formats/model_folder';
import { resolveModel } from '../formats/resolve_model';
import { importChatsOffThread } from '../import/thread';
import { modelTokenizer } from '../tokenizer';
import { listCheckpoints } from '../train/checkpoint';
import { readMetrics, type MetricRecord } from '../train/metrics';
import { train, trainingMemoryBytes } from '../train/train';
import { namingFile, writeTextAtomic } from '../util/atomic_file';
import { linesFromEnd } from '../util/lines';
import type { FineTuningConfig } from './config';
import { HttpError, withoutPaths } from './errors';
import { storedDataKind, type FileStore } from './files';
import type { Log } from './log';
import { readRecords, type RecordKind } from './records';
import { isJsonObject } from '../util/json_object';
import { ModelUnavailableError, type MemoryClaim } from './model_registry';
import { mb } from '../util/format';

export type JobStatus = 'validating_files' | 'queued' | 'running' | 'paused' | 'succeeded' | 'failed' | 'cancelled';

// A hyperparameter left to the job ("auto") until its files are read, then the value it trains with.
export interface Hyperparameters {
  batch_size: 'auto' | number;               // windows of the context's length in a step
  learning_rate_multiplier: 'auto' | number; // of fine_tuning.learning_rate
  n_epochs: 'auto' | number;                 // passes over the training file's tokens
  lora_rank: 'auto' | number;                // dixie's own: an adapter of this rank over the frozen model; 0, every weight ("auto": fine_tuning.lora_rank)
}

export interface JobError {
  code: string;
  message: string;
  param: string | null;
}

export interface FineTuningJob {
  object: 'fine_tuning.job';
  id: string;
  created_at: number;
  error: JobError | null;
  fine_tuned_model: string | null;
  finished_at: number | null;
  hyperparameters: Hyperparameters;
  model: string;
  organization_id: string;
  result_files: string[];
  seed: number;
  status: JobStatus;
  trained_tokens: number | null;
  training_file: string;
  validation_file: string | null;
  estimated_finish: number | null;
  integrations: null;
  metadata: Record<string, string> | null;
  method: { type: 'supervised'; supervised: { hyperparameters: Hyperparameters } };
  user_provided_suffix: string | null;
}

// What a change of a job's status changes.
type JobStatusFields = Pick<FineTuningJob, 'status' | 'error' | 'finished_at' | 'estimated_finish'>;
const statusOf = ({ status, error, finished_at, estimated_finish }: FineTuningJob): JobStatusFields => ({ status, error, finished_at, estimated_finish });

export interface JobEvent {
  object: 'fine_tuning.job.event';
  id: string;
  created_at: number;
  level: 'info' | 'warn' | 'error';
  message: string;
  data: Record<string, unknown>;
  type: 'message' | 'metrics';
}

export interface JobCheckpoint {
  object: 'fine_tuning.job.checkpoint';
  id: string;
  created_at: number;
  fine_tuned_model_checkpoint: string;
  fine_tuning_job_id: string;
  step_number: number;
  metrics: { step: number; train_loss?: number; valid_loss?: number };
}

// A job as the API asks for it, its fields checked at the edge.
export interface JobRequest {
  model: string;
  trainingFile: string;
  validationFile: string | null;
  hyperparameters: Hyperparameters;
  suffix: string | null;
  seed: number | null;
  metadata: Record<string, string> | null;
}

// What the server gives the jobs: the uploaded files, the served models to start from, and a way to serve the result.
export interface FineTuningHost {
  files: FileStore;
  // The folder of a served model's weights; an HttpError when the model cannot be fine-tuned.
  modelFolder(key: string): ModelFolder;
  serve(name: string, checkpoint: string, from: string, adapter: boolean): void;  // from: the model it was trained from
  unserve(name: string): void;
  // Bytes of the served models' memory budget (memory_budget_mb) for training, held until released: idle models
  // are unloaded to make room, and a job waits for busy ones as a model's load would.
  claimMemory(label: string, bytes: number, signal: AbortSignal): Promise<MemoryClaim>;
  log: Log;
}

// What lib/train is asked for, worked out from the files once they are read.
interface TrainingPlan {
  base: string;           // the model folder training starts from
  tokens: number;         // of the training data
  contextLength: number;
  batchSize: number;
  epochs: number;
  stepsPerEpoch: number;
  steps: number;
  learningRate: number;
  loraRank: number;
  validationBatches: number;  // of VALIDATION_BATCH windows, enough to read the validation data about once; 0: none
}

// job.json: the job as the API shows it, and the plan once there is one.
interface JobRecord {
  job: FineTuningJob;
  plan: TrainingPlan | null;
  modelDeleted?: boolean;  // its model served no more (its weights stay in the job's folder)
}

const JOB_FILE = 'job.json';
const JOB_RECORD: RecordKind<JobRecord> = {
  file: JOB_FILE,
  what: 'a fine-tuning job',
  isRecord: (value, id): value is JobRecord => isJsonObject(value) && isJsonObject(value.job) && value.job.id === id
    && typeof value.job.status === 'string' && typeof value.job.created_at === 'number',
  writtenBefore: [],
};
const EVENTS_FILE = 'events.jsonl';
const TRAINING_DATA = 'training.train';
const VALIDATION_DATA = 'validation.train';
// OpenAI's defaults where a job says "auto": three epochs, a multiplier of one; a batch of one window of the context.
const AUTO = { n_epochs: 3, learning_rate_multiplier: 1, batch_size: 1 };
// Validations in a job with a validation file, spread over its steps, each of at most MAX_VALIDATION_BATCHES.
const VALIDATIONS = 10;
const VALIDATION_BATCH = 2;
const MAX_VALIDATION_BATCHES = 40;
// Checkpoints kept: those of the last epochs, as OpenAI keeps.
const CHECKPOINTS_KEPT = 3;
// A job whose training memory is not granted within this long is said to wait for it: an idle model's unloading to
// make room takes moments, and is no news.
const MEMORY_WAIT_NOTICE_MS = 1000;
// A window shorter than this says nothing a model could learn from.
const MIN_CONTEXT = 8;

const seconds = (ms = Date.now()): number => Math.floor(ms / 1000);
const randomId = (prefix: string): string => `${prefix}-${crypto.randomBytes(12).toString('base64url').replace(/[-_]/g, '0')}`;

// The name the job's model is served under: OpenAI's pattern, the organisation "personal", and the job id's first
// letters. A model fine-tuned from a fine-tuned one is named, as OpenAI names it, after the model at the root.
function fineTunedModelName(job: Pick<FineTuningJob, 'id' | 'model' | 'user_provided_suffix'>): string {
  const root = job.model.startsWith('ft:') ? job.model.split(':')[1] : job.model;
  return `ft:${root}:personal:${job.user_provided_suffix ?? ''}:${job.id.slice('ftjob-'.length, 'ftjob-'.length + 8)}`;
}

export class FineTuningJobs {
  private readonly jobsDir: string;
  private readonly records = new Map<string, JobRecord>();
  private readonly waiting: string[] = [];
  private running: { id: string; stop: AbortController; why: 'cancel' | 'pause' | 'shutdown' | null } | null = null;
  private pumping: Promise<void> | null = null;
  // Jobs reading their files, which they do at once, beside the job training.
  private readonly validating = new Map<string, { stop: AbortController; done: Promise<void> }>();
  private writes: Promise<void> = Promise.resolve();
  // Each job's status fields as its job.json last written has them: what a change not saved goes back to, rather than
  // the status the change found, which may be an earlier change still being written (a pause, then a cancel) and lost
  // with it.
  private readonly onDisk = new Map<string, JobStatusFields>();
  private closed = false;

  constructor(private readonly config: FineTuningConfig, private readonly host: FineTuningHost) {
    this.jobsDir = path.join(config.dir, 'jobs');
  }

  // Reads the jobs of earlier runs of the server: the models of those that succeeded are served again, and those
  // that were not finished go on where they stopped (a training job from its last checkpoint).
  start(): void {
    const found = readRecords(this.jobsDir, JOB_RECORD, this.host.log);
    found.sort((a, b) => a.job.created_at - b.job.created_at || a.job.id.localeCompare(b.job.id));
    for (const record of found) {
      const { job } = record;
      this.records.set(job.id, record);
      this.onDisk.set(job.id, statusOf(job));
      if (job.status === 'succeeded' && job.fine_tuned_model !== null && record.modelDeleted !== true) this.serveResult(record);
      if (job.status === 'running' || job.status === 'queued') {
        this.event(job, 'info', job.status === 'running' ? 'The server restarted: the job goes on from its last checkpoint' : 'The server restarted: the job waits its turn again');
        this.waiting.push(job.id);
      } else if (job.status === 'validating_files') {
        this.event(job, 'info', 'The server restarted: the job reads its files again');
        this.validate(record);
      }
    }
    this.pump();
  }

  // Each change a client asks for (create, cancel, pause, resume, a model's deletion) is answered once it is on disk
  // (save): a crash after the answer must not bring back a job cancelled, or lose one created.
  async create(request: JobRequest): Promise<FineTuningJob> {
    if (this.closed) throw new HttpError(503, 'the server is shutting down', {}, { 'Retry-After': '1' });
    this.host.modelFolder(request.model);
    this.uploaded(request.trainingFile, 'training_file');
    if (request.validationFile !== null) this.uploaded(request.validationFile, 'validation_file');
    const hyperparameters = { ...request.hyperparameters };
    const job: FineTuningJob = {
      object: 'fine_tuning.job',
      id: randomId('ftjob'),
      created_at: seconds(),
      error: null,
      fine_tuned_model: null,
      finished_at: null,
      hyperparameters,
      model: request.model,
      organization_id: 'personal',
      result_files: [],
      seed: request.seed ?? crypto.randomInt(2 ** 31),
      status: 'validating_files',
      trained_tokens: null,
      training_file: request.trainingFile,
      validation_file: request.validationFile,
      estimated_finish: null,
      integrations: null,
      metadata: request.metadata,
      method: { type: 'supervised', supervised: { hyperparameters } },
      user_provided_suffix: request.suffix,
    };
    const record: JobRecord = { job, plan: null };
    fs.mkdirSync(this.dir(job.id), { recursive: true });
    // Listed and validated only once on disk: a job that could not be saved is answered as an error (507 where the
    // disk is full: "nothing of it was kept"), and so must be no job, neither listed nor trained, its folder gone.
    try {
      await this.save(record);
    } catch (err) {
      fs.rmSync(this.dir(job.id), { recursive: true, force: true });
      throw err;
    }
    this.records.set(job.id, record);
    this.event(job, 'info', `Validating training file: ${job.training_file}${job.validation_file ? ` and validation file: ${job.validation_file}` : ''}`);
    const answer = structuredClone(job);
    // A shutdown meanwhile validates it at the next start, as any job saved while validating its files.
    if (!this.closed) this.validate(record);
    return answer;
  }

  get(id: string): FineTuningJob {
    const record = this.records.get(id);
    if (!record) throw new HttpError(404, `no fine-tuning job "${id}"`, { field: 'fine_tuning_job_id', code: 'fine_tuning_job_not_found' });
    return record.job;
  }

  // Newest first.
  list(): FineTuningJob[] {
    return [...this.records.values()].map((r) => r.job).reverse();
  }

  // Newest first, as OpenAI lists them, read from the end of the log as far as the reader goes: a long job has an
  // event a step, and a client polling its newest must not cost the server the whole log each time.
  events(id: string): Iterable<JobEvent> {
    this.get(id);
    const file = path.join(this.dir(id), EVENTS_FILE);
    return (function* () {
      for (const line of linesFromEnd(file)) {
        try {
          yield JSON.parse(line) as JobEvent;
        } catch {
          // a torn line (a kill mid-append)
        }
      }
    })();
  }

  // The checkpoints the job's run keeps, newest first, with the losses its metrics log has for their steps.
  checkpoints(id: string): JobCheckpoint[] {
    const job = this.get(id);
    const runDir = this.dir(id);
    const metrics = readMetrics(path.join(runDir, 'metrics.jsonl'));
    const lossAt = (type: MetricRecord['type'], step: number) => metrics.find((r) => r.type === type && r.step === step)?.loss;
    return listCheckpoints(runDir).reverse().map(({ step, dir }) => {
      const train = lossAt('train', step);
      const valid = lossAt('val', step);
      return {
        object: 'fine_tuning.job.checkpoint',
        id: `ftckpt-${job.id.slice('ftjob-'.length)}-${step}`,
        created_at: seconds(fs.statSync(dir).mtimeMs),
        fine_tuned_model_checkpoint: `${fineTunedModelName(job)}:ckpt-step-${step}`,
        fine_tuning_job_id: job.id,
        step_number: step,
        metrics: { step, ...(train !== undefined && { train_loss: train }), ...(valid !== undefined && { valid_loss: valid }) },
      };
    });
  }

  // The job's model is served no more, now or after a restart; its checkpoints stay in the job's folder.
  async deleteModel(name: string): Promise<void> {
    const record = [...this.records.values()].find((r) => r.job.fine_tuned_model === name && r.modelDeleted !== true);
    if (!record) throw new HttpError(404, `no fine-tuned model "${name}": only the models of this server's fine-tuning jobs can be deleted`, { field: 'model', code: 'model_not_found' });
    this.host.unserve(name);
    record.modelDeleted = true;
    const saved = this.save(record);
    this.event(record.job, 'info', `Fine-tuned model deleted: ${name}`);
    try {
      await saved;
    } catch (err) {
      // Served again, as job.json has it and as the next start would serve it.
      record.modelDeleted = false;
      this.serveResult(record);
      this.event(record.job, 'warn', `The deletion of ${name} could not be saved: it is served again`);
      throw err;
    }
  }

  // A job not yet finished ends without a model; one training stops after its step.
  async cancel(id: string): Promise<FineTuningJob> {
    const record = this.record(id);
    const { job } = record;
    if (job.status === 'succeeded' || job.status === 'failed' || job.status === 'cancelled') {
      throw new HttpError(400, `the job is ${job.status} already: there is nothing to cancel`, { field: 'fine_tuning_job_id', code: 'invalid_job_state' });
    }
    const saved = this.finish(record, 'cancelled', null);
    this.event(job, 'info', 'Fine-tuning job cancelled');
    this.stop(id, 'cancel');
    return this.answerOnceSaved(record, saved);
  }

  // A job waiting or training stops, a checkpoint of its last step saved, until resumed.
  async pause(id: string): Promise<FineTuningJob> {
    const record = this.record(id);
    const { job } = record;
    if (job.status !== 'queued' && job.status !== 'running' && job.status !== 'validating_files') {
      throw new HttpError(400, `only a job that is validating its files, queued or running can be paused; this one is ${job.status}`, { field: 'fine_tuning_job_id', code: 'invalid_job_state' });
    }
    const saved = this.setStatus(record, 'paused');
    this.event(job, 'info', 'Fine-tuning job paused');
    this.stop(id, 'pause');
    return this.answerOnceSaved(record, saved);
  }

  async resume(id: string): Promise<FineTuningJob> {
    const record = this.record(id);
    const { job } = record;
    if (job.status !== 'paused') throw new HttpError(400, `only a paused job can be resumed; this one is ${job.status}`, { field: 'fine_tuning_job_id', code: 'invalid_job_state' });
    this.event(job, 'info', 'Fine-tuning job resumed');
    const saved = this.setStatus(record, record.plan === null ? 'validating_files' : 'queued');
    return this.answerOnceSaved(record, saved, () => {
      if (record.plan === null) this.validate(record);
      else {
        this.waiting.push(id);
        this.pump();
      }
    });
  }

  // The job as a client's change left it, once `saved` has put it on disk; the work the change starts (`start`: a
  // resumed job's turn) starts only then. A change that could not be saved is undone, so that the API says what
  // job.json holds, and what a restart would say: the job's status as job.json last has it, and the work the change
  // stopped (its files' reading, its turn, its training, which saved its step and goes on from it) taken up again.
  // Where the job has moved on meanwhile (cancelled, its training ended), what it moved to is written after the
  // change, and stands, or is undone in its turn.
  private async answerOnceSaved(record: JobRecord, saved: Promise<void>, start = (): void => undefined): Promise<FineTuningJob> {
    const { job } = record;
    const answer = structuredClone(job);
    try {
      await saved;
    } catch (err) {
      if (job.status === answer.status) {
        const written = this.onDisk.get(job.id) as JobStatusFields;
        Object.assign(job, written);
        this.event(job, 'warn', `The change to ${answer.status} could not be saved: the job is ${written.status} again`);
        if (written.status === 'validating_files' && !this.closed) this.validate(record);
        else if (written.status === 'queued' || written.status === 'running') {
          this.waiting.unshift(job.id);
          this.pump();
        }
      }
      throw err;
    }
    if (job.status === answer.status && !this.closed) start();
    return answer;
  }

  // Stops the job training (it saves its step first), so that the server can stop; it goes on when the server starts again.
  async close(): Promise<void> {
    this.closed = true;
    this.waiting.length = 0;
    for (const v of this.validating.values()) v.stop.abort();
    if (this.running) this.stop(this.running.id, 'shutdown');
    await Promise.all([...this.validating.values()].map((v) => v.done));
    await this.pumping;
    await this.writes;
  }

  private record(id: string): JobRecord {
    this.get(id);
    return this.records.get(id) as JobRecord;
  }

  private dir(id: string): string {
    return path.join(this.jobsDir, id);
  }

  private uploaded(id: string, field: string): void {
    const file = this.host.files.get(id);
    if (file === null) throw new HttpError(400, `${field}: no file "${id}" (upload it to /v1/files with purpose "fine-tune")`, { field, code: 'invalid_file' });
    if (file.purpose !== 'fine-tune') throw new HttpError(400, `${field}: file "${id}" was uploaded with purpose "${file.purpose}", not "fine-tune"`, { field, code: 'invalid_file' });
  }

  // Wherever the job is: reading its files, waiting its turn, or training (which stops after its step).
  private stop(id: string, why: 'cancel' | 'pause' | 'shutdown'): void {
    this.validating.get(id)?.stop.abort();
    const at = this.waiting.indexOf(id);
    if (at >= 0) this.waiting.splice(at, 1);
    if (this.running?.id !== id) return;
    this.running.why = why;
    this.running.stop.abort();
  }

  // Reads the job's files and plans its training; it then waits its turn to train. A job paused while it read them
  // and resumed reads them again once the first read has given up, which leaves the job to the second.
  private validate(record: JobRecord): void {
    const { job } = record;
    const stop = new AbortController();
    const earlier = this.validating.get(job.id)?.done;
    const done = (async () => {
      try {
        await earlier;
        const plan = await this.plan(job, stop.signal);
        if (stop.signal.aborted) return;
        record.plan = plan;
        job.hyperparameters = { n_epochs: plan.epochs, batch_size: plan.batchSize, learning_rate_multiplier: plan.learningRate / this.baseRate(plan.loraRank), lora_rank: plan.loraRank };
        job.method.supervised.hyperparameters = job.hyperparameters;
        this.setStatus(record, 'queued');
        this.event(job, 'info', `Files validated: ${plan.tokens.toLocaleString('en-US')} tokens of training data, ${plan.steps} steps of ${plan.batchSize} x ${plan.contextLength} tokens (${plan.epochs} epochs)`);
        this.waiting.push(job.id);
        this.pump();
      } catch (err) {
        if (!stop.signal.aborted) this.fail(record, err);
      } finally {
        if (this.validating.get(job.id)?.stop === stop) this.validating.delete(job.id);
      }
    })();
    this.validating.set(job.id, { stop, done });
  }

  private pump(): void {
    if (this.pumping || this.closed) return;
    this.pumping = (async () => {
      for (let id = this.waiting.shift(); id !== undefined && !this.closed; id = this.waiting.shift()) {
        const record = this.records.get(id) as JobRecord;
        await this.run(record);
      }
    })().finally(() => {
      this.pumping = null;
      if (this.waiting.length > 0) this.pump();
    });
  }

  private async run(record: JobRecord): Promise<void> {
    const { job } = record;
    const stop = new AbortController();
    this.running = { id: job.id, stop, why: null };
    let claim: MemoryClaim | null = null;
    try {
      const plan = record.plan as TrainingPlan;
      const options = {
        dataset: path.join(this.dir(job.id), TRAINING_DATA),
        val_dataset: plan.validationBatches > 0 ? path.join(this.dir(job.id), VALIDATION_DATA) : '',
        val_every: plan.validationBatches > 0 ? Math.max(1, Math.round(plan.steps / VALIDATIONS)) : 0,
        val_batch_size: VALIDATION_BATCH,
        val_batch_count: Math.max(1, plan.validationBatches),
        keep_best: false,
        model_name: plan.base,
        restore_from: 'latest',
        checkpoint_dir: this.jobsDir,
        run_name: job.id,
        context_length: plan.contextLength,
        batch_size: plan.batchSize,
        learning_rate: plan.learningRate,
        lora_rank: plan.loraRank,
        stop_after: plan.steps,
        save_every: plan.stepsPerEpoch,
        max_to_keep: CHECKPOINTS_KEPT,
        save_on_ctrlc: true,
        sample_every: 0,
        seed: job.seed,
        threads: this.config.threads,
        background: true,  // the served models' decoding goes first
      };
      claim = await this.claimMemory(job, trainingMemoryBytes(options, resolveModel(plan.base).config as GPT2Config), stop.signal);
      this.setStatus(record, 'running');
      this.event(job, 'info', 'Fine-tuning job started');
      const result = await train(options, {
        log: (line) => this.host.log('debug', 'fine-tuning', { job: job.id, line }),
        signal: stop.signal,
        onMetrics: (r) => this.metricsEvent(record, r),
      });
      if (stop.signal.aborted) {
        if (this.running.why === 'shutdown') this.event(job, 'info', `The server is stopping: the job saved step ${result.step} and goes on from it when the server starts again`);
        else if (this.running.why === 'pause') this.event(job, 'info', `Paused at step ${result.step}, saved`);
        return;
      }
      job.trained_tokens = result.step * plan.batchSize * plan.contextLength;
      job.fine_tuned_model = fineTunedModelName(job);
      const metrics = this.stepMetricsCsv(job.id);
      job.result_files = [(await this.host.files.make(`${job.id} step metrics`, 'step_metrics.csv', 'fine-tune-results', (file) => fs.promises.writeFile(file, metrics, { flag: 'wx' }))).id];
      this.serveResult(record);
      this.event(job, 'info', `New fine-tuned model created: ${job.fine_tuned_model}`);
      this.finish(record, 'succeeded', null);
      this.event(job, 'info', 'The job has successfully completed');
    } catch (err) {
      if (!stop.signal.aborted) this.fail(record, err);
    } finally {
      claim?.release();
      this.running = null;
    }
  }

  // The job's training memory, from the budget the served models share: a job larger than the whole budget fails
  // saying what to change, rather than pushing the server past the memory it was given.
  private async claimMemory(job: FineTuningJob, bytes: number, signal: AbortSignal): Promise<MemoryClaim> {
    const needed = mb(bytes).toLocaleString('en-US');
    const waiting = setTimeout(() => this.event(job, 'info', `Waiting for ${needed} MB of the server's memory budget (memory_budget_mb) to train in: the models in use hold it`), MEMORY_WAIT_NOTICE_MS);
    try {
      return await this.host.claimMemory(`fine-tuning job ${job.id}`, bytes, signal);
    } catch (err) {
      if (err instanceof ModelUnavailableError && err.status === 507) {
        throw new Error(`training needs ${needed} MB, more than the server's whole memory budget: raise memory_budget_mb in the server's config, or train a LoRA adapter (hyperparameters.lora_rank), which needs less`);
      }
      throw err;
    } finally {
      clearTimeout(waiting);
    }
  }

  private fail(record: JobRecord, err: unknown): void {
    const error = err instanceof HttpError
      ? { code: String(err.extra.code ?? 'invalid_file'), message: err.message, param: (err.extra.field as string | undefined) ?? null }
      : { code: 'training_failed', message: withoutPaths((err as Error).message), param: null };
    this.host.log('warn', 'fine-tuning job failed', { job: record.job.id, error: (err as Error).message });
    this.finish(record, 'failed', error);
    this.event(record.job, 'error', error.message);
  }

  // Reads the job's files as chat-format training data (bin/import-chat's reading of fine-tuning JSONL; a file in the
  // chat format already is taken as it is) and works out the steps. The files are copied into the job's folder
  // first, so that deleting an upload harms no job.
  private async plan(job: FineTuningJob, signal: AbortSignal): Promise<TrainingPlan> {
    const dir = this.dir(job.id);
    const folder = this.host.modelFolder(job.model);
    const tokenizer = modelTokenizer(folder, (message) => this.event(job, 'warn', message));
    const prepare = async (id: string, field: string, out: string): Promise<{ tokens: number; longest: number }> => {
      const file = this.host.files.get(id);
      if (file === null) throw new HttpError(400, `${field}: the file "${id}" was deleted before the job read it`, { field, code: 'invalid_file' });
      const content = this.host.files.contentPath(id);
      // Copied and read off the event loop: an upload may be hundreds of megabytes.
      if (storedDataKind(content) === 'chat') {
        await fs.promises.copyFile(content, path.join(dir, out));
      } else {
        const copy = path.join(dir, `${field}.jsonl`);
        await fs.promises.copyFile(content, copy);
        let summary;
        try {
          summary = await importChatsOffThread([copy], { out: path.join(dir, out) });
        } catch (err) {
          throw new HttpError(400, `${field}: ${withoutPaths((err as Error).message)}`, { field, code: 'invalid_file' });
        }
        if (summary.kept === 0) throw new HttpError(400, `${field}: ${file.filename} holds no message to train on`, { field, code: 'invalid_file' });
        for (const warning of summary.warnings) this.event(job, 'warn', `${field}: ${warning}`);
      }
      const dataset = await loadDataset(path.join(dir, out), { tokenizer, onProgress: null });
      try {
        const starts = dataset.source.chunkStarts;
        let longest = 0;
        for (let c = 0; c + 1 < starts.length; c++) longest = Math.max(longest, starts[c + 1] - starts[c]);
        return { tokens: dataset.source.tokenCount, longest };
      } finally {
        dataset.source.close();
      }
    };
    const training = await prepare(job.training_file, 'training_file', TRAINING_DATA);
    const validation = job.validation_file === null || signal.aborted ? null : await prepare(job.validation_file, 'validation_file', VALIDATION_DATA);
    const nCtx = Number((folder.config as { nCtx?: number }).nCtx);
    // A window is the context at most, and must fit in the longest stretch of the data (and of the validation data).
    const contextLength = Math.min(nCtx, training.longest - 1, validation === null ? Infinity : validation.longest - 1);
    if (contextLength < MIN_CONTEXT) {
      const field = validation !== null && validation.longest <= training.longest ? 'validation_file' : 'training_file';
      throw new HttpError(400, `${field}: too little text to train on (${Math.min(training.longest, validation?.longest ?? Infinity)} tokens)`, { field, code: 'invalid_file' });
    }
    const h = job.hyperparameters;
    const epochs = h.n_epochs === 'auto' ? AUTO.n_epochs : h.n_epochs;
    const batchSize = h.batch_size === 'auto' ? AUTO.batch_size : h.batch_size;
    const stepsPerEpoch = Math.max(1, Math.ceil(training.tokens / (batchSize * contextLength)));
    const loraRank = h.lora_rank === 'auto' ? this.config.loraRank : h.lora_rank;
    return {
      base: folder.dir,
      tokens: training.tokens,
      contextLength,
      batchSize,
      epochs,
      stepsPerEpoch,
      steps: epochs * stepsPerEpoch,
      learningRate: this.baseRate(loraRank) * (h.learning_rate_multiplier === 'auto' ? AUTO.learning_rate_multiplier : h.learning_rate_multiplier),
      loraRank,
      validationBatches: validation === null ? 0 : Math.min(MAX_VALIDATION_BATCHES, Math.ceil(validation.tokens / (VALIDATION_BATCH * contextLength))),
    };
  }

  // The rate learning_rate_multiplier scales: an adapter's factors learn at a higher one than the model's weights.
  private baseRate(loraRank: number): number {
    return loraRank > 0 ? this.config.loraLearningRate : this.config.learningRate;
  }

  private metricsEvent(record: JobRecord, r: MetricRecord): void {
    const { job, plan } = record;
    const total = plan?.steps ?? 0;
    if (r.type === 'train') {
      this.event(job, 'info', `Step ${r.step}/${total}: training loss=${r.loss.toFixed(4)}`, { step: r.step, train_loss: r.loss, total_steps: total }, 'metrics');
      // The end of the run at the pace so far.
      if (r.step > 0 && total > r.step) {
        job.estimated_finish = seconds(Date.now() + ((total - r.step) * r.time * 1000) / r.step);
      }
    } else {
      this.event(job, 'info', `Step ${r.step}/${total}: validation loss=${r.loss.toFixed(4)}`, { step: r.step, valid_loss: r.loss, total_steps: total }, 'metrics');
    }
  }

  // OpenAI's result file of a job: a CSV line per step.
  private stepMetricsCsv(id: string): string {
    const records = readMetrics(path.join(this.dir(id), 'metrics.jsonl'));
    const valid = new Map(records.filter((r) => r.type === 'val').map((r) => [r.step, r.loss]));
    const lines = records.filter((r) => r.type === 'train').map((r) => `${r.step},${r.loss},${valid.get(r.step) ?? ''}`);
    return `step,train_loss,valid_loss\n${lines.join('\n')}\n`;
  }

  private serveResult(record: JobRecord): void {
    const { job } = record;
    const checkpoint = listCheckpoints(this.dir(job.id)).pop();
    try {
      if (!checkpoint) throw new Error(`its run ${this.dir(job.id)} has no checkpoint`);
      // An adapter is served over the model it was trained over, which every adapter of it shares.
      this.host.serve(job.fine_tuned_model as string, checkpoint.dir, job.model, (record.plan?.loraRank ?? 0) > 0);
    } catch (err) {
      this.host.log('warn', 'a fine-tuned model could not be served', { model: job.fine_tuned_model, error: (err as Error).message });
    }
  }

  private setStatus(record: JobRecord, status: JobStatus): Promise<void> {
    record.job.status = status;
    return this.save(record);
  }

  private finish(record: JobRecord, status: 'succeeded' | 'failed' | 'cancelled', error: JobError | null): Promise<void> {
    Object.assign(record.job, { status, error, finished_at: seconds(), estimated_finish: null });
    return this.save(record);
  }

  // Rewritten whole and atomically, one write after another, so that the file ends with the latest state. Settles
  // once this state is on disk; a write that fails is logged, and rejects for a client's change, which is then
  // answered with the error rather than as done (the job's own progress, which no one awaits, goes on).
  private save(record: JobRecord): Promise<void> {
    const file = path.join(this.dir(record.job.id), JOB_FILE);
    const text = `${JSON.stringify(record, null, 2)}\n`;
    const state = statusOf(record.job);
    const written = this.writes.then(() => writeTextAtomic(file, text));
    written.then(() => this.onDisk.set(record.job.id, state), () => undefined);
    this.writes = written.catch((err: Error) => this.host.log('error', 'a fine-tuning job could not be saved', { job: record.job.id, error: err.message }));
    return written;
  }

  // An event that cannot be written (a full disk) is logged and lost, as a job that cannot be saved is: it is told
  // from the middle of training and from a job's failure, and thrown there it would end the server with every job.
  // Its message goes to clients (GET .../events), so without the server's paths: a warning from a library (the
  // model's tokenizer) names the folder where it lies.
  private event(job: FineTuningJob, level: JobEvent['level'], message: string, data: Record<string, unknown> = {}, type: JobEvent['type'] = 'message'): void {
    const event: JobEvent = { object: 'fine_tuning.job.event', id: randomId('ftevent'), created_at: seconds(), level, message: withoutPaths(message), data, type };
    const file = path.join(this.dir(job.id), EVENTS_FILE);
    try {
      fs.appendFileSync(file, `${JSON.stringify(event)}\n`);
    } catch (err) {
      this.host.log('error', 'a fine-tuning job event could not be written', { job: job.id, event: message, error: (namingFile(file, err) as Error).message });
    }
  }
}
