// Model folders in and out (Hugging Face config.json + model.safetensors), 16-bit weights, and every kind of bad
// input: each must end in a clear error naming the tensor, field or position, never a crash.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { Model, NATIVE, type GPT2Config } from '../../lib/engine/model';
import { loadAddon } from '../../lib/engine/native';
import { f16ToF32, f32ToBf16, f32ToF16, bf16ToF32, openSafetensors, writeSafetensors, type TensorToWrite } from '../../lib/formats/safetensors';
import { FIXTURE_DIR, TINY_CONFIG, loadExpected, maxAbsDiff } from './helpers';

const ex = loadExpected();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-files-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

const source = openSafetensors(path.join(FIXTURE_DIR, 'model.safetensors'));
const weights = new Map(source.tensors.map((e) => [e.name, { shape: e.shape, data: source.readF32(e) }]));
const fixtureConfig = JSON.parse(fs.readFileSync(path.join(FIXTURE_DIR, 'config.json'), 'utf8')) as Record<string, unknown>;

// A model folder built from the fixture's tensors, edited by `edit` (rename, drop, reshape, retype, add).
let folders = 0;
async function folder(edit: (tensors: TensorToWrite[]) => TensorToWrite[] = (x) => x, config: Record<string, unknown> = fixtureConfig): Promise<string> {
  const dir = path.join(tmp, `m${folders++}`);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  const tensors: TensorToWrite[] = [...weights].map(([name, w]) => ({ name, dtype: 'F32', shape: w.shape, data: () => w.data }));
  await writeSafetensors(path.join(dir, 'model.safetensors'), edit(tensors), { format: 'pt' });
  return dir;
}

const load = async (dir: string | Promise<string>, options = {}): Promise<Model> => Model.load(await dir, { maxBatch: ex.B, maxSeq: ex.T, threads: 2, ...options });

t.test('save then load is bit-exact and writes a Hugging Face config', async (t) => {
  const a = await load(FIXTURE_DIR);
  await a.forward(ex.inputs, ex.targets, ex.B, ex.T);
  await a.backward();
  await a.step({ optimizer: 'adamw', lr: 1e-3 });
  const dir = path.join(tmp, 'saved');
  await a.save(dir);
  const b = await load(dir);
  for (const x of a.tensors) t.equal(maxAbsDiff(a.getParam(x.name), b.getParam(x.name)), 0, `${x.name} round trip`);
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  t.match(config, {
    model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_layer: 2, n_head: 4, n_embd: 64, n_positions: 64, n_ctx: 64,
    vocab_size: 256, layer_norm_epsilon: 1e-5, activation_function: 'gelu_new',
  });
  const file = openSafetensors(path.join(dir, 'model.safetensors'));
  t.same(file.metadata, { format: 'pt' });
  t.same(file.tensors.map((e) => e.name).sort(), a.tensors.map((x) => x.name).sort(), 'every parameter, Hugging Face names');
  file.close();
  t.same(fs.readdirSync(dir).sort(), ['config.json', 'model.safetensors'], 'no temporary files left');
  a.dispose();
  b.dispose();
});

t.test('transformer. prefix, attention-mask buffers and a tied lm_head.weight are accepted', async (t) => {
  const dir = folder((ts) => [
    ...ts.map((x) => ({ ...x, name: `transformer.${x.name}` })),
    { name: 'transformer.h.0.attn.bias', dtype: 'F32', shape: [1, 1, 64, 64], data: () => new Float32Array(64 * 64) },
    { name: 'transformer.h.1.attn.masked_bias', dtype: 'F32', shape: [], data: () => Float32Array.of(-1e4) },
    { name: 'lm_head.weight', dtype: 'F32', shape: [256, 64], data: () => (weights.get('wte.weight') as { data: Float32Array }).data },
  ]);
  const m = await load(dir);
  t.equal(maxAbsDiff(m.getParam('h.1.mlp.c_fc.weight'), (weights.get('h.1.mlp.c_fc.weight') as { data: Float32Array }).data), 0);
  t.equal(maxAbsDiff(m.getParam('transformer.wte.weight'), m.getParam('wte.weight')), 0, 'getParam takes either name');
  m.dispose();
  const untied = folder((ts) => [...ts, { name: 'lm_head.weight', dtype: 'F32', shape: [256, 64], data: () => new Float32Array(256 * 64) }]);
  await t.rejects(load(untied), /"lm_head.weight" differs from wte.weight/);
});

