// What every endpoint asks of the models: turn a prompt into a sanitized reply with the right model. It holds
// a lease on the model for the whole generation (so the model cannot be unloaded under it), bounds each
// model's queue (load shedding), fits prompts to the context (a chat's oldest messages go first), stops
// generating as soon as the sanitizer has its answer, and counts what happened for /models/list and /metrics.
// It keeps nothing between requests but the worker threads that tokenize long texts (encodeTexts).
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fitConversation, type Conversation, type Turn } from '../data/chat_format';
import { fitChat, MessageTooLongError, type ChatReply, type FittedChat } from '../generate/chat';
import { checkSampling, SAMPLING_FIELDS, SamplingError, type FinishReason, type SamplingOptions, type Timings } from '../generate/sequence';
import type { Alternative, TokenLogprob } from '../generate/logprobs';
import { IDENTITY, type ReplyStream, type Sanitizer } from '../sanitize';
import { GrammarError, type Grammar } from '../generate/grammar';
import { grammarsBuilt } from '../generate/grammar/thread';
import type { Tokenizer } from '../tokenizer';
import { concat, EncoderPool } from '../tokenizer/parallel';
import { isCutPoint, pieceEnd } from '../tokenizer/pretokenize';
import { MAX_REPLY_LENGTH, type ModelConfig, type SamplingDefaults, type ServerConfig } from './config';
import type { LoadedModel } from './engine';
import { BusyError, HttpError } from './errors';
import type { Log } from './log';
import { Counter, Gauge, Histogram, MetricsRegistry, SampledCounter } from './metrics';
import { ModelUnavailableError, type Lease, type ModelRegistry } from './model_registry';
import { resolveModelSource } from './model_source';

export interface GenerationRequest {
  prompt: string | Conversation | readonly number[];  // the text the model continues, a chat to answer (chat_format.ts), or token ids
  promptField?: string;                    // the request's field that holds the prompt, for errors about it ('prompt')
  maxPromptChars?: number;                 // a chat's prompt at most this long (besides fitting the context)
  sampling: SamplingDefaults;              // `length`: the reply's at most (a chat's newest message may leave it less)
  logitBias?: SamplingOptions['logitBias'];  // token id -> a number added to its logit (OpenAI's logit_bias)
  presencePenalty?: number;                // OpenAI's additive penalties on the tokens drawn so far (SamplingOptions)
  frequencyPenalty?: number;
  lengthGiven?: boolean;                   // the request set the length; else the model's (at most n_ctx / 2 unless its config sets it)
  fillContext?: boolean;                   // the reply's length is what the context leaves after the whole prompt (llama.cpp's and Ollama's -2), where it leaves any
  seed?: number | bigint;
  signal?: AbortSignal;                    // the client went away
  deadline?: number;                       // Date.now() time to stop generating (default: the request timeout)
  onText?: (settled: string) => void;      // the reply so far that later text cannot change, each time it grows
  stop?: string[];                         // stop sequences on the generated text
  logprobs?: number;                       // report each token's log-probability and this many alternatives'
  onLogprob?: (logprob: TokenLogprob) => void;  // with logprobs, each token's as it is drawn, before its text streams
  promptLogprobs?: boolean;                // with logprobs, the prompt's tokens' too (the prompt is then never cut)
  keepPrompt?: string;                     // why the prompt is never cut nor a chat's messages dropped (the request's words): one that does not fit is refused
  grammar?: Grammar;                       // holds the reply to this grammar (a response format's, tool calls'): the sanitizer then leaves it as it is
  textBesideCalls?: boolean;               // the grammar also lets the reply be text, not beginning with "{" (tool_choice "auto"): text is sanitized
  sentByBatch?: boolean;                   // one of a batch's requests (/v1/batches): see BATCHES_QUEUE
  choicesOf?: object;                      // the same object for the generations one request asks for (its choices, prompts): they take one turn at the slots
  client?: string;                         // the client's address: clients take turns at the slots (Batcher's admit)
}

export interface EmbeddingRequest {
  inputs: readonly (string | readonly number[])[];  // texts or token ids
  field: string;          // the request's field that holds them, for errors ('input': input[2])
  single: boolean;        // the field held one input, not a list of them (errors name the field alone)
  truncate: boolean;      // an input longer than the context keeps its first n_ctx tokens; else it is refused
  normalize: boolean;     // each vector scaled to length 1
  // The width the client asks for: GPT-2's vectors are not made to be cut short, so only the model's own (n_embd).
  dimensions?: number;
  signal?: AbortSignal;   // the client went away
  sentByBatch?: boolean;  // one of a batch's requests (/v1/batches): see BATCHES_QUEUE
  client?: string;        // the client's address: clients take turns at the slots (Batcher's admit)
}

export interface Embeddings {
  model: string;
  vectors: Float32Array[];  // one per input, in order
  promptTokens: number;     // all inputs', as embedded
  ms: number;               // from the model's lease to the last vector
}

export interface Completion {
  model: string;
  text: string;                            // sanitized
  raw: string;                             // as generated
  tokens: number[];
  logprobs?: TokenLogprob[];
  promptLogprobs?: PromptLogprob[];        // one per prompt token, when asked for
  finishReason: FinishReason;
  promptIds: Int32Array;                   // the prompt's tokens as the model saw them: after any cut to fit the context
  length: number;                          // the reply's length at most, as generated
  trimmed: Trimmed;                        // what the prompt and the reply's length lost to fit the context
  timings: Timings;
}

