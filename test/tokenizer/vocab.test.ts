// The vocabulary: the bundled GPT-2 files agree token for token with js-tiktoken's r50k_base ranks; both
// file layouts load; a toy vocabulary encodes as worked out by hand; bad files fail with file:line.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import r50kBase from 'js-tiktoken/ranks/r50k_base';
import t from 'tap';
import { findVocabulary } from '../../lib/formats/model_folder';
import { bundledVocabularyDir, encodeParallel, loadTokenizer, modelTokenizer } from '../../lib/tokenizer';
import { MAX_TOKEN_ID } from '../../lib/tokenizer/bpe';

const TOY = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'tokenizer', 'toy');

// r50k_base ranks: lines of "<name> <first rank> <base64 token> <base64 token> ...".
function referenceTokenBytes(): Map<number, string> {
  const bytes = new Map<number, string>();
  for (const line of r50kBase.bpe_ranks.split('\n')) {
    if (line === '') continue;
    const [, first, ...tokens] = line.split(' ');
    tokens.forEach((token, k) => bytes.set(Number(first) + k, Buffer.from(token, 'base64').toString('hex')));
  }
  return bytes;
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-vocab-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('the bundled vocabulary is GPT-2: every token has the bytes r50k_base gives it', async (t) => {
  const tokenizer = loadTokenizer();
  const expected = referenceTokenBytes();
  t.equal(tokenizer.vocabSize, 50257);
  t.equal(expected.size, 50256, 'r50k_base ranks every token but <|endoftext|>');
  let mismatches = 0;
  for (const [id, hex] of expected) if (Buffer.from(tokenizer.tokenBytes(id)).toString('hex') !== hex) mismatches++;
  t.equal(mismatches, 0);
  t.equal(tokenizer.eotToken, 50256);
  t.equal(tokenizer.decode([tokenizer.eotToken]), '<|endoftext|>');
  t.ok(fs.existsSync(path.join(bundledVocabularyDir(), 'LICENSE')), 'the licence travels with the files');
});

t.test("Hugging Face's layout (vocab.json + merges.txt) loads the same vocabulary", async (t) => {
  const dir = tempDir(t);
  fs.copyFileSync(path.join(bundledVocabularyDir(), 'encoder.json'), path.join(dir, 'vocab.json'));
  fs.copyFileSync(path.join(bundledVocabularyDir(), 'vocab.bpe'), path.join(dir, 'merges.txt'));
  const text = "Hugging Face's layout: same bytes, same tokens. 12345 ☃";
  t.same(loadTokenizer(dir).encode(text, { allowSpecial: false }), loadTokenizer().encode(text, { allowSpecial: false }));
});

t.test("added_tokens.json beside vocab.json + merges.txt (transformers' save of a fine-tune's tokens) joins the vocabulary; a clash is refused, naming the file and key", async (t) => {
  const root = tempDir(t);
  const hfLayout = (name: string, added: Record<string, unknown>): string => {
    const dir = path.join(root, name);
    fs.mkdirSync(dir);
    fs.copyFileSync(path.join(bundledVocabularyDir(), 'encoder.json'), path.join(dir, 'vocab.json'));
    fs.copyFileSync(path.join(bundledVocabularyDir(), 'vocab.bpe'), path.join(dir, 'merges.txt'));
    fs.writeFileSync(path.join(dir, 'added_tokens.json'), JSON.stringify(added));
    return dir;
  };
  const chatml = hfLayout('chatml', { '<|im_start|>': 50257, '<|im_end|>': 50258 });
  const warnings: string[] = [];
  const tokenizer = modelTokenizer({ dir: chatml, vocab: findVocabulary(chatml), config: { nLayer: 1, nHead: 1, nEmbd: 4, nCtx: 8, vocabSize: 50259 } }, (w) => warnings.push(w));
  t.same(warnings, []);
  t.equal(tokenizer.vocabSize, 50259);
  t.equal(tokenizer.decode([50258, 50257]), '<|im_end|><|im_start|>', 'the added tokens decode to their text');
  const text = 'vocab.json with added tokens: same bytes, same tokens. ☃ <|endoftext|>';
  t.same(tokenizer.encode(text, { allowSpecial: true }), loadTokenizer().encode(text, { allowSpecial: true }), 'and text encodes as before');

  const refused: [string, Record<string, unknown>, string][] = [
    ['text-held', { hello: 50257 }, 'key "hello" is 50257: "hello" is token 31373 in vocab.json'],
    ['id-held', { '<|im_end|>': 31373 }, 'key "<|im_end|>" is 31373: token 31373 is "hello" in vocab.json'],
    ['not-an-id', { '<|im_end|>': '50257' }, `key "<|im_end|>" is "50257": must be a token id, a whole number in 0..${MAX_TOKEN_ID}`],
  ];
  for (const [name, added, message] of refused) {
    const dir = hfLayout(name, added);
    t.throws(() => loadTokenizer(dir), { message: `${path.join(dir, 'added_tokens.json')}: ${message}` }, name);
  }
});

// GPT-2's vocabulary as the tokenizers library saves it in tokenizer.json (openai-community/gpt2's layout), with
// `edit` applied: the merges as "a b" strings, or as ["a", "b"] pairs in newer files.
function writeTokenizerJson(dir: string, edit: (json: Record<string, unknown>) => void = () => {}, pairs = false): string {
  const vocab = JSON.parse(fs.readFileSync(path.join(bundledVocabularyDir(), 'encoder.json'), 'utf8')) as Record<string, number>;
  const merges = fs.readFileSync(path.join(bundledVocabularyDir(), 'vocab.bpe'), 'utf8').split('\n').slice(1).filter((line) => line !== '');
  const json: Record<string, unknown> = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false,
      byte_fallback: false, ignore_merges: false, vocab, merges: pairs ? merges.map((m) => m.split(' ')) : merges,
    },
  };
  edit(json);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  return dir;
}