for (const dtype of ['F16', 'BF16'] as const) {
  t.test(`${dtype} files load (converted to float32, or kept 16-bit for inference)`, async (t) => {
    const toHalf = dtype === 'F16' ? f32ToF16 : f32ToBf16;
    const fromHalf = dtype === 'F16' ? f16ToF32 : bf16ToF32;
    const dir = folder((ts) => ts.map((x) => ({ ...x, dtype, data: () => toHalf(x.data() as Float32Array) })));
    const f32 = await load(dir);
    const kept = await load(dir, { weightDtype: dtype.toLowerCase() });
    for (const x of f32.tensors) {
      const expected = fromHalf(toHalf((weights.get(x.name) as { data: Float32Array }).data));
      t.equal(maxAbsDiff(f32.getParam(x.name), expected), 0, `${x.name} converted exactly`);
      t.equal(maxAbsDiff(kept.getParam(x.name), expected), 0, `${x.name} kept 16-bit`);
    }
    const logits = new Float32Array(ex.B * ex.T * 256);
    await f32.forward(ex.inputs, null, ex.B, ex.T, logits);
    t.ok(maxAbsDiff(logits, ex.logits) < (dtype === 'F16' ? 0.05 : 0.2), 'logits close to float32 ones');
    await t.rejects(kept.forward(ex.inputs, ex.targets, ex.B, ex.T), /inference-only/);
    await t.rejects(kept.step({ optimizer: 'adamw', lr: 1 }), /inference-only/);
    t.ok(kept.memory().params < f32.memory().params, '16-bit weights take half the memory');
    f32.dispose();
    kept.dispose();
  });
}

// transformers' GPT2MLP takes its activation from ACT2FN by this field; these five names are the tanh GELU that
// GPT-2 was trained with, so each gives the reference's logits; "gelu" is the exact erf GELU.
t.test('activation_function: every name of the tanh GELU loads and gives the reference logits; the erf GELU is refused', async (t) => {
  for (const name of ['gelu_new', 'gelu_pytorch_tanh', 'gelu_python_tanh', 'gelu_fast', 'gelu_accurate']) {
    const m = await load(folder((x) => x, { ...fixtureConfig, activation_function: name }));
    const logits = new Float32Array(ex.B * ex.T * 256);
    await m.forward(ex.inputs, null, ex.B, ex.T, logits);
    const diff = maxAbsDiff(logits, ex.logits);
    t.ok(diff <= 1e-5, `${name}: logits within 1e-5 of the reference (max diff ${diff})`);
    m.dispose();
  }
  const erf = await folder((x) => x, { ...fixtureConfig, activation_function: 'gelu' });
  await t.rejects(load(erf), { message: `${path.join(erf, 'config.json')}: field "activation_function" is "gelu"; dixie computes GPT-2's tanh GELU ("gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh", "gelu_fast", "gelu_accurate") only` });
});

