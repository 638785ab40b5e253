// A server's models served anew from a config read again (server.reload, which bin/serve runs on SIGHUP), over real
// HTTP on 127.0.0.1: a model added answers, one left out is unknown, one changed answers as its new config says while
// a request under way finishes on the model it started on, a run folder's newer checkpoint is served; a config that
// cannot be served changes nothing (a model's folder gone, a checkpoint cut short: the model serves on); API keys
// rotate, but a server is not left without one; the memory budget changes; the fields that wait for a restart are
// named; a model that failed to load is tried again at once after a reload or a prime. bin/serve's SIGHUP itself is in
// process.test.ts.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { createServer } from '../../lib/server/app';
import { validateServerConfig } from '../../lib/server/config';
import { estimateModelBytes } from '../../lib/server/engine';
import { makeModels, request, startServer, tempDir, TINY, type Running } from './helpers';

const PROMPT = 'How big is the earth?';
const LENGTH = 6;
const greedy = { temperature: 0, penalize: 0, length: LENGTH };

let dir: string;
let expected: Record<string, string>;
let srv: Running;

// A training run folder whose latest checkpoint has the weights of `model`.
function checkpoint(run: string, step: number, model: string): void {
  const to = path.join(dir, run, `model-${step}`);
  fs.cpSync(path.join(dir, model), to, { recursive: true });
  fs.writeFileSync(path.join(to, 'state.json'), JSON.stringify({ audiences: [] }));
  fs.writeFileSync(path.join(dir, run, 'latest'), `model-${step}\n`);
}

const config = (models: Record<string, unknown>[], extra: Record<string, unknown> = {}) => validateServerConfig({ models, ...extra }, 'server_config.json', dir);

async function answer(model: string): Promise<{ status: number; text: string }> {
  const r = await request(`${srv.url}/invocations`, { body: { model_key: model, raw_text: PROMPT } });
  return { status: r.status, text: r.text };
}

const listed = async () => ((await request(`${srv.url}/v1/models`)).json().data as { id: string }[]).map((m) => m.id).sort();

