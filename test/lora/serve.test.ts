// Model entries of server_config.json with an "adapter": decoded over a base that the adapters of that base share,
// each answering (and embedding) as bin/merge-lora's merged folder does (one whose modules differ in rank and alpha
// too), together as alone; /models/list shows adapter and base and
// the budget counts the base once; a folder that is no adapter, or a "base" that does not fit, stops the start,
// naming the entry; a reload that changes a base loads its adapters afresh over it.
import path from 'node:path';
import t, { type Test } from 'tap';
import { validateServerConfig } from '../../lib/server/config';
import { request, startServer } from '../server/helpers';
import { CONFIG, type Factors, peftConfig, randomFactors, saveBase, writeRawAdapter } from './helpers';
import { runCommand } from '../helpers/run_command';

const work = t.testdir({});

// A model's answer to one question, over HTTP.
async function answer(t: Test, url: string, key: string): Promise<string> {
  const r = await request(`${url}/invocations`, { body: { model_key: key, raw_text: 'How are you?', format: 'json' } });
  t.equal(r.status, 200, r.text);
  return r.json().text as string;
}

// A server of three entries: a random base ("base"), the adapter of `config` and `factors` over it ("bot"), and
// bin/merge-lora's merged folder of the two ("merged"), answering greedily; checks that the adapter's entry answers
// as the merged folder and not as the base. The folders are `name` (the adapter), <name>-base and <name>-merged.
async function serveBesideMerged(t: Test, name: string, config: Record<string, unknown>, factors: Factors[]): Promise<Awaited<ReturnType<typeof startServer>>> {
  const base = await saveBase(path.join(work, `${name}-base`));
  const adapter = writeRawAdapter(path.join(work, name), config, factors);
  const run = runCommand('merge-lora', [base, adapter, path.join(work, `${name}-merged`)]);
  t.equal(run.status, 0, run.stderr);
  const greedy = { temperature: 0, penalize: 0, length: 16 };
  const srv = await startServer({
    models: [
      { key: 'base', restore_from: `${name}-base`, sampling: greedy },
      { key: 'bot', restore_from: `${name}-base`, adapter: name, sampling: greedy },
      { key: 'merged', restore_from: `${name}-merged`, sampling: greedy },
    ],
  }, work);
  t.teardown(srv.close);
  const ask = (key: string): Promise<string> => answer(t, srv.url, key);
  const [fromBase, fromAdapter, fromMerged] = [await ask('base'), await ask('bot'), await ask('merged')];
  t.equal(fromAdapter, fromMerged, `the adapter's entry answers as the merged folder: ${JSON.stringify(fromAdapter)}`);
  t.not(fromAdapter, fromBase, 'and not as its base');
  return srv;
}

t.test('an entry with an adapter answers as the merged model, beside its base', async (t) => {
  const kinds = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'];
  const factors = Array.from({ length: CONFIG.nLayer }, (_, layer) => kinds.map((kind, k) => randomFactors(`h.${layer}.${kind}`, 4, CONFIG.nEmbd, 50 + 4 * layer + k))).flat();
  const srv = await serveBesideMerged(t, 'adapter', peftConfig({ r: 4, lora_alpha: 32, target_modules: ['c_attn', 'c_proj', 'c_fc'] }), factors);
  const list = (await request(`${srv.url}/models/list`)).json().models as Record<string, unknown>[];
  t.same(list.map((m) => [m.model_key, m.adapter]), [['base', null], ['bot', 'adapter'], ['merged', null]], '/models/list names the adapter');
  const embedding = async (key: string): Promise<number[]> => {
    const r = await request(`${srv.url}/v1/embeddings`, { body: { model: key, input: 'How are you?' } });
    t.equal(r.status, 200, r.status === 200 ? `${key}: embedded` : r.text);
    return (r.json().data as { embedding: number[] }[])[0].embedding;
  };
  const [ofBase, ofAdapter, ofMerged] = [await embedding('base'), await embedding('bot'), await embedding('merged')];
  const farthest = (a: number[], b: number[]): number => Math.max(...a.map((x, i) => Math.abs(x - b[i])));
  t.ok(farthest(ofAdapter, ofMerged) < 1e-5, `the adapter's embedding is the merged folder's (max diff ${farthest(ofAdapter, ofMerged).toExponential(2)})`);
  t.ok(farthest(ofAdapter, ofBase) > 1e-3, 'and not its base\'s');
});

