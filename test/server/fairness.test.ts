// Fairness between bots over one loaded model, over real HTTP: they share its batch slots, and a flood of requests
// for one bot delays another bot's request by a turn, not by the whole flood, as one client's many choices delay
// another client's request; each bot's queue depth counts its own requests.
import fs from 'node:fs';
import t, { type Test } from 'tap';
import { LONG, makeModels, request, startServer, tempDir, type Running } from './helpers';

let dir: string;
let srv: Running;

t.before(async () => {
  dir = tempDir('fairness');
  await makeModels(dir, { alpha: 1 }, 'Hi', 1, LONG);
  srv = await startServer({
    batch_slots: 1,
    max_queue: 8,
    trust_proxy: 'loopback',  // the clients are told apart by the X-Forwarded-For this test sends
    models: [
      { key: 'flooded', restore_from: 'alpha', sampling: { temperature: 0 } },
      { key: 'quiet', restore_from: 'alpha', sampling: { temperature: 0 } },
    ],
  }, dir);
});
t.teardown(async () => {
  await srv.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

// The model's batcher's requests decoding and waiting, once they are `running` and `waiting` (or after five seconds).
async function untilLoad(key: string, running: number, waiting: number): Promise<{ running: number; waiting: number } | undefined> {
  const load = () => srv.server.service.registry.peek(key)?.generator.load;
  for (let i = 0; i < 500 && !(load()?.running === running && load()?.waiting === waiting); i++) await new Promise((r) => setTimeout(r, 10));
  return load();
}

// A way to ask for a short completion (`fields` over it, of the bot "quiet" unless they name another) that puts its
// name in `answered` once it is answered; `client`: the address it comes from, by X-Forwarded-For.
function asker(t: Test, answered: string[]): (name: string, fields: Record<string, unknown>, client?: string) => Promise<void> {
  return (name, fields, client) => request(`${srv.url}/v1/completions`, {
    body: { model: 'quiet', prompt: 'Once upon a time', max_tokens: 60, ...fields },
    headers: client === undefined ? {} : { 'x-forwarded-for': client },
  }).then((r) => {
    t.equal(r.status, 200, `${name} answered`);
    answered.push(name);
  });
}

t.test('a bot whose model is busy with another bot\'s queue gets the next free slot', async (t) => {
  const answered: string[] = [];
  const ask = asker(t, answered);
  const flood = [ask('flooded 1', { model: 'flooded' })];
  t.same(await untilLoad('flooded', 1, 0), { running: 1, waiting: 0 }, 'the first decoding');
  flood.push(ask('flooded 2', { model: 'flooded' }), ask('flooded 3', { model: 'flooded' }));
  t.same(await untilLoad('flooded', 1, 2), { running: 1, waiting: 2 }, 'two more waiting');
  const quiet = ask('quiet', {});
  t.same(await untilLoad('flooded', 1, 3), { running: 1, waiting: 3 }, 'the quiet bot\'s waiting too');
  const listed = (await request(`${srv.url}/models/list`)).json().models as Record<string, unknown>[];
  t.same(listed.map((m) => [m.model_key, m.queue_depth]), [['flooded', 2], ['quiet', 1]], 'each bot\'s queue depth its own, beside the other\'s decoding');
  await Promise.all([...flood, quiet]);
  t.same(answered, ['flooded 1', 'quiet', 'flooded 2', 'flooded 3'], 'the quiet bot\'s request is admitted before the flood\'s waiting ones');
});

t.test("one client's many choices delay another client's request of the same bot by a turn, not by all of them", async (t) => {
  const answered: string[] = [];
  const ask = asker(t, answered);
  const many = ask('three choices', { n: 3 });
  t.same(await untilLoad('quiet', 1, 2), { running: 1, waiting: 2 }, 'one choice decoding, two waiting');
  await Promise.all([many, ask('one', {})]);
  t.same(answered, ['one', 'three choices'], 'the other client\'s request is admitted before the waiting choices');
});

t.test("one client's many requests delay another client's request of the same bot by a turn, not by all of them", async (t) => {
  const answered: string[] = [];
  const ask = asker(t, answered);
  const flood = [ask('flood 1', {}, '10.0.0.1')];
  t.same(await untilLoad('quiet', 1, 0), { running: 1, waiting: 0 }, 'the first decoding');
  flood.push(ask('flood 2', {}, '10.0.0.1'), ask('flood 3', {}, '10.0.0.1'));
  t.same(await untilLoad('quiet', 1, 2), { running: 1, waiting: 2 }, 'two more waiting');
  const other = ask('other client', {}, '10.0.0.2');
  t.same(await untilLoad('quiet', 1, 3), { running: 1, waiting: 3 }, 'the other client\'s waiting too');
  await Promise.all([...flood, other]);
  t.same(answered, ['flood 1', 'other client', 'flood 2', 'flood 3'], 'the other client\'s request is admitted before the flood\'s waiting ones');
});
