// Reading a GPT-2 vocabulary from a model folder: OpenAI's encoder.json + vocab.bpe, or the same data
// under Hugging Face's names vocab.json + merges.txt, or else the same data in Hugging Face's tokenizer.json, or else
// the metadata of the folder's GGUF file. Token strings
// are GPT-2's printable stand-ins for bytes (bytes_to_unicode in encoder.py); here they become raw bytes once, at load.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { GGUF_FILE, ggufFileIn, ggufVocabulary, openGguf } from '../formats/gguf';
import { type AddedToken, addedTokenEntry } from './added_tokens';
import { MAX_TOKEN_ID, MergeTable } from './bpe';
import { type FileToWrite, textToWrite, writeFilesAtomic } from '../util/atomic_file';
import { parseJsonAt, readJsonObject } from '../util/json_file';
import { isJsonObject } from '../util/json_object';
import { packageRoot } from '../util/package_root';
import { quoted } from '../util/quoted';

export const END_OF_TEXT = '<|endoftext|>';

const LAYOUTS = [
  { encoder: 'encoder.json', merges: 'vocab.bpe' },
  { encoder: 'vocab.json', merges: 'merges.txt' },
];
const HUGGING_FACE = LAYOUTS[1];
// The tokenizers library's one file, which a fast tokenizer's save_pretrained writes beside vocab.json and merges.txt
// and which some folders hold alone.
export const TOKENIZER_JSON = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
// transformers' record of a tokenizer's special tokens, beside tokenizer_config.json, whose values it takes over.
export const SPECIAL_TOKENS_MAP_FILE = 'special_tokens_map.json';

// A vocabulary folder's JSON files (tokenizer.json, tokenizer_config.json, special_tokens_map.json,
// added_tokens.json), each read and parsed at most once however many of the declarations in it a load looks up.
export class FolderJson {
  // Per file name: its object, null where there is none, the error where it cannot be read or is no JSON object.
  private readonly files = new Map<string, Record<string, unknown> | Error | null>();

  constructor(readonly dir: string) {}

  // The file `name` as an object, null where there is none; a file that cannot be read, or holds no JSON object, throws.
  required(name: string): Record<string, unknown> | null {
    const json = this.read(name);
    if (json instanceof Error) throw json;
    return json;
  }

  // The file `name` as an object; null where there is none or where it cannot be read: it holds only what a model can
  // go without (a chat template, its end of text), and a model folder loaded before with a broken one (a download cut
  // short) still loads.
  optional(name: string): Record<string, unknown> | null {
    const json = this.read(name);
    return json instanceof Error ? null : json;
  }

  private read(name: string): Record<string, unknown> | Error | null {
    let json = this.files.get(name);
    if (json === undefined) {
      const file = path.join(this.dir, name);
      try {
        json = fs.existsSync(file) ? readJsonObject(file) : null;
      } catch (err) {
        json = err as Error;
      }
      this.files.set(name, json);
    }
    return json;
  }
}

// A folder's tokenizer_config.json (or another of transformers' JSON files), as FolderJson.optional reads it.
export function tokenizerConfig(dir: string, name = TOKENIZER_CONFIG_FILE): Record<string, unknown> | null {
  return new FolderJson(dir).optional(name);
}

// The end-of-text token a fine-tune's tokenizer declares (its eos_token, as a text or as transformers' AddedToken
// {"content": ...}) where it is not <|endoftext|>, with the file that says so: a ChatML fine-tune's "<|im_end|>".
function declaredEndOfText(folder: FolderJson): { file: string; text: string } | null {
  for (const name of [SPECIAL_TOKENS_MAP_FILE, TOKENIZER_CONFIG_FILE]) {
    const eos = folder.optional(name)?.eos_token;
    const text = isJsonObject(eos) ? eos.content : eos;
    if (typeof text === 'string' && text !== '') return text === END_OF_TEXT ? null : { file: path.join(folder.dir, name), text };
  }
  return null;
}

// transformers' names of a tokenizer's special tokens, in tokenizer_config.json and special_tokens_map.json.
const SPECIAL_TOKEN_FIELDS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'];