t.before(async () => {
  dir = tempDir('reload');
  expected = await makeModels(dir, { alpha: 1, beta: 3, gamma: 5 }, PROMPT, LENGTH);
  checkpoint('run', 1, 'alpha');
  // A LoRA adapter of alpha (B zero: it answers as alpha does).
  const adapted = await Model.load(path.join(dir, 'alpha'), { lora: { rank: 2, alpha: 4, targets: ['attn.c_attn'], seed: 1 } });
  await adapted.saveAdapter(path.join(dir, 'alpha-adapter'));
  adapted.dispose();
  srv = await startServer({
    models: [
      { key: 'one', restore_from: 'alpha', sampling: greedy },
      { key: 'gone', restore_from: 'alpha', sampling: greedy },
      { key: 'trained', restore_from: 'run', sampling: greedy },
    ],
  }, dir);
});
t.teardown(async () => {
  await srv.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('models added, removed and changed; a request under way finishes on the model it started on', async (t) => {
  t.equal((await answer('one')).text, expected.alpha);
  t.equal((await answer('gone')).text, expected.alpha);
  t.equal((await answer('trained')).text, expected.alpha);
  // A request under way on "one": its lease, as a request holds it from before generation to its answer's end.
  const underWay = await srv.server.service.registry.acquire('one');
  checkpoint('run', 2, 'gamma');

  const report = srv.server.reload(config([
    { key: 'one', restore_from: 'beta', sampling: greedy },
    { key: 'trained', restore_from: 'run', sampling: greedy },
    { key: 'new', restore_from: 'gamma', sampling: greedy },
  ]));
  t.same(report, { added: ['new'], removed: ['gone'], replaced: ['one', 'trained'], needRestart: [] });
  t.same(await listed(), ['new', 'one', 'trained']);
  t.equal((await answer('one')).text, expected.beta, 'a changed model answers as its new config says');
  t.equal((await answer('new')).text, expected.gamma, 'an added one answers');
  t.equal((await answer('trained')).text, expected.gamma, 'a run folder: its newer checkpoint');
  const gone = await answer('gone');
  t.equal(gone.status, 404, 'one left out is unknown');

  const old = underWay.value;
  t.equal((await old.generator.generate(PROMPT, { maxTokens: LENGTH, temperature: 0 })).text, expected.alpha, 'the request under way goes on with the model it started on');
  const unloadsBefore = srv.logs.filter((l) => l.msg === 'model unloaded' && l.model === 'one').length;
  underWay.release();
  for (let i = 0; i < 100 && srv.logs.filter((l) => l.msg === 'model unloaded' && l.model === 'one').length === unloadsBefore; i++) await new Promise((r) => setTimeout(r, 10));
  t.match(srv.logs.filter((l) => l.msg === 'model unloaded' && l.model === 'one').at(-1), { reason: 'removed' }, 'and is unloaded at its end');
  t.equal((await answer('one')).text, expected.beta, 'while the new one serves on');
  t.match(srv.logs.find((l) => l.msg === 'config reloaded'), { added: ['new'], removed: ['gone'], replaced: ['one', 'trained'] }, 'logged');

  const again = srv.server.reload(config([
    { key: 'one', restore_from: 'beta', sampling: greedy },
    { key: 'trained', restore_from: 'run', sampling: greedy },
    { key: 'new', restore_from: 'gamma', sampling: greedy },
  ].reverse()));
  t.same(again, { added: [], removed: [], replaced: [], needRestart: [] }, 'the same models in another order: nothing to do');
});

// A chat bot over a folder, answering as `key`.
const bot = (key: string, folder = 'alpha') => ({ key, restore_from: folder, audience: key, sampling: greedy });

t.test('two bots over one folder share its model: a reload that leaves one out, or moves it to another folder, keeps the other answering', async (t) => {
  const own = await startServer({ models: [bot('mom'), bot('dad')] }, dir);
  t.teardown(own.close);
  const registry = own.server.service.registry;
  const oneModel = estimateModelBytes(TINY, 'f32', own.server.service.config.batchSlots);
  const ask = async (key: string) => (await request(`${own.url}/invocations`, { body: { model_key: key, raw_text: PROMPT } })).text;
  // Once the models that reloads let go have finished their requests and are unloaded, what is reserved.
  const settled = async (bytes: number) => {
    for (let i = 0; i < 200 && registry.reservedBytes !== bytes; i++) await new Promise((r) => setTimeout(r, 10));
    return registry.reservedBytes;
  };
  t.equal(await ask('mom'), expected.alpha);
  t.equal(await ask('dad'), expected.alpha);
  t.equal(registry.reservedBytes, oneModel, 'the folder loaded once for both');

  const underWay = await registry.acquire('dad');
  t.same(own.server.reload(config([bot('mom')])), { added: [], removed: ['dad'], replaced: ['mom'], needRestart: [] }, 'alone over its folder, mom loads it itself');
  t.equal(await ask('mom'), expected.alpha, 'mom answers on');
  t.equal((await request(`${own.url}/invocations`, { body: { model_key: 'dad', raw_text: PROMPT } })).status, 404);
  t.equal((await underWay.value.generator.generate(PROMPT, { maxTokens: LENGTH, temperature: 0 })).text, expected.alpha, 'the request under way on dad finishes on the shared model');
  underWay.release();
  t.equal(await settled(oneModel), oneModel, 'then the shared model is unloaded');
  t.same(registry.keys, ['mom'], 'and forgotten');

  t.same(own.server.reload(config([bot('mom'), bot('dad', 'beta')])), { added: ['dad'], removed: [], replaced: [], needRestart: [] }, 'dad over another folder: nothing shared');
  t.equal(await ask('dad'), expected.beta);
  t.same(own.server.reload(config([bot('mom'), bot('dad')])), { added: [], removed: [], replaced: ['mom', 'dad'], needRestart: [] }, 'dad back over mom\'s folder: both over the shared model');
  t.equal(await ask('mom'), expected.alpha);
  t.equal(await ask('dad'), expected.alpha);
  t.equal(await settled(oneModel), oneModel, 'loaded once again');
});

t.test('a reload places an adapter over its base entry as the new config has it: one added with it, one that no longer shares its folder', async (t) => {
  const tuned = (base: string, extra: Record<string, unknown> = {}) => ({ key: 'tuned', base, adapter: 'alpha-adapter', sampling: greedy, ...extra });
  const own = await startServer({ models: [tuned('mom'), bot('mom'), bot('dad', 'beta')] }, dir);
  t.teardown(own.close);
  const registry = own.server.service.registry;
  const ask = async (key: string) => (await request(`${own.url}/invocations`, { body: { model_key: key, raw_text: PROMPT } })).text;
  t.equal(await ask('tuned'), expected.alpha);

  // Its base an entry this reload adds, beside one it leaves out.
  t.same(own.server.reload(config([tuned('gran'), bot('mom'), bot('gran')])), { added: ['gran'], removed: ['dad'], replaced: ['tuned', 'mom'], needRestart: [] });
  t.same([...own.server.service.models.keys()].sort(), ['gran', 'mom', 'tuned'], 'the whole config served');
  t.equal(await ask('tuned'), expected.alpha);
  t.equal(await ask('gran'), expected.alpha);

  // Its base entry no longer shares its folder, and the adapter changed too: it goes over the entry's own model.
  t.same(own.server.reload(config([tuned('gran', { audience: 'x' }), bot('gran')])), { added: [], removed: ['mom'], replaced: ['tuned', 'gran'], needRestart: [] });
  t.equal(await ask('tuned'), expected.alpha);
  t.equal(await ask('gran'), expected.alpha);
  for (let i = 0; i < 200 && registry.keys.some((key) => key.startsWith('base:')); i++) await new Promise((r) => setTimeout(r, 10));
  t.same(registry.keys.sort(), ['gran', 'tuned'], 'no shared model left: the folder is loaded once, by gran');
});

t.test('two bots over a run folder: a reload after a newer checkpoint serves it to both', async (t) => {
  checkpoint('shared-run', 1, 'alpha');
  const models = [bot('mom', 'shared-run'), bot('dad', 'shared-run')];
  const own = await startServer({ models }, dir);
  t.teardown(own.close);
  const ask = async (key: string) => (await request(`${own.url}/invocations`, { body: { model_key: key, raw_text: PROMPT } })).text;
  t.same([await ask('mom'), await ask('dad')], [expected.alpha, expected.alpha]);
  checkpoint('shared-run', 2, 'beta');
  t.same(own.server.reload(config(models)), { added: [], removed: [], replaced: ['mom', 'dad'], needRestart: [] });
  t.same([await ask('mom'), await ask('dad')], [expected.beta, expected.beta], 'the shared model loaded afresh');
  const registry = own.server.service.registry;
  t.equal(registry.peek('mom')?.generator, registry.peek('dad')?.generator, 'one model for both still');
});

t.test('a config that cannot be served changes nothing; its API keys and memory budget hold from then on; other fields wait for a restart', async (t) => {
  const before = await listed();
  t.throws(() => srv.server.reload(config([
    { key: 'one', restore_from: 'alpha', sampling: greedy },
    { key: 'broken', restore_from: 'beta', sanitizer: 'no-such-sanitizer.js' },
  ])), /no-such-sanitizer/, 'a sanitizer that does not load');
  t.same(await listed(), before, 'the models as they were');
  t.equal((await answer('one')).text, expected.beta, '"one" not changed by the refused config');

  const report = srv.server.reload(config([
    { key: 'one', restore_from: 'beta', sampling: greedy },
    { key: 'trained', restore_from: 'run', sampling: greedy },
    { key: 'new', restore_from: 'gamma', sampling: greedy },
  ], { request_timeout_s: 5, api_keys: ['a-key-of-sixteen-characters'], memory_budget_mb: 500 }));
  t.same(report.needRestart, ['request_timeout_s']);
  t.equal(srv.server.service.registry.budgetBytes, 500 * 1024 * 1024, 'the memory budget from then on');
  t.match(srv.logs.find((l) => l.msg === 'config fields changed that take effect at the next start'), { level: 'warn', fields: ['request_timeout_s'] });
  t.equal((await answer('one')).status, 401, 'a key asked for from then on');
  const keyed = await request(`${srv.url}/invocations`, { body: { model_key: 'one', raw_text: PROMPT }, headers: { authorization: 'Bearer a-key-of-sixteen-characters' } });
  t.equal(keyed.text, expected.beta, 'and taken');

  // Rotated: the old key is refused, the new one taken; no key at all is refused, on loopback too (a proxy on this
  // machine reaches it there).
  const rotate = (keys: string[]) => srv.server.reload(config([
    { key: 'one', restore_from: 'beta', sampling: greedy },
    { key: 'trained', restore_from: 'run', sampling: greedy },
    { key: 'new', restore_from: 'gamma', sampling: greedy },
  ], { request_timeout_s: 5, api_keys: keys, memory_budget_mb: 500 }));
  rotate(['another-key-of-sixteen-characters']);
  const old = await request(`${srv.url}/invocations`, { body: { model_key: 'one', raw_text: PROMPT }, headers: { authorization: 'Bearer a-key-of-sixteen-characters' } });
  t.equal(old.status, 401, 'the old key refused');
  const rotated = await request(`${srv.url}/invocations`, { body: { model_key: 'one', raw_text: PROMPT }, headers: { authorization: 'Bearer another-key-of-sixteen-characters' } });
  t.equal(rotated.status, 200, 'the new one taken');
  t.throws(() => rotate([]), { message: 'server_config.json has no api_keys, and the server has some: a reload does not turn authentication off; keep a key, or restart the server to serve without keys' });
  t.equal((await answer('one')).status, 401, 'none: refused, the key still asked for');
});

t.test('a server listening beyond loopback keeps a key through a reload too', async (t) => {
  const keyed = (keys: string[]) => config([{ key: 'one', restore_from: 'alpha', sampling: greedy }], { api_keys: keys });
  const wide = createServer(keyed(['a-key-of-sixteen-characters']), { log: () => undefined });
  t.teardown(() => wide.shutdown());
  await wide.listen(0, '0.0.0.0');
  t.throws(() => wide.reload(keyed([])), /^server_config\.json has no api_keys, and the server has some: a reload does not turn authentication off/);
  t.same(wide.reload(keyed(['another-key-of-sixteen-characters'])), { added: [], removed: [], replaced: [], needRestart: [] }, 'another key: taken');
});

t.test('a reload is refused when a model it keeps cannot be served now, and the model serves on', async (t) => {
  const own = await startServer({ models: [{ key: 'kept', restore_from: 'beta', sampling: greedy }, { key: 'trained', restore_from: 'run', sampling: greedy }] }, dir);
  t.teardown(own.close);
  const ask = async (model: string) => (await request(`${own.url}/invocations`, { body: { model_key: model, raw_text: PROMPT } })).text;
  const same = () => config([{ key: 'kept', restore_from: 'beta', sampling: greedy }, { key: 'trained', restore_from: 'run', sampling: greedy }]);
  t.equal(await ask('trained'), expected.gamma);

  // The run's newest checkpoint cut short, as a copy or a training step interrupted leaves it.
  checkpoint('run', 3, 'alpha');
  const weights = path.join(dir, 'run', 'model-3', 'model.safetensors');
  fs.truncateSync(weights, fs.statSync(weights).size - 100);
  t.throws(() => own.server.reload(same()), { message: new RegExp(`^server_config\\.json: models\\[1\\] \\("trained"\\): ${weights}: .*\\(truncated\\?\\)`) }, 'the model and the file named');
  t.equal(await ask('trained'), expected.gamma, 'the working model serves on');

  // A folder moved away under a model whose config did not change.
  fs.renameSync(path.join(dir, 'beta'), path.join(dir, 'beta-moved'));
  t.teardown(() => fs.renameSync(path.join(dir, 'beta-moved'), path.join(dir, 'beta')));
  fs.writeFileSync(path.join(dir, 'run', 'latest'), 'model-2\n');
  t.throws(() => own.server.reload(same()), { message: /^server_config\.json: models\[0\]\.restore_from: .*beta does not exist/ }, 'the field named, as at start');
  t.notOk(own.logs.some((l) => l.msg === 'config reloaded'));
});

t.test('a model that failed to load shows as failed; a reload has it tried again at once, a prime only after its back-off', async (t) => {
  fs.cpSync(path.join(dir, 'alpha'), path.join(dir, 'fixable'), { recursive: true });
  t.teardown(() => fs.rmSync(path.join(dir, 'fixable'), { recursive: true, force: true }));
  const entry = { key: 'fixable', restore_from: 'fixable', sampling: greedy };
  const own = await startServer({ models: [entry] }, dir);
  t.teardown(own.close);
  const ask = () => request(`${own.url}/invocations`, { body: { model_key: 'fixable', raw_text: PROMPT } });
  const listed = async () => ((await request(`${own.url}/models/list`)).json().models as Record<string, unknown>[])[0];
  const weights = path.join(dir, 'fixable', 'model.safetensors');
  const good = fs.readFileSync(weights);
  const breakIt = () => fs.writeFileSync(weights, good.subarray(0, good.length - 100));

  breakIt();  // after the start's check: the load finds it
  t.match(await ask(), { status: 503, text: /failed to load .*tried again in 1 s/ });
  t.match(await listed(), { state: 'failed', loaded: false, failure: { error: /model\.safetensors: .*\(truncated\?\)/, retry_in_s: Number } }, 'listed as failed, with why and when it is tried again');

  fs.writeFileSync(weights, good);
  own.server.reload(config([entry]));
  t.match(await ask(), { status: 200, text: expected.alpha }, 'fixed and reloaded: loaded at the next request, not after the back-off');


  // Loaded afresh (its settings changed), broken, failed: a prime within the back-off is refused, saying why and when.
  const changed = { ...entry, sampling: { ...greedy, length: LENGTH - 1 } };
  own.server.reload(config([changed]));
  breakIt();
  t.equal((await ask()).status, 503);
  fs.writeFileSync(weights, good);
  const primed = await request(`${own.url}/prime`, { body: { model_key: 'fixable' } });
  t.match([primed.status, primed.headers.get('retry-after'), primed.text], [503, /^[12]$/, /failed to load .*\(truncated\?\).*tried again in [12] s, or at once after a reload/]);
  t.equal((await listed()).state, 'failed', 'nothing loaded');
});