t.test('a tokenizer.json alone loads the same vocabulary, with a fine-tune\'s added tokens; another tokenizer is refused, naming the field', async (t) => {
  const root = tempDir(t);
  const text = "tokenizer.json: same bytes, same tokens. 12345 ☃ <|endoftext|>";
  const gpt2 = loadTokenizer();
  for (const pairs of [false, true]) {
    const dir = writeTokenizerJson(path.join(root, `pairs-${pairs}`), () => {}, pairs);
    const tokenizer = loadTokenizer(dir);
    t.same(tokenizer.encode(text, { allowSpecial: true }), gpt2.encode(text, { allowSpecial: true }), `merges as ${pairs ? 'pairs' : 'strings'}`);
    t.equal(tokenizer.vocabSize, 50257);
  }

  // A fine-tune that added a pad token and a spaced chat token, its embeddings resized to 50259.
  const added = writeTokenizerJson(path.join(root, 'added'), (json) => {
    (json.added_tokens as object[]).push({ id: 50257, content: '<|pad|>', special: true }, { id: 50258, content: ' <sep>', special: false });
  });
  const warnings: string[] = [];
  const config = { nLayer: 1, nHead: 1, nEmbd: 4, nCtx: 8, vocabSize: 50259 };
  const tokenizer = modelTokenizer({ dir: added, vocab: findVocabulary(added), config }, (w) => warnings.push(w));
  t.same(warnings, [], 'the folder\'s own vocabulary, without the warning of a folder that has none');
  t.equal(tokenizer.vocabSize, 50259);
  t.equal(tokenizer.decode([50257, 50258]), '<|pad|> <sep>', 'added tokens decode to their text');
  t.same(tokenizer.encode(text, { allowSpecial: true }), gpt2.encode(text, { allowSpecial: true }), 'and text encodes as before');

  const refused: [string, (json: Record<string, unknown>) => void, string][] = [
    ['wordpiece', (json) => { json.model = { type: 'WordPiece', vocab: {} }; }, 'field "model.type" is "WordPiece": dixie reads GPT-2\'s byte-level BPE ("BPE")'],
    ['normalizer', (json) => { json.normalizer = { type: 'NFC' }; }, 'field "normalizer" is {"type":"NFC"}: GPT-2 changes no text before splitting it (null)'],
    ['prefix-space', (json) => { (json.pre_tokenizer as Record<string, unknown>).add_prefix_space = true; }, 'field "pre_tokenizer.add_prefix_space" is true: GPT-2 adds no space before the text (false)'],
    ['metaspace', (json) => { json.pre_tokenizer = { type: 'Metaspace' }; }, 'field "pre_tokenizer" is {"type":"Metaspace"}: GPT-2 splits text as the ByteLevel pre-tokenizer does'],
    ['clashing-id', (json) => { (json.added_tokens as object[]).push({ id: 7, content: 'hello' }); }, 'field "added_tokens[1].id" is 7: "hello" is token 31373 in model.vocab'],
    ['taken-id', (json) => { (json.added_tokens as object[]).push({ id: 31373, content: '<|pad|>' }); }, 'field "added_tokens[1].id" is 31373: token 31373 is "hello" in model.vocab'],
  ];
  for (const [name, edit, message] of refused) {
    const dir = writeTokenizerJson(path.join(root, name), edit);
    t.throws(() => loadTokenizer(dir), { message: `${path.join(dir, 'tokenizer.json')}: ${message}` }, name);
  }
});