// The added tokens (added_tokens.ts) of the vocabulary in `folder` whose ids `idOf` gives (-1: no token), by the first
// file that declares each, as transformers reads them: tokenizer.json's "added_tokens"; tokenizer_config.json's
// "added_tokens_decoder" (which Model.save writes); the special tokens of special_tokens_map.json and
// tokenizer_config.json; added_tokens.json (special where one of those names it). <|endoftext|> is a special token
// wherever none declares it. A token that is no token of the vocabulary is left out: it has no id to be; one that a
// file gives another id than the vocabulary does is refused, naming the file and field.
function declaredAddedTokens(folder: FolderJson, idOf: (text: string) => number, eotToken: number): AddedToken[] {
  const { dir } = folder;
  const found = new Map<string, AddedToken>();
  // `token.id`: the id its file gives it, -1 where it gives none.
  const add = (token: AddedToken, where: string): void => {
    const id = idOf(token.text);
    if (id >= 0 && token.id >= 0 && token.id !== id) throw new Error(`${where}: ${JSON.stringify(token.text)} is given id ${token.id}, but is token ${id} of the vocabulary`);
    if (id >= 0 && !found.has(token.text)) found.set(token.text, { ...token, id });
  };
  const declaredId = (id: unknown): number => (Number.isSafeInteger(id) ? (id as number) : -1);
  const added = folder.optional(TOKENIZER_JSON)?.added_tokens;
  if (Array.isArray(added)) {
    added.forEach((entry, i) => {
      const where = `${path.join(dir, TOKENIZER_JSON)}: field "added_tokens[${i}]"`;
      add(addedTokenEntry(entry, declaredId(isJsonObject(entry) ? entry.id : undefined), false, where), where);
    });
  }
  const config = folder.optional(TOKENIZER_CONFIG_FILE);
  const decoder = config?.added_tokens_decoder;
  if (isJsonObject(decoder)) {
    for (const [id, entry] of Object.entries(decoder)) {
      const where = `${path.join(dir, TOKENIZER_CONFIG_FILE)}: field "added_tokens_decoder.${id}"`;
      add(addedTokenEntry(entry, declaredId(Number(id)), false, where), where);
    }
  }
  const specialTexts = new Set<string>();
  for (const [name, declared] of [[SPECIAL_TOKENS_MAP_FILE, folder.optional(SPECIAL_TOKENS_MAP_FILE)], [TOKENIZER_CONFIG_FILE, config]] as const) {
    if (declared === null) continue;
    const extra = Array.isArray(declared.additional_special_tokens) ? declared.additional_special_tokens.map((entry, i) => [`additional_special_tokens[${i}]`, entry] as const) : [];
    for (const [field, entry] of [...SPECIAL_TOKEN_FIELDS.map((f) => [f, declared[f]] as const), ...extra]) {
      if (entry === undefined || entry === null) continue;
      const where = `${path.join(dir, name)}: field "${field}"`;
      const token = addedTokenEntry(entry, -1, true, where);
      specialTexts.add(token.text);
      add(token, where);
    }
  }
  for (const [text, id] of Object.entries(folder.optional(ADDED_TOKENS_FILE) ?? {})) {
    const where = `${path.join(dir, ADDED_TOKENS_FILE)}: key ${JSON.stringify(text)}`;
    add(addedTokenEntry(text, declaredId(id), specialTexts.has(text), where), where);
  }
  add({ text: END_OF_TEXT, id: eotToken, special: true, singleWord: false, lstrip: false, rstrip: false, normalized: false }, END_OF_TEXT);
  return [...found.values()].sort((a, b) => a.id - b.id);
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes for
// U+0100.. in byte order. Indexed by char code (all below 0x144); -1 where no byte.
const byteOfChar = new Int16Array(0x144).fill(-1);
const charOfByte = new Array<string>(256);
{
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    const code = printable ? b : 0x100 + extra++;
    byteOfChar[code] = b;
    charOfByte[b] = String.fromCharCode(code);
  }
}

// The bundled GPT-2 vocabulary, lib/tokenizer/gpt2 under the package root (this file runs from dist/).
export function bundledVocabularyDir(): string {
  return path.join(packageRoot(), 'lib', 'tokenizer', 'gpt2');
}

// Where a vocabulary is read from: two files, or (both paths the same file) a tokenizer.json or a GGUF file's metadata.
export interface VocabularyFiles {
  encoderPath: string;
  mergesPath: string;
}

function isGguf(files: VocabularyFiles): boolean {
  return files.encoderPath.endsWith('.gguf');
}

function isTokenizerJson(files: VocabularyFiles): boolean {
  return path.basename(files.encoderPath) === TOKENIZER_JSON;
}

export function locateVocabulary(dir: string): VocabularyFiles {
  for (const layout of LAYOUTS) {
    const encoderPath = path.join(dir, layout.encoder);
    const mergesPath = path.join(dir, layout.merges);
    if (fs.existsSync(encoderPath) && fs.existsSync(mergesPath)) return { encoderPath, mergesPath };
  }
  const tokenizerJson = path.join(dir, TOKENIZER_JSON);
  if (fs.existsSync(tokenizerJson)) return { encoderPath: tokenizerJson, mergesPath: tokenizerJson };
  const gguf = ggufFileIn(dir);
  if (gguf !== null) return { encoderPath: gguf, mergesPath: gguf };
  const wanted = LAYOUTS.map((l) => `${l.encoder} + ${l.merges}`).join(' or ');
  throw new Error(`${dir}: no GPT-2 vocabulary here (looked for ${wanted}, ${TOKENIZER_JSON}, or ${GGUF_FILE})`);
}