t.test('bad model folders: each error names what is wrong', async (t) => {
  const cases: [string, Promise<string>, RegExp][] = [
    ['missing tensor', folder((ts) => ts.filter((x) => x.name !== 'h.1.ln_2.bias')), /missing tensor "h\.1\.ln_2\.bias"/],
    ['misnamed tensor', folder((ts) => ts.map((x) => (x.name === 'h.0.mlp.c_fc.weight' ? { ...x, name: 'h.0.mlp.fc.weight' } : x))), /"h\.0\.mlp\.fc\.weight" is not a GPT-2 parameter/],
    ['mis-shaped tensor', folder((ts) => ts.map((x) => (x.name === 'h.0.attn.c_proj.weight' ? { ...x, shape: [32, 128] } : x))), /"h\.0\.attn\.c_proj\.weight" has shape \[32, 128\].*\[64, 64\]/],
    ['config mismatch', folder((x) => x, { ...fixtureConfig, vocab_size: 300 }), /"wte\.weight" has shape \[256, 64\] but .*config\.json implies \[300, 64\]/],
    ['config field', folder((x) => x, { ...fixtureConfig, n_head: 5 }), /"n_embd" \(64\) must be a multiple of "n_head" \(5\)/],
    ['activation', folder((x) => x, { ...fixtureConfig, activation_function: 'relu' }), /"activation_function" is "relu"/],
    // Fields transformers reads that change the logits: each would load the same weights into another computation.
    ['attention scaled by layer', folder((x) => x, { ...fixtureConfig, scale_attn_by_inverse_layer_idx: true }),
      /config\.json: field "scale_attn_by_inverse_layer_idx" is true; dixie computes GPT-2's false /],
    ['attention unscaled', folder((x) => x, { ...fixtureConfig, scale_attn_weights: false }),
      /config\.json: field "scale_attn_weights" is false; dixie computes GPT-2's true /],
    ['MLP width', folder((x) => x, { ...fixtureConfig, n_inner: 1024 }), /config\.json: field "n_inner" is 1024; dixie computes GPT-2's null or 4 x n_embd/],
    ['integer weights', folder((ts) => ts.map((x) => (x.name === 'ln_f.bias' ? { ...x, dtype: 'I32', data: () => new Int32Array(64) } : x))), /"ln_f\.bias" has dtype I32/],
  ];
  for (const [what, dir, message] of cases) await t.rejects(load(dir), message, what);
  const asGpt2 = await load(folder((x) => x, {
    ...fixtureConfig, scale_attn_weights: true, scale_attn_by_inverse_layer_idx: false, n_inner: null, reorder_and_upcast_attn: true,
  }));
  t.equal(asGpt2.config.nEmbd, 64, 'the same fields at what GPT-2 computes load');
  asGpt2.dispose();

  const good = fs.readFileSync(path.join(FIXTURE_DIR, 'model.safetensors'));
  const corrupt = (name: string, bytes: Buffer): string => {
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir);
    fs.copyFileSync(path.join(FIXTURE_DIR, 'config.json'), path.join(dir, 'config.json'));
    fs.writeFileSync(path.join(dir, 'model.safetensors'), bytes);
    return dir;
  };
  const headerLength = Number(good.readBigUInt64LE(0));
  const header = JSON.parse(good.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype: string; data_offsets: number[] }>;
  const withHeader = (edit: (h: typeof header) => void): Buffer => {
    const h = structuredClone(header);
    edit(h);
    const json = Buffer.from(JSON.stringify(h).padEnd(headerLength, ' '));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    return Buffer.concat([len, json, good.subarray(8 + headerLength)]);
  };
  const files: [string, Buffer, RegExp][] = [
    ['truncated data', good.subarray(0, good.length - 1000), /truncated/],
    ['header length beyond the file', Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0, 0, 0, 0, 0]), good.subarray(8, 100)]), /header length .* beyond the end of the file/],
    ['header not JSON', Buffer.concat([good.subarray(0, 8), Buffer.alloc(headerLength, 0x7b), good.subarray(8 + headerLength)]), /not valid UTF-8 JSON/],
    ['unknown dtype', withHeader((h) => (h['wpe.weight'].dtype = 'F12')), /"wpe\.weight": unknown dtype "F12"/],
    ['overlapping offsets', withHeader((h) => (h['ln_f.bias'].data_offsets = [...h['ln_f.weight'].data_offsets])), /overlaps/],
  ];
  for (const [what, bytes, message] of files) await t.rejects(load(corrupt(what.replace(/ /g, '-'), bytes)), message, what);
});