// A prompt token's log-probability and its alternatives'; the first token's are null (nothing comes before it).
export interface PromptLogprob {
  token: number;
  logprob: number | null;
  top: Alternative[] | null;
}

export interface ConversationOptions {
  deadlineMs: number;      // stop generating this many milliseconds from now and return what there is
  maxTokens: number;
  maxPromptChars: number;  // the prompt's length at most; the oldest messages go first
  signal: AbortSignal;     // aborted once the answer can no longer arrive in time
  client?: string;         // who asked: clients take turns at the slots (Batcher's admit)
}

// How routers that hold a conversation (the Alexa skill) ask a model to answer it: the server makes the
// chat-format prompt (lib/data/chat_format.ts), the oldest messages dropped first to fit maxPromptChars and the
// model's context, and applies the model's sanitizer.
export type ChatFn = (modelKey: string, conversation: Conversation, options: ConversationOptions) => Promise<ChatReply>;

// What a prompt lost to fit the model's context: tokens in all, and for a chat, its oldest messages (whole) and
// characters cut from the start of the newest (only ever to fit a limit in characters); and tokens the reply's
// length lost so that a chat's newest message fits whole.
interface Trimmed {
  tokens: number;
  messages: number;
  messageChars: number;
  replyTokens: number;
}

function samplingOptions(s: SamplingDefaults): SamplingOptions {
  return { temperature: s.temperature, topK: s.topK, topP: s.topP, minP: s.minP, penalize: s.penalize };
}

// A prompt given as token ids, each one the model's tokenizer spells. `field`: the request's field that holds it.
function checkTokenIds(tokens: Iterable<number>, tokenizer: Tokenizer, field: string, key: string): void {
  for (const id of tokens) {
    if (!tokenizer.spells(id)) throw new HttpError(400, `${field}: token id ${id} is not in the vocabulary of model "${key}" (0 to ${tokenizer.vocabSize - 1})`, { field });
  }
}

// A model's sampling defaults against what the sampler accepts for it, so that a bad default fails the start
// rather than every request.
export function checkSamplingDefaults(model: ModelConfig, vocabSize: number): void {
  try {
    checkSampling(samplingOptions(model.sampling), vocabSize);
  } catch (err) {
    if (!(err instanceof SamplingError)) throw err;
    throw new Error(`${model.where}.sampling.${SAMPLING_FIELDS[err.field]}: must be ${err.rule}, got ${String(err.value)}`);
  }
}

// OpenAI's limit of inputs to embed in one request, on every endpoint's: their vectors are answered together.
const MAX_EMBEDDING_INPUTS = 2048;
// Texts this long are tokenized by the server's worker threads: on the event loop, at up to 1 µs a character, one
// client's long prompts would hold every other client's requests as long. A shorter one costs less encoded in place
// than the trip to a worker.
const LONG_TEXT_CHARS = 4096;

// Retry-After of a full queue at least: the mean request time it is estimated from is pulled down by short and
// aborted requests, and clients that retry on it (the openai libraries, twice) would spend their retries within
// the long generations that fill the queue.
const MIN_RETRY_AFTER_S = 5;

// The batcher's queues of the batches' requests, one per entry (no entry's key can be one): each takes turns at the
// model's slots with the entries' clients, so that a batch of many choices cannot keep a bot's clients waiting behind
// it; and the batches' requests take none of the clients' room (max_queue), their number held by the batches' own
// concurrency.
const BATCHES_QUEUE = '/v1/batches/';

// The batcher's queue a request for entry `key` waits in for a slot.
function slotQueue(key: string, sentByBatch: boolean | undefined): string {
  return sentByBatch ? BATCHES_QUEUE + key : key;
}

// A client's requests in hand for one model, in inflightOfClients.
function clientRoom(key: string, client: string): string {
  return `${key}\u0000${client}`;
}

const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const RATE_WINDOW_MS = 10_000;

function folderContext(model: ModelConfig): number | null {
  try {
    return resolveModelSource(model).config?.nCtx ?? null;
  } catch {
    return null;
  }
}