t.test("added tokens written in a text are their one token each, taken out as Hugging Face's tokenizers library does (the cases of its own tests)", async (t) => {
  const root = tempDir(t);
  const encoder = JSON.parse(fs.readFileSync(path.join(bundledVocabularyDir(), 'encoder.json'), 'utf8')) as Record<string, number>;
  // The library's tests write tokens as GPT-2's byte characters; those not in GPT-2's vocabulary are added from 50257.
  const addedIds = new Map<string, number>();
  const idOf = (token: string): number => {
    if (encoder[token] === undefined && !addedIds.has(token)) addedIds.set(token, 50257 + addedIds.size);
    return encoder[token] ?? (addedIds.get(token) as number);
  };
  const ids = (tokens: string[]): number[] => tokens.map((token) => {
    if (encoder[token] === undefined && !addedIds.has(token)) throw new Error(`${token} is no token`);
    return idOf(token);
  });
  let folders = 0;
  const withAdded = (...added: Record<string, unknown>[]) => loadTokenizer(writeTokenizerJson(path.join(root, String(folders++)), (json) => {
    addedIds.clear();
    (json.added_tokens as object[]).push(...added.map((token) => ({ id: idOf(token.content as string), single_word: false, lstrip: false, rstrip: false, normalized: false, special: true, ...token })));
  }));
  const encode = (tokenizer: ReturnType<typeof loadTokenizer>, text: string, allowSpecial = true): number[] => [...tokenizer.encode(text, { allowSpecial })];
  const gpt2 = loadTokenizer();

  const mask = 'I saw a <mask> 😺';
  t.same(encode(withAdded({ content: '<mask>', rstrip: true }), mask), ids(['I', 'Ġsaw', 'Ġa', 'Ġ', '<mask>', 'ðŁĺ', 'º']), 'rstrip: the space after it is part of it');
  t.same(encode(withAdded({ content: '<mask>', lstrip: true }), mask), ids(['I', 'Ġsaw', 'Ġa', '<mask>', 'ĠðŁĺ', 'º']), 'lstrip: the space before it is part of it');
  const plain = withAdded({ content: '<mask>' });
  t.same(encode(plain, mask), ids(['I', 'Ġsaw', 'Ġa', 'Ġ', '<mask>', 'ĠðŁĺ', 'º']), 'neither: the text on each side encodes alone');
  t.same(encode(plain, mask, false), [...gpt2.encode(mask, { allowSpecial: false })], 'a special token from a user is the characters it is written with');
  t.same(encode(withAdded({ content: '<mask>', special: false }), mask, false), ids(['I', 'Ġsaw', 'Ġa', 'Ġ', '<mask>', 'ĠðŁĺ', 'º']), 'one that is not special is its token either way');

  const dancing = 'I like dancing';
  t.same(encode(withAdded({ content: 'ing', single_word: true }), dancing), ids(['I', 'Ġlike', 'Ġdancing']), 'single_word: not inside a word');
  t.same(encode(withAdded({ content: 'ing' }), dancing), ids(['I', 'Ġlike', 'Ġd', 'anc', 'ing']), 'else inside one too');
  t.same(encode(withAdded({ content: 'danc' }, { content: 'nci' }, { content: 'ing' }), dancing), ids(['I', 'Ġlike', 'Ġ', 'danc', 'ing']), 'the leftmost match wins');
  t.same(encode(withAdded({ content: 'danc', normalized: true }, { content: 'nci' }), dancing), ids(['I', 'Ġlike', 'Ġda', 'nci', 'ng']), 'tokens matched on the text as it is go first, the normalized ones in what they leave');

  // Cut into chunks at whitespace, the text still encodes as it does whole.
  const rstrip = withAdded({ content: '<mask>', rstrip: true });
  t.equal(rstrip.cutsAtWhitespace, false);
  t.equal(gpt2.cutsAtWhitespace, true);
  const long = `${'word <mask> '.repeat(40)}end`;
  const [parallel] = await encodeParallel([long], { allowSpecial: true, vocabDir: path.dirname(rstrip.vocab.files.encoderPath), chunkChars: 16, threads: 2, cutsAtWhitespace: rstrip.cutsAtWhitespace });
  t.same([...parallel], encode(rstrip, long), 'in parallel, whole');
});