// A tokenizer.json's vocabulary as GPT-2's two files would hold it, refused where its tokenizer is not GPT-2's
// byte-level BPE: another model, a normalizer, a pre-tokenizer other than GPT-2's (one that adds a space before
// the text included), each of which would split the same text into other tokens. Added tokens (a fine-tune's pad or
// chat tokens) join the vocabulary at their ids, their text in GPT-2's stand-ins for bytes.
function tokenizerJsonVocabulary(folder: FolderJson): { encoder: Buffer; merges: Buffer } {
  const file = path.join(folder.dir, TOKENIZER_JSON);
  const json = folder.required(TOKENIZER_JSON);
  if (json === null) throw new Error(`${file}: cannot read: no such file`);
  const refuse = (field: string, value: unknown, why: string): Error => new Error(`${file}: field "${field}" is ${quoted(value)}: ${why}`);
  const model = json.model;
  if (!isJsonObject(model) || model.type !== 'BPE') throw refuse('model.type', isJsonObject(model) ? model.type : model, 'dixie reads GPT-2\'s byte-level BPE ("BPE")');
  if (json.normalizer !== null && json.normalizer !== undefined) throw refuse('normalizer', json.normalizer, 'GPT-2 changes no text before splitting it (null)');
  const pre = json.pre_tokenizer;
  if (!isJsonObject(pre) || pre.type !== 'ByteLevel') throw refuse('pre_tokenizer', pre, 'GPT-2 splits text as the ByteLevel pre-tokenizer does');
  if (pre.add_prefix_space === true) throw refuse('pre_tokenizer.add_prefix_space', true, 'GPT-2 adds no space before the text (false)');
  if (pre.use_regex === false) throw refuse('pre_tokenizer.use_regex', false, 'GPT-2 splits words by its pattern (true)');
  const vocab = model.vocab;
  if (!isJsonObject(vocab)) throw refuse('model.vocab', vocab, 'must be an object of token -> id');
  // A Map, since a token may be any string: "__proto__" set on a plain object would change its prototype, not add it.
  const encoder = new Map<string, number>();
  for (const [token, id] of Object.entries(vocab)) {
    if (!Number.isSafeInteger(id) || (id as number) < 0) throw refuse(`model.vocab.${token}`, id, 'must be a token id, a whole number');
    encoder.set(token, id as number);
  }
  const added = Array.isArray(json.added_tokens) ? json.added_tokens : [];
  addTokens(encoder, added.map((entry, i) => {
    if (!isJsonObject(entry) || typeof entry.content !== 'string') throw refuse(`added_tokens[${i}]`, entry, 'must have a "content" string and an "id"');
    return { text: entry.content, id: entry.id, what: `field "added_tokens[${i}].id"` };
  }), file, 'model.vocab');
  const mergesField = model.merges ?? [];
  if (!Array.isArray(mergesField)) throw refuse('model.merges', mergesField, 'must be a list of merges');
  // Older files write a merge as "a b", newer ones as ["a", "b"].
  const merges = mergesField.map((m, i) => {
    if (typeof m === 'string') return m;
    if (Array.isArray(m) && m.length === 2 && m.every((part) => typeof part === 'string')) return m.join(' ');
    throw refuse(`model.merges[${i}]`, m, 'must be "a b" or ["a", "b"]');
  });
  return { encoder: encoderJsonBytes(encoder), merges: Buffer.from(['#version: 0.2', ...merges, ''].join('\n')) };
}

function encoderJsonBytes(encoder: ReadonlyMap<string, number>): Buffer {
  return Buffer.from(`{${[...encoder].map(([token, id]) => `${JSON.stringify(token)}:${JSON.stringify(id)}`).join(',')}}`);
}