t.test('an adapter whose modules differ in rank and alpha (rank_pattern, alpha_pattern) answers as its merged model', async (t) => {
  const factors = Array.from({ length: CONFIG.nLayer }, (_, layer) => [randomFactors(`h.${layer}.attn.c_attn`, 4, CONFIG.nEmbd, 70 + layer), randomFactors(`h.${layer}.mlp.c_fc`, 2, CONFIG.nEmbd, 80 + layer)]).flat();
  const srv = await serveBesideMerged(t, 'patterned', peftConfig({ r: 4, lora_alpha: 32, target_modules: ['c_attn', 'c_fc'], rank_pattern: { c_fc: 2 }, alpha_pattern: { c_fc: 48 } }), factors);
  const models = (await request(`${srv.url}/models/list`)).json().models as Record<string, unknown>[];
  t.equal(models[1].memory_bytes, Math.ceil(4 * 4 * factors.reduce((n, f) => n + f.inputs + f.outputs, 0) * 1.1),
    'its reservation: each module\'s factors at the largest rank, 4, in float32, with the margin of a model\'s');
});

t.test('an adapter that is not one stops the start, naming the entry', async (t) => {
  await saveBase(path.join(work, 'base2'));
  await t.rejects(startServer({ models: [{ key: 'bot', restore_from: 'base2', adapter: 'base2' }] }, work), /models\[0\]\.adapter: .*base2.*adapter_config\.json/);
});

// The server decodes adapters unmerged, up to rank 256 (PEFT allows any): one past it stopped no start, and every
// request for it failed to load.
t.test('an adapter of a rank the server cannot decode unmerged stops the start, naming the entry and the way out', async (t) => {
  await saveBase(path.join(work, 'ranks-base'));
  for (const r of [256, 257]) {
    writeRawAdapter(path.join(work, `rank-${r}`), peftConfig({ r }), [0, 1].map((layer) => randomFactors(`h.${layer}.attn.c_attn`, r, CONFIG.nEmbd, layer)));
  }
  const models = (r: number) => ({ models: [{ key: 'base', restore_from: 'ranks-base' }, { key: 'bot', base: 'base', adapter: `rank-${r}` }] });
  t.throws(() => validateServerConfig(models(257), 'server_config.json', work), {
    message: `server_config.json: models[1].adapter: ${path.join(work, 'rank-257')}: transformer.h.0.attn.c_attn has rank 257, and an adapter decoded unmerged beside its base (as the server serves adapters) has rank 256 at most: merge this one into its base (bin/merge-lora) and serve the merged folder`,
  });
  const srv = await startServer(models(256), work);
  t.teardown(srv.close);
  await answer(t, srv.url, 'bot');
});

t.test('an adapter trained over another base than its entry serves it over is warned of in the log, naming both', async (t) => {
  const trainedOver = await saveBase(path.join(work, 'trained-over'));
  await saveBase(path.join(work, 'served-over'));
  const factors = Array.from({ length: CONFIG.nLayer }, (_, layer) => randomFactors(`h.${layer}.attn.c_attn`, 4, CONFIG.nEmbd, 90 + layer));
  const adapter = writeRawAdapter(path.join(work, 'elsewhere'), peftConfig({ base_model_name_or_path: trainedOver }), factors);
  const srv = await startServer({
    models: [
      { key: 'over-other', restore_from: 'served-over', adapter: 'elsewhere' },
      { key: 'over-own', restore_from: 'trained-over', adapter: 'elsewhere' },
    ],
  }, work);
  t.teardown(srv.close);
  const warnings = srv.logs.filter((l) => l.level === 'warn').map((l) => [l.model, l.msg]);
  t.same(warnings, [['over-other', `model "over-other": the adapter ${adapter} was trained over ${trainedOver}, not ${path.join(work, 'served-over')}`]],
    'the entry over another base is warned of; the one over its own base is not');
});

