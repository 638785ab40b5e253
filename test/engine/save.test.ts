// Model.save keeps a model folder whole: a chat model saved from the library is served as the chat model it was (over a
// checkpoint too), a save that fails leaves the folder as it was, one killed between its renames is finished by the
// next load, one into a folder another process saves into is refused, and weights beside another model's config are
// named as such.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { chatTemplate, fitConversation } from '../../lib/data/chat_format';
import { Model } from '../../lib/engine/model';
import { AUDIENCES_FILE, type ChatRecord, NO_CHAT, chatRecordOf } from '../../lib/formats/chat_record';
import { bundledVocabularyDir, loadTokenizer, modelTokenizer } from '../../lib/tokenizer';
import { TOKENIZER_CONFIG_FILE } from '../../lib/tokenizer/vocab';
import { inspectModelFolder } from '../../lib/formats/model_folder';
import { readTrainState, saveCheckpoint } from '../../lib/train/checkpoint';
import { LOCK_FILE } from '../../lib/util/folder_lock';
import { holdLock, killedBetweenRenames } from '../helpers/folder_lock';
import { NO_DEV_FULL, diskFull, isTemporaryOf } from '../helpers/full_disk';
import { request, startServer, tempDir, TINY } from '../server/helpers';

const AUDIENCES = [{ audience: 'mom', sent: 5, received: 4 }, { audience: 'dad', sent: 1, received: 1 }];

const work = tempDir('save');
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
const tokenizer = loadTokenizer();

// A checkpoint of a run trained on chat logs, as bin/train saves it.
async function chatCheckpoint(): Promise<string> {
  const model = Model.create(TINY, { seed: 1, trainable: false });
  try {
    return await saveCheckpoint(path.join(work, 'run'), model, tokenizer, {
      step: 10, seed: 1, dataRng: [1, 2, 3, 4], sampleRng: [5, 6, 7, 8], lossAverage: [0, 0], tokens: 0, trainSeconds: 0,
      audiences: AUDIENCES, options: {},
    }, { maxToKeep: 0, withOptimizer: false, keepBest: false });
  } finally {
    model.dispose();
  }
}

async function chatOf(dir: string): Promise<ChatRecord> {
  const model = await Model.load(dir, { trainable: false });
  model.dispose();
  return model.chat;
}

const chatTemplateOf = (dir: string): unknown => (JSON.parse(fs.readFileSync(path.join(dir, TOKENIZER_CONFIG_FILE), 'utf8')) as Record<string, unknown>).chat_template;

t.test('a chat checkpoint saved with the library is served as a chat model, with the same audiences', async (t) => {
  const checkpoint = await chatCheckpoint();
  const model = await Model.load(checkpoint, { trainable: false });
  t.same(model.chat, chatRecordOf(AUDIENCES), "the checkpoint's audiences, and the chat template answering as mom");
  const saved = path.join(work, 'saved');
  await model.save(saved, { tokenizer });
  model.dispose();
  t.same(JSON.parse(fs.readFileSync(path.join(saved, AUDIENCES_FILE), 'utf8')), { audiences: AUDIENCES }, 'the audiences, as counted');
  t.equal(chatTemplateOf(saved), chatTemplateOf(checkpoint), 'the chat template, beside the vocabulary');

  const srv = await startServer({ models: [{ key: 'saved', restore_from: saved }, { key: 'checkpoint', restore_from: checkpoint }] }, work);
  t.teardown(() => srv.close());
  const list = (await request(`${srv.url}/models/list`)).json().models as Record<string, unknown>[];
  t.same(list.map((m) => [m.model_key, m.prompt_format, m.sanitizer, m.audience, m.audiences]), [
    ['saved', 'chat', 'sanitizers.chatbot', 'mom', ['mom', 'dad']],
    ['checkpoint', 'chat', 'sanitizers.chatbot', 'mom', ['mom', 'dad']],
  ], 'both in the chat format, answering as mom');
  const prompt = fitConversation({ audience: 'mom', turns: [{ from: 'user', text: 'How are you?' }] }).prompt;
  const r = await request(`${srv.url}/invocations`, { body: { model_key: 'saved', raw_text: 'How are you?', length: 1, format: 'json' } });
  t.equal(r.status, 200, r.text);
  t.equal(r.json().prompt_tokens, tokenizer.encode(prompt, { allowSpecial: false }).length, `prompted as ${JSON.stringify(prompt)}`);
});

