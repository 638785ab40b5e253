// Adapters decoded unmerged (Model.addAdapter): one base, a different adapter for each slot of a batch. Each row gets
// the logits its merged model gives, within 1e-5, however the batch mixes adapters; a batch of requests for three
// adapters and the plain base gives each request what it gets alone; a slot never continues a cache computed with
// another adapter; an adapter whose modules differ in rank and alpha decodes as its merged model; an adapter added to
// another model is refused.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { Model, NATIVE } from '../../lib/engine/model';
import { maxServedRank } from '../../lib/engine/native';
import { Generator } from '../../lib/generate';
import { loadTokenizer } from '../../lib/tokenizer';
import { maxAbsDiff, randomTokens } from '../engine/helpers';
import { CONFIG, mergedWeight, peftConfig, randomFactors, ROOT, saveBase, writeRawAdapter, type Factors } from './helpers';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-lora-batch-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const V = CONFIG.vocabSize;
const tokenizer = loadTokenizer(path.join(ROOT, 'test', 'fixtures', 'tiny-vocab'));

// Three adapters of different targets, ranks and alphas.
const SPECS = [
  { r: 4, alpha: 8, targets: ['c_attn', 'c_proj', 'c_fc'], kinds: ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'] },
  { r: 2, alpha: 16, targets: ['c_attn'], kinds: ['attn.c_attn'] },
  { r: 8, alpha: 4, targets: ['mlp.c_fc', 'mlp.c_proj'], kinds: ['mlp.c_fc', 'mlp.c_proj'] },
];

async function setUp(): Promise<{ base: string; adapters: string[]; factors: Factors[][] }> {
  const base = await saveBase(path.join(dir, 'base'));
  const factors = SPECS.map((spec, a) => Array.from({ length: CONFIG.nLayer }, (_, layer) => spec.kinds.map((kind, k) => randomFactors(`h.${layer}.${kind}`, spec.r, CONFIG.nEmbd, 300 + 40 * a + 4 * layer + k))).flat());
  const adapters = SPECS.map((spec, a) => writeRawAdapter(path.join(dir, `adapter-${a}`), peftConfig({ r: spec.r, lora_alpha: spec.alpha, target_modules: spec.targets }), factors[a]));
  return { base, adapters, factors };
}
const ready = setUp();

// The base with an adapter's factors merged into its weights, by the tests' own loops.
async function mergedModel(base: string, factors: Factors[], scaling: number): Promise<Model> {
  const model = await Model.load(base, { trainable: false, threads: 2, device: 'cpu' });
  for (const f of factors) model.setParam(`${f.module}.weight`, mergedWeight(model.getParam(`${f.module}.weight`), f, scaling));
  return model;
}

t.test('a batch of four slots, three adapters and none, gives each slot its merged model\'s logits', async (t) => {
  const { base, adapters, factors } = await ready;
  const model = await Model.load(base, { trainable: false, threads: 2, device: 'cpu' });
  const served = await Promise.all(adapters.map((a) => model.addAdapter(a)));
  t.same(served.map((s) => s.id), [0, 1, 2], 'ids in the order added');
  t.equal(served[0].bytes, 4 * factors[0].reduce((n, f) => n + f.a.length + f.b.length, 0), 'bytes: the factors in float32');
  const native = model[NATIVE];
  const sequences = [0, 1, 2, 3].map((s) => randomTokens(10 + s, V, 70 + s));
  await model.run((n) => n.kvReserve(4));
  for (let s = 0; s < 3; s++) await model.run((n) => n.kvSetAdapter(s, served[s].id));
  // A prompt in one call per slot, all four in one batch, then three tokens a call.
  const logits = new Float32Array(4 * V);
  const feed = async (counts: number[], from: number[]): Promise<void> => {
    const tokens = sequences.flatMap((seq, s) => [...seq.subarray(from[s], from[s] + counts[s])]);
    await model.run(() => native.kvForward(Int32Array.of(0, 1, 2, 3), Int32Array.from(counts), Int32Array.from(tokens), logits));
  };
  await feed([7, 8, 9, 10], [0, 0, 0, 0]);
  await feed([3, 3, 3, 3], [7, 8, 9, 10]);
  for (let s = 0; s < 4; s++) {
    const reference = s < 3 ? await mergedModel(base, factors[s], SPECS[s].alpha / SPECS[s].r) : await Model.load(base, { trainable: false, threads: 2, device: 'cpu' });
    const expected = new Float32Array(V);
    await reference.run((n) => n.kvReserve(1));
    await reference.run((n) => n.kvForward(Int32Array.of(0), Int32Array.of(sequences[s].length), sequences[s], expected));
    const diff = maxAbsDiff(logits.subarray(s * V, (s + 1) * V), expected);
    t.ok(diff <= 1e-5, `slot ${s} (${s < 3 ? `adapter ${s}` : 'no adapter'}): logits within ${diff.toExponential(2)} <= 1e-5 of the merged model's`);
    reference.dispose();
  }

  // Binding another adapter empties the slot; binding the same one keeps it.
  await model.run((n) => n.kvSetAdapter(0, served[0].id));
  t.equal(native.kvLength(0), 10, 'the same adapter: the cache stays');
  await model.run((n) => n.kvSetAdapter(0, served[1].id));
  t.equal(native.kvLength(0), 0, 'another adapter: the slot is emptied');
  await model.removeAdapter(served[1]);
  t.equal(native.kvLength(0), 0);
  t.throws(() => native.kvSetAdapter(1, served[1].id), /no adapter 1/, 'a removed adapter is gone');
  t.equal(native.kvLength(1), 0, 'and the slots it was bound to are emptied');
  t.equal(native.kvLength(2), 12, 'others are not');
  model.dispose();
});

t.test('requests for three adapters and the base decode together as each does alone', async (t) => {
  const { base, adapters } = await ready;
  const model = await Model.load(base, { trainable: false, threads: 2, device: 'cpu' });
  const served = await Promise.all(adapters.map((a) => model.addAdapter(a)));
  const generator = new Generator(model, tokenizer, { slots: 4 });
  t.teardown(() => generator.close());
  const prompts = ['how are you', 'see you at dinner', 'the game is on', 'hello there'];
  const ask = (i: number) => generator.generate(prompts[i], { adapter: i < 3 ? served[i] : undefined, temperature: 0, maxTokens: 12, logprobs: 3, stopTokens: [] });
  const alone = [];
  for (let i = 0; i < 4; i++) alone.push(await ask(i));
  const together = await Promise.all([0, 1, 2, 3].map(ask));
  for (let i = 0; i < 4; i++) {
    t.same(together[i].tokens, alone[i].tokens, `request ${i}: the same tokens together as alone`);
    const a = (alone[i].logprobs ?? []).map((l) => l.logprob);
    const b = (together[i].logprobs ?? []).map((l) => l.logprob);
    t.ok(maxAbsDiff(a, b) <= 1e-5, `request ${i}: log-probabilities within ${maxAbsDiff(a, b).toExponential(2)}`);
  }
  t.not(JSON.stringify(alone[0].tokens), JSON.stringify(alone[3].tokens), 'an adapter changes what the base says');
  // A prompt is continued from a slot that holds it under the same adapter, never under another one.
  const same = await generator.generate(prompts[0], { adapter: served[0], temperature: 0, maxTokens: 12, stopTokens: [] });
  t.ok(same.timings.cachedPromptTokens > 0, `the same adapter reuses its prompt (${same.timings.cachedPromptTokens} tokens)`);
  t.same(same.tokens, alone[0].tokens);
  const again = await generator.generate(prompts[0], { adapter: served[1], temperature: 0, maxTokens: 12, stopTokens: [] });
  t.equal(again.timings.cachedPromptTokens, 0, 'another adapter reuses none of it');
  t.same(again.tokens, (await generator.generate(prompts[0], { adapter: served[1], temperature: 0, maxTokens: 12, stopTokens: [] })).tokens);
});

// PEFT's rank_pattern and alpha_pattern (and use_rslora) give each module its own rank and scaling.
t.test('an adapter whose modules differ in rank and alpha gives its merged model\'s logits', async (t) => {
  const { base } = await ready;
  const ranks: Record<string, number> = { 'attn.c_attn': 4, 'attn.c_proj': 1, 'mlp.c_fc': 2, 'mlp.c_proj': 8 };
  const factors = Array.from({ length: CONFIG.nLayer }, (_, layer) => Object.entries(ranks).map(([kind, r], k) => randomFactors(`h.${layer}.${kind}`, r, CONFIG.nEmbd, 600 + 4 * layer + k))).flat();
  const patterned = writeRawAdapter(path.join(dir, 'patterned'), peftConfig({
    r: 4, lora_alpha: 8, use_rslora: true, target_modules: ['c_attn', 'c_proj', 'c_fc'],
    rank_pattern: { 'attn.c_proj': 1, c_fc: 2, 'mlp.c_proj': 8 }, alpha_pattern: { 'h.1.attn.c_attn': 32, c_fc: 3 },
  }), factors);
  // lora_alpha / sqrt(r) with each module's r and alpha.
  const scaling = (module: string): number => (module === 'h.1.attn.c_attn' ? 32 : module.endsWith('c_fc') ? 3 : 8) / Math.sqrt(ranks[module.replace(/^h\.\d+\./, '')]);
  const model = await Model.load(base, { trainable: false, threads: 2, device: 'cpu' });
  t.teardown(() => model.dispose());
  const served = await model.addAdapter(patterned);
  t.equal(served.bytes, 4 * 8 * factors.reduce((n, f) => n + f.inputs + f.outputs, 0), 'bytes: each module\'s factors at the largest rank, 8, in float32');
  const merged = await Model.load(base, { trainable: false, threads: 2, device: 'cpu' });
  t.teardown(() => merged.dispose());
  for (const f of factors) merged.setParam(`${f.module}.weight`, mergedWeight(merged.getParam(`${f.module}.weight`), f, scaling(f.module)));
  const sequence = randomTokens(12, V, 90);
  const logits = new Float32Array(V);
  const expected = new Float32Array(V);
  await model.run((n) => n.kvReserve(1));
  await model.run((n) => n.kvSetAdapter(0, served.id));
  await model.run((n) => n.kvForward(Int32Array.of(0), Int32Array.of(sequence.length), sequence, logits));
  await merged.run((n) => n.kvReserve(1));
  await merged.run((n) => n.kvForward(Int32Array.of(0), Int32Array.of(sequence.length), sequence, expected));
  const diff = maxAbsDiff(logits, expected);
  t.ok(diff <= 1e-5, `logits within ${diff.toExponential(2)} <= 1e-5 of the merged model's`);
  const unadapted = await Model.load(base, { trainable: false, threads: 2, device: 'cpu' });
  t.teardown(() => unadapted.dispose());
  const plain = new Float32Array(V);
  await unadapted.run((n) => n.kvReserve(1));
  await unadapted.run((n) => n.kvForward(Int32Array.of(0), Int32Array.of(sequence.length), sequence, plain));
  t.ok(maxAbsDiff(plain, expected) > 1e-2, 'and the adapter changes them');
});

t.test('an adapter added to another model is refused', async (t) => {
  const { base, adapters } = await ready;
  const model = await Model.load(base, { trainable: false, threads: 2, device: 'cpu' });
  t.teardown(() => model.dispose());
  const other = await Model.load(base, { trainable: false, threads: 2, device: 'cpu' });
  const foreign = await other.addAdapter(adapters[0]);
  const generator = new Generator(model, tokenizer, { slots: 1 });
  await t.rejects(generator.generate('hi', { adapter: foreign, maxTokens: 2 }), /was added to another model/);
  await generator.close();
  other.dispose();
});

// The rank the TypeScript side refuses past (servedRank) is the addon's own: the one kv_add_adapter takes last.
t.test('the largest served rank comes from the addon, and kvAddAdapter refuses the next', async (t) => {
  const most = maxServedRank();
  t.ok(Number.isSafeInteger(most) && most > 0, `a rank (${most})`);
  const model = Model.create(CONFIG, { device: 'cpu', trainable: false });
  t.teardown(() => model.dispose());
  t.throws(() => model[NATIVE].kvAddAdapter(most + 1, 1, new Uint8Array(CONFIG.nLayer * 4), new Float32Array(0)),
    { message: `kv_add_adapter: rank ${most + 1} is outside [1, ${most}]` });
});