t.test('adapters over one base: loaded once, counted once, their requests answered together as each alone, on every endpoint', async (t) => {
  const base = await saveBase(path.join(work, 'shared'));
  const kinds = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'];
  const adapters = [0, 1, 2].map((a) => {
    const factors = Array.from({ length: CONFIG.nLayer }, (_, layer) => kinds.map((kind, k) => randomFactors(`h.${layer}.${kind}`, 4, CONFIG.nEmbd, 500 + 20 * a + 4 * layer + k))).flat();
    return writeRawAdapter(path.join(work, `shared-adapter-${a}`), peftConfig({ r: 4, lora_alpha: 32, target_modules: ['c_attn', 'c_proj', 'c_fc'] }), factors);
  });
  const greedy = { temperature: 0, penalize: 0, length: 12 };
  const srv = await startServer({
    batch_slots: 4,
    models: [
      { key: 'base', restore_from: 'shared', sampling: greedy },
      { key: 'a', base: 'base', adapter: 'shared-adapter-0', sampling: greedy },
      { key: 'b', base: 'base', adapter: 'shared-adapter-1', sampling: greedy },
      { key: 'c', restore_from: 'shared', adapter: 'shared-adapter-2', sampling: greedy },
    ],
  }, work);
  t.teardown(srv.close);
  const ask = (key: string): Promise<string> => answer(t, srv.url, key);
  const keys = ['base', 'a', 'b', 'c'];
  const alone: string[] = [];
  for (const key of keys) alone.push(await ask(key));
  const together = await Promise.all(keys.map(ask));
  t.same(together, alone, 'four requests, three adapters and the base, answered together as each alone');
  t.equal(new Set(alone).size, 4, 'each adapter answers its own way');
  const merged = path.join(work, 'shared-merged-1');
  t.equal(runCommand('merge-lora', [base, adapters[1], merged]).status, 0);
  const srvMerged = await startServer({ models: [{ key: 'm', restore_from: 'shared-merged-1', sampling: greedy }] }, work);
  const fromMerged = await answer(t, srvMerged.url, 'm');
  await srvMerged.close();
  t.equal(alone[2], fromMerged, 'an adapter decoded unmerged answers as its merged model');

  const list = (await request(`${srv.url}/models/list`)).json();
  const models = list.models as Record<string, unknown>[];
  t.same(models.map((m) => [m.model_key, m.base, m.adapter, m.loaded, m.loads]), [
    ['base', null, null, true, 1], ['a', 'base', 'shared-adapter-0', true, 1], ['b', 'base', 'shared-adapter-1', true, 1], ['c', 'base', 'shared-adapter-2', true, 1],
  ], '/models/list shows each adapter and its base, all loaded, the base once');
  const baseBytes = models[0].memory_bytes as number;
  t.ok((models[1].memory_bytes as number) < baseBytes / 20, `an adapter's reservation is its factors (${models[1].memory_bytes} bytes, the base ${baseBytes})`);
  t.equal((list.memory as Record<string, number>).reserved_bytes, models.reduce((n, m) => n + (m.memory_bytes as number), 0), 'the budget counts the base once');

  const chat = await request(`${srv.url}/v1/chat/completions`, { body: { model: 'b', messages: [{ role: 'user', content: 'How are you?' }], max_tokens: 4 } });
  t.equal(chat.status, 200, chat.text);
  t.equal(chat.json().model, 'b');
});