t.test("a round trip over the model's own folder keeps its chat record; another model saved there drops it", async (t) => {
  const dir = path.join(work, 'own');
  fs.cpSync(path.join(work, 'saved'), dir, { recursive: true });
  const template = chatTemplateOf(dir);
  const model = await Model.load(dir, { trainable: false });
  await model.save(dir, { tokenizer });
  model.dispose();
  t.equal(chatTemplateOf(dir), template, 'chat_template kept');
  t.same(JSON.parse(fs.readFileSync(path.join(dir, AUDIENCES_FILE), 'utf8')), { audiences: AUDIENCES }, 'audiences kept');

  const asDad = await Model.load(dir, { trainable: false });
  await asDad.save(dir, { tokenizer, chat: chatRecordOf(asDad.chat.audiences, 'dad') });
  asDad.dispose();
  t.same(await chatOf(dir), { audiences: [AUDIENCES[1], AUDIENCES[0]], template: chatTemplate('dad') }, 'another chat record, given: dad first');

  const created = Model.create(TINY, { seed: 2, trainable: false });
  await created.save(dir, { tokenizer });
  created.dispose();
  t.notOk(fs.existsSync(path.join(dir, AUDIENCES_FILE)), 'a model that is no chat model leaves no record of one');
  t.equal(chatTemplateOf(dir), undefined, 'nor a chat template');
  t.same(await chatOf(dir), NO_CHAT, 'it loads as no chat model');

  // A chat template of a model made elsewhere, which keeps no audiences, is kept as it is.
  const config = path.join(dir, TOKENIZER_CONFIG_FILE);
  fs.writeFileSync(config, JSON.stringify({ ...JSON.parse(fs.readFileSync(config, 'utf8')), chat_template: '{{ messages[0].content }}' }));
  const foreign = await Model.load(dir, { trainable: false });
  await foreign.save(dir, { tokenizer });
  foreign.dispose();
  t.equal(chatTemplateOf(dir), '{{ messages[0].content }}', "another tool's chat template kept");
  t.notOk(fs.existsSync(path.join(dir, AUDIENCES_FILE)), 'and no audiences made up');
});

// A ChatML fine-tune's tokenizer files, as transformers saves them: GPT-2's vocabulary, its added tokens, its end of
// text and its generation defaults.
function chatmlFolder(dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(path.join(bundledVocabularyDir(), 'encoder.json'), path.join(dir, 'vocab.json'));
  fs.copyFileSync(path.join(bundledVocabularyDir(), 'vocab.bpe'), path.join(dir, 'merges.txt'));
  fs.writeFileSync(path.join(dir, 'added_tokens.json'), JSON.stringify({ '<|im_start|>': 50257, '<|im_end|>': 50258, '<pad>': 50259 }));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ added_tokens: [{ id: 50259, content: '<pad>', lstrip: true, rstrip: true, special: false, normalized: false }] }));
  fs.writeFileSync(path.join(dir, 'special_tokens_map.json'), JSON.stringify({ eos_token: '<|im_end|>', additional_special_tokens: ['<|im_start|>', '<|im_end|>'] }));
  fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: 50258, temperature: 0.3 }));
  return dir;
}

t.test("a model saved over another model's tokenizer files loads as the model saved: theirs are gone", async (t) => {
  const dir = chatmlFolder(path.join(work, 'over-chatml'));
  const model = Model.create(TINY, { seed: 1, trainable: false });
  await model.save(dir, { tokenizer });
  model.dispose();
  t.same(fs.readdirSync(dir).sort(), ['config.json', 'merges.txt', 'model.safetensors', 'tokenizer_config.json', 'vocab.json'], 'no added_tokens.json, tokenizer.json, special_tokens_map.json or generation_config.json left');
  const saved = modelTokenizer(inspectModelFolder(dir));
  t.equal(saved.vocabSize, 50257, "GPT-2's vocabulary, not the fine-tune's 50260 tokens");
  t.equal(saved.eosToken, 50256, '<|endoftext|> ends a text, not <|im_end|>');
  t.same(saved.vocab.addedTokens, tokenizer.vocab.addedTokens, 'and the same added tokens');
  const loaded = await Model.load(dir, { trainable: false });
  t.equal(loaded.generationConfig, null, 'no generation defaults');
  loaded.dispose();
});

