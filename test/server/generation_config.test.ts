// A served model folder's generation_config.json over real HTTP on 127.0.0.1: a request's own sampling fields, then the
// config's "sampling" for the model, then the folder's file, then the server's defaults.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { MAX_REPLY_LENGTH } from '../../lib/server/config';
import { request, startServer, tempDir, TINY } from './helpers';

const TINY_VOCAB = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'tiny-vocab');

const PROMPT = 'How big is the earth?';

async function complete(url: string, body: Record<string, unknown>): Promise<{ text: string; tokens: number }> {
  const r = await request(`${url}/v1/completions`, { body: { prompt: PROMPT, ...body } });
  if (r.status !== 200) throw new Error(`${r.status}: ${r.text}`);
  const json = r.json() as { choices: { text: string }[]; usage: { completion_tokens: number } };
  return { text: json.choices[0].text, tokens: json.usage.completion_tokens };
}

t.test('/v1/completions: the folder\'s defaults where neither the request nor the config sets one', async (t) => {
  const dir = tempDir('generation-config');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const name of ['plain', 'greedy']) {
    const model = Model.create(TINY, { seed: 1, trainable: false });
    await model.save(path.join(dir, name));
    model.dispose();
  }
  fs.writeFileSync(path.join(dir, 'greedy', 'generation_config.json'), JSON.stringify({ do_sample: false, max_new_tokens: 6, num_beams: 2 }));
  const srv = await startServer({
    models: [
      { key: 'plain', restore_from: 'plain' },
      { key: 'folder', restore_from: 'greedy' },
      { key: 'configured', restore_from: 'greedy', sampling: { temperature: 1 } },
    ],
  }, dir);
  t.teardown(() => srv.close());

  const greedy = await complete(srv.url, { model: 'plain', temperature: 0, max_tokens: 6, seed: 1 });
  t.same(await complete(srv.url, { model: 'folder', seed: 1 }), greedy, 'do_sample false and max_new_tokens 6: the greedy 6 tokens');
  t.same(await complete(srv.url, { model: 'folder', seed: 2 }), greedy, 'whatever the seed');
  const sampled = await complete(srv.url, { model: 'plain', temperature: 1, max_tokens: 6, seed: 5 });
  t.not(sampled.text, greedy.text, 'the test model samples other text at temperature 1');
  t.same(await complete(srv.url, { model: 'folder', temperature: 1, seed: 5 }), sampled, 'a request\'s temperature wins');
  t.same(await complete(srv.url, { model: 'configured', seed: 5 }), sampled, 'the config\'s temperature wins over the folder\'s, its length comes from the folder');

  const list = (await request(`${srv.url}/models/list`)).json() as { models: { model_key: string; sampling: Record<string, number> }[] };
  t.match(list.models.find((m) => m.model_key === 'folder')?.sampling, { length: 6, temperature: 0, top_k: 40 }, '/models/list shows the defaults served: the folder\'s over the server\'s');
  const warned = srv.logs.filter((l) => l.level === 'warn' && String(l.msg).includes('generation_config.json')).map((l) => l.msg);
  t.same(warned.length, 2, 'the field dixie does not honour is warned of once for each entry of the folder');
  t.match(warned[0], `model "folder": ${path.join(dir, 'greedy', 'generation_config.json')}: field "num_beams" is 2, which dixie does not honour`);

  fs.writeFileSync(path.join(dir, 'greedy', 'generation_config.json'), JSON.stringify({ top_k: -1 }));
  const refused = startServer({ models: [{ key: 'folder', restore_from: 'greedy' }] }, dir);
  refused.then((started) => started.close(), () => undefined);  // a server that started after all must not hold the test open
  await t.rejects(refused, { message: `${path.join(dir, 'greedy', 'generation_config.json')}: field "top_k" must be an integer >= 0 (0: off), got -1` }, 'a bad value stops the start, naming the file and field');
});

t.test('a folder\'s max_new_tokens past the server\'s bound on a reply is held to it, in every API\'s default length', async (t) => {
  const dir = tempDir('generation-config-cap');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // A context longer than the bound, so that the context does not bound the reply first; the tiny vocabulary, whose
  // output layer of 457 tokens makes each of the replies' thousands of steps cheap.
  const model = Model.create({ ...TINY, nCtx: MAX_REPLY_LENGTH + 904, vocabSize: 457 }, { seed: 1, trainable: false });
  await model.save(path.join(dir, 'long'));
  model.dispose();
  for (const f of ['encoder.json', 'vocab.bpe']) fs.copyFileSync(path.join(TINY_VOCAB, f), path.join(dir, 'long', f));
  fs.writeFileSync(path.join(dir, 'long', 'generation_config.json'), JSON.stringify({ max_new_tokens: 100000 }));
  const srv = await startServer({ models: [{ key: 'long', restore_from: 'long' }] }, dir);
  t.teardown(() => srv.close());

  const props = (await request(`${srv.url}/props`)).json() as { default_generation_settings: { params: { n_predict: number } } };
  t.equal(props.default_generation_settings.params.n_predict, MAX_REPLY_LENGTH, 'llama.cpp\'s /props');
  const show = (await request(`${srv.url}/api/show`, { body: { model: 'long' } })).json() as { parameters: string };
  t.match(show.parameters, new RegExp(`^num_predict ${MAX_REPLY_LENGTH}$`, 'm'), 'Ollama\'s /api/show');
  const list = (await request(`${srv.url}/models/list`)).json() as { models: { sampling: Record<string, number> }[] };
  t.equal(list.models[0].sampling.length, MAX_REPLY_LENGTH, '/models/list');
  const warned = srv.logs.filter((l) => l.level === 'warn').map((l) => l.msg);
  t.same(warned, [`model "long": ${path.join(dir, 'long', 'generation_config.json')}: field "max_new_tokens" is 100000, past the server's bound on a reply: a reply is ${MAX_REPLY_LENGTH} tokens at most`]);

  // n_predict -1: the model's own reply length. The end of text banned, the reply runs to its length. num_predict -2:
  // what the context leaves after the prompt, past the bound here. The two at once, as one batch.
  const { eotToken } = await srv.server.service.tokenizer('long');
  const [r, filled] = await Promise.all([
    request(`${srv.url}/completion`, { body: { prompt: PROMPT, n_predict: -1, temperature: 0, logit_bias: [[eotToken, false]] } }),
    request(`${srv.url}/api/generate`, { body: { model: 'long', prompt: PROMPT, raw: true, stream: false, options: { temperature: 0, num_predict: -2 } } }),
  ]);
  t.match({ status: r.status, ...r.json() }, { status: 200, tokens_predicted: MAX_REPLY_LENGTH, stop_type: 'limit' }, 'a reply of the model\'s own length is the bound\'s');
  t.match({ status: filled.status, ...filled.json() }, { status: 200, eval_count: MAX_REPLY_LENGTH, done_reason: 'length' }, 'a reply that fills the context is held to the bound too');
});
