// Hot-swapping without races, end to end: three real tiny models that answer differently under greedy
// sampling, a memory budget that holds only one of them, and many concurrent mixed-model requests.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { estimateModelBytes } from '../../lib/server/engine';
import { makeModels, request, startServer, tempDir, TINY } from './helpers';

const PROMPT = 'How big is the earth?';
const LENGTH = 8;
const MODELS = { alpha: 1, beta: 3, gamma: 5 };
const SLOTS = 4;
const greedy = { temperature: 0, penalize: 0, length: LENGTH };

let dir: string;
let expected: Record<string, string>;
let expectedLong: Record<string, string>;
const LONG_LENGTH = 100;

t.before(async () => {
  dir = tempDir('hotswap');
  expected = await makeModels(dir, MODELS, PROMPT, LENGTH);
  expectedLong = await makeModels(path.join(dir, 'long'), { beta: MODELS.beta }, PROMPT, LONG_LENGTH);
  // A LoRA adapter of alpha (B zero: it answers as alpha does).
  const adapted = await Model.load(path.join(dir, 'alpha'), { lora: { rank: 2, alpha: 4, targets: ['attn.c_attn'], seed: 1 } });
  await adapted.saveAdapter(path.join(dir, 'alpha-adapter'));
  adapted.dispose();
});
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

const modelsConfig = () => Object.keys(MODELS).map((key) => ({ key, restore_from: path.join(dir, key), sampling: greedy }));

t.test('concurrent mixed-model requests under a budget for one model: every answer from the right model', async (t) => {
  const oneModel = estimateModelBytes(TINY, 'f32', SLOTS);
  const budgetMb = (1.5 * oneModel) / (1024 * 1024);
  const srv = await startServer({ models: modelsConfig(), memory_budget_mb: budgetMb, batch_slots: SLOTS, max_queue: 1000 }, dir);
  t.teardown(srv.close);
  const registry = srv.server.service.registry;
  let maxReserved = 0;
  let maxLoaded = 0;
  const watch = setInterval(() => {
    maxReserved = Math.max(maxReserved, registry.reservedBytes);
    maxLoaded = Math.max(maxLoaded, registry.status().filter((s) => s.state !== 'unloaded').length);
  }, 1);
  const keys = Object.keys(MODELS);
  const asks = Array.from({ length: 36 }, (_, i) => keys[(i * 7 + (i >> 2)) % keys.length]);
  const answers = await Promise.all(asks.map((key) => request(`${srv.url}/invocations`, { body: { model_key: key, raw_text: PROMPT, format: 'json' } })));
  clearInterval(watch);
  answers.forEach((r, i) => {
    t.equal(r.status, 200, `request ${i} (${asks[i]})`);
    const j = r.json();
    t.equal(j.model_key, asks[i]);
    t.equal(j.text, expected[asks[i]], `request ${i} answered by ${asks[i]}`);
    t.equal(j.finish_reason, 'length', `request ${i} ran to the end: its model was not unloaded under it`);
  });
  t.ok(maxReserved <= budgetMb * 1024 * 1024, `reserved at most ${maxReserved} bytes of ${Math.round(budgetMb * 1024 * 1024)}`);
  t.equal(maxLoaded, 1, 'never two models at once');
  const status = registry.status();
  t.ok(status.reduce((n, s) => n + s.loads, 0) >= keys.length, 'the models took turns');
  t.ok(status.reduce((n, s) => n + s.loads, 0) <= asks.length, 'requests for a loaded model shared it');
  const list = (await request(`${srv.url}/models/list`)).json().models as Record<string, unknown>[];
  for (const key of keys) t.equal(list.find((m) => m.model_key === key)?.num_inferences, asks.filter((k) => k === key).length, `${key}'s count`);
});

