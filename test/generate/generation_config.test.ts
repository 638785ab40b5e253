// A model folder's generation_config.json (transformers' and vLLM's sampling defaults) and its tokenizer's declared end
// of text, as the library, bin/generate and bin/chat take them: under what a request or a flag sets, over dixie's own.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { Generator } from '../../lib/generate';
import { bundledVocabularyDir, loadTokenizer } from '../../lib/tokenizer';
import { runCommand } from '../helpers/run_command';

const CONFIG = { nLayer: 2, nHead: 2, nEmbd: 32, nCtx: 128, vocabSize: 50257 };
const PROMPT = 'The meaning of life is';

// A random model saved to `dir` with GPT-2's vocabulary and `generation` as its generation_config.json (none: null).
async function modelFolder(dir: string, generation: Record<string, unknown> | null, config = CONFIG): Promise<string> {
  const model = Model.create(config, { seed: 7, trainable: false });
  await model.save(dir, { tokenizer: loadTokenizer() });
  model.dispose();
  if (generation !== null) fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify(generation));
  return dir;
}

async function generateIn(dir: string, options: Parameters<Generator['generate']>[1]): Promise<{ text: string; tokens: number[]; finishReason: string }> {
  const gen = await Generator.load(dir);
  try {
    return await gen.generate(PROMPT, options);
  } finally {
    await gen.close();
  }
}

t.test('the library: the folder\'s defaults where a request sets none, the request\'s own where it does', async (t) => {
  const root = t.testdir({});
  const plain = await modelFolder(path.join(root, 'plain'), null);
  const greedy = await generateIn(plain, { maxTokens: 12, temperature: 0 });
  const sampled = await generateIn(plain, { maxTokens: 12, seed: 3 });
  t.not(sampled.text, greedy.text, 'the test model samples other text than its greedy text at temperature 1');

  const noSample = await modelFolder(path.join(root, 'no-sample'), { do_sample: false, temperature: 0.7, max_new_tokens: 12, transformers_version: '4.40.0', _from_model_config: true, num_beams: 1 });
  const fromFile = await generateIn(noSample, { seed: 3 });
  t.same([fromFile.text, fromFile.tokens], [greedy.text, greedy.tokens], 'do_sample false: the greedy text (its temperature ignored, as transformers does), at max_new_tokens');
  const loaded = await Model.load(noSample, { trainable: false });
  t.same(loaded.generationConfig?.defaults, { temperature: 0, maxTokens: 12 }, 'Model.load exposes them');
  t.same(loaded.generationConfig?.ignored, [], 'metadata and neutral values are nothing to warn of');
  loaded.dispose();
  t.equal((await generateIn(noSample, { seed: 3, temperature: 1 })).text, sampled.text, 'a request\'s temperature wins');
  t.equal((await generateIn(noSample, { seed: 3, maxTokens: 5 })).tokens.length, 5, 'a request\'s maxTokens wins');

  const topK1 = await modelFolder(path.join(root, 'top-k-1'), { do_sample: true, top_k: 1, max_new_tokens: 12 });
  t.equal((await generateIn(topK1, { seed: 3 })).text, greedy.text, 'top_k 1 samples the greedy text');

  const penalized = await modelFolder(path.join(root, 'penalized'), { repetition_penalty: 1.25 });
  const viaFile = await generateIn(penalized, { maxTokens: 12, temperature: 0 });
  const viaRequest = await generateIn(plain, { maxTokens: 12, temperature: 0, penalize: 0.8 });
  t.equal(viaFile.text, viaRequest.text, 'repetition_penalty 1.25 is penalize 0.8');
  t.not(viaRequest.text, greedy.text, 'which changes the greedy text of the test model');

  // The first sampled token that comes after others, none of them itself.
  const at = sampled.tokens.findIndex((token, i) => i > 0 && !sampled.tokens.slice(0, i).includes(token));
  t.ok(at > 0, `the sampled text has a token that is new after the first: ${sampled.tokens}`);
  const eos = await modelFolder(path.join(root, 'eos'), { eos_token_id: [9999, sampled.tokens[at]] });
  const stopped = await generateIn(eos, { maxTokens: 12, seed: 3 });
  t.same([stopped.tokens, stopped.finishReason], [sampled.tokens.slice(0, at), 'stop'], 'eos_token_id (a list) ends the text');
  t.equal((await generateIn(eos, { maxTokens: 12, seed: 3, stopTokens: [] })).text, sampled.text, 'a request\'s stopTokens win');
});