t.test("a fine-tune's added tokens, with their flags and end of text, load the same from the folder it is saved to", async (t) => {
  const source = chatmlFolder(path.join(work, 'chatml'));
  const chatml = loadTokenizer(source);
  t.equal(chatml.eosToken, 50258);
  const model = Model.create({ ...TINY, vocabSize: 50260 }, { seed: 1, trainable: false });
  const dir = path.join(work, 'chatml-saved');
  await model.save(dir, { tokenizer: chatml });
  model.dispose();
  const saved = loadTokenizer(dir);
  t.same(saved.vocab.addedTokens, chatml.vocab.addedTokens, 'the same added tokens, flags and all');
  t.same(saved.vocab.addedTokens.map((a) => [a.id, a.special, a.lstrip]), [[50256, true, false], [50257, true, false], [50258, true, false], [50259, false, true]]);
  t.equal(saved.eosToken, 50258);
  const prompt = '<|im_start|>user\nhi <pad> there<|im_end|>\n';
  for (const allowSpecial of [true, false]) t.same(saved.encode(prompt, { allowSpecial }), chatml.encode(prompt, { allowSpecial }), `encodes the same (allowSpecial ${allowSpecial})`);
});

t.test("a model saved over a chat model's folder without a vocabulary: the chat template there goes with the audiences", async (t) => {
  const dir = path.join(work, 'template-left');
  const chat = Model.create(TINY, { seed: 1, trainable: false });
  await chat.save(dir, { tokenizer, chat: chatRecordOf(AUDIENCES) });
  chat.dispose();
  const plain = Model.create(TINY, { seed: 2, trainable: false });
  await plain.save(dir);
  plain.dispose();
  t.equal(chatTemplateOf(dir), undefined, 'no chat template that answers as mom for a model that is not a chat model');
  t.equal((JSON.parse(fs.readFileSync(path.join(dir, TOKENIZER_CONFIG_FILE), 'utf8')) as Record<string, unknown>).tokenizer_class, 'GPT2Tokenizer', 'the rest of the tokenizer config kept');
  t.same(await chatOf(dir), NO_CHAT, 'loaded as a model that is not a chat model');
  const again = Model.create(TINY, { seed: 3, trainable: false });
  await again.save(dir, { chat: chatRecordOf(AUDIENCES, 'dad') });
  again.dispose();
  t.equal(chatTemplateOf(dir), chatTemplate('dad'), "a chat model saved there without a vocabulary writes its own template");
});

t.test('a tokenizer_config.json that cannot be read gives no chat template, and the model loads as it did', async (t) => {
  const dir = path.join(work, 'broken-tokenizer-config');
  const model = Model.create(TINY, { seed: 1, trainable: false });
  await model.save(dir, { tokenizer });
  model.dispose();
  for (const text of ['{"chat_template": "{{ mess', '["chat_template"]']) {
    fs.writeFileSync(path.join(dir, TOKENIZER_CONFIG_FILE), text);
    t.same(await chatOf(dir), NO_CHAT, `with ${text}`);
  }
});