export class ChatService {
  private readonly served: Map<string, ModelConfig>;
  readonly metrics = new MetricsRegistry();
  readonly httpRequests = this.metrics.add(new Counter('dixie_http_requests_total', 'HTTP requests answered, by route and status.'));
  readonly httpLatency = this.metrics.add(new Histogram('dixie_http_request_duration_seconds', 'HTTP request latency, by route.', LATENCY_BUCKETS));
  private readonly inferencesTotal = this.metrics.add(new Counter('dixie_inferences_total', 'Generations finished, by model and finish reason.'));
  private readonly generatedTokens = this.metrics.add(new Counter('dixie_generated_tokens_total', 'Tokens generated, by model.'));
  private readonly promptTokensTotal = this.metrics.add(new Counter('dixie_prompt_tokens_total', 'Prompt tokens of the requests, by model.'));
  private readonly promptTokensReused = this.metrics.add(new Counter('dixie_prompt_tokens_reused_total', 'Prompt tokens found in the KV cache (an earlier request\'s prefix), not prefilled, by model.'));
  private readonly promptTokensPrefilled = this.metrics.add(new Counter('dixie_prompt_tokens_prefilled_total', 'Prompt tokens prefilled, by model.'));
  private readonly firstToken = this.metrics.add(new Histogram('dixie_time_to_first_token_seconds', 'From a request\'s arrival at its model to its first token, by model.', LATENCY_BUCKETS));
  private readonly queueWait = this.metrics.add(new Histogram('dixie_queue_wait_seconds', 'From a request\'s arrival at its model\'s batcher to its first step, by model.', LATENCY_BUCKETS));
  private readonly eventLoopDelay = monitorEventLoopDelay({ resolution: 10 });
  private readonly embeddingsTotal = this.metrics.add(new Counter('dixie_embeddings_total', 'Inputs embedded, by model.'));
  private readonly shed = this.metrics.add(new Counter('dixie_shed_requests_total', 'Requests refused with 503 because the model queue was full, by model.'));
  private readonly inflight = new Map<string, number>();
  private readonly inflightOfBatches = new Map<string, number>();  // those of inflight sent by batches
  private readonly inflightOfClients = new Map<string, number>();  // those of inflight by each client, while it has any (clientRoom)
  private readonly inferenceCounts = new Map<string, number>();
  private readonly recentTokens: { at: number; model: string; n: number }[] = [];
  private readonly meanSeconds = new Map<string, number>();
  // Started by the first long text (encodeText), which many servers never see.
  private encoders: EncoderPool | undefined;

  constructor(
    readonly config: ServerConfig,
    readonly registry: ModelRegistry<LoadedModel>,
    private readonly sanitizers: Map<string, Sanitizer>,
    private readonly log: Log,
  ) {
    this.served = new Map(config.models.map((m) => [m.key, m]));
    const perModel = (value: (key: string) => number) => () => [...this.served.keys()].map((key) => ({ labels: { model: key }, value: value(key) }));
    const status = (key: string) => registry.status().find((s) => s.key === key);
    this.metrics.add(new Gauge('dixie_tokens_per_second', `Tokens generated per second over the last ${RATE_WINDOW_MS / 1000} s, by model.`, perModel((k) => this.tokensPerSecond(k))));
    this.metrics.add(new Gauge('dixie_model_loaded', 'Whether the model is loaded (1) or not (0).', perModel((k) => (status(k)?.state === 'loaded' ? 1 : 0))));
    this.metrics.add(new Gauge('dixie_model_memory_bytes', 'Memory reserved for the model (0 when unloaded).', perModel((k) => status(k)?.bytes ?? 0)));
    this.metrics.add(new SampledCounter('dixie_model_loads_total', 'Times the model was loaded.', perModel((k) => status(k)?.loads ?? 0)));
    this.metrics.add(new SampledCounter('dixie_model_unloads_total', 'Times the model was unloaded: idle, evicted or at shutdown.', perModel((k) => status(k)?.unloads ?? 0)));
    this.metrics.add(new SampledCounter('dixie_model_evictions_total', 'Times the model was unloaded to make room for another.', perModel((k) => status(k)?.evictions ?? 0)));
    this.metrics.add(new SampledCounter('dixie_model_load_failures_total', 'Loads of the model that failed.', perModel((k) => status(k)?.loadFailures ?? 0)));
    this.metrics.add(new Gauge('dixie_queue_depth', 'Requests for the model waiting for a batch slot or for the model to load.', perModel((k) => this.queueDepth(k))));
    this.metrics.add(new Gauge('dixie_requests_in_flight', 'Requests for the model being answered, queued ones included.', perModel((k) => this.inflight.get(k) ?? 0)));
    this.metrics.add(new Gauge('dixie_memory_budget_bytes', 'The memory budget for loaded models.', () => [{ labels: {}, value: registry.budgetBytes }]));
    this.metrics.add(new Gauge('dixie_memory_reserved_bytes', 'Memory reserved by loaded and loading models, and by fine-tuning jobs\' training.', () => [{ labels: {}, value: registry.reservedBytes }]));
    this.metrics.add(new Gauge('process_resident_memory_bytes', 'Resident set size of the server process.', () => [{ labels: {}, value: process.memoryUsage.rss() }]));
    this.metrics.add(new SampledCounter('process_cpu_seconds_total', 'CPU time of the server process, user and system.', () => {
      const { user, system } = process.cpuUsage();
      return [{ labels: {}, value: (user + system) / 1e6 }];
    }));
    this.metrics.add(new SampledCounter('dixie_grammars_built_total', 'Grammars (JSON schemas, GBNF, tools) built for requests: those the server kept, and those that requests arriving together share, are built once.', () => [{ labels: {}, value: grammarsBuilt() }]));
    this.metrics.add(new Gauge('nodejs_heap_used_bytes', 'JavaScript heap in use.', () => [{ labels: {}, value: process.memoryUsage().heapUsed }]));
    // A late event loop delays every stream and every request's first byte: the decoding itself runs off it.
    this.eventLoopDelay.enable();
    this.metrics.add(new Gauge('nodejs_eventloop_lag_seconds', 'Event loop lag since the last scrape, by quantile.', () => {
      const d = this.eventLoopDelay;
      const lag = [0.5, 0.99].map((q) => ({ labels: { quantile: String(q) }, value: d.count > 0 ? d.percentile(q * 100) / 1e9 : 0 }));
      lag.push({ labels: { quantile: '1' }, value: d.count > 0 ? d.max / 1e9 : 0 });
      d.reset();
      return lag;
    }));
  }

