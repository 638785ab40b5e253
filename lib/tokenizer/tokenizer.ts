// GPT-2's byte-level BPE: text -> token ids -> text, identical to OpenAI's encoder.py and to tiktoken's
// r50k_base. Encoding runs pre-tokenizer -> word cache -> (on a miss) UTF-8 bytes and pair merges, all
// over typed arrays that live as long as the tokenizer.
import { TextDecoder } from 'node:util';
import { type TokenMatcher, cutsAtWhitespace, matchersOf, standsAlone, whitespaceEnd, whitespaceStart } from './added_tokens';
import { PairMerger } from './bpe';
import { pieceEnd } from './pretokenize';
import type { ModelFolder } from '../formats/model_folder';
import { quoted } from '../util/quoted';
import { Vocabulary, bundledVocabularyDir, locateVocabulary } from './vocab';
import { MAX_CACHED_PIECE, WordCache, hashPiece } from './word_cache';

export interface EncodeOptions {
  // Whether a literal "<|endoftext|>" in the text, or another special token of the vocabulary (added_tokens.ts),
  // becomes its token. Yes for training files, where it separates documents; never for text from a user, who must not
  // be able to inject one (it is then encoded as the ordinary characters it is made of). Added tokens that are not
  // special are their tokens either way.
  allowSpecial: boolean;
}

export interface TokenizerOptions {
  // Bound on the word cache, in pieces (default 65536: about 10 MB).
  maxCachedPieces?: number;
}

const DEFAULT_MAX_CACHED_PIECES = 1 << 16;
// The output buffer grows to the largest text encoded; past this many tokens it is let go afterwards.
const KEPT_OUTPUT = 1 << 20;

// Decoding never throws on byte sequences that are not UTF-8 (a model can emit any token order): they
// become U+FFFD, as encoder.py's errors="replace" does. ignoreBOM keeps a leading U+FEFF as text.
function utf8Decoder(): TextDecoder {
  return new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
}

export class Tokenizer {
  readonly vocab: Vocabulary;
  // The <|endoftext|> token (50256 in GPT-2).
  readonly eotToken: number;
  // The token that ends a text as the folder's tokenizer files declare it (their eos_token: a ChatML fine-tune's
  // <|im_end|>); eotToken where they declare none or that one.
  readonly eosToken: number;
  // One past the largest token id (50257 in GPT-2).
  readonly vocabSize: number;
  // Whether a text cut at whitespace after a non-blank (pretokenize.ts isCutPoint) encodes as its pieces' tokens
  // joined, which encoding in parallel and a chat's line-by-line encoding rely on: not where an added token takes in
  // the whitespace around it or holds some.
  readonly cutsAtWhitespace: boolean;
  // The added tokens that encode() takes out of a text before BPE, with special tokens and without.
  private readonly withSpecial: TokenMatcher[];
  private readonly withoutSpecial: TokenMatcher[];
  private readonly cache: WordCache;
  private merger: PairMerger | undefined;
  private readonly decoder = utf8Decoder();
  // Scratch: the output being built, and the byte tokens of one piece while it merges.
  private out = new Int32Array(4096);
  private parts = new Int32Array(3 * MAX_CACHED_PIECE);

  constructor(vocab: Vocabulary, options: TokenizerOptions = {}) {
    this.vocab = vocab;
    this.eotToken = vocab.eotToken;
    this.eosToken = vocab.eosToken;
    this.vocabSize = vocab.size;
    this.cutsAtWhitespace = cutsAtWhitespace(vocab.addedTokens);
    this.withSpecial = matchersOf(vocab.addedTokens);
    this.withoutSpecial = matchersOf(vocab.addedTokens.filter((t) => !t.special));
    this.cache = new WordCache(options.maxCachedPieces ?? DEFAULT_MAX_CACHED_PIECES);
  }

  // Pieces in the word cache now (never more than maxCachedPieces).
  get cachedPieces(): number {
    return this.cache.size;
  }

  get maxCachedPieces(): number {
    return this.cache.maxEntries;
  }

  // Without options, as text from a user: a literal "<|endoftext|>" stays characters.
  encode(text: string, options: EncodeOptions = { allowSpecial: false }): Int32Array {
    if (typeof text !== 'string') throw new TypeError(`encode: the text must be a string, got ${quoted(text)}`);
    if (this.merger === undefined) this.merger = new PairMerger(this.vocab.merges);
    const matchers = options.allowSpecial ? this.withSpecial : this.withoutSpecial;
    const count = this.encodeAdded(text, 0, text.length, 0, matchers, 0);
    const tokens = this.out.slice(0, count);
    if (this.out.length > KEPT_OUTPUT) this.out = new Int32Array(4096);
    return tokens;
  }

  decode(ids: ArrayLike<number>): string {
    return this.decoder.decode(this.bytesOf(ids));
  }

