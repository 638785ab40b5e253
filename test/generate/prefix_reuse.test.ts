// Prefix reuse: a prompt that begins with what a free batch slot still holds (the last turn of a conversation,
// sent again with the next) prefills only the rest, and gives the very tokens a cold prefill gives.
import t from 'tap';
import { Model, GPT2Config } from '../../lib/engine/model';
import { Generator, type GenerateResult } from '../../lib/generate';
import { testGenerator, tokenizer } from './helpers';

const CONFIG: GPT2Config = { nLayer: 2, nHead: 2, nEmbd: 32, nCtx: 256, vocabSize: 50257 };
const SAMPLING = { temperature: 0.9, topK: 40, penalize: 0.85 };

// The next turn of a conversation: the prompt so far, the reply's tokens, then the new message's.
function nextPrompt(prompt: Int32Array, reply: GenerateResult, message: string): Int32Array {
  return Int32Array.from([...prompt, ...reply.tokens, ...tokenizer.encode(message, { allowSpecial: false })]);
}

// Each prompt alone on a model with an empty cache.
async function cold(prompts: Int32Array[], seeds: number[], maxTokens: number): Promise<GenerateResult[]> {
  const results: GenerateResult[] = [];
  for (let i = 0; i < prompts.length; i++) {
    const model = Model.create(CONFIG, { seed: 1, trainable: false });
    const gen = new Generator(model, tokenizer, { slots: 1 });
    results.push(await gen.generate(prompts[i], { ...SAMPLING, maxTokens, seed: seeds[i] }));
    await gen.close();
    model.dispose();
  }
  return results;
}

t.test('a conversation of several turns: each turn prefills only what is new, and replies as a cold prefill does', async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 3, seed: 1 });
  const prompts: Int32Array[] = [tokenizer.encode('1|mom|How are you? <EOM>\n0|mom|', { allowSpecial: false })];
  const warm: GenerateResult[] = [];
  for (let turn = 0; turn < 4; turn++) {
    warm.push(await gen.generate(prompts[turn], { ...SAMPLING, maxTokens: 10, seed: turn }));
    prompts.push(nextPrompt(prompts[turn], warm[turn], ` <EOM>\n1|mom|and turn ${turn + 2}? <EOM>\n0|mom|`));
  }
  prompts.pop();
  t.equal(warm[0].timings.cachedPromptTokens, 0, 'the first turn finds nothing');
  for (let turn = 1; turn < 4; turn++) {
    // The slot holds the last prompt and every reply token but the last (sampled, never fed).
    t.equal(warm[turn].timings.cachedPromptTokens, prompts[turn - 1].length + warm[turn - 1].tokens.length - 1, `turn ${turn + 1} reuses the previous turn`);
  }
  const reference = await cold(prompts, [0, 1, 2, 3], 10);
  for (let turn = 0; turn < 4; turn++) t.same(warm[turn].tokens, reference[turn].tokens, `turn ${turn + 1}: the tokens of a cold prefill`);
});

t.test('two conversations side by side each find the slot that holds their own history', async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 3, seed: 1 });
  let a = tokenizer.encode('1|dad|Did you fix the car? <EOM>\n0|dad|', { allowSpecial: false });
  let b = tokenizer.encode('1|sis|Movie tonight? <EOM>\n0|sis|', { allowSpecial: false });
  for (let turn = 0; turn < 3; turn++) {
    const [ra, rb] = await Promise.all([gen.generate(a, { ...SAMPLING, maxTokens: 6, seed: 1 }), gen.generate(b, { ...SAMPLING, maxTokens: 6, seed: 2 })]);
    if (turn > 0) {
      t.ok(ra.timings.cachedPromptTokens > 10 && rb.timings.cachedPromptTokens > 10, `turn ${turn + 1}: both reuse (${ra.timings.cachedPromptTokens}, ${rb.timings.cachedPromptTokens})`);
    }
    const [ca, cb] = await cold([a, b], [1, 2], 6);
    t.same([ra.tokens, rb.tokens], [ca.tokens, cb.tokens], `turn ${turn + 1}: as cold`);
    a = nextPrompt(a, ra, ' <EOM>\n1|dad|ok <EOM>\n0|dad|');
    b = nextPrompt(b, rb, ' <EOM>\n1|sis|sure <EOM>\n0|sis|');
  }
});

t.test('nothing is reused once the weights change, or once another request took the slot', async (t) => {
  const { model, gen } = testGenerator(t, CONFIG, { slots: 1, seed: 1 });
  const prompt = tokenizer.encode('Once upon a time there was', { allowSpecial: false });
  await gen.generate(prompt, { maxTokens: 4, seed: 1 });
  t.equal((await gen.generate(prompt, { maxTokens: 4, seed: 1 })).timings.cachedPromptTokens, prompt.length - 1, 'the same prompt again: all but its last token');
  await gen.generate(tokenizer.encode('Something else entirely', { allowSpecial: false }), { maxTokens: 4, seed: 1 });
  t.equal((await gen.generate(prompt, { maxTokens: 4, seed: 1 })).timings.cachedPromptTokens, 0, 'after another prompt took the only slot');
  const bias = model.getParam('ln_f.bias');
  bias[0] += 1;
  model.setParam('ln_f.bias', bias);
  const after = await gen.generate(prompt, { ...SAMPLING, maxTokens: 6, seed: 3 });
  t.equal(after.timings.cachedPromptTokens, 0, 'after the weights changed');
  const fresh = Model.create(CONFIG, { seed: 1, trainable: false });
  fresh.setParam('ln_f.bias', bias);
  const freshGen = new Generator(fresh, tokenizer, { slots: 1 });
  t.same(after.tokens, (await freshGen.generate(prompt, { ...SAMPLING, maxTokens: 6, seed: 3 })).tokens, 'and the reply is the new weights\'');
  await freshGen.close();
  fresh.dispose();
});

t.test('a reply cut by a stop sequence, whose last token the next step fed meanwhile, leaves its slot to the next turn as a cold prefill would', async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 1, seed: 1 });  // one slot: the next turn takes the very slot
  const prompt = tokenizer.encode('1|mom|How are you? <EOM>\n0|mom|', { allowSpecial: false });
  const [whole] = await cold([prompt], [0], 10);
  // A stop sequence the reply meets at its k-th token: that token's text, found nowhere before it.
  const k = whole.tokens.findIndex((token, i) => {
    const text = tokenizer.decode([token]);
    return i >= 2 && text.trim().length > 0 && !tokenizer.decode(whole.tokens.slice(0, i)).includes(text);
  });
  t.ok(k >= 2 && k < 9, `the reply's token ${k} makes a stop sequence`);
  const stop = tokenizer.decode([whole.tokens[k]]);
  const cut = await gen.generate(prompt, { ...SAMPLING, maxTokens: 10, seed: 0, stop: [stop] });
  t.equal(cut.finishReason, 'stop');
  t.same(cut.tokens, whole.tokens.slice(0, k + 1), 'the tokens up to the one that completes the stop sequence');
  const next = nextPrompt(prompt, cut, ' <EOM>\n1|mom|and you? <EOM>\n0|mom|');
  const warm = await gen.generate(next, { ...SAMPLING, maxTokens: 10, seed: 1 });
  t.equal(warm.timings.cachedPromptTokens, prompt.length + cut.tokens.length - 1, 'the next turn reuses the slot');
  const [reference] = await cold([next], [1], 10);
  t.same(warm.tokens, reference.tokens, 'the tokens of a cold prefill');
});
