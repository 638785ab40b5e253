// Text generation with a GPT-2 model, in the manner of nanoGPT's sample.py:
//
//   const gen = await Generator.load('124M', { weightDtype: 'f16' });
//   const { text } = await gen.generate('Hello, my name is', { maxTokens: 40, temperature: 0.8, topK: 40 });
//   for await (const piece of gen.stream('Once upon a time', { maxTokens: 100 })) process.stdout.write(piece);
//   const { embedding } = await gen.embed('Hello, my name is');  // 768 numbers of length 1 (embed.ts)
//
// How a request runs (lib/generate/batcher.ts does the work, for all requests at once):
//   1. The prompt is encoded (an empty prompt is <|endoftext|>: unconditional text) and fed to the model in one
//      pass (prefill) that fills the request's KV-cache slot and gives the logits of the next token.
//   2. Each step samples a token per request in native code (repetition penalty, logit biases, temperature,
//      top-k, top-p; those a request leaves out as the model folder's generation_config.json sets them, where it
//      has one; a per-request RNG seeded from `seed`, so the same seed gives the same text whatever the thread
//      count or whichever other requests share the batch), feeds it back, and decodes it to text.
//   3. The request ends at its end of text (<|endoftext|>, or the model's own: Generator.stopTokens), a stop
//      sequence (the text is cut where it begins), maxTokens, its signal or its deadline.
//   4. When prompt plus output would pass the model's context (nCtx), the request keeps its most recent
//      nCtx / 2 tokens and prefills them again (Sequence.nextFeed), and goes on.
import { Model, type ServedAdapter } from '../engine/model';
import { WeightDType } from '../engine/native';
import { modelDir, resolveModel } from '../formats/resolve_model';
import { checkpointFolder } from '../train/checkpoint';
import { modelTokenizer, Tokenizer } from '../tokenizer';
import { Batcher, BatcherOptions, BatchRequest, type SlotActivity } from './batcher';
import { poolStates, unitLength, type Pooling } from './embed';
import { GenerateResult, SamplingOptions, Timings } from './sequence';
import type { ReplyStream } from '../sanitize/types';
import type { TokenLogprob } from './logprobs';
import type { Grammar } from './grammar';

export interface GenerateOptions extends Partial<SamplingOptions> {
  maxTokens?: number;   // default the model's max_new_tokens (generation_config.json), else nCtx / 2, as bin/generate's --length
  stop?: string[];
  stopTokens?: ArrayLike<number>;  // default Generator.stopTokens: <|endoftext|>, or the model's own end of text
  seed?: number | bigint;
  signal?: AbortSignal;
  deadline?: number;
  onText?: (piece: string) => void;
  logprobs?: number;  // each token's log-probability and this many alternatives' (0-20)
  onLogprob?: (logprob: TokenLogprob) => void;  // with logprobs, each token's as it is drawn, before its text streams
  promptLogprobs?: boolean;  // with logprobs, the prompt's tokens' too (all but the first); the prompt must fit nCtx
  reply?: ReplyStream;  // a sanitizer's stream: the result carries its reply, and generation stops once it is complete
  adapter?: ServedAdapter;  // a LoRA adapter of the model (model.addAdapter): requests for different ones decode together
  grammar?: Grammar;  // holds the text to a grammar: Grammar.fromJsonSchema(schema), Grammar.parse(gbnf), Grammar.anyJsonObject()
  queue?: string;  // the queue it waits in for a batch slot: queues take turns (BatchRequest's)
  group?: object;  // the requests asked for together, which take one turn within their queue (BatchRequest's)
  client?: string;  // who asked: within a queue, clients take turns (BatchRequest's)
}

export interface EmbedOptions {
  pooling?: Pooling;    // 'mean' (default) or 'last' (see embed.ts)
  normalize?: boolean;  // scaled to length 1 (default true), so that a dot product is a cosine similarity
  signal?: AbortSignal;
  deadline?: number;
  adapter?: ServedAdapter;
  queue?: string;       // the queue it waits in for a batch slot (BatchRequest's)
  group?: object;       // one request's inputs, which take one turn and count as one request decoding (EmbedRequest's)
  client?: string;      // who asked (EmbedRequest's)
}

export interface Embedding {
  embedding: Float32Array;  // [nEmbd]
  promptTokens: number;
  timings: Timings;
}

export interface LoadOptions extends BatcherOptions {
  weightDtype?: WeightDType;  // weights as stored in memory (default f32; --dtype, weight_dtype); compute is float32 either way
  threads?: number;     // default: one per core
  adapter?: string;     // a PEFT LoRA adapter merged into the weights: a folder (a training run's: its latest), or a name under the models folder
}

export class Generator {
  private readonly batcher: Batcher;
  private ownsModel = false;

  constructor(readonly model: Model, readonly tokenizer: Tokenizer, options: BatcherOptions = {}) {
    this.batcher = new Batcher(model, tokenizer, options);
  }