  get models(): ReadonlyMap<string, ModelConfig> {
    return this.served;
  }

  // A model to serve from now on, its config checked and its sanitizer loaded; the registry knows it already.
  addModel(model: ModelConfig, sanitizer: Sanitizer): void {
    this.sanitizers.set(model.key, sanitizer);
    this.served.set(model.key, model);
  }

  // A model served under the same key with another config from now on: requests under way finish on the old one.
  replaceModel(model: ModelConfig, sanitizer: Sanitizer): void {
    this.sanitizers.set(model.key, sanitizer);
    this.served.set(model.key, model);
    this.registry.replace(model.key);
  }

  // A model served no more: new requests for it are unknown, those under way finish, then it is unloaded.
  removeModel(key: string): void {
    this.served.delete(key);
    this.sanitizers.delete(key);
    this.registry.remove(key);
  }

  // Generations the model has finished, whatever their finish reason.
  inferences(key: string): number {
    return this.inferenceCounts.get(key) ?? 0;
  }

  // Requests admitted for the model that are not yet decoding (waiting for its load or for a batch slot): those
  // decoding counted of its own queues only, since other entries may share its model.
  queueDepth(key: string): number {
    const generator = this.registry.peek(key)?.generator;
    const running = generator ? generator.runningOf(slotQueue(key, false)) + generator.runningOf(slotQueue(key, true)) : 0;
    return Math.max(0, (this.inflight.get(key) ?? 0) - running);
  }

  // The model a request that names none is for: "chatbot" (docs/compatibility.md) when there is one, or
  // else the first configured (the only one; or, of the models found without a config, the first training run).
  get defaultModelKey(): string {
    return this.models.has('chatbot') ? 'chatbot' : [...this.models.keys()][0];
  }

  model(key: string): ModelConfig {
    const model = this.models.get(key);
    if (!model) throw new HttpError(404, `unknown model_key "${key}"`, { models: [...this.models.keys()] });
    return model;
  }

  // The prompt for raw_text: as it is for a 'raw' model (less one trailing newline, as the TensorFlow tools' server
  // did); for a 'chat' model the conversation so far and then the user's message, made into the chat-format
  // prompt once the model's context is known.
  prompt(model: ModelConfig, rawText: string, history: readonly Turn[]): string | Conversation {
    if (model.promptFormat === 'chat') return { audience: model.audience, turns: [...history, { from: 'user', text: rawText }] };
    return rawText.length > 1 && rawText.endsWith('\n') ? rawText.slice(0, -1) : rawText;
  }

  // The model's tokenizer, for answers in tokens (the token endpoints, log-probabilities): the model is
  // loaded for it like for a request, since that is when its folder is read.
  async tokenizer(key: string, signal?: AbortSignal): Promise<Tokenizer> {
    this.model(key);
    const lease = await this.acquire(key, signal, Date.now() + this.config.requestTimeoutMs);
    lease.release();
    return lease.value.tokenizer;
  }

  // Each text's tokens, as tokenizer.encode gives them; texts long in all are encoded off the event loop. Where the
  // workers cannot (the model's folder changed or went since it was loaded, a worker crashed), they are encoded here,
  // and a pool whose worker crashed is replaced.
  async encodeTexts(tokenizer: Tokenizer, texts: readonly string[], allowSpecial = false): Promise<Int32Array[]> {
    const here = (): Int32Array[] => texts.map((text) => tokenizer.encode(text, { allowSpecial }));
    if (texts.reduce((chars, text) => chars + text.length, 0) < LONG_TEXT_CHARS) return here();
    const pool = (this.encoders ??= new EncoderPool());
    const vocabulary = { dir: path.dirname(tokenizer.vocab.files.encoderPath), fingerprint: tokenizer.vocab.fingerprint };
    try {
      return await pool.encode(texts, { allowSpecial, vocabulary, cutsAtWhitespace: tokenizer.cutsAtWhitespace });
    } catch (err) {
      this.log('warn', 'long texts encoded on the server\'s thread', { error: (err as Error).message });
      if (pool.failed && this.encoders === pool) {
        this.encoders = undefined;
        void pool.close();
      }
      return here();
    }
  }

  async encodeText(tokenizer: Tokenizer, text: string, allowSpecial = false): Promise<Int32Array> {
    return (await this.encodeTexts(tokenizer, [text], allowSpecial))[0];
  }

  // Stops the tokenizing workers.
  async close(): Promise<void> {
    await this.encoders?.close();
  }