  // The bytes that the tokens stand for: the UTF-8 that decode() reads.
  bytesOf(ids: ArrayLike<number>): Uint8Array {
    const { tokenBytes, tokenStart, tokenEnd } = this.vocab;
    let length = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = this.checkId(ids[i]);
      length += tokenEnd[id] - tokenStart[id];
    }
    const bytes = new Uint8Array(length);
    let at = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      for (let k = tokenStart[id]; k < tokenEnd[id]; k++) bytes[at++] = tokenBytes[k];
    }
    return bytes;
  }

  // A view of one token's bytes (do not write to it).
  tokenBytes(id: number): Uint8Array {
    const { tokenBytes, tokenStart, tokenEnd } = this.vocab;
    this.checkId(id);
    return tokenBytes.subarray(tokenStart[id], tokenEnd[id]);
  }

  streamDecoder(): StreamDecoder {
    return new StreamDecoder(this);
  }

  // Whether `id` is a token of this vocabulary: a model's vocabulary may be padded past it (nanoGPT's 50304), and a
  // vocabulary's ids may leave gaps.
  spells(id: number): boolean {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize && this.vocab.tokenEnd[id] !== 0;
  }

  // The bitset of the ids below `logits` that are tokens (word i, bit j: id 32i + j), as a sampler's mask takes
  // it; null when every one is.
  spelledMask(logits: number): Uint32Array | null {
    const mask = new Uint32Array(Math.ceil(logits / 32));
    let all = true;
    for (let id = 0; id < logits; id++) {
      if (this.spells(id)) mask[id >>> 5] |= 1 << (id & 31);
      else all = false;
    }
    return all ? null : mask;
  }

  private checkId(id: number): number {
    if (!this.spells(id)) {
      throw new RangeError(`token id ${id} is not in the vocabulary (${this.vocab.files.encoderPath})`);
    }
    return id;
  }

  private reserve(n: number): void {
    if (n <= this.out.length) return;
    let size = this.out.length * 2;
    while (size < n) size *= 2;
    const grown = new Int32Array(size);
    grown.set(this.out);
    this.out = grown;
  }

  // Appends the tokens of text[from..to) at out[count], the added tokens of matchers[level] and those after it taken
  // out (added_tokens.ts); returns the new count. The text between two is what the later matchers search, and BPE
  // encodes what they leave, each stretch as a text of its own, as the tokenizers library does.
  private encodeAdded(text: string, from: number, to: number, count: number, matchers: readonly TokenMatcher[], level: number): number {
    if (level === matchers.length) return this.encodeSegment(text, from, to, count);
    const matcher = matchers[level];
    matcher.reset();
    let done = from;
    for (let at = from; matcher.find(text, at, to); ) {
      const { token } = matcher;
      let { start, end } = matcher;
      at = end;
      if (!standsAlone(token, text, start, end, from, to)) continue;
      if (token.lstrip) start = Math.max(whitespaceStart(text, start, from), done);
      if (token.rstrip) at = end = whitespaceEnd(text, end, to);
      if (done < start) count = this.encodeAdded(text, done, start, count, matchers, level + 1);
      this.reserve(count + 1);
      this.out[count++] = token.id;
      done = end;
    }
    return done < to ? this.encodeAdded(text, done, to, count, matchers, level + 1) : count;
  }

  // Appends the tokens of text[start..end), free of added tokens, at out[count]; returns the new count.
  private encodeSegment(text: string, start: number, end: number, count: number): number {
    const cache = this.cache;
    const byteTokens = this.vocab.byteTokens;
    let i = start;
    while (i < end) {
      const j = pieceEnd(text, i, end);
      // A piece never yields more tokens than its UTF-8 bytes: at most 3 per code unit.
      if (count + 3 * (j - i) > this.out.length) this.reserve(count + 3 * (j - i));
      const c = text.charCodeAt(i);
      if (j - i === 1 && c < 0x80) {
        this.out[count++] = byteTokens[c];
      } else if (j - i <= MAX_CACHED_PIECE) {
        const hash = hashPiece(text, i, j);
        const slot = cache.find(text, i, j, hash);
        if (slot >= 0) {
          count = cache.copyTokens(slot, this.out, count);
        } else {
          const n = this.mergePiece(text, i, j);
          cache.insert(text, i, j, hash, this.parts, n);
          this.out.set(this.parts.subarray(0, n), count);
          count += n;
        }
      } else {
        const n = this.mergePiece(text, i, j);
        this.out.set(this.parts.subarray(0, n), count);
        count += n;
      }
      i = j;
    }
    return count;
  }

  // BPE of text[start..end) into parts[0..n); returns n. UTF-8 as TextEncoder writes it: a lone
  // surrogate becomes U+FFFD.
  private mergePiece(text: string, start: number, end: number): number {
    if (this.parts.length < 3 * (end - start)) this.parts = new Int32Array(3 * (end - start));
    const parts = this.parts;
    const byteTokens = this.vocab.byteTokens;
    let n = 0;
    for (let i = start; i < end; i++) {
      let c = text.charCodeAt(i);
      if (c < 0x80) {
        parts[n++] = byteTokens[c];
      } else if (c < 0x800) {
        parts[n++] = byteTokens[0xc0 | (c >> 6)];
        parts[n++] = byteTokens[0x80 | (c & 0x3f)];
      } else {
        if ((c & 0xfc00) === 0xd800 && i + 1 < end && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
          c = 0x10000 + ((c - 0xd800) << 10) + (text.charCodeAt(++i) - 0xdc00);
          parts[n++] = byteTokens[0xf0 | (c >> 18)];
          parts[n++] = byteTokens[0x80 | ((c >> 12) & 0x3f)];
        } else {
          if ((c & 0xf800) === 0xd800) c = 0xfffd;
          parts[n++] = byteTokens[0xe0 | (c >> 12)];
        }
        parts[n++] = byteTokens[0x80 | ((c >> 6) & 0x3f)];
        parts[n++] = byteTokens[0x80 | (c & 0x3f)];
      }
    }
    return (this.merger as PairMerger).merge(parts, n);
  }
}