t.test('bad calls: token ids, lengths, T > nCtx, planned size, busy model, disposed model', async (t) => {
  const m = await load(FIXTURE_DIR);
  const bad = ex.inputs.slice();
  bad[40] = 256;
  await t.rejects(m.forward(bad, ex.targets, ex.B, ex.T), /inputs\[1, 8\] = 256 is not a token id/);
  const badTargets = ex.targets.slice();
  badTargets[3] = -1;
  await t.rejects(m.forward(ex.inputs, badTargets, ex.B, ex.T), /targets\[0, 3\] = -1/);
  await t.rejects(m.forward(ex.inputs, ex.targets, ex.B, ex.T - 1), /inputs has length 64, expected 62/);
  await t.rejects(m.forward(ex.inputs, ex.targets, ex.B, ex.T, new Float32Array(10)), /logitsOut has length 10/);
  const long = new Int32Array(65);
  await t.rejects(m.forward(long, null, 1, 65), /T = 65 exceeds the context length nCtx = 64/);
  await t.rejects(m.forward(new Int32Array(96), null, 3, 32), /B\*T = 96 exceeds the planned maxBatch\*maxSeq = 64/);
  await t.rejects(m.step({ optimizer: 'adam' as 'adamw', lr: 1 }), /optimizer must be 'adamw' or 'sgd'/);
  t.throws(() => m.getParam('h.9.ln_1.weight'), /unknown tensor "h\.9\.ln_1\.weight"/);
  t.throws(() => m.setParam('ln_f.bias', new Float32Array(3)), /"ln_f\.bias" has 64 elements/);
  const before = m.getParam('ln_f.bias');
  for (const [value, named] of [[NaN, 'a NaN'], [Infinity, '\\+Infinity'], [-Infinity, '-Infinity']] as const) {
    const data = before.slice();
    data[5] = value;
    t.throws(() => m.setParam('ln_f.bias', data), new RegExp(`setParam: tensor "ln_f\\.bias" has ${named} at element 5; weights must be finite`));
  }
  t.same(m.getParam('ln_f.bias'), before, 'refused values are not written');
  t.throws(() => m[NATIVE].readParams(m[NATIVE].numParams() - 2, new Float32Array(4)), /beyond the \d+ parameters/);
  t.throws(() => m[NATIVE].writeParams(-1, new Float32Array(1), 'f32'), /offset must be an integer/);
  t.throws(() => m[NATIVE].kvLength(0), /not reserved/);

  // KV-cached decoding: every index is checked before the decoder reads it; a prompt's last logits match forward.
  m[NATIVE].kvReserve(2);
  const V = 256;
  const prompt = ex.inputs.subarray(0, 10);
  const logitsOut = new Float32Array(V);
  await t.rejects(m[NATIVE].kvForward(Int32Array.of(2), Int32Array.of(10), prompt, logitsOut), /slot 2 \(entry 0\) is outside \[0, 2\)/);
  await t.rejects(m[NATIVE].kvForward(Int32Array.of(0, 0), Int32Array.of(5, 5), prompt, new Float32Array(2 * V)), /appears twice/);
  await t.rejects(m[NATIVE].kvForward(Int32Array.of(0), Int32Array.of(9), prompt, logitsOut), /tokens has length 10, expected 9/);
  await t.rejects(m[NATIVE].kvForward(Int32Array.of(0), Int32Array.of(65), new Int32Array(65), logitsOut), /slot 0 would hold 65 tokens, more than n_ctx 64/);
  await t.rejects(m[NATIVE].kvForward(Int32Array.of(0), Int32Array.of(1), Int32Array.of(999), logitsOut), /token 999 at 0 is outside the vocabulary/);
  await m[NATIVE].kvForward(Int32Array.of(1), Int32Array.of(10), prompt, logitsOut);
  t.equal(m[NATIVE].kvLength(1), 10);
  t.ok(maxAbsDiff(logitsOut, ex.logits.subarray(9 * V, 10 * V)) <= 1e-4, 'decoder logits match the training forward');

  // The native guard: a second heavy call on one model while one runs is refused (Model's queue avoids it).
  const first = m[NATIVE].forward(ex.inputs, ex.targets, ex.B, ex.T, null, null);
  await t.rejects(m[NATIVE].forward(ex.inputs, ex.targets, ex.B, ex.T, null, null), /busy with forward/);
  t.throws(() => m[NATIVE].readParams(0, new Float32Array(1)), /busy/);
  t.ok(Number.isFinite(await first), 'the first call completes');
  // Through Model, overlapping calls queue instead.
  const losses = await Promise.all([0, 1, 2].map(() => m.forward(ex.inputs, ex.targets, ex.B, ex.T)));
  t.ok(losses.every((l) => l === losses[0]), 'queued calls all ran');

  // dispose() while a call runs is refused, saying to await it, and frees the memory once it has settled.
  const running = m.forward(ex.inputs, ex.targets, ex.B, ex.T);
  t.throws(() => m.dispose(), /dispose: 1 call is still queued or running on this model: await it, then dispose\(\)/);
  await running;
  m.dispose();
  t.throws(() => m[NATIVE].numParams(), /disposed/);
  m.dispose();
  await t.rejects(m[NATIVE].forward(ex.inputs, null, ex.B, ex.T, null, null), /disposed/);
  t.throws(() => new (loadAddon().Model)({ ...TINY_CONFIG, nHead: 0 }, {}), /config\.nHead must be an integer in \[1/);
  // Model.create checks its config before planning memory by it.
  const configs: [unknown, RegExp][] = [
    [{ ...TINY_CONFIG, nLayer: NaN }, /^Model\.create config: field "nLayer" must be a positive integer, got NaN$/],
    [{}, /^Model\.create config: missing field "nLayer"$/],
    [{ ...TINY_CONFIG, vocabSize: '256' }, /^Model\.create config: field "vocabSize" must be a positive integer, got "256"$/],
    [{ ...TINY_CONFIG, nHead: 3 }, /^Model\.create config: field "nEmbd" \(64\) must be a multiple of "nHead" \(3\)$/],
    [undefined, /^Model\.create config must be an object of nLayer, nHead, nEmbd, nCtx and vocabSize, got undefined$/],
  ];
  for (const [config, message] of configs) t.throws(() => Model.create(config as GPT2Config), { message });
  t.throws(() => new (loadAddon().Model)(TINY_CONFIG, { maxSeq: 65 }), /options\.maxSeq/);
});

t.test('the event loop keeps running during a long forward', async (t) => {
  const config = { nLayer: 6, nHead: 8, nEmbd: 512, nCtx: 512, vocabSize: 8000 };
  const m = Model.create(config, { maxBatch: 1, maxSeq: 512, threads: 2, trainable: false });
  let ticks = 0;
  let done = false;
  const timer = setInterval(() => ticks++, 1);
  const running = m.forward(new Int32Array(512), null, 1, 512).then(() => (done = true));
  await new Promise((resolve) => setTimeout(resolve, 30));
  const [ticksWhileRunning, doneAtCheck] = [ticks, done];
  await running;
  clearInterval(timer);
  // A blocked event loop would run neither timer before the forward ends. How often the 1 ms one runs depends
  // on how busy the 2 cores are (tap runs other test files beside this one), so once is what is asked.
  t.notOk(doneAtCheck, 'the forward is still running 30 ms later');
  t.ok(ticksWhileRunning >= 1, `the timer ticked ${ticksWhileRunning} times while the forward ran`);
  m.dispose();
});

t.test('loading and saving let the event loop run while they read and write', async (t) => {
  // A chain of immediates turns with the event loop: it never would while a load or save held it to the end.
  let turns = 0;
  let ticking = true;
  const tick = (): void => {
    turns++;
    if (ticking) setImmediate(tick);
  };
  const during = async <T>(work: () => Promise<T>): Promise<[T, number]> => {
    turns = 0;
    ticking = true;
    setImmediate(tick);
    const result = await work();
    ticking = false;
    return [result, turns];
  };
  const [m, loadTurns] = await during(() => load(FIXTURE_DIR));
  t.ok(loadTurns >= 2, `the event loop turned ${loadTurns} times during Model.load`);
  const [, saveTurns] = await during(() => m.save(path.join(tmp, 'saved-while-ticking')));
  t.ok(saveTurns >= 2, `the event loop turned ${saveTurns} times during save`);
  m.dispose();
});

t.test('addon facts', async (t) => {
  const features = loadAddon().cpuFeatures();
  t.ok(Array.isArray(features) && features.every((f) => typeof f === 'string'), JSON.stringify(features));
});