t.test('requests alternating between two models under a budget for one are batched by model: few loads, none starved', async (t) => {
  const oneModel = estimateModelBytes(TINY, 'f32', SLOTS);
  const srv = await startServer({ models: modelsConfig(), memory_budget_mb: (1.5 * oneModel) / (1024 * 1024), batch_slots: SLOTS, max_queue: 1000 }, dir);
  t.teardown(srv.close);
  const REQUESTS = 320;
  const CLIENTS = 32;
  // CLIENTS clients, each sending its next request when its last one is answered; request i asks for keyOf(i).
  // Every request must be answered, by its model: none starves.
  const run = async (keyOf: (i: number) => string, requests = REQUESTS): Promise<number> => {
    let next = 0;
    const started = performance.now();
    await Promise.all(Array.from({ length: CLIENTS }, async () => {
      for (let i = next++; i < requests; i = next++) {
        const r = await request(`${srv.url}/invocations`, { body: { model_key: keyOf(i), raw_text: PROMPT } });
        if (r.status !== 200 || r.text !== expected[keyOf(i)]) t.fail(`request ${i} for ${keyOf(i)}: ${r.status} ${r.text}`);
      }
    }));
    return performance.now() - started;
  };
  await run(() => 'alpha', 2 * CLIENTS);  // loads alpha and warms up
  const oneKeyMs = await run(() => 'alpha');
  const loadsOf = async () => [...(await request(`${srv.url}/metrics`)).text.matchAll(/^dixie_model_loads_total\{model="(\w+)"\} (\d+)$/gm)].reduce((n, m) => n + Number(m[2]), 0);
  const loadsBefore = await loadsOf();
  const alternatingMs = await run((i) => (i % 2 === 0 ? 'alpha' : 'beta'));
  const loads = (await loadsOf()) - loadsBefore;
  t.ok(alternatingMs < 2 * oneKeyMs, `alternating keys took ${Math.round(alternatingMs)} ms, one key ${Math.round(oneKeyMs)} ms (${(alternatingMs / oneKeyMs).toFixed(2)}x)`);
  t.ok(loads >= 2 && loads <= REQUESTS / 10, `${loads} loads for ${REQUESTS} alternating requests`);
  const metrics = (await request(`${srv.url}/metrics`)).text;
  t.match(metrics, /^# TYPE dixie_model_loads_total counter$/m);
  t.match(metrics, /^dixie_model_evictions_total\{model="alpha"\} [1-9]\d*$/m, 'evictions are counted');
  t.match(metrics, /^dixie_model_unloads_total\{model="alpha"\} [1-9]\d*$/m, 'unloads are counted');
});

t.test('a model is loaded once however many requests ask at once, and they are decoded together', async (t) => {
  // Replies of 100 tokens: a hundred steps during which the batch is watched.
  const srv = await startServer({ models: [{ key: 'beta', restore_from: path.join(dir, 'long', 'beta'), sampling: { ...greedy, length: LONG_LENGTH } }], batch_slots: SLOTS }, dir);
  t.teardown(srv.close);
  let maxRunning = 0;
  const watch = setInterval(() => {
    maxRunning = Math.max(maxRunning, srv.server.service.registry.peek('beta')?.generator.load.running ?? 0);
  }, 1);
  const answers = await Promise.all(Array.from({ length: 12 }, () => request(`${srv.url}/invocations`, { body: { model_key: 'beta', raw_text: PROMPT } })));
  clearInterval(watch);
  t.ok(answers.every((r) => r.status === 200 && r.text === expectedLong.beta));
  t.equal(srv.server.service.registry.status().find((s) => s.key === 'beta')?.loads, 1);
  t.ok(maxRunning > 1, `up to ${maxRunning} requests decoded in one batch`);
  t.ok(maxRunning <= SLOTS);
  const used = srv.server.service.registry.peek('beta')?.generator.model.memory();
  const total = used ? used.params + used.grads + used.optimizer + used.activations + used.kvCache : Infinity;
  t.ok(total <= estimateModelBytes(TINY, 'f32', SLOTS), `the budget's estimate covers the ${total} bytes the model really takes`);
});

t.test('entries over one folder load it once: each answers as its own audience, one batch, and a budget for one model holds them all', async (t) => {
  const oneModel = estimateModelBytes(TINY, 'f32', SLOTS);
  const bot = (key: string) => ({ key, restore_from: 'alpha', audience: key, prompt_format: 'chat', sampling: greedy });
  // The adapter names the folder, not an entry: it shares the bots' model too.
  const models = [bot('mom'), bot('dad'), { key: 'tuned', base: 'alpha', adapter: 'alpha-adapter', sampling: greedy }];
  const srv = await startServer({ models, memory_budget_mb: (1.5 * oneModel) / (1024 * 1024), batch_slots: SLOTS }, dir);
  t.teardown(srv.close);
  const ask = (key: string) => request(`${srv.url}/invocations`, { body: { model_key: key, raw_text: PROMPT } });
  const keys = ['mom', 'dad', 'tuned'];
  t.ok((await Promise.all(keys.map(ask))).every((r) => r.status === 200), 'all answer at once');
  for (const key of ['mom', 'dad', 'mom']) t.equal((await ask(key)).status, 200, `then ${key}`);
  const list = (await request(`${srv.url}/models/list`)).json() as { models: { model_key: string; loaded: boolean; loads: number; memory_bytes: number }[]; memory: { reserved_bytes: number } };
  t.same(list.models.map((m) => [m.model_key, m.loaded, m.loads]), keys.map((key) => [key, true, 1]), 'all loaded together, each once: none evicted for another');
  t.same(list.models.filter((m) => m.model_key !== 'tuned').map((m) => m.memory_bytes), [0, 0], 'the bots take nothing of their own');
  t.ok(list.memory.reserved_bytes < oneModel * 1.1, `the model counted once (${list.memory.reserved_bytes} bytes reserved, one model ${oneModel})`);
  const registry = srv.server.service.registry;
  t.equal(registry.peek('mom')?.generator, registry.peek('dad')?.generator, 'their requests decode in one batcher');
  t.equal(registry.peek('tuned')?.generator, registry.peek('mom')?.generator);
  const prompts = (key: string) => srv.logs.filter((l) => l.msg === 'generated' && l.model === key).map((l) => String(l.prompt));
  t.ok(prompts('mom').length > 0 && prompts('mom').every((p) => p.includes('|mom|') && !p.includes('|dad|')), 'mom is prompted as mom');
  t.ok(prompts('dad').length > 0 && prompts('dad').every((p) => p.includes('|dad|') && !p.includes('|mom|')), 'dad as dad');
  const metrics = (await request(`${srv.url}/metrics`)).text;
  t.notMatch(metrics, /base:/, 'the shared model has no line of its own in /metrics');
  t.match(metrics, /dixie_model_loads_total\{model="dad"\} 1/);
});

t.test('an idle model is unloaded after idle_unload_s, and loads again on demand', async (t) => {
  const srv = await startServer({ models: modelsConfig(), idle_unload_s: 0.2 }, dir);
  t.teardown(srv.close);
  const first = await request(`${srv.url}/invocations`, { body: { model_key: 'gamma', raw_text: PROMPT } });
  t.equal(first.text, expected.gamma);
  const loadedOf = async () => ((await request(`${srv.url}/models/list`)).json().models as Record<string, unknown>[]).find((m) => m.model_key === 'gamma')?.loaded;
  while (await loadedOf()) await new Promise((r) => setTimeout(r, 50));
  t.equal(await loadedOf(), false);
  const again = await request(`${srv.url}/invocations`, { body: { model_key: 'gamma', raw_text: PROMPT } });
  t.equal(again.text, expected.gamma);
  t.equal(srv.server.service.registry.status().find((s) => s.key === 'gamma')?.loads, 2);
});

t.test('a model too large for the whole budget fails the start, naming it and both sizes', async (t) => {
  const need = Math.round(estimateModelBytes(TINY, 'f32', 8) / (1024 * 1024));
  await t.rejects(startServer({ models: modelsConfig(), memory_budget_mb: 1 }, dir), {
    message: `test config: models[0] ("alpha"): the model needs ${need} MB (its weights, and the KV cache and scratch of batch_slots requests at its full context), more than the whole memory_budget_mb (1 MB): raise memory_budget_mb, or lower batch_slots`,
  });
});