t.test("a ChatML fine-tune's tokens (added_tokens.json, special_tokens_map.json) are taken out of a prompt", async (t) => {
  const dir = tempDir(t);
  fs.copyFileSync(path.join(bundledVocabularyDir(), 'encoder.json'), path.join(dir, 'vocab.json'));
  fs.copyFileSync(path.join(bundledVocabularyDir(), 'vocab.bpe'), path.join(dir, 'merges.txt'));
  fs.writeFileSync(path.join(dir, 'added_tokens.json'), JSON.stringify({ '<|im_start|>': 50257, '<|im_end|>': 50258, '<pad>': 50259 }));
  fs.writeFileSync(path.join(dir, 'special_tokens_map.json'), JSON.stringify({ eos_token: '<|im_end|>', additional_special_tokens: ['<|im_start|>', '<|im_end|>'] }));
  const tokenizer = loadTokenizer(dir);
  const gpt2 = loadTokenizer();
  const alone = (text: string): number[] => [...gpt2.encode(text, { allowSpecial: false })];
  const prompt = '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<pad>';
  t.same([...tokenizer.encode(prompt, { allowSpecial: true })], [50257, ...alone('user\nhi'), 50258, ...alone('\n'), 50257, ...alone('assistant\n'), 50259], 'each marker its token, the text between encoded alone');
  t.same([...tokenizer.encode(prompt, { allowSpecial: false })], [...alone(prompt.slice(0, -'<pad>'.length)), 50259], 'from a user, the special ones stay characters; <pad>, not special, is its token');
  t.equal(tokenizer.eosToken, 50258);
  t.equal(tokenizer.cutsAtWhitespace, true);

  // A tokenizer_config.json that gives an added token another id than the vocabulary does.
  const config = path.join(dir, 'tokenizer_config.json');
  fs.writeFileSync(config, JSON.stringify({ added_tokens_decoder: { 50259: { content: '<|im_end|>', special: true } } }));
  t.throws(() => loadTokenizer(dir), { message: `${config}: field "added_tokens_decoder.50259": "<|im_end|>" is given id 50259, but is token 50258 of the vocabulary` });
});