  // A lease on the loaded model, its failures as HTTP answers: the registry's own status, the client gone, or
  // the deadline passed while the model loads.
  private acquire(key: string, signal: AbortSignal | undefined, deadline: number): Promise<Lease<LoadedModel>> {
    return this.registry.acquire(key, anySignal([signal, AbortSignal.timeout(Math.max(1, deadline - Date.now()))])).catch((err: Error) => {
      if (err instanceof ModelUnavailableError) throw new HttpError(err.status, err.message, {}, err.retryAfterS === null ? {} : { 'Retry-After': String(err.retryAfterS) });
      if (signal?.aborted) throw new HttpError(499, 'the client closed the request');
      throw new BusyError(503, `timed out waiting for model "${key}" to load`, {}, { 'Retry-After': '5' });
    });
  }

  async generate(key: string, request: GenerationRequest): Promise<Completion> {
    const sanitizer = this.sanitizers.get(key) as Sanitizer;
    const deadline = request.deadline ?? Date.now() + this.config.requestTimeoutMs;
    return this.withModel(key, request, deadline, (loaded) => this.decode(key, sanitizer, loaded, request, deadline));
  }

  // The embeddings of the inputs (lib/generate/embed.ts: the tokens' final hidden states averaged), one request for
  // the model's queue and lease whatever the number of inputs. They are computed in its batcher half its slots at a
  // time, so that a long list leaves room for the requests that come after it.
  async embed(key: string, request: EmbeddingRequest): Promise<Embeddings> {
    if (request.inputs.length > MAX_EMBEDDING_INPUTS) throw new HttpError(400, `${request.field}: holds ${request.inputs.length} inputs, more than ${MAX_EMBEDDING_INPUTS}`, { field: request.field });
    const deadline = Date.now() + this.config.requestTimeoutMs;
    return this.withModel(key, request, deadline, async ({ generator, tokenizer, nCtx, adapter }) => {
      const width = generator.model.config.nEmbd;
      if (request.dimensions !== undefined && request.dimensions !== width) throw new HttpError(400, `dimensions: only ${width} (the model's n_embd) is supported`, { field: 'dimensions' });
      let truncated = 0;
      const texts = request.inputs.filter((input): input is string => typeof input === 'string');
      const encoded = (await this.encodeTexts(tokenizer, texts)).values();
      const prompts = request.inputs.map((input, i) => {
        const field = request.single ? request.field : `${request.field}[${i}]`;
        const tokens = typeof input === 'string' ? (encoded.next().value as Int32Array) : Int32Array.from(input);
        checkTokenIds(tokens, tokenizer, field, key);
        if (tokens.length === 0) throw new HttpError(400, `${field}: must not be empty`, { field });
        if (tokens.length <= nCtx) return tokens;
        if (!request.truncate) throw contextError(`${field}: ${tokens.length} tokens, more than the context of model "${key}" (${nCtx})`, field);
        truncated++;
        return tokens.subarray(0, nCtx);
      });
      // performance.now(): a tiny model embeds a short text in under a millisecond, which Date.now() would make 0.
      const started = performance.now();
      // The inputs are one request, in its queue's turns and in queue_depth's count of requests decoding.
      const options = { normalize: request.normalize, signal: request.signal, deadline, adapter: adapter ?? undefined, queue: slotQueue(key, request.sentByBatch), group: request, client: request.client };
      const turns = Math.max(1, Math.floor(this.config.batchSlots / 2));
      const vectors = await inTurns(prompts, turns, (tokens) => generator.embed(tokens, options)).catch((err: Error) => {
        if (request.signal?.aborted) throw new HttpError(499, 'the client closed the request');
        if (Date.now() > deadline) throw new HttpError(503, `the embeddings were not done within the request timeout (${this.config.requestTimeoutMs} ms)`, {}, { 'Retry-After': '5' });
        throw err;
      });
      const promptTokens = prompts.reduce((n, p) => n + p.length, 0);
      this.promptTokensTotal.inc({ model: key }, promptTokens);
      this.promptTokensPrefilled.inc({ model: key }, promptTokens);
      this.embeddingsTotal.inc({ model: key }, prompts.length);
      if (truncated > 0) this.log('info', 'embedding inputs cut to the context', { model: key, nCtx, truncated });
      return { model: key, vectors: vectors.map((v) => v.embedding), promptTokens, ms: performance.now() - started };
    });
  }

  // Load shedding: 503 for `count` generations that the model's batch slots and queue have no room for, all of them.
  // A request of several (choices, prompts) checks first, then starts them all at once, so that it is admitted whole
  // or not at all: one refused holds no room that others could have had. A batch's requests are never refused for
  // room, nor counted in the clients' (BATCHES_QUEUE). A client with none of the model's requests in hand is still
  // given one, in batch_slots places beyond the room, so that a room that one client's flood fills does not turn
  // every other client away; its turn at the slots then comes as the clients take turns (Batcher's admit).
  checkRoom(key: string, count = 1, sentByBatch = false, client = ''): void {
    if (sentByBatch) return;
    const admitted = (this.inflight.get(key) ?? 0) - (this.inflightOfBatches.get(key) ?? 0);
    const room = this.config.batchSlots + this.config.maxQueue;
    if (admitted + count <= room) return;
    if (count === 1 && !this.inflightOfClients.has(clientRoom(key, client)) && admitted < room + this.config.batchSlots) return;
    this.shed.inc({ model: key });
    const retry = Math.max(MIN_RETRY_AFTER_S, Math.ceil(((this.meanSeconds.get(key) ?? 1) * (admitted + count - this.config.batchSlots)) / this.config.batchSlots));
    const more = count === 1 ? '' : `, no room for ${count} more`;
    throw new BusyError(503, `model "${key}" has ${admitted} requests in hand${more}; try again later`, {}, { 'Retry-After': String(retry) });
  }

