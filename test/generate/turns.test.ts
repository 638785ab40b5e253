// The batcher's turns at its slots within a queue: clients take turns, a client new to the queue counted as
// admitted when its request came, so that clients that keep coming never hold back another's waiting request for ever.
import t from 'tap';
import type { GPT2Config } from '../../lib/engine/model';
import { testGenerator } from './helpers';

const CONFIG: GPT2Config = { nLayer: 1, nHead: 1, nEmbd: 8, nCtx: 32, vocabSize: 50257 };

t.test('a client with a request waiting is not held back by every client that comes after it', async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 1 });
  const order: string[] = [];
  const ask = (name: string, client: string, onFirst?: () => void): Promise<void> => {
    let first = true;
    return gen.generate('Once', { maxTokens: 4, temperature: 0, stopTokens: [], client, onLogprob: onFirst && (() => {
      if (first) onFirst();
      first = false;
    }), logprobs: onFirst ? 0 : undefined }).then(() => {
      order.push(name);
    });
  };
  // A's first request decodes, its second waits with a new client's; then, while each newcomer decodes, another one
  // comes, as on a busy server whose users each send one request.
  const asked: Promise<void>[] = [];
  const newcomer = (i: number): Promise<void> => ask(`new ${i}`, `n${i}`, i < 4 ? () => asked.push(newcomer(i + 1)) : undefined);
  asked.push(ask('A 1', 'a'), ask('A 2', 'a'), newcomer(1));
  while (asked.length < 6) await Promise.all(asked);
  await Promise.all(asked);
  t.same(order.slice(0, 3), ['A 1', 'new 1', 'A 2'], `A's second request is admitted after the client that came with it, before those that came later: ${order.join(', ')}`);
});

t.test("a client's turns in one queue are not spent by its requests in another", async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 1 });
  const order: string[] = [];
  const ask = (name: string, queue: string, client: string, onFirst?: () => void): Promise<void> => {
    let first = true;
    return gen.generate('Once', { maxTokens: 4, temperature: 0, stopTokens: [], queue, client, logprobs: 0, onLogprob: () => {
      if (first) onFirst?.();
      first = false;
    } }).then(() => {
      order.push(name);
    });
  };
  // Client A runs a batch in a queue of its own and asks once in a bot's queue, where newcomers keep coming, one each
  // time the last starts decoding.
  const asked: Promise<void>[] = [];
  for (let i = 1; i <= 6; i++) asked.push(ask(`batch ${i}`, 'batch', 'a'));
  const newcomer = (i: number): Promise<void> => ask(`new ${i}`, 'bot', `n${i}`, i < 4 ? () => asked.push(newcomer(i + 1)) : undefined);
  asked.push(ask('A', 'bot', 'a'), newcomer(1));
  while (asked.length < 11) await Promise.all(asked);
  await Promise.all(asked);
  t.same(order.filter((name) => !name.startsWith('batch')), ['A', 'new 1', 'new 2', 'new 3', 'new 4'],
    `in the bot's queue A's request goes with the newcomer that came with it, before those that came later, its batch running meanwhile: ${order.join(', ')}`);
});

t.test("a client's turns are forgotten once its last request ends, however it ends", async (t) => {
  const { gen } = testGenerator(t, CONFIG, { slots: 1 });
  // The batcher's turns of clients, kept while they have requests there.
  const turns = (gen as unknown as { batcher: { clientRequests: Map<string, unknown>; clientAdmitted: Map<string, unknown> } }).batcher;
  const stop = new AbortController();
  const ended = [
    gen.generate('Once', { maxTokens: 4, stopTokens: [], client: 'finished' }),
    gen.generate('Once', { maxTokens: 4, stopTokens: [], client: 'threw', queue: 'other', onText: () => {
      throw new Error('a callback that throws');
    } }),
    gen.generate('Once', { maxTokens: 4, stopTokens: [], client: 'aborted while waiting', signal: stop.signal }),
    gen.generate('Once', { maxTokens: 4, stopTokens: [], client: 'past its deadline', deadline: Date.now() + 1 }),
    gen.embed('Once', { client: 'embedded', queue: 'other' }),
    gen.generate('Once', { maxTokens: 4, stopTokens: [], client: 'finished' }),
  ];
  t.equal(turns.clientRequests.size, 5, 'each client with its requests (the first two of one)');
  stop.abort();
  const results = await Promise.allSettled(ended);
  t.same(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
  t.same([[...turns.clientRequests.keys()], [...turns.clientAdmitted.keys()]], [[], []], 'none kept');
});