// Tokens a fine-tune added (its pad or chat tokens) joined to `encoder` (token -> id) at their ids, their text in
// GPT-2's stand-ins for bytes. A token that is another id in `vocabName` already, or an id that is another token
// there, is refused, naming the entry (`what`) in `file`: either would leave two tokens for one id or text.
function addTokens(encoder: Map<string, number>, added: readonly { text: string; id: unknown; what: string }[], file: string, vocabName: string): void {
  const tokenOfId = new Map([...encoder].map(([token, id]) => [id, token]));
  for (const { text, id, what } of added) {
    const refuse = (why: string): Error => new Error(`${file}: ${what} is ${quoted(id)}: ${why}`);
    if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) > MAX_TOKEN_ID) throw refuse(`must be a token id, a whole number in 0..${MAX_TOKEN_ID}`);
    const token = [...Buffer.from(text, 'utf8')].map((b) => charOfByte[b]).join('');
    const held = encoder.get(token);
    if (held !== undefined && held !== id) throw refuse(`${JSON.stringify(text)} is token ${held} in ${vocabName}`);
    const other = tokenOfId.get(id as number);
    if (other !== undefined && other !== token) {
      throw refuse(`token ${id as number} is ${JSON.stringify(Buffer.from([...other].map((c) => byteOf(c.charCodeAt(0)))).toString('utf8'))} in ${vocabName}`);
    }
    encoder.set(token, id as number);
    tokenOfId.set(id as number, token);
  }
}

// transformers' slow-tokenizer save (and a fast tokenizer's, beside its tokenizer.json) keeps the tokens a fine-tune
// added apart from vocab.json, as {"<|im_end|>": 50258, ...}.
export const ADDED_TOKENS_FILE = 'added_tokens.json';

// vocab.json's bytes with the tokens of an added_tokens.json beside it; as they are without one.
function withAddedTokens(encoderPath: string, encoderBytes: Buffer, folder: FolderJson): Buffer {
  const added = path.basename(encoderPath) === HUGGING_FACE.encoder ? folder.required(ADDED_TOKENS_FILE) : null;
  if (added === null) return encoderBytes;
  const file = path.join(folder.dir, ADDED_TOKENS_FILE);
  const vocab = parseJsonAt(encoderPath, encoderBytes.toString('utf8'));
  if (!isJsonObject(vocab)) throw new Error(`${encoderPath}: must be a JSON object of token -> id`);
  const encoder = new Map(Object.entries(vocab) as [string, number][]);
  addTokens(encoder, Object.entries(added).map(([text, id]) => ({ text, id, what: `key ${JSON.stringify(text)}` })), file, HUGGING_FACE.encoder);
  return encoderJsonBytes(encoder);
}

// The two files' bytes, or what they would hold for a tokenizer.json or a GGUF file's vocabulary; a GGUF file's own
// end of text and added tokens too (its metadata), which the files beside other vocabularies declare. `folder` holds
// the JSON files beside them, which a load reads those declarations from after.
export function vocabularyBytes(files: VocabularyFiles, folder = new FolderJson(path.dirname(files.encoderPath))): { encoder: Buffer; merges: Buffer; eosToken?: number; added?: { id: number; special: boolean }[] } {
  if (isTokenizerJson(files)) return tokenizerJsonVocabulary(folder);
  if (!isGguf(files)) return { encoder: withAddedTokens(files.encoderPath, readBytes(files.encoderPath), folder), merges: readBytes(files.mergesPath) };
  const g = openGguf(files.encoderPath);
  try {
    const vocabulary = ggufVocabulary(g);
    if (!vocabulary) throw new Error(`${files.encoderPath}: no vocabulary in its metadata (tokenizer.ggml.tokens)`);
    return vocabulary;
  } finally {
    g.close();
  }
}

// Writes a vocabulary into `dir` as Hugging Face's tokenizer files (vocabularyFiles).
export async function writeVocabulary(vocab: Vocabulary, dir: string, options: { nCtx: number; chatTemplate?: string }): Promise<void> {
  const { write, remove } = vocabularyFiles(vocab, dir, options);
  await writeFilesAtomic(write, remove);
}