  // Runs `use` with a lease on the loaded model, counted in its requests in hand (checkRoom).
  private async withModel<T>(key: string, request: { sentByBatch?: boolean; client?: string; signal?: AbortSignal }, deadline: number, use: (loaded: LoadedModel) => Promise<T>): Promise<T> {
    const { sentByBatch = false, client = '', signal } = request;
    this.model(key);
    this.checkRoom(key, 1, sentByBatch, client);
    const counts: [Map<string, number>, string][] = sentByBatch ? [[this.inflight, key], [this.inflightOfBatches, key]] : [[this.inflight, key], [this.inflightOfClients, clientRoom(key, client)]];
    for (const [count, of] of counts) count.set(of, (count.get(of) ?? 0) + 1);
    const started = Date.now();
    try {
      const lease = await this.acquire(key, signal, deadline);
      try {
        return await use(lease.value);
      } finally {
        lease.release();
      }
    } finally {
      for (const [count, of] of counts) count.set(of, (count.get(of) ?? 1) - 1);
      if (this.inflightOfClients.get(clientRoom(key, client)) === 0) this.inflightOfClients.delete(clientRoom(key, client));  // kept only while it has any
      const seconds = (Date.now() - started) / 1000;
      this.meanSeconds.set(key, 0.9 * (this.meanSeconds.get(key) ?? seconds) + 0.1 * seconds);
    }
  }

  // The tokens a reply of `length` may take: a length that nobody sized (neither the request, `given`, nor the
  // model's config) takes at most half the context, so that a small model's context leaves room for the
  // conversation.
  replyLength(key: string, nCtx: number, length: number, given: boolean): number {
    return Math.min(given || this.model(key).lengthSet ? length : Math.min(length, Math.floor(nCtx / 2)), nCtx - 1);
  }

  // The reply length of a request that sizes none, as every route reports it: replyLength over the loaded model's
  // context, or else its folder's. A model whose context is known only once it loads (a TensorFlow run folder), and
  // one whose folder cannot be read now (its load says why), report the configured length until loaded.
  defaultLength(key: string): number {
    const model = this.model(key);
    return this.replyLength(key, this.registry.peek(key)?.nCtx ?? folderContext(model) ?? Infinity, model.sampling.length, false);
  }