t.test('a ChatML fine-tune whose tokenizer declares <|im_end|> its eos_token stops there', async (t) => {
  const root = t.testdir({});
  const dir = await modelFolder(path.join(root, 'chatml'), null, { ...CONFIG, vocabSize: 50259 });
  fs.copyFileSync(path.join(bundledVocabularyDir(), 'encoder.json'), path.join(dir, 'vocab.json'));
  fs.writeFileSync(path.join(dir, 'added_tokens.json'), JSON.stringify({ '<|im_start|>': 50257, '<|im_end|>': 50258 }));
  fs.writeFileSync(path.join(dir, 'special_tokens_map.json'), JSON.stringify({ bos_token: '<|endoftext|>', eos_token: { content: '<|im_end|>', special: true } }));
  const forced = { maxTokens: 4, temperature: 0, logitBias: { 50258: 100 } };
  const r = await generateIn(dir, forced);
  t.same([r.tokens, r.finishReason], [[], 'stop'], 'the reply ends at the first <|im_end|>');
  t.equal((await generateIn(dir, { ...forced, logitBias: { 50256: 100 } })).finishReason, 'stop', 'and at <|endoftext|>, the model\'s eos_token_id');

  const model = await Model.load(dir, { trainable: false });
  const copy = path.join(root, 'saved');
  await model.save(copy, { tokenizer: loadTokenizer(dir) });
  model.dispose();
  t.equal(JSON.parse(fs.readFileSync(path.join(copy, 'tokenizer_config.json'), 'utf8')).eos_token, '<|im_end|>', 'a save keeps the declared eos_token');
  t.same((await generateIn(copy, forced)).tokens, [], 'and the saved folder stops there too');

  fs.writeFileSync(path.join(dir, 'special_tokens_map.json'), JSON.stringify({ eos_token: '<|im_stop|>' }));
  t.throws(() => loadTokenizer(dir), { message: `${path.join(dir, 'special_tokens_map.json')}: field "eos_token" is "<|im_stop|>", which is no token of the vocabulary (${path.join(dir, 'vocab.json')})` });
});

t.test('fields dixie does not honour are named; bad values are refused, naming the file and field; a save keeps the file', async (t) => {
  const root = t.testdir({});
  const dir = await modelFolder(path.join(root, 'beams'), { num_beams: 4, max_length: 50, bad_words_ids: [[1, 2]], repetition_penalty: 0.9, top_k: 5 });
  const file = path.join(dir, 'generation_config.json');
  const model = await Model.load(dir, { trainable: false });
  t.same(model.generationConfig?.defaults, { topK: 5 });
  t.same(model.generationConfig?.ignored, [
    `${file}: field "repetition_penalty" is 0.9, which dixie does not honour: below 1 it makes used tokens more likely, and dixie's penalty only makes them less likely`,
    `${file}: field "num_beams" is 4, which dixie does not honour`,
    `${file}: field "max_length" is 50, which dixie does not honour: dixie bounds the reply alone (max_new_tokens), not the prompt and reply together`,
    `${file}: field "bad_words_ids" is [[1,2]], which dixie does not honour: dixie bans no token sequences (a request's logit_bias of -100 bans single tokens)`,
  ]);

  const copy = path.join(root, 'copy');
  await model.save(copy);
  t.same(JSON.parse(fs.readFileSync(path.join(copy, 'generation_config.json'), 'utf8')), JSON.parse(fs.readFileSync(file, 'utf8')), 'Model.save writes it back, every field');
  model.dispose();
  const created = Model.create(CONFIG, { trainable: false });
  await created.save(copy);
  created.dispose();
  t.notOk(fs.existsSync(path.join(copy, 'generation_config.json')), 'a model without one saved over the folder takes the other\'s away');

  const refused: [Record<string, unknown>, string][] = [
    [{ temperature: -1 }, 'field "temperature" must be a number >= 0, got -1'],
    [{ top_p: 0 }, 'field "top_p" must be a number above 0, at most 1 (1: off), got 0'],
    [{ do_sample: 'yes' }, 'field "do_sample" must be true or false, got "yes"'],
    [{ max_new_tokens: 2.5 }, 'field "max_new_tokens" must be an integer >= 1, got 2.5'],
    [{ eos_token_id: 50257 }, 'field "eos_token_id" must be a token id of the model (an integer in [0, 50257)) or a non-empty list of them, got 50257'],
  ];
  for (const [json, message] of refused) {
    fs.writeFileSync(file, JSON.stringify(json));
    await t.rejects(Model.load(dir, { trainable: false }), { message: `${file}: ${message}` }, message);
  }
});

t.test('bin/generate and bin/chat: a flag given wins, the folder\'s defaults go over the command\'s', async (t) => {
  const root = t.testdir({});
  const plain = await modelFolder(path.join(root, 'plain'), null);
  const greedy = await modelFolder(path.join(root, 'greedy'), { do_sample: false, max_new_tokens: 8, num_beams: 3 });
  const args = (dir: string, ...more: string[]): string[] => ['--restore_from', dir, '--prompt', PROMPT, '--seed', '3', ...more];
  const reference = runCommand('generate', args(plain, '--temperature', '0', '--length', '8'));
  t.equal(reference.status, 0, reference.stderr);
  const fromFile = runCommand('generate', args(greedy));
  t.equal(fromFile.stdout, reference.stdout, 'do_sample false and max_new_tokens 8: the greedy 8 tokens');
  t.match(fromFile.stderr, `warning: ${path.join(greedy, 'generation_config.json')}: field "num_beams" is 3, which dixie does not honour`);
  const flagged = runCommand('generate', args(greedy, '--temperature', '1', '--length', '8'));
  t.equal(flagged.stdout, runCommand('generate', args(plain, '--length', '8')).stdout, '--temperature given wins');
  t.not(flagged.stdout, reference.stdout);

  const chat = (dir: string, ...more: string[]) => runCommand('chat', ['--restore_from', dir, '--audience', 'mom', '--seed', '3', ...more], { input: 'Hi!\n/quit\n' });
  const chatReference = chat(plain, '--temperature', '0', '--top_k', '0', '--penalize', '0', '--length', '8');
  t.equal(chatReference.status, 0, chatReference.stderr);
  t.equal(chat(greedy, '--top_k', '0', '--penalize', '0').stdout, chatReference.stdout, 'bin/chat takes them too');
});