  // A model by name or folder (see lib/formats/resolve_model), inference only, with its own vocabulary if the
  // folder has one (GPT-2's otherwise, see modelTokenizer). An adapter is named as a model is, and changes the
  // weights only: the vocabulary stays the base's.
  static async load(name: string, options: LoadOptions = {}): Promise<Generator> {
    const folder = resolveModel(name);
    const tokenizer = modelTokenizer(folder);
    const model = await Model.load(folder, {
      weightDtype: options.weightDtype ?? 'f32',
      threads: options.threads,
      trainable: false,
      adapter: options.adapter === undefined ? undefined : checkpointFolder(modelDir(options.adapter)),
    });
    for (const ignored of model.generationConfig?.ignored ?? []) console.warn(`warning: ${ignored}`);
    const generator = new Generator(model, tokenizer, options);
    generator.ownsModel = true;
    return generator;
  }

  // Requests decoding and waiting.
  get load(): { running: number; waiting: number } {
    return this.batcher.load;
  }

  // What each of the batcher's slots decodes now (null: it is free).
  get slotActivity(): (SlotActivity | null)[] {
    return this.batcher.slotActivity;
  }

  // Requests of one queue decoding (GenerateOptions.queue), the embeddings of one group as one (Batcher.runningOf).
  runningOf(queue: string): number {
    return this.batcher.runningOf(queue);
  }

  // The prompt's tokens: text is encoded without special tokens unless allowSpecial; '' is <|endoftext|>.
  encode(prompt: string, allowSpecial = false): Int32Array {
    if (prompt === '') return Int32Array.of(this.tokenizer.eotToken);
    return this.tokenizer.encode(prompt, { allowSpecial });
  }

  generate(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): Promise<GenerateResult> {
    return this.batcher.submit(this.request(prompt, options));
  }

  // The text as it is generated, piece by piece; the iterator's return value is the result. Leaving the loop early
  // (break, return, a throw) aborts the generation, which would otherwise hold its batch slot to the end.
  async *stream(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): AsyncGenerator<string, GenerateResult> {
    const pieces: string[] = [];
    let wake: (() => void) | null = null;
    let finished = false;
    const left = new AbortController();
    const result = this.batcher
      .submit(
        this.request(prompt, {
          ...options,
          signal: options.signal ? AbortSignal.any([options.signal, left.signal]) : left.signal,
          onText: (piece) => {
            options.onText?.(piece);
            pieces.push(piece);
            wake?.();
          },
        }),
      )
      .finally(() => {
        finished = true;
        wake?.();
      });
    result.catch(() => undefined);  // rethrown below, after the pieces so far
    try {
      while (!finished || pieces.length > 0) {
        if (pieces.length > 0) yield pieces.shift() as string;
        else await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
      }
      return await result;
    } finally {
      if (!finished) left.abort();
    }
  }

  // A text's embedding (embed.ts), encoded as a prompt is ('' is <|endoftext|>) and at most nCtx tokens; it is computed
  // in the same steps as the generations running. Rejects when its signal fires or its deadline passes first.
  async embed(text: string | ArrayLike<number>, options: EmbedOptions = {}): Promise<Embedding> {
    const promptTokens = typeof text === 'string' ? this.encode(text) : text;
    const { signal, deadline, adapter, queue, group, client, pooling = 'mean', normalize = true } = options;
    const { states, finishReason, timings } = await this.batcher.embed({ promptTokens, signal, deadline, adapter, queue, group, client });
    if (finishReason !== 'stop') throw new Error(finishReason === 'aborted' ? 'the embedding was aborted' : 'the embedding passed its deadline');
    const pooled = poolStates(states, this.model.config.nEmbd, pooling);
    return { embedding: normalize ? unitLength(pooled) : pooled, promptTokens: promptTokens.length, timings };
  }

  // Finishes all requests; a model that load() loaded is disposed too.
  async close(): Promise<void> {
    await this.batcher.close();
    if (this.ownsModel) this.model.dispose();
  }

  // The tokens that end a text unless a request names its own: the model's generation_config.json's eos_token_id
  // (<|endoftext|> without one), and the end of text its tokenizer declares (a ChatML fine-tune's <|im_end|>), as
  // vLLM stops at both.
  get stopTokens(): number[] {
    return [...new Set([...(this.model.generationConfig?.defaults.stopTokens ?? [this.tokenizer.eotToken]), this.tokenizer.eosToken])];
  }

  private request(prompt: string | ArrayLike<number>, options: GenerateOptions): BatchRequest {
    const { temperature, topK, topP, minP, penalize, logitBias, presencePenalty, frequencyPenalty, maxTokens, ...rest } = options;
    const defaults = this.model.generationConfig?.defaults;
    return {
      ...rest,
      stopTokens: rest.stopTokens ?? this.stopTokens,
      promptTokens: typeof prompt === 'string' ? this.encode(prompt) : prompt,
      maxTokens: maxTokens ?? defaults?.maxTokens ?? Math.floor(this.model.config.nCtx / 2),
      sampling: { ...modelSampling(this.model), ...definedFields({ temperature, topK, topP, minP, penalize, logitBias, presencePenalty, frequencyPenalty }) },
    };
  }
}

// The fields that are set, for settings given with some left out to go over others.
export function definedFields<T extends object>(fields: T): Partial<T> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)) as Partial<T>;
}

// The sampling settings the model's generation_config.json sets (Model.generationConfig), which a request's own go
// over.
export function modelSampling(model: Model): Partial<SamplingOptions> {
  const { temperature, topK, topP, minP, penalize } = model.generationConfig?.defaults ?? {};
  return definedFields({ temperature, topK, topP, minP, penalize });
}