  private async decode(key: string, sanitizer: Sanitizer, loaded: LoadedModel, request: GenerationRequest, deadline: number): Promise<Completion> {
    const { nCtx, generator } = loaded;
    // User text never becomes a special token (Generator.encode); an empty prompt means "start of a document".
    const encode = async (text: string): Promise<Int32Array> => (text === '' ? generator.encode(text) : this.encodeText(loaded.tokenizer, text));
    const field = request.promptField ?? 'prompt';
    const whole = request.promptLogprobs === true || request.keepPrompt !== undefined;
    // The whole prompt's tokens, encoded once: they size a reply that fills the context, and are fed unless they are cut
    // or a chat's fitting drops messages, which measures prompts made of the conversation's lines, each encoded once.
    let prompt: string | readonly number[];
    let tokens: Int32Array;
    let lines: LineTokens | null = null;
    if (isTokenIds(request.prompt)) {
      prompt = request.prompt;
      checkTokenIds(prompt, loaded.tokenizer, field, key);
      tokens = Int32Array.from(prompt);
    } else if (typeof request.prompt === 'string') {
      prompt = request.prompt;
      tokens = await encode(prompt);
    } else {
      // A conversation that must stay whole is fitted as a raw prompt is.
      prompt = fitConversation(request.prompt).prompt;
      if (whole) {
        tokens = await encode(prompt);
      } else {
        lines = await LineTokens.of(this, loaded.tokenizer, prompt);
        tokens = lines.tokens(prompt);
      }
    }
    // A prompt that fills the context leaves none to fill: its reply gets the length nobody sized, as it would anywhere.
    // What it leaves is held to the bound on any reply, as a length a request sizes is.
    const left = request.fillContext ? Math.min(nCtx - tokens.length, MAX_REPLY_LENGTH) : 0;
    const asked = left > 0 ? left : this.replyLength(key, nCtx, request.sampling.length, request.lengthGiven === true);
    let maxTokens = asked;
    const trimmed: Trimmed = { tokens: 0, messages: 0, messageChars: 0, replyTokens: 0 };
    if (lines !== null) {
      const chat = lines;
      const fitted = fitChatOf(key, field, request.prompt as Conversation, { nCtx, maxTokens: asked, encode: (text) => chat.tokens(text), maxChars: request.maxPromptChars });
      maxTokens = fitted.maxTokens;
      trimmed.messages = fitted.droppedMessages;
      trimmed.messageChars = fitted.droppedChars;
      prompt = fitted.prompt;
      const kept = chat.tokens(prompt);
      if (fitted.droppedMessages + fitted.droppedChars > 0) trimmed.tokens = Math.max(0, tokens.length - kept.length);
      tokens = kept;
    } else {
      // A raw prompt keeps its tokens before a long reply does: the reply keeps at least what a length nobody sized
      // would take (half the context), and beyond that what the prompt leaves.
      maxTokens = Math.min(asked, Math.max(nCtx - tokens.length, Math.min(asked, Math.floor(nCtx / 2))));
    }
    trimmed.replyTokens = asked - maxTokens;
    // What still does not fit is the prompt's start, cut so that the reply never shifts the window.
    const cut = Math.max(0, tokens.length - (nCtx - maxTokens));
    if (cut > 0 && whole) {
      const why = request.promptLogprobs ? 'its log-probabilities need' : `${request.keepPrompt} keeps`;
      throw contextError(`${field}: ${why} the whole prompt within the context of model "${key}": ${tokens.length} tokens and a reply of ${maxTokens} pass ${nCtx}`, field);
    }
    if (cut > 0) tokens = tokens.subarray(cut);
    trimmed.tokens += cut;
    if (trimmed.tokens + trimmed.replyTokens > 0) {
      this.log('info', 'prompt and reply fitted to the context', { model: key, nCtx, promptTokens: tokens.length, lengthAsked: asked, length: maxTokens, trimmed });
    }
    // The sanitizer reads the reply as it is generated, and generation stops once the reply is complete. A reply held
    // to a grammar is the grammar's text: a sanitizer's cuts and rewrites would break it.
    const sanitizing = !request.grammar ? sanitizer.stream() : request.textBesideCalls ? callsOrText(sanitizer) : IDENTITY.stream();
    let shown = '';
    const reply: ReplyStream = {
      push(piece) {
        const r = sanitizing.push(piece);
        if (request.onText && r.settled !== shown) request.onText((shown = r.settled));
        return r;
      },
    };
    const result = await generator.generate(tokens, {
      maxTokens,
      ...samplingOptions(request.sampling),
      logitBias: request.logitBias,
      presencePenalty: request.presencePenalty,
      frequencyPenalty: request.frequencyPenalty,
      stop: request.stop,
      logprobs: request.logprobs,
      onLogprob: request.onLogprob,
      promptLogprobs: request.promptLogprobs,
      seed: request.seed,
      signal: request.signal,
      deadline,
      reply,
      adapter: loaded.adapter ?? undefined,
      grammar: request.grammar,
      // Entries over one model (its batcher) take turns at its slots.
      queue: slotQueue(key, request.sentByBatch),
      group: request.choicesOf,
      client: request.client,
    }).catch((err: Error) => {
      // The sampler's ranges depend on the model (its vocabulary), so they are checked once it is loaded.
      if (err instanceof SamplingError) {
        const field = SAMPLING_FIELDS[err.field];
        throw new HttpError(400, err.describe(field, ` for model "${key}"`), { field });
      }
      // A grammar that becomes too ambiguous as the reply grows: the request's, not the server's, fault.
      if (err instanceof GrammarError) throw new HttpError(400, `the grammar the reply is held to: ${err.message}`);
      throw err;
    });
    const { finishReason } = result;
    this.inferencesTotal.inc({ model: key, finish_reason: finishReason });
    this.inferenceCounts.set(key, this.inferences(key) + 1);
    this.generatedTokens.inc({ model: key }, result.tokens.length);
    this.promptTokensTotal.inc({ model: key }, tokens.length);
    this.promptTokensReused.inc({ model: key }, result.timings.cachedPromptTokens);
    if (Number.isFinite(result.timings.firstTokenMs)) this.firstToken.observe({ model: key }, result.timings.firstTokenMs / 1000);
    this.queueWait.observe({ model: key }, result.timings.queuedMs / 1000);
    this.promptTokensPrefilled.inc({ model: key }, tokens.length - result.timings.cachedPromptTokens);
    this.recordTokens(key, result.tokens.length);
    const text = result.reply as string;
    this.log('debug', 'generated', { model: key, prompt, promptTokens: tokens.length, trimmed, tokens: result.tokens.length, finishReason, ms: result.timings.totalMs });
    const promptLogprobs = result.promptLogprobs && [{ token: tokens[0], logprob: null, top: null }, ...result.promptLogprobs];
    return { model: key, text, raw: result.text, tokens: result.tokens, logprobs: result.logprobs, promptLogprobs, finishReason, promptIds: tokens, length: maxTokens, trimmed, timings: result.timings };
  }

  // The Alexa skill's way in (lib/server/alexa): a conversation to answer, the model's sanitizer applied.
  readonly chat: ChatFn = async (modelKey, conversation, options): Promise<ChatReply> => {
    const model = this.model(modelKey);
    const completion = await this.generate(modelKey, {
      prompt: conversation,
      maxPromptChars: options.maxPromptChars,
      sampling: { ...model.sampling, length: options.maxTokens },
      lengthGiven: true,
      signal: options.signal,
      deadline: Date.now() + options.deadlineMs,
      client: options.client,
    });
    const reason = completion.finishReason === 'aborted' ? 'deadline' : completion.finishReason;
    return { text: completion.text, finishReason: reason };
  };