t.test('"base" names a plain entry, or a model; what does not fit is named', async (t) => {
  await saveBase(path.join(work, 'cfg-base'));
  writeRawAdapter(path.join(work, 'cfg-adapter'), peftConfig({ r: 4, target_modules: ['c_attn'] }), [randomFactors('h.0.attn.c_attn', 4, CONFIG.nEmbd, 1), randomFactors('h.1.attn.c_attn', 4, CONFIG.nEmbd, 2)]);
  const plain = { key: 'plain', restore_from: 'cfg-base', weight_dtype: 'f16' };
  const config = validateServerConfig({ models: [plain, { key: 'bot', base: 'plain', adapter: 'cfg-adapter' }, { key: 'folder', base: 'cfg-base', adapter: 'cfg-adapter' }, { key: 'same', restore_from: 'cfg-base', weight_dtype: 'f16', adapter: 'cfg-adapter' }] }, 'cfg', work);
  const [, bot, folder, same] = config.models;
  t.match(bot, { base: 'plain', restoreFrom: path.join(work, 'cfg-base'), weightDtype: 'f16' }, 'an entry: its model and weight type');
  t.match(folder, { base: null, restoreFrom: path.join(work, 'cfg-base'), weightDtype: 'f32' }, 'a folder: no f16 entry of it to share');
  t.match(same, { base: 'plain' }, 'an adapter of the same model and weight type shares the plain entry');
  const bad: [unknown, RegExp][] = [
    [{ models: [plain, { key: 'x', base: 'plain' }] }, /^cfg: models\[1\]\.base: names the model an "adapter" is decoded over; give the adapter too/],
    [{ models: [plain, { key: 'x', base: 'plain', adapter: 'cfg-adapter', weight_dtype: 'q8_0' }] }, /^cfg: models\[1\]\.weight_dtype: an entry with "base" takes its model, weight type and device from the base/],
    [{ models: [plain, { key: 'x', base: 'plain', adapter: 'cfg-adapter' }, { key: 'y', base: 'x', adapter: 'cfg-adapter' }] }, /^cfg: models\[2\]\.base: "x" has an adapter itself/],
  ];
  for (const [raw, message] of bad) t.throws(() => validateServerConfig(raw, 'cfg', work), message);
});

t.test('a reload that changes a base entry loads its adapters afresh over the new base', async (t) => {
  await saveBase(path.join(work, 'first'), CONFIG, 3);
  await saveBase(path.join(work, 'second'), CONFIG, 7);
  const factors = Array.from({ length: CONFIG.nLayer }, (_, layer) => ['attn.c_attn', 'mlp.c_fc'].map((kind, k) => randomFactors(`h.${layer}.${kind}`, 4, CONFIG.nEmbd, 90 + 2 * layer + k))).flat();
  writeRawAdapter(path.join(work, 'reloaded-adapter'), peftConfig({ r: 4, lora_alpha: 32, target_modules: ['c_attn', 'c_fc'] }), factors);
  const greedy = { temperature: 0, penalize: 0, length: 16 };
  const models = (base: string) => [
    { key: 'base', restore_from: base, sampling: greedy },
    { key: 'bot', base: 'base', adapter: 'reloaded-adapter', sampling: greedy },
  ];
  const srv = await startServer({ models: models('first') }, work);
  t.teardown(srv.close);
  const before = await answer(t, srv.url, 'bot');
  const report = srv.server.reload(validateServerConfig({ models: models('second') }, 'server_config.json', work));
  t.same(report.replaced, ['base', 'bot'], 'the adapter goes with its base');
  const after = await answer(t, srv.url, 'bot');
  const fresh = await startServer({ models: models('second') }, work);
  t.teardown(fresh.close);
  t.equal(after, await answer(t, fresh.url, 'bot'), 'it answers as over the new base from the start');
  t.not(after, before, 'and not as over the old one');
});