t.test('a save that fails partway leaves every file of the folder as it was', { skip: NO_DEV_FULL }, async (t) => {
  const dir = path.join(work, 'full-disk');
  const old = Model.create({ ...TINY, nLayer: 2 }, { seed: 1, trainable: false });
  await old.save(dir, { tokenizer, chat: chatRecordOf(AUDIENCES) });
  old.dispose();
  const before = new Map(fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f))]));
  // The disk fills up as the config is written, after the weights.
  const next = Model.create({ ...TINY, nLayer: 1 }, { seed: 2, trainable: false });
  try {
    await t.test('the disk fills up as the config is written', async (t) => {
      diskFull(t, isTemporaryOf(path.join(dir, 'config.json')));
      await t.rejects(next.save(dir, { tokenizer }), { code: 'ENOSPC', message: /config\.json/ });
    });
  } finally {
    next.dispose();
  }
  t.same([...before.keys()], fs.readdirSync(dir), 'no file added, none removed, no temporary file left');
  for (const [file, bytes] of before) t.ok(fs.readFileSync(path.join(dir, file)).equals(bytes), `${file} as it was`);
  const loaded = await Model.load(dir, { trainable: false });
  t.equal(loaded.config.nLayer, 2, 'the model saved before loads');
  loaded.dispose();
});

t.test('a folder where a file of the save goes: refused, naming it, and nothing written', async (t) => {
  const dir = path.join(work, 'folder-in-the-way');
  const old = Model.create({ ...TINY, nLayer: 2 }, { seed: 1, trainable: false });
  await old.save(dir);
  old.dispose();
  fs.mkdirSync(path.join(dir, 'merges.txt'));
  fs.writeFileSync(path.join(dir, 'merges.txt', 'notes.txt'), 'in the way');
  const before = new Map(fs.readdirSync(dir).filter((f) => f !== 'merges.txt').map((f) => [f, fs.readFileSync(path.join(dir, f))]));
  const next = Model.create({ ...TINY, nLayer: 1 }, { seed: 2, trainable: false });
  try {
    await t.rejects(next.save(dir, { tokenizer }), { code: 'EISDIR', message: `${path.join(dir, 'merges.txt')}: is a folder, where a file is to be written: nothing was written` });
  } finally {
    next.dispose();
  }
  t.same(fs.readdirSync(dir), [...before.keys(), 'merges.txt'].sort(), 'no file added, none removed, no temporary file left');
  for (const [file, bytes] of before) t.ok(fs.readFileSync(path.join(dir, file)).equals(bytes), `${file} as it was`);
  t.same(fs.readdirSync(path.join(dir, 'merges.txt')), ['notes.txt'], 'the folder in the way left alone');
});

t.test("weights beside another model's config: the load names both files", async (t) => {
  const folders = { 1: path.join(work, 'layers-1'), 2: path.join(work, 'layers-2') };
  for (const nLayer of [1, 2] as const) {
    const m = Model.create({ ...TINY, nLayer }, { trainable: false });
    await m.save(folders[nLayer]);
    m.dispose();
  }
  for (const [weights, config] of [[2, 1], [1, 2]] as const) {
    const dir = path.join(work, `weights-${weights}-config-${config}`);
    fs.mkdirSync(dir);
    fs.copyFileSync(path.join(folders[weights], 'model.safetensors'), path.join(dir, 'model.safetensors'));
    fs.copyFileSync(path.join(folders[config], 'config.json'), path.join(dir, 'config.json'));
    await t.rejects(Model.load(dir, { trainable: false }), {
      message: `${path.join(dir, 'model.safetensors')} holds the weights of ${weights} layers but ${path.join(dir, 'config.json')} is the config of ${config}: the two files are not of one model (written apart?)`,
    });
  }
});

// `dir` as a save of the files of folder `next` leaves it when killed after renaming its weights into place, the
// record of the chat model there before to be removed.
function killedAfterWeights(dir: string, next: string): number {
  return killedBetweenRenames(dir, Object.fromEntries(fs.readdirSync(next).map((name) => [name, fs.readFileSync(path.join(next, name))])), ['model.safetensors'], [AUDIENCES_FILE]);
}