  private recordTokens(model: string, n: number): void {
    const now = Date.now();
    this.recentTokens.push({ at: now, model, n });
    while (this.recentTokens.length > 0 && this.recentTokens[0].at < now - RATE_WINDOW_MS) this.recentTokens.shift();
  }

  private tokensPerSecond(model: string): number {
    const since = Date.now() - RATE_WINDOW_MS;
    let n = 0;
    for (const r of this.recentTokens) if (r.model === model && r.at >= since) n += r.n;
    return n / (RATE_WINDOW_MS / 1000);
  }
}

// A prompt that does not fit the model's context, with OpenAI's code for it, which clients key on to shorten the
// conversation and try again.
function contextError(message: string, field: string): HttpError {
  return new HttpError(400, message, { field, code: 'context_length_exceeded' });
}

function isTokenIds(prompt: GenerationRequest['prompt']): prompt is readonly number[] {
  return Array.isArray(prompt);
}

// The tokens of texts that join lines of one text at its line breaks, where these are cut points (isCutPoint): the
// same as encoding the text whole, from the tokens of its pieces, each encoded once. A piece it was not given (a
// message cut to fit a length in characters, short then) is encoded when asked for.
class LineTokens {
  private constructor(private readonly tokenizer: Tokenizer, private readonly known: Map<string, Int32Array>) {}

  // For the texts made of `text`'s lines, in order, from any of them on: its pieces, and each of those but the first
  // without its line break, which one that starts a text has not. A line break that is a piece of its own
  // (pieceEnd), as it is before a chat's line, encodes alone, so the line without it is the piece's tokens after the
  // break's: each line is encoded once.
  static async of(service: ChatService, tokenizer: Tokenizer, text: string): Promise<LineTokens> {
    const pieces = linePieces(tokenizer, text);
    const lineBreak = tokenizer.encode('\n', { allowSpecial: false }).length;
    // A line break that the tokenizer joins to the line after it: that line alone must be encoded apart.
    const breakJoinsLine = (piece: string): boolean => piece.startsWith('\n') && pieceEnd(piece, 0, piece.length) !== 1;
    const texts = [...new Set([...pieces, ...pieces.filter(breakJoinsLine).map((piece) => piece.slice(1))])];
    const tokens = await service.encodeTexts(tokenizer, texts);
    const known = new Map(texts.map((piece, i) => [piece, tokens[i]]));
    for (const piece of pieces) {
      if (piece.startsWith('\n') && !breakJoinsLine(piece)) known.set(piece.slice(1), (known.get(piece) as Int32Array).subarray(lineBreak));
    }
    return new LineTokens(tokenizer, known);
  }

  tokens(text: string): Int32Array {
    return concat(linePieces(this.tokenizer, text).map((piece) => this.known.get(piece) ?? this.tokenizer.encode(piece, { allowSpecial: false })));
  }
}

// The text cut before each line break that is a cut point; whole where the tokenizer's added tokens take in
// whitespace (Tokenizer.cutsAtWhitespace).
function linePieces(tokenizer: Tokenizer, text: string): string[] {
  if (!tokenizer.cutsAtWhitespace) return [text];
  const pieces: string[] = [];
  let start = 0;
  for (let at = text.indexOf('\n', 1); at >= 0; at = text.indexOf('\n', at + 1)) {
    if (!isCutPoint(text, at)) continue;
    pieces.push(text.slice(start, at));
    start = at;
  }
  pieces.push(text.slice(start));
  return pieces;
}

// fitChat for model `key`, a message longer than its context a 400 that says so, naming the request's field.
function fitChatOf(key: string, field: string, conversation: Conversation, options: Parameters<typeof fitChat>[1]): FittedChat {
  try {
    return fitChat(conversation, options);
  } catch (err) {
    if (err instanceof MessageTooLongError) throw contextError(`${err.message} (model "${key}")`, field);
    throw err;
  }
}

// For a stream that only appends (Server-Sent Events of a reply): each text the reply so far takes, what of it
// follows what was sent. A text that does not start with what was sent (a module sanitizer that revised it)
// sends nothing; the final answer has the whole.
export function appendOnly(send: (piece: string) => void): (text: string) => void {
  let sent = '';
  return (text) => {
    if (text.length <= sent.length || !text.startsWith(sent)) return;
    send(text.slice(sent.length));
    sent = text;
  };
}

// each(item) for every item, at most `width` of them at a time, in the items' order; the first failure ends it.
async function inTurns<T, R>(items: readonly T[], width: number, each: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  let next = 0;
  let failed = false;
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        results[i] = await each(items[i]);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  }));
  return results;
}

// One signal for several (absent ones ignored).
function anySignal(signals: (AbortSignal | undefined)[]): AbortSignal {
  return AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined));
}

// A reply that may be tool calls or text: calls, which begin with "{", are the grammar's text as it is; text is the
// sanitizer's, decided by the reply's first character.
function callsOrText(sanitizer: Sanitizer): ReplyStream {
  let start = '';
  let chosen: ReplyStream | null = null;
  return {
    push(piece) {
      if (chosen !== null) return chosen.push(piece);
      start += piece;
      if (start === '') return { text: '', settled: '', complete: false };
      chosen = (start.startsWith('{') ? IDENTITY : sanitizer).stream();
      return chosen.push(start);
    },
  };
}
