// A model entry of server_config.json with an "adapter": served with the adapter merged into its base, answering
// as bin/merge-lora's merged folder does, the adapter shown in /models/list; a folder that is no adapter stops the
// start, naming the entry.
import path from 'node:path';
import t from 'tap';
import { request, startServer } from '../server/helpers';
import { CONFIG, peftConfig, randomFactors, runBin, saveBase, writeRawAdapter } from './helpers';

const work = t.testdir({});

t.test('an entry with an adapter answers as the merged model, beside its base', async (t) => {
  const base = await saveBase(path.join(work, 'base'));
  const kinds = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'];
  const factors = Array.from({ length: CONFIG.nLayer }, (_, layer) => kinds.map((kind, k) => randomFactors(`h.${layer}.${kind}`, 4, CONFIG.nEmbd, 50 + 4 * layer + k))).flat();
  const adapter = writeRawAdapter(path.join(work, 'adapter'), peftConfig({ r: 4, lora_alpha: 32, target_modules: ['c_attn', 'c_proj', 'c_fc'] }), factors);
  const merged = path.join(work, 'merged');
  const run = runBin('merge-lora', [base, adapter, merged]);
  t.equal(run.status, 0, run.stderr);
  const greedy = { temperature: 0, penalize: 0, length: 16 };
  const srv = await startServer({
    models: [
      { key: 'base', restore_from: 'base', sampling: greedy },
      { key: 'bot', restore_from: 'base', adapter: 'adapter', sampling: greedy },
      { key: 'merged', restore_from: 'merged', sampling: greedy },
    ],
  }, work);
  t.teardown(srv.close);
  const ask = async (key: string): Promise<string> => {
    const r = await request(`${srv.url}/invocations`, { body: { model_key: key, raw_text: 'How are you?', format: 'json' } });
    t.equal(r.status, 200, r.text);
    return r.json().text as string;
  };
  const [fromBase, fromAdapter, fromMerged] = [await ask('base'), await ask('bot'), await ask('merged')];
  t.equal(fromAdapter, fromMerged, `the adapter's entry answers as the merged folder: ${JSON.stringify(fromAdapter)}`);
  t.not(fromAdapter, fromBase, 'and not as its base');
  const list = (await request(`${srv.url}/models/list`)).json().models as Record<string, unknown>[];
  t.same(list.map((m) => [m.model_key, m.adapter]), [['base', null], ['bot', 'adapter'], ['merged', null]], '/models/list names the adapter');
});

t.test('an adapter that is not one stops the start, naming the entry', async (t) => {
  await saveBase(path.join(work, 'base2'));
  await t.rejects(startServer({ models: [{ key: 'bot', restore_from: 'base2', adapter: 'base2' }] }, work), /models\[0\]\.adapter: .*base2.*adapter_config\.json/);
});