t.test("a vocabulary's JSON files are each read once at load, the end of text and the added tokens both read from them", async (t) => {
  const root = tempDir(t);
  const chatml = path.join(root, 'chatml');
  fs.mkdirSync(chatml);
  fs.copyFileSync(path.join(bundledVocabularyDir(), 'encoder.json'), path.join(chatml, 'vocab.json'));
  fs.copyFileSync(path.join(bundledVocabularyDir(), 'vocab.bpe'), path.join(chatml, 'merges.txt'));
  fs.writeFileSync(path.join(chatml, 'added_tokens.json'), JSON.stringify({ '<|im_start|>': 50257, '<|im_end|>': 50258 }));
  // The end of text in tokenizer_config.json, so that the end-of-text lookup reads special_tokens_map.json too.
  fs.writeFileSync(path.join(chatml, 'special_tokens_map.json'), JSON.stringify({ additional_special_tokens: ['<|im_start|>', '<|im_end|>'] }));
  fs.writeFileSync(path.join(chatml, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|im_end|>' }));
  const tokenizerJson = writeTokenizerJson(path.join(root, 'tokenizer-json'), (json) => {
    (json.added_tokens as object[]).push({ id: 50257, content: '<|pad|>', special: true });
  });

  const reads = new Map<string, number>();
  const readFileSync = fs.readFileSync;
  t.teardown(() => { fs.readFileSync = readFileSync; });
  fs.readFileSync = ((file: fs.PathOrFileDescriptor, ...rest: never[]) => {
    reads.set(String(file), (reads.get(String(file)) ?? 0) + 1);
    return readFileSync(file, ...rest);
  }) as typeof fs.readFileSync;
  const chatmlTokenizer = loadTokenizer(chatml);
  const tokenizerJsonTokenizer = loadTokenizer(tokenizerJson);
  fs.readFileSync = readFileSync;

  t.equal(chatmlTokenizer.eosToken, 50258, "tokenizer_config.json's end of text");
  t.same([...chatmlTokenizer.encode('<|im_start|>', { allowSpecial: true })], [50257], "special_tokens_map.json's added token");
  t.same([...tokenizerJsonTokenizer.encode('<|pad|>', { allowSpecial: true })], [50257], "tokenizer.json's added token");
  const inFolders = [...reads].filter(([file]) => file.startsWith(root)).map(([file, n]) => [path.relative(root, file), n]).sort();
  t.same(inFolders, [
    ['chatml/added_tokens.json', 1], ['chatml/merges.txt', 1], ['chatml/special_tokens_map.json', 1], ['chatml/tokenizer_config.json', 1], ['chatml/vocab.json', 1],
    ['tokenizer-json/tokenizer.json', 1],
  ]);
});

t.test('a toy vocabulary: merges apply by rank, not left to right', async (t) => {
  const toy = loadTokenizer(TOY);
  const encode = (s: string): number[] => Array.from(toy.encode(s, { allowSpecial: true }));
  t.equal(toy.vocabSize, 263);
  t.equal(toy.eotToken, 262);
  // h e l l o: "l o" (rank 0) first, then "h e", then "he l", then "hel lo"; "l l" never gets a chance.
  t.same(encode('hello'), [260]);
  // h e l l: "h e", then "l l" (rank 2) beats "he l" (rank 3); "he ll" is no merge.
  t.same(encode('hell'), [257, 258]);
  // " world": "Ġ w", then bytes, which in this vocabulary are their own ids.
  t.same(encode(' world'), [261, 111, 114, 108, 100]);
  t.same(encode('hello<|endoftext|>'), [260, 262]);
  t.equal(toy.decode(encode('hello world<|endoftext|>')), 'hello world<|endoftext|>');
});

t.test('a missing or broken vocabulary fails with a clear error', async (t) => {
  const empty = tempDir(t);
  t.throws(() => loadTokenizer(empty), { message: `${empty}: no GPT-2 vocabulary here (looked for encoder.json + vocab.bpe or vocab.json + merges.txt, tokenizer.json, or model.gguf)` });

  const write = (encoder: string, merges: string): string => {
    const dir = fs.mkdtempSync(path.join(empty, 'v'));
    fs.writeFileSync(path.join(dir, 'encoder.json'), encoder);
    fs.writeFileSync(path.join(dir, 'vocab.bpe'), merges);
    return dir;
  };
  const toyEncoder = fs.readFileSync(path.join(TOY, 'vocab.json'), 'utf8');
  const toyMerges = fs.readFileSync(path.join(TOY, 'merges.txt'), 'utf8');

  const truncated = write(toyEncoder.slice(0, toyEncoder.indexOf('"a"') + 2), toyMerges);
  t.throws(() => loadTokenizer(truncated), { message: /encoder\.json:1:\d+: expected the end of the string, found the end of the file$/ });

  const badId = write('{\n"a": 1,\n"b": -3\n}', '');
  t.throws(() => loadTokenizer(badId), { message: /encoder\.json:3:6: expected a token id in 0\.\.65535, written as a whole number, found "-3"$/ });

  // JSON's 4.56e2 is 456, which is not token 4.
  const exponent = write(toyEncoder.replace('"<|endoftext|>": 262', '"<|endoftext|>": 2.62e2'), toyMerges);
  t.throws(() => loadTokenizer(exponent), { message: /encoder\.json:\d+:\d+: expected a token id in 0\.\.65535, written as a whole number, found "2\.62e2}"$/ });

  const foreign = write('{"a b": 1}', '');
  t.throws(() => loadTokenizer(foreign), { message: /encoder\.json:1:4: expected one of GPT-2's byte characters, not U\+0020, found " b\\": 1}"$/ });

  const sharedId = write('{"a": 1,\n "b": 1}', '');
  t.throws(() => loadTokenizer(sharedId), { message: /encoder\.json:2:7: id 1 is given to an earlier token too, found "1}"$/ });

  const sameBytes = write(toyEncoder.replace('{', '{"\\u0061": 300, '), toyMerges);
  t.throws(() => loadTokenizer(sameBytes), { message: /encoder\.json: tokens 97 and 300 stand for the same bytes$/ });

  const noEot = write(toyEncoder.replace(', "<|endoftext|>": 262', ''), toyMerges);
  t.throws(() => loadTokenizer(noEot), { message: /no <\|endoftext\|> token/ });

  const unknownMerge = write(toyEncoder, `${toyMerges}w o\n`);
  t.throws(() => loadTokenizer(unknownMerge).encode('x', { allowSpecial: false }), {
    message: /vocab\.bpe:7:1: the merged token is not in the encoder, found "w o"$/,
  });
  const malformed = write(toyEncoder, `#version: 0.2\nl o\nh  e\n`);
  t.throws(() => loadTokenizer(malformed).encode('x', { allowSpecial: false }), { message: /vocab\.bpe:3:3: expected "left right", found " e"$/ });
});

t.test('a model folder whose vocabulary has more tokens than the model is refused, naming the vocabulary file', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-vocab-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const f of ['vocab.json', 'merges.txt']) fs.copyFileSync(path.join(TOY, f), path.join(dir, f));
  const config = { nLayer: 1, nHead: 1, nEmbd: 4, nCtx: 8 };
  const vocab = { encoder: path.join(dir, 'vocab.json'), merges: path.join(dir, 'merges.txt') };
  t.throws(() => modelTokenizer({ dir, vocab, config: { ...config, vocabSize: 200 } }), {
    message: `${vocab.encoder}: 263 tokens, more than the model's vocabulary of 200: not the vocabulary the model was trained with`,
  });
  t.equal(modelTokenizer({ dir, vocab, config: { ...config, vocabSize: 263 } }).vocabSize, 263);
});

t.test('decode rejects ids outside the vocabulary', async (t) => {
  const tokenizer = loadTokenizer();
  t.throws(() => tokenizer.decode([50257]), RangeError);
  t.throws(() => tokenizer.decode([-1]), RangeError);
  t.throws(() => tokenizer.decode([1.5]), RangeError);
});
