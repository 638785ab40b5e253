// Text generation: KV-cached decoding, native sampling, continuous batching. See generate.ts.
export { Generator } from './generate';
export type { EmbedOptions, Embedding, GenerateOptions, LoadOptions } from './generate';
export { Batcher } from './batcher';
export type { BatchRequest, BatcherOptions, EmbedRequest, EmbedResult } from './batcher';
export { POOLINGS, poolStates, unitLength } from './embed';
export type { Pooling } from './embed';
export { DEFAULT_SAMPLING, SAMPLING_FIELDS, SamplingError, Sequence, checkSampling, rngStateFromSeed, seedOf } from './sequence';
export type { FinishReason, GenerateResult, SamplingOptions, Timings } from './sequence';
export { MAX_TOP_LOGPROBS, tokenLogprob } from './logprobs';
export type { Alternative, TokenLogprob } from './logprobs';
export { Grammar, GrammarError } from './grammar';
export { ChatSession, MessageTooLongError, fitChat } from './chat';
export { isAudience } from '../data/chat_format';
export type { Conversation, FittedPrompt, Turn } from '../data/chat_format';
export type { ChatOptions, ChatReply, FittedChat } from './chat';
