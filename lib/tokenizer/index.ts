// GPT-2 byte-level BPE: the public surface of lib/tokenizer.
export { END_OF_TEXT, bundledVocabularyDir } from './vocab';
export { GPT2_VOCAB_SIZE, StreamDecoder, Tokenizer, checkVocabulary, loadTokenizer, modelTokenizer } from './tokenizer';
export type { EncodeOptions, TokenizerOptions } from './tokenizer';
export { EncoderPool, encodeParallel } from './parallel';
export type { EncoderPoolOptions, PoolEncodeOptions } from './parallel';