t.test('a save killed between two renames is finished by the next load: the new weights with their own config', async (t) => {
  const dir = path.join(work, 'killed-between-renames');
  const next = path.join(work, 'killed-between-renames-next');
  const old = Model.create({ ...TINY, nLayer: 2 }, { seed: 1, trainable: false });
  await old.save(dir, { tokenizer, chat: chatRecordOf(AUDIENCES) });
  old.dispose();
  const model = Model.create({ ...TINY, nLayer: 1 }, { seed: 2, trainable: false });
  await model.save(next, { tokenizer });
  const pid = killedAfterWeights(dir, next);
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (message: string) => warnings.push(message);
  const loaded = await Model.load(dir, { trainable: false }).finally(() => (console.warn = warn));
  t.equal(loaded.config.nLayer, 1, "the new weights, with the new config rather than the old one's 2 layers");
  t.same(loaded.getParam('wte.weight'), model.getParam('wte.weight'), 'the weights the save wrote');
  t.same(loaded.chat, NO_CHAT, "the old model's audiences gone, as the save removed them");
  loaded.dispose();
  model.dispose();
  t.same(fs.readdirSync(dir).sort(), fs.readdirSync(next).sort(), 'the folder holds the files of the save, and no journal or temporary file');
  for (const name of fs.readdirSync(next)) t.ok(fs.readFileSync(path.join(dir, name)).equals(fs.readFileSync(path.join(next, name))), `${name}: the save's`);
  t.same(warnings, [`warning: ${dir}: a save of config.json, merges.txt, model.safetensors, tokenizer_config.json, vocab.json by process ${pid} was stopped midway, between its renames; it is finished (config.json, merges.txt, tokenizer_config.json, vocab.json put in place), so the folder holds what that save wrote`]);
});

t.test('a save into a folder another process is saving into is refused, naming the lock and the process; the files stay as they were', async (t) => {
  const dir = path.join(work, 'locked');
  const old = Model.create(TINY, { seed: 1, trainable: false });
  await old.save(dir, { tokenizer });
  old.dispose();
  const before = new Map(fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f))]));
  const holder = await holdLock(t, dir, 'a save');
  const next = Model.create(TINY, { seed: 2, trainable: false });
  try {
    await t.rejects(next.save(dir, { tokenizer }), {
      message: `${dir} is in use by process ${holder.pid} (a save), which is writing there: a save is refused (run it again when that is done; the lock is ${path.join(dir, LOCK_FILE)}: remove it if that process is not dixie's)`,
    });
    t.same(fs.readdirSync(dir), [...before.keys(), LOCK_FILE].sort(), 'no file added, none removed');
    for (const [file, bytes] of before) t.ok(fs.readFileSync(path.join(dir, file)).equals(bytes), `${file} as it was`);
    // Renames left as a kill leaves them, but their process (this lock's) still runs: a load is refused rather than finish them.
    const ahead = path.join(work, 'locked-next');
    await next.save(ahead);
    killedAfterWeights(dir, ahead);
    await t.rejects(Model.load(dir, { trainable: false }), { message: `${dir} is in use by process ${holder.pid} (a save), which is writing there: the load is refused (run it again when that is done; the lock is ${path.join(dir, LOCK_FILE)}: remove it if that process is not dixie's)` });
  } finally {
    next.dispose();
  }
});

t.test("a save into a checkpoint's folder writes its audiences into state.json, which is read first, so that they are the ones served", async (t) => {
  const checkpoint = path.join(work, 'checkpoint-saved-over');
  fs.cpSync(await chatCheckpoint(), checkpoint, { recursive: true });
  const model = await Model.load(checkpoint, { trainable: false });
  await model.save(checkpoint, { tokenizer, chat: chatRecordOf(model.chat.audiences, 'dad') });
  model.dispose();
  t.same(await chatOf(checkpoint), { audiences: [AUDIENCES[1], AUDIENCES[0]], template: chatTemplate('dad') }, 'loaded answering as dad, as saved');
  const state = readTrainState(checkpoint);
  t.same(state.audiences, [AUDIENCES[1], AUDIENCES[0]], "state.json's audiences are the saved ones");
  t.equal(state.step, 10, 'the rest of the training record kept');
  t.notOk(fs.existsSync(path.join(checkpoint, AUDIENCES_FILE)), 'no audiences.json beside it to say otherwise');

  const plain = Model.create(TINY, { seed: 2, trainable: false });
  await plain.save(checkpoint, { tokenizer });
  plain.dispose();
  t.same(readTrainState(checkpoint).audiences, [], 'a model that is no chat model leaves no audiences in it');
  t.same(await chatOf(checkpoint), NO_CHAT, 'and loads as no chat model');
});