// Turns tokens into text as they are generated. A character whose UTF-8 bytes span several tokens is
// held back until its last byte arrives, so streamed text never shows U+FFFD for a half character.
export class StreamDecoder {
  private readonly decoder = utf8Decoder();

  constructor(private readonly tokenizer: Tokenizer) {}

  // The text that the token completes (often '', or more than one character).
  push(id: number): string {
    return this.decoder.decode(this.tokenizer.tokenBytes(id), { stream: true });
  }

  // The end of the stream: bytes still held (a character that never completed) come out as U+FFFD.
  end(): string {
    return this.decoder.decode();
  }
}

// Reads a vocabulary (encoder.json + vocab.bpe, vocab.json + merges.txt, tokenizer.json, or a GGUF file) from `dir`,
// by default the bundled GPT-2 one.
export function loadTokenizer(dir: string = bundledVocabularyDir(), options: TokenizerOptions = {}): Tokenizer {
  return new Tokenizer(new Vocabulary(locateVocabulary(dir)), options);
}

// GPT-2's vocabulary: 256 bytes, 50000 merges and <|endoftext|>.
export const GPT2_VOCAB_SIZE = 50257;

// The tokenizer of a model folder: its own vocabulary, or GPT-2's for a folder that has none (a bare config.json +
// model.safetensors, as Model.save writes), said in a warning. A model of another vocabulary size was trained on
// another vocabulary, which GPT-2's would misread into other tokens: it is refused.
// `gpt2` gives GPT-2's tokenizer (a server shares one among its models).
export function modelTokenizer(
  folder: Pick<ModelFolder, 'dir' | 'vocab' | 'config'>,
  warn: (message: string) => void = (message) => console.warn(`warning: ${message}`),
  gpt2: () => Tokenizer = loadTokenizer,
): Tokenizer {
  if (folder.vocab) {
    const tokenizer = loadTokenizer(folder.dir);
    // A token id past the model's embeddings has no logit to be sampled from nor row to be embedded by.
    if (folder.config && tokenizer.vocabSize > folder.config.vocabSize) {
      throw new Error(`${tokenizer.vocab.files.encoderPath}: ${tokenizer.vocabSize} tokens, more than the model's vocabulary of ${folder.config.vocabSize}: not the vocabulary the model was trained with`);
    }
    return tokenizer;
  }
  checkVocabulary(folder);
  warn(`${noVocabulary(folder.dir)}: using GPT-2's, whose size its vocab_size (${GPT2_VOCAB_SIZE}) matches`);
  return gpt2();
}

const noVocabulary = (dir: string) => `${dir} has no vocabulary (encoder.json + vocab.bpe, vocab.json + merges.txt, or tokenizer.json)`;

// Refuses a folder that modelTokenizer would give no tokenizer, without reading a vocabulary (a server checks every
// model's before serving it): one without a vocabulary whose vocab_size is not GPT-2's.
export function checkVocabulary(folder: Pick<ModelFolder, 'dir' | 'vocab' | 'config'>): void {
  const vocabSize = folder.config?.vocabSize;
  if (folder.vocab === null && vocabSize !== GPT2_VOCAB_SIZE) {
    throw new Error(`${noVocabulary(folder.dir)}, and its vocab_size is ${vocabSize}, not GPT-2's ${GPT2_VOCAB_SIZE}: copy in the vocabulary it was trained with`);
  }
}