// A vocabulary as Hugging Face's tokenizer files: vocab.json and merges.txt (the bytes of encoder.json and
// vocab.bpe), and tokenizer_config.json, so that the folder is a whole Hugging Face model that transformers'
// AutoTokenizer, vLLM and TGI read as it is. Its added tokens are its "added_tokens_decoder", with their flags.
// `chatTemplate`, for a chat model, tells them its prompt format (lib/formats/chat_record.ts). `remove`: the other
// tokenizer files a folder may hold (another model's, saved there before), which are read before these or beside
// them and would give the folder other tokens, another end of text or other added tokens.
export function vocabularyFiles(vocab: Vocabulary, dir: string, options: { nCtx: number; chatTemplate?: string }): { write: FileToWrite[]; remove: string[] } {
  const config = {
    tokenizer_class: 'GPT2Tokenizer',
    bos_token: END_OF_TEXT,
    eos_token: vocab.textOf(vocab.eosToken),
    unk_token: END_OF_TEXT,
    add_prefix_space: false,
    model_max_length: options.nCtx,
    added_tokens_decoder: Object.fromEntries(vocab.addedTokens.map((t) => [
      String(t.id),
      { content: t.text, lstrip: t.lstrip, normalized: t.normalized, rstrip: t.rstrip, single_word: t.singleWord, special: t.special },
    ])),
    ...(options.chatTemplate !== undefined && { chat_template: options.chatTemplate }),
  };
  const [openAi] = LAYOUTS;
  return {
    write: [
      textToWrite(path.join(dir, HUGGING_FACE.encoder), vocab.encoderBytes),
      textToWrite(path.join(dir, HUGGING_FACE.merges), vocab.mergesBytes),
      textToWrite(path.join(dir, TOKENIZER_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`),
    ],
    remove: [openAi.encoder, openAi.merges, TOKENIZER_JSON, ADDED_TOKENS_FILE, SPECIAL_TOKENS_MAP_FILE].map((name) => path.join(dir, name)),
  };
}

export class Vocabulary {
  readonly files: VocabularyFiles;
  // The two files as they were read: what a checkpoint writes, since the folder they came from may be gone by
  // then (a resumed training run prunes the checkpoint it resumed from).
  readonly encoderBytes: Buffer;
  readonly mergesBytes: Buffer;
  // One past the largest id.
  readonly size: number;
  readonly eotToken: number;
  // The token that ends a text as the tokenizer's files declare it (declaredEndOfText) or a GGUF file's metadata does,
  // else eotToken.
  readonly eosToken: number;
  // The tokens that encoding takes out of a text before BPE (declaredAddedTokens), by id.
  readonly addedTokens: readonly AddedToken[];
  // Token id of each single byte.
  readonly byteTokens = new Int32Array(256);
  // The bytes of token t are tokenBytes[tokenStart[t] .. tokenEnd[t]); empty for ids the file skips.
  readonly tokenBytes: Uint8Array;
  readonly tokenStart: Int32Array;
  readonly tokenEnd: Int32Array;
  private readonly index: TokenIndex;
  private mergeTable: MergeTable | undefined;
  private digest: string | undefined;

  constructor(files: VocabularyFiles) {
    this.files = files;
    // The JSON files beside the vocabulary, which the bytes, the end of text and the added tokens are each read from.
    const folder = new FolderJson(path.dirname(files.encoderPath));
    const bytes = vocabularyBytes(files, folder);
    this.encoderBytes = bytes.encoder;
    this.mergesBytes = bytes.merges;
    const tokens = parseEncoder(files.encoderPath, this.encoderBytes);
    this.size = tokens.size;
    this.tokenBytes = tokens.bytes;
    this.tokenStart = tokens.start;
    this.tokenEnd = tokens.end;
    this.index = new TokenIndex(this, tokens.hash);

    const probe = new Uint8Array(1);
    for (let b = 0; b < 256; b++) {
      probe[0] = b;
      const id = this.index.find(probe, 0, 1, fnv(probe, 0, 1, FNV_BASIS));
      if (id < 0) throw new Error(`${files.encoderPath}: no token for byte 0x${b.toString(16)} (${JSON.stringify(charOfByte[b])})`);
      this.byteTokens[b] = id;
    }
    this.eotToken = this.idOf(END_OF_TEXT);
    if (this.eotToken < 0) throw new Error(`${files.encoderPath}: no ${END_OF_TEXT} token`);
    // A GGUF file's own end of text is its metadata's: the files beside it are not read for one.
    const declared = bytes.eosToken === undefined ? declaredEndOfText(folder) : null;
    if (bytes.eosToken !== undefined) {
      this.eosToken = bytes.eosToken;
    } else if (declared === null) {
      this.eosToken = this.eotToken;
    } else {
      this.eosToken = this.idOf(declared.text);
      if (this.eosToken < 0) throw new Error(`${declared.file}: field "eos_token" is ${JSON.stringify(declared.text)}, which is no token of the vocabulary (${files.encoderPath})`);
    }
    this.addedTokens = bytes.added === undefined ? declaredAddedTokens(folder, (text) => this.idOf(text), this.eotToken) : this.ggufAddedTokens(bytes.added);
  }

  // A GGUF file's control and user-defined tokens as added tokens, special and not, <|endoftext|> special wherever
  // the file does not say.
  private ggufAddedTokens(added: readonly { id: number; special: boolean }[]): AddedToken[] {
    const tokens = added.filter(({ id }) => id < this.size && this.tokenEnd[id] !== 0).map(({ id, special }) => ({
      text: this.textOf(id), id, special, singleWord: false, lstrip: false, rstrip: false, normalized: false,
    }));
    if (!tokens.some((t) => t.id === this.eotToken)) tokens.push({ text: END_OF_TEXT, id: this.eotToken, special: true, singleWord: false, lstrip: false, rstrip: false, normalized: false });
    return tokens.sort((a, b) => a.id - b.id);
  }

  // The token whose bytes are the UTF-8 of `text`, or -1.
  idOf(text: string): number {
    const bytes = Buffer.from(text, 'utf8');
    return this.index.find(bytes, 0, bytes.length, fnv(bytes, 0, bytes.length, FNV_BASIS));
  }

  // The text of token `id`: its bytes as UTF-8.
  textOf(id: number): string {
    return Buffer.from(this.tokenBytes.subarray(this.tokenStart[id], this.tokenEnd[id])).toString('utf8');
  }

  // What tells this vocabulary from another whatever its files' names: a SHA-256 of the two files' bytes and of its
  // added tokens. Another thread that reads the same folder later may find other files there (a model folder
  // overwritten since).
  get fingerprint(): string {
    this.digest ??= crypto.createHash('sha256').update(this.encoderBytes).update('\0').update(this.mergesBytes).update('\0').update(JSON.stringify(this.addedTokens)).digest('hex');
    return this.digest;
  }

  // Built on first use: decoding alone never needs it.
  get merges(): MergeTable {
    if (this.mergeTable === undefined) this.mergeTable = parseMerges(this.files.mergesPath, this.mergesBytes, this.index);
    return this.mergeTable;
  }
}

const FNV_BASIS = 0x811c9dc5 | 0; // int32 throughout, or V8 deoptimizes on the first wrap

// FNV-1a over bytes[from..to), continuing from state h.
function fnv(bytes: Uint8Array, from: number, to: number, h: number): number {
  for (let k = from; k < to; k++) h = Math.imul(h ^ bytes[k], 0x01000193);
  return h;
}

// Token id by token bytes: open addressing over the vocabulary's own bytes.
class TokenIndex {
  private readonly slots: Int32Array; // id + 1; 0: empty
  private readonly mask: number;
  private readonly vocab: Vocabulary;

  // hash[id]: fnv of token id's bytes.
  constructor(vocab: Vocabulary, hash: Int32Array) {
    this.vocab = vocab;
    const { tokenBytes, tokenStart, tokenEnd } = vocab;
    let slots = 16;
    while (slots < vocab.size * 2) slots *= 2;
    this.slots = new Int32Array(slots);
    this.mask = slots - 1;
    for (let id = 0; id < vocab.size; id++) {
      const from = tokenStart[id];
      const len = tokenEnd[id] - from;
      if (len === 0) continue;
      let slot = (hash[id] ^ (hash[id] >>> 16)) & this.mask;
      for (let other = this.slots[slot] - 1; other >= 0; other = this.slots[slot] - 1) {
        const twin = hash[other] === hash[id] ? this.find(tokenBytes, from, len, hash[id]) : -1;
        if (twin >= 0) throw new Error(`${vocab.files.encoderPath}: tokens ${twin} and ${id} stand for the same bytes`);
        slot = (slot + 1) & this.mask;
      }
      this.slots[slot] = id + 1;
    }
  }

  // The token whose bytes are key[from..from+len) (hash: their fnv), or -1.
  find(key: Uint8Array, from: number, len: number, hash: number): number {
    const { tokenBytes, tokenStart, tokenEnd } = this.vocab;
    let slot = (hash ^ (hash >>> 16)) & this.mask;
    for (;;) {
      const id = this.slots[slot] - 1;
      if (id < 0) return -1;
      const at = tokenStart[id];
      if (tokenEnd[id] - at === len) {
        let k = 0;
        while (k < len && tokenBytes[at + k] === key[from + k]) k++;
        if (k === len) return id;
      }
      slot = (slot + 1) & this.mask;
    }
  }
}

function readBytes(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
}

// The parsers below run once, cold, before the JIT has warmed up: small functions over bytes (which V8
// optimizes soon), no substrings, and line numbers counted only when there is an error to report.
class SyntaxAt extends Error {
  constructor(
    message: string,
    readonly at: number,
  ) {
    super(message);
  }
}

// file:line:column: message, found "what is there".
function located(file: string, src: Uint8Array, err: unknown): unknown {
  if (!(err instanceof SyntaxAt)) return err;
  let line = 1;
  let lineStart = 0;
  for (let k = 0; k < err.at && k < src.length; k++) {
    if (src[k] === 0x0a) {
      line++;
      lineStart = k + 1;
    }
  }
  let end = err.at;
  while (end < src.length && src[end] !== 0x0a && end - err.at < 24) end++;
  const found = err.at < src.length ? JSON.stringify(Buffer.from(src.subarray(err.at, end)).toString('utf8')) : 'the end of the file';
  return new Error(`${file}:${line}:${err.at - lineStart + 1}: ${err.message}, found ${found}`);
}

// The byte that GPT-2's character `c` stands for, or -1.
function byteOf(c: number): number {
  return c < byteOfChar.length ? byteOfChar[c] : -1;
}

function skipSpace(src: Uint8Array, at: number): number {
  while (at < src.length && (src[at] === 0x20 || src[at] === 0x0a || src[at] === 0x0d || src[at] === 0x09)) at++;
  return at;
}

function expectByte(src: Uint8Array, at: number, c: number, expected: string): number {
  at = skipSpace(src, at);
  if (src[at] !== c) throw new SyntaxAt(`expected ${expected}`, at);
  return at + 1;
}

// The tokens of encoder.json by id: token id's bytes are bytes[start[id] .. end[id]) (empty for an id the
// file skips), hash[id] their fnv.
interface EncoderTokens {
  size: number;
  bytes: Uint8Array;
  start: Int32Array;
  end: Int32Array;
  hash: Int32Array;
}

// What readKey leaves besides its return value: bytes used so far and the key's hash.
const keyOut = new Int32Array(2);

// Reads the JSON string whose opening quote is at src[at - 1] as GPT-2 byte characters into bytes[used..];
// returns the position after the closing quote.
function readKey(src: Uint8Array, at: number, bytes: Uint8Array, used: number): number {
  let h = FNV_BASIS;
  for (;;) {
    if (at >= src.length) throw new SyntaxAt('expected the end of the string', at);
    const from = at;
    let c = src[at];
    if (c === 0x22) break;
    if (c === 0x5c) {
      const escaped = readEscape(src, at);
      c = escaped >> 3;
      at += escaped & 7;
    } else if (c < 0x80) {
      at++;
    } else {
      // GPT-2's byte characters are all below U+0800: two bytes of UTF-8 at most.
      const d = src[at + 1];
      if ((c & 0xe0) !== 0xc0 || (d & 0xc0) !== 0x80) throw new SyntaxAt("expected one of GPT-2's byte characters", at);
      c = ((c & 0x1f) << 6) | (d & 0x3f);
      at += 2;
    }
    const b = byteOf(c);
    if (b < 0) throw new SyntaxAt(`expected one of GPT-2's byte characters, not U+${c.toString(16).padStart(4, '0')}`, from);
    bytes[used++] = b;
    h = Math.imul(h ^ b, 0x01000193);
  }
  keyOut[0] = used;
  keyOut[1] = h;
  return at + 1;
}

// The JSON escape at src[at] (a backslash), as (char << 3 | bytes it takes).
function readEscape(src: Uint8Array, at: number): number {
  const e = src[at + 1];
  if (e === 0x75) {
    let c = 0;
    for (let k = at + 2; k < at + 6; k++) {
      const d = src[k] | 0x20; // A-F to a-f; digits keep their value
      if (d >= 0x30 && d <= 0x39) c = c * 16 + d - 0x30;
      else if (d >= 0x61 && d <= 0x66) c = c * 16 + d - 0x57;
      else throw new SyntaxAt('expected 4 hex digits after \\u', k);
    }
    return (c << 3) | 6;
  }
  const simple = e === 0x22 || e === 0x5c || e === 0x2f ? e : e === 0x6e ? 0x0a : e === 0x74 ? 0x09 : e === 0x72 ? 0x0d : e === 0x62 ? 0x08 : e === 0x66 ? 0x0c : -1;
  if (simple < 0) throw new SyntaxAt('expected a JSON escape', at);
  return (simple << 3) | 2;
}

// encoder.json / vocab.json: one flat JSON object of token string -> id. Parsed by hand, straight into
// bytes: JSON.parse would build a 50k-key object, several times slower than all the rest of loading.
function parseEncoder(file: string, src: Buffer): EncoderTokens {
  const bytes = new Uint8Array(src.length);
  const start = new Int32Array(MAX_TOKEN_ID + 1);
  const end = new Int32Array(MAX_TOKEN_ID + 1);
  const hash = new Int32Array(MAX_TOKEN_ID + 1);
  let size = 0;
  let used = 0;
  try {
    let at = expectByte(src, 0, 0x7b, '"{"');
    for (;;) {
      at = expectByte(src, at, 0x22, 'a token string');
      const from = used;
      at = readKey(src, at, bytes, used);
      used = keyOut[0];
      if (used === from) throw new SyntaxAt('expected a token, not an empty string', at - 2);
      at = skipSpace(src, expectByte(src, at, 0x3a, '":"'));
      const digits = at;
      let id = 0;
      while (at < src.length && src[at] >= 0x30 && src[at] <= 0x39 && id <= MAX_TOKEN_ID) id = id * 10 + src[at++] - 0x30;
      // JSON spells 456 as 4.56e2 too, which a digit-by-digit reading would take for 4.
      if (at === digits || id > MAX_TOKEN_ID || src[at] === 0x2e || (src[at] | 0x20) === 0x65) {
        throw new SyntaxAt(`expected a token id in 0..${MAX_TOKEN_ID}, written as a whole number`, digits);
      }
      if (end[id] !== 0) throw new SyntaxAt(`id ${id} is given to an earlier token too`, digits);
      start[id] = from;
      end[id] = used;
      hash[id] = keyOut[1];
      if (id >= size) size = id + 1;
      at = skipSpace(src, at);
      if (src[at] === 0x7d) break;
      at = expectByte(src, at, 0x2c, '"," or "}"');
    }
    if (skipSpace(src, at + 1) < src.length) throw new SyntaxAt('expected the end of the file', skipSpace(src, at + 1));
  } catch (err) {
    throw located(file, src, err);
  }
  return { size, bytes: bytes.subarray(0, used), start: start.subarray(0, size), end: end.subarray(0, size), hash: hash.subarray(0, size) };
}

// What readMergeLine leaves: the pair's bytes in mergeBytes[0..size), the right token's from `split`,
// and the hashes of the left token, the right token and both.
const mergeBytes = new Uint8Array(1024);
const mergeOut = new Int32Array(5);
const SIZE = 0;
const SPLIT = 1;
const LEFT_HASH = 2;
const RIGHT_HASH = 3;
const BOTH_HASH = 4;

// Reads the merge line "left right" that starts at src[at]; returns the position of its end (the
// newline, or the end of the file). An empty line leaves size 0.
function readMergeLine(src: Uint8Array, at: number): number {
  let split = -1;
  let size = 0;
  let leftHash = FNV_BASIS;
  let rightHash = FNV_BASIS;
  let bothHash = FNV_BASIS;
  for (; at < src.length; at++) {
    let c = src[at];
    if (c === 0x0a) break;
    if (c === 0x0d && src[at + 1] === 0x0a) continue;
    if (c === 0x20) {
      if (split >= 0 || size === 0) throw new SyntaxAt('expected "left right"', at);
      split = size;
      leftHash = bothHash;
      continue;
    }
    if (c >= 0x80) {
      const d = src[at + 1];
      if ((c & 0xe0) !== 0xc0 || (d & 0xc0) !== 0x80) throw new SyntaxAt("expected one of GPT-2's byte characters", at);
      c = ((c & 0x1f) << 6) | (d & 0x3f);
      at++;
    }
    const b = byteOf(c);
    if (b < 0 || size === mergeBytes.length) throw new SyntaxAt("expected a short line of GPT-2's byte characters", at);
    mergeBytes[size++] = b;
    bothHash = Math.imul(bothHash ^ b, 0x01000193);
    if (split >= 0) rightHash = Math.imul(rightHash ^ b, 0x01000193);
  }
  if (size > 0 && (split < 0 || split === size)) throw new SyntaxAt('expected "left right"', at - 1);
  mergeOut[SIZE] = size;
  mergeOut[SPLIT] = split;
  mergeOut[LEFT_HASH] = leftHash;
  mergeOut[RIGHT_HASH] = rightHash;
  mergeOut[BOTH_HASH] = bothHash;
  return at;
}

// vocab.bpe / merges.txt: an optional "#version" line, then one merge "left right" per line, best first.
function parseMerges(file: string, src: Buffer, index: TokenIndex): MergeTable {
  let lineCount = 1;
  for (let at = 0; at < src.length; at++) if (src[at] === 0x0a) lineCount++;
  const table = new MergeTable(lineCount);
  let at = 0;
  if (src.subarray(0, 8).toString('latin1') === '#version') {
    while (at < src.length && src[at] !== 0x0a) at++;
    at++;
  }
  try {
    for (let rank = 0; at < src.length; at++) {
      const start = at;
      at = readMergeLine(src, at);
      const size = mergeOut[SIZE];
      if (size === 0) continue;
      const split = mergeOut[SPLIT];
      const a = index.find(mergeBytes, 0, split, mergeOut[LEFT_HASH]);
      const b = index.find(mergeBytes, split, size - split, mergeOut[RIGHT_HASH]);
      const merged = index.find(mergeBytes, 0, size, mergeOut[BOTH_HASH]);
      if (a < 0 || b < 0 || merged < 0) {
        throw new SyntaxAt(`the ${a < 0 ? 'left' : b < 0 ? 'right' : 'merged'} token is not in the encoder`, start);
      }
      table.set(a, b, rank++, merged);
    }
  } catch (err) {
    throw located(file, src, err);
  }
  return table;
}
