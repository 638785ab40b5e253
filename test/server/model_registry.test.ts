// The registry's concurrency rules with a loader whose loads and unloads finish when the test says so. The
// same rules are exercised end to end with real models over HTTP in hotswap.test.ts.
import t from 'tap';
import { ModelRegistry, ModelUnavailableError, type Lease, type ModelLoader } from '../../lib/server/model_registry';

interface Fake {
  key: string;
  alive: boolean;
}

class ControlledLoader implements ModelLoader<Fake> {
  sizes: Record<string, number>;
  loads: string[] = [];
  unloads: string[] = [];
  pending = new Map<string, { resolve: (v: Fake) => void; reject: (e: Error) => void }>();
  auto = true;
  dependencies: Record<string, string> = {};
  loadedOver = new Map<string, Fake | null>();
  constructor(sizes: Record<string, number>) {
    this.sizes = sizes;
  }
  estimateBytes(key: string): number {
    return this.sizes[key];
  }
  dependsOn(key: string): string | null {
    return this.dependencies[key] ?? null;
  }
  load(key: string, dependency: Fake | null): Promise<Fake> {
    this.loads.push(key);
    this.loadedOver.set(key, dependency);
    if (this.auto) return new Promise((r) => setImmediate(() => r({ key, alive: true })));
    return new Promise((resolve, reject) => this.pending.set(key, { resolve, reject }));
  }
  finish(key: string): void {
    const p = this.pending.get(key);
    if (!p) throw new Error(`no load of ${key} pending`);
    this.pending.delete(key);
    p.resolve({ key, alive: true });
  }
  async unload(value: Fake): Promise<void> {
    value.alive = false;
    this.unloads.push(value.key);
  }
}

const tick = () => new Promise((r) => setImmediate(r));

t.test('a model is loaded once however many ask for it at once', async (t) => {
  const loader = new ControlledLoader({ a: 10 });
  loader.auto = false;
  const reg = new ModelRegistry(['a'], loader, { budgetBytes: 100, idleUnloadMs: 0 });
  const leases = Array.from({ length: 20 }, () => reg.acquire('a'));
  await tick();
  t.same(loader.loads, ['a']);
  loader.finish('a');
  const got = await Promise.all(leases);
  t.ok(got.every((l) => l.value === got[0].value && l.value.alive));
  t.equal(reg.status()[0].leases, 20);
  got.forEach((l) => l.release());
  t.equal(reg.status()[0].leases, 0);
  await reg.close();
});

t.test('a model in use is never evicted; the newcomer waits until it is released, and the budget holds', async (t) => {
  const loader = new ControlledLoader({ a: 60, b: 60 });
  // No turn: a drains as soon as b waits (turns are tested below).
  const reg = new ModelRegistry(['a', 'b'], loader, { budgetBytes: 100, idleUnloadMs: 0, turnGrants: 0 });
  const a = await reg.acquire('a');
  let bLease: Lease<Fake> | null = null;
  const b = reg.acquire('b').then((l) => (bLease = l));
  for (let i = 0; i < 5; i++) await tick();
  t.equal(bLease, null, 'b waits while a is in use');
  t.ok(a.value.alive, 'a is not unloaded under its lease');
  t.ok(reg.reservedBytes <= 100);
  t.equal(reg.status().find((s) => s.key === 'a')?.draining, true, 'a is draining: it takes no new leases');
  // A later request for a queues behind b (first come, first served) instead of keeping a busy forever.
  let a2: Lease<Fake> | null = null;
  const a2p = reg.acquire('a').then((l) => (a2 = l));
  await tick();
  t.equal(a2, null);
  a.release();
  await b;
  t.notOk(a.value.alive, 'a was unloaded once released');
  t.same(loader.unloads, ['a']);
  t.ok(reg.reservedBytes <= 100);
  (bLease as unknown as Lease<Fake>).release();
  await a2p;
  t.same(loader.loads, ['a', 'b', 'a']);
  (a2 as unknown as Lease<Fake>).release();
  await reg.close();
});

t.test('idle models are evicted least recently used first', async (t) => {
  let now = 1000;
  const loader = new ControlledLoader({ a: 40, b: 40, c: 40 });
  const reg = new ModelRegistry(['a', 'b', 'c'], loader, { budgetBytes: 100, idleUnloadMs: 0, now: () => now });
  (await reg.acquire('a')).release();
  now += 10;
  (await reg.acquire('b')).release();
  now += 10;
  (await reg.acquire('a')).release();  // a is now the more recently used
  now += 10;
  (await reg.acquire('c')).release();
  t.same(loader.unloads, ['b']);
  t.same(reg.status().filter((s) => s.state === 'loaded').map((s) => s.key), ['a', 'c']);
  await reg.close();
});

t.test('a waiter that gives up stops holding others back', async (t) => {
  const loader = new ControlledLoader({ a: 60, b: 60 });
  const reg = new ModelRegistry(['a', 'b'], loader, { budgetBytes: 100, idleUnloadMs: 0, turnGrants: 0 });
  const a = await reg.acquire('a');
  const abort = new AbortController();
  const b = reg.acquire('b', abort.signal);
  await tick();
  t.equal(reg.status().find((s) => s.key === 'a')?.draining, true);
  abort.abort(new Error('client went away'));
  await t.rejects(b, /client went away/);
  t.equal(reg.status().find((s) => s.key === 'a')?.draining, false, 'a takes leases again');
  const a2 = await reg.acquire('a');
  a.release();
  a2.release();
  t.same(loader.loads, ['a']);
  await reg.close();
});

t.test('a model larger than the budget, a failed load, an unknown key', async (t) => {
  const loader = new ControlledLoader({ big: 500, a: 10 });
  loader.auto = false;
  const reg = new ModelRegistry(['big', 'a'], loader, { budgetBytes: 100, idleUnloadMs: 0 });
  await t.rejects(reg.acquire('big'), { status: 507, message: /needs .* more than the whole memory budget/ });
  await t.rejects(reg.acquire('nope'), { status: 404, message: /unknown model "nope"/ });
  const waiting = [reg.acquire('a'), reg.acquire('a')];
  await tick();
  loader.pending.get('a')?.reject(new Error('disk on fire'));
  for (const w of waiting) await t.rejects(w, ModelUnavailableError);
  await t.rejects(waiting[0], { status: 503, message: /failed to load \(disk on fire\)/ });
  t.equal(reg.reservedBytes, 0, 'the failed load gave its bytes back');
  await reg.close();
});

t.test('a busy model that another waits for takes a bounded turn of its own requests, then makes room', async (t) => {
  let now = 0;
  const loader = new ControlledLoader({ a: 60, b: 60 });
  const reg = new ModelRegistry(['a', 'b'], loader, { budgetBytes: 100, idleUnloadMs: 0, turnGrants: 3, turnMs: 1000, now: () => now });
  const first = await reg.acquire('a');
  const granted: string[] = [];
  const b = reg.acquire('b').then((l) => (granted.push('b'), l));
  await tick();
  const turn = await Promise.all([reg.acquire('a'), reg.acquire('a'), reg.acquire('a')]);
  t.equal(reg.status().find((s) => s.key === 'a')?.draining, true, 'three more grants end the turn');
  const late = reg.acquire('a').then((l) => (granted.push('a'), l));
  await tick();
  t.same(granted, [], 'the request after the turn waits, and so does b');
  for (const l of [first, ...turn]) l.release();
  const bLease = await b;
  t.same(granted, ['b'], 'b loads once a has finished its turn');
  t.same(loader.unloads, ['a']);
  // Now b is busy and a waits: b's turn ends by time.
  now += 999;
  const bMore = await reg.acquire('b');
  now += 1;
  const bLate = reg.acquire('b').then((l) => (granted.push('b late'), l));
  await tick();
  t.same(granted, ['b'], 'after turnMs b takes no new request');
  bLease.release();
  bMore.release();
  const aLease = await late;
  t.same(granted, ['b', 'a'], 'the request for a that waited is served before the late one for b');
  aLease.release();
  (await bLate).release();
  t.same(loader.loads, ['a', 'b', 'a', 'b'], 'one load per turn, not one per request');
  t.same(reg.status().map((s) => [s.key, s.loads, s.unloads]), [['a', 2, 2], ['b', 2, 1]]);
  await reg.close();
});

t.test('a failed load is tried again after a back-off that doubles, not at every request; clients see no paths', async (t) => {
  let now = 0;
  const loader = new ControlledLoader({ a: 10 });
  loader.auto = false;
  const logs: Record<string, unknown>[] = [];
  const reg = new ModelRegistry(['a'], loader, { budgetBytes: 100, idleUnloadMs: 0, loadRetryMs: 1000, loadRetryMaxMs: 1500, now: () => now, log: (_level, msg, fields) => logs.push({ msg, ...fields }) });
  const fail = async (expectedRetryS: number) => {
    const waiting = reg.acquire('a');
    await tick();
    loader.pending.get('a')?.reject(new Error('/srv/dixie/models/a/model.safetensors: the file ends at byte 8 (truncated?)'));
    const err = (await waiting.catch((e: unknown) => e)) as ModelUnavailableError;
    t.equal(err.status, 503);
    t.equal(err.retryAfterS, expectedRetryS);
    t.equal(err.message, `model "a" failed to load (model.safetensors: the file ends at byte 8 (truncated?)); it is tried again in ${expectedRetryS} s`);
  };
  await fail(1);
  t.match(logs.find((l) => l.msg === 'model failed to load'), { error: /^\/srv\/dixie\/models\/a\/model\.safetensors: / }, 'the log has the whole error');
  now += 400;
  for (let i = 0; i < 5; i++) await t.rejects(reg.acquire('a'), { status: 503, retryAfterS: 1, message: /failed to load \(model\.safetensors: .*tried again in 1 s/ });
  t.same(loader.loads, ['a'], 'no load during the back-off');
  now += 600;
  await fail(2);  // the second failure doubles the wait
  t.same(loader.loads, ['a', 'a']);
  now += 1499;
  await t.rejects(reg.acquire('a'), { status: 503, retryAfterS: 1, message: /tried again in 1 s/ });
  now += 1;
  await fail(2);  // capped at loadRetryMaxMs
  now += 1500;
  const lease = reg.acquire('a');
  await tick();
  loader.finish('a');
  (await lease).release();
  t.same(reg.status().map((s) => [s.loads, s.loadFailures]), [[1, 3]]);
  t.same(loader.loads, ['a', 'a', 'a', 'a']);
  await reg.close();
});

t.test('a failed model says so in its status until a load works; retryNow tries it again within the back-off, prime does not', async (t) => {
  const now = 0;
  const loader = new ControlledLoader({ a: 10 });
  loader.auto = false;
  const reg = new ModelRegistry(['a'], loader, { budgetBytes: 100, idleUnloadMs: 0, loadRetryMs: 1000, now: () => now });
  const fail = async (attempt: Promise<unknown>) => {
    await tick();
    loader.pending.get('a')?.reject(new Error('/srv/a/model.safetensors: truncated'));
    await attempt.catch(() => undefined);
  };
  await fail(reg.acquire('a'));
  t.match(reg.status()[0], { state: 'failed', loadFailures: 1, failure: { reason: 'model.safetensors: truncated', retryInMs: 1000 } });
  await t.rejects(reg.acquire('a'), { status: 503, message: /tried again in 1 s/ }, 'within the back-off');
  reg.retryNow('a');
  t.match(reg.status()[0], { state: 'failed', failure: { retryInMs: 0 } }, 'failed still, tried at the next request');
  await fail(reg.acquire('a'));
  t.same(loader.loads, ['a', 'a'], 'tried again at once');
  t.match(reg.status()[0], { failure: { retryInMs: 2000 } }, 'the back-off doubles on');
  await t.rejects(reg.prime('a'), { message: /tried again in 2 s/ }, 'a prime waits out the back-off, as a request does');
  t.same(loader.loads, ['a', 'a'], 'and loads nothing');
  reg.retryNow('a');
  const primed = reg.prime('a');
  await tick();
  t.same(loader.loads, ['a', 'a', 'a']);
  loader.finish('a');
  await primed;
  t.match(reg.status()[0], { state: 'loaded', failure: null });
  await reg.close();
});

t.test('idle models are unloaded after idleUnloadMs; prime loads without holding', async (t) => {
  const loader = new ControlledLoader({ a: 10 });
  const reg = new ModelRegistry(['a'], loader, { budgetBytes: 100, idleUnloadMs: 30 });
  await reg.prime('a');
  t.equal(reg.status()[0].state, 'loaded');
  t.equal(reg.status()[0].leases, 0);
  while (reg.status()[0].state !== 'unloaded') await new Promise((r) => setTimeout(r, 10));
  t.same(loader.unloads, ['a']);
  await reg.close();
});

t.test('close refuses new requests and waits for leases', async (t) => {
  const loader = new ControlledLoader({ a: 10 });
  const reg = new ModelRegistry(['a'], loader, { budgetBytes: 100, idleUnloadMs: 0 });
  const a = await reg.acquire('a');
  let closed = false;
  const closing = reg.close().then(() => (closed = true));
  await tick();
  t.notOk(closed, 'still held');
  t.ok(a.value.alive);
  await t.rejects(reg.acquire('a'), { status: 503, message: /shutting down/ });
  a.release();
  await closing;
  t.notOk(a.value.alive);
});

t.test('adapters over one base: the base loads once for all, counts once, and outlives every adapter loaded over it', async (t) => {
  const loader = new ControlledLoader({ base: 60, x: 5, y: 5, other: 50 });
  loader.dependencies = { x: 'base', y: 'base' };
  const reg = new ModelRegistry(['base', 'x', 'y', 'other'], loader, { budgetBytes: 100, idleUnloadMs: 0 });
  const [x, y] = await Promise.all([reg.acquire('x'), reg.acquire('y')]);
  t.same(loader.loads.slice().sort(), ['base', 'x', 'y'], 'the base is loaded once');
  t.equal(loader.loadedOver.get('x')?.key, 'base', 'each adapter is loaded over it');
  t.equal(loader.loadedOver.get('y'), loader.loadedOver.get('x'));
  t.equal(reg.reservedBytes, 70, 'the budget counts the base once');
  t.equal(reg.status().find((s) => s.key === 'base')?.leases, 2, 'each adapter holds a lease on the base');
  // Another model needs the base's room: the base cannot go while an adapter is loaded over it, used or not.
  x.release();
  y.release();
  const other = reg.acquire('other');
  await tick();
  t.same(loader.unloads.slice(0, 2).sort(), ['x', 'y'], 'the idle adapters are evicted first');
  const o = await other;
  t.same(loader.unloads.slice().sort(), ['base', 'x', 'y'], 'then the base, once nothing is loaded over it');
  t.ok(loader.unloads.indexOf('base') > Math.max(loader.unloads.indexOf('x'), loader.unloads.indexOf('y')));
  t.equal(reg.reservedBytes, 50);
  o.release();
  await reg.close();
});

t.test('entries loaded over one shared model: another model needing its room has the busy ones end their turn, then the shared one goes', async (t) => {
  // Plain entries over one folder take nothing of their own: the shared model's room is freed only by unloading them.
  const loader = new ControlledLoader({ shared: 60, x: 0, y: 0, other: 50 });
  loader.dependencies = { x: 'shared', y: 'shared' };
  const reg = new ModelRegistry(['shared', 'x', 'y', 'other'], loader, { budgetBytes: 100, idleUnloadMs: 0, turnGrants: 1 });
  const [x, y] = await Promise.all([reg.acquire('x'), reg.acquire('y')]);
  t.equal(reg.reservedBytes, 60, 'the shared model counted once, the entries nothing');
  let otherLoaded = false;
  const other = reg.acquire('other').then((l) => {
    otherLoaded = true;
    return l;
  });
  await tick();
  const inTurn = await reg.acquire('x');
  let late = false;
  const afterTurn = reg.acquire('x').then((l) => {
    late = true;
    return l;
  });
  await tick();
  t.notOk(late, 'x takes no new requests once its turn is over');
  t.notOk(otherLoaded);
  x.release();
  inTurn.release();
  y.release();
  const o = await other;
  t.same(loader.unloads.slice().sort(), ['shared', 'x', 'y'], 'the entries, then the shared model, unloaded');
  t.equal(reg.reservedBytes, 50);
  o.release();
  (await afterTurn).release();
  t.ok(late, 'x served again after the other model');
  await reg.close();
});

t.test('a key removed while its model is busy can be served again at once: a new model under it, the old one finishing its requests', async (t) => {
  // A reload that leaves out the last entry over a shared model, and the next that brings one back.
  const loader = new ControlledLoader({ a: 10 });
  const reg = new ModelRegistry(['a'], loader, { budgetBytes: 100, idleUnloadMs: 0 });
  const held = await reg.acquire('a');
  reg.remove('a');
  reg.add('a');
  const fresh = await reg.acquire('a');
  t.not(fresh.value, held.value, 'loaded afresh');
  t.ok(held.value.alive, 'the old one serves its request on');
  held.release();
  await tick();
  t.notOk(held.value.alive, 'then is unloaded');
  t.ok(fresh.value.alive);
  t.same(reg.keys, ['a']);
  fresh.release();
  await reg.close();
});

t.test('a model added while serving loads like the others; one removed refuses its waiters, lets its leases finish, then is unloaded and forgotten', async (t) => {
  const loader = new ControlledLoader({ a: 60, b: 60, c: 10, d: 10 });
  const reg = new ModelRegistry(['a'], loader, { budgetBytes: 100, idleUnloadMs: 0 });
  t.throws(() => reg.add('a'), /already served/);
  reg.add('b');
  t.same(reg.keys, ['a', 'b']);
  const held = await reg.acquire('b');
  // "a" waits for b's room, which the removal frees once b's lease ends.
  const waitingA = reg.acquire('a');
  reg.remove('b');
  const late = await reg.acquire('b').catch((e: unknown) => e);
  t.ok(late instanceof ModelUnavailableError && late.status === 404, 'a new request for it: 404');
  t.ok(held.value.alive, 'the lease under way keeps its model');
  t.same(loader.unloads, []);
  held.release();
  const a = await waitingA;
  t.same(loader.unloads, ['b'], 'unloaded when its lease ended');
  t.same(reg.status().map((s) => s.key), ['a'], 'and forgotten');
  t.equal(reg.reservedBytes, 60, 'its memory given back');
  a.release();

  // Removed while loading: those waiting for the load are refused, and the model is unloaded once loaded.
  loader.auto = false;
  reg.add('c');
  const waiting = [reg.acquire('c').catch((e: unknown) => e), reg.acquire('c').catch((e: unknown) => e)];
  await tick();
  reg.remove('c');
  const refused = await Promise.all(waiting);
  t.ok(refused.every((e) => e instanceof ModelUnavailableError && e.status === 404), 'requests waiting for its load: 404');
  loader.finish('c');
  await tick();
  await tick();
  t.same(loader.unloads, ['b', 'c']);
  t.same(reg.keys, ['a']);
  reg.add('d');
  reg.remove('d');
  t.same(reg.keys, ['a'], 'one never loaded is forgotten at once');
  await reg.close();
});

t.test('memory claimed for something else (a fine-tuning job) is taken from the same budget, in turn with the loads', async (t) => {
  const loader = new ControlledLoader({ a: 40, b: 40 });
  const logs: [string, Record<string, unknown> | undefined][] = [];
  const reg = new ModelRegistry(['a', 'b'], loader, { budgetBytes: 100, idleUnloadMs: 0, turnGrants: 0, log: (_level, message, fields) => logs.push([message, fields]) });
  (await reg.acquire('a')).release();
  const busy = await reg.acquire('b');
  const small = await reg.claimMemory('job 1', 20);
  t.equal(reg.reservedBytes, 100, 'it fits: granted at once');
  small.release();
  small.release();
  t.equal(reg.reservedBytes, 80, 'released once, however often called');

  // 60 bytes: the idle model is evicted for it, the busy one is not.
  const claim = await reg.claimMemory('job 2', 60);
  t.same(loader.unloads, ['a'], 'the idle model made room');
  t.ok(busy.value.alive, 'the busy one kept');
  t.ok(logs.some(([m, f]) => m === 'evicting model to make room' && f?.model === 'a' && f.for === 'job 2'));
  t.equal(reg.reservedBytes, 100);

  // A load waits for the claim's release, and is then served.
  let aLease: Lease<Fake> | null = null;
  const a = reg.acquire('a').then((l) => (aLease = l));
  for (let i = 0; i < 5; i++) await tick();
  t.equal(aLease, null, 'no room for a while the claim is held');
  t.ok(reg.reservedBytes <= 100);
  busy.release();
  await tick();
  t.equal(aLease, null, 'b\'s room goes to a only once the claim is released');
  claim.release();
  (await a).release();
  t.ok((aLease as Lease<Fake> | null)?.value.alive, 'a loaded');

  // A claim that must wait for a busy model: it drains the model, and is granted when the model's lease ends.
  const aBusy = await reg.acquire('a');
  const stop = new AbortController();
  const waiting = reg.claimMemory('job 3', 90, stop.signal);
  await tick();
  t.equal(reg.status().find((s) => s.key === 'a')?.draining, true, 'a drains for it');
  stop.abort(new Error('job cancelled'));
  await t.rejects(waiting, /job cancelled/, 'a claim given up leaves the queue');
  t.equal(reg.status().find((s) => s.key === 'a')?.draining, false, 'and a takes leases again');
  const later = reg.claimMemory('job 4', 90);
  aBusy.release();
  const big = await later;
  t.equal(big.bytes, 90);
  t.ok(reg.reservedBytes <= 100, 'the budget holds');
  big.release();

  await t.rejects(reg.claimMemory('job 5', 101), { message: 'job 5 needs 0 MB, more than the whole memory budget of 0 MB (memory_budget_mb)', status: 507 }, 'more than the whole budget: refused at once');
  await reg.close();
  await t.rejects(reg.claimMemory('job 6', 1), { message: 'the server is shutting down', status: 503 }, 'refused once closing');
});

t.test('a model that cannot fit beside the memory claimed is refused at once, saying by whom, rather than left to wait', async (t) => {
  const MB = 1024 * 1024;
  const loader = new ControlledLoader({ a: 40 * MB, b: 40 * MB, adapter: 10 * MB });
  loader.dependencies.adapter = 'b';
  const reg = new ModelRegistry(['a', 'b', 'adapter'], loader, { budgetBytes: 100 * MB, idleUnloadMs: 0, turnGrants: 0 });
  const aBusy = await reg.acquire('a');

  // Queued behind a busy model: a load after it that will not fit beside it is refused now.
  const claim = reg.claimMemory('fine-tuning job ftjob-1', 70 * MB);
  await tick();
  const started = Date.now();
  const refused = await reg.acquire('b').then(() => null, (err: unknown) => err);
  t.ok(Date.now() - started < 1000, 'at once');
  t.match(refused, {
    name: 'ModelUnavailableError',
    status: 503,
    retryAfterS: 60,
    message: 'model "b" (40 MB) does not fit in the memory budget of 100 MB (memory_budget_mb) beside the memory held by fine-tuning job ftjob-1 (70 MB) until it ends or is paused: the model can load after that',
  });
  t.same(loader.loads, ['a'], 'nothing loaded for it');
  t.equal(reg.status().find((s) => s.key === 'b')?.loadFailures, 0, 'no failure of the model: it is not tried again later for it');

  // Granted: the same, and an adapter is sized with the base it would need loaded.
  aBusy.release();
  const held = await claim;
  await t.rejects(reg.acquire('a'), { status: 503, message: /^model "a" \(40 MB\) does not fit .* beside the memory held by fine-tuning job ftjob-1 \(70 MB\)/ });
  await t.rejects(reg.acquire('adapter'), { status: 503, message: /^model "adapter" \(10 MB\) does not fit/ }, '10 MB fits, but not with its 40 MB base');
  const small = await reg.claimMemory('fine-tuning job ftjob-2', 20 * MB);
  await t.rejects(reg.prime('b'), { message: /beside the memory held by fine-tuning job ftjob-1 \(70 MB\) and fine-tuning job ftjob-2 \(20 MB\) until they end or are paused/ }, 'every holder named');
  small.release();

  // Released: the models load again.
  held.release();
  (await reg.acquire('adapter')).release();
  t.same(loader.loads, ['a', 'b', 'adapter']);
  await reg.close();
});

t.test('a model replaced: requests under way keep the old one until their end, then it is unloaded; the rest get the new one', async (t) => {
  const loader = new ControlledLoader({ a: 40, b: 40 });
  const reg = new ModelRegistry(['a', 'b'], loader, { budgetBytes: 100, idleUnloadMs: 0 });
  const underWay = await reg.acquire('a');
  reg.replace('a');
  const next = await reg.acquire('a');
  t.not(next.value, underWay.value, 'a new model for the request after');
  t.same(loader.loads, ['a', 'a']);
  t.ok(underWay.value.alive, 'the old one still serves the request under way');
  t.equal(reg.reservedBytes, 80, 'both counted while both are loaded');
  underWay.release();
  await tick();
  t.same(loader.unloads, ['a'], 'unloaded at its last lease\'s end');
  t.notOk(underWay.value.alive);
  t.ok(next.value.alive, 'the new one serves on');
  t.equal(reg.reservedBytes, 40);
  t.same(reg.status().map((s) => [s.key, s.state, s.loads, s.unloads]).sort(), [['a', 'loaded', 2, 1], ['b', 'unloaded', 0, 0]], 'one entry under the key, whose counts go on (the old one\'s load and unload, the new one\'s load)');
  next.release();

  reg.replace('b');
  t.same(loader.unloads, ['a'], 'one never loaded: nothing to unload');
  t.throws(() => reg.replace('c'), /model "c" is not served/);

  // Replaced again while its old self still serves: the shutdown waits for every one of them.
  const held = await reg.acquire('a');
  reg.replace('a');
  let closed = false;
  const closing = reg.close().then(() => (closed = true));
  await tick();
  t.notOk(closed, 'closing waits for the request under way on the replaced model');
  held.release();
  await closing;
  t.notOk(held.value.alive);
});

t.test('a budget lowered below what the models hold: idle ones unloaded at once, busy ones after their turn', async (t) => {
  const loader = new ControlledLoader({ a: 40, b: 40, c: 40 });
  const reg = new ModelRegistry(['a', 'b', 'c'], loader, { budgetBytes: 120, idleUnloadMs: 0, turnGrants: 0 });
  (await reg.acquire('a')).release();
  const busy = await reg.acquire('b');
  (await reg.acquire('c')).release();
  t.equal(reg.reservedBytes, 120);
  reg.setBudget(50);
  await tick();
  t.same(loader.unloads.sort(), ['a', 'c'], 'the idle ones unloaded');
  t.equal(reg.status().find((s) => s.key === 'b')?.draining, false, 'the busy one fits: it serves on');
  reg.setBudget(30);
  t.ok(busy.value.alive, 'lowered again: the busy one serves its request on');
  t.equal(reg.status().find((s) => s.key === 'b')?.draining, true, 'and takes no new one');
  busy.release();
  await tick();
  t.same(loader.unloads.sort(), ['a', 'b', 'c'], 'unloaded at its lease\'s end');
  t.equal(reg.reservedBytes, 0);
  t.equal(reg.budgetBytes, 30);
  await t.rejects(reg.acquire('a'), { status: 507, message: /^model "a" needs 0 MB, more than the whole memory budget of 0 MB/ }, 'a model larger than the new budget is refused');
  reg.setBudget(80);
  (await reg.acquire('a')).release();
  (await reg.acquire('b')).release();
  t.same(loader.unloads.sort(), ['a', 'b', 'c'], 'raised: two fit again');
  t.equal(reg.reservedBytes, 80);
  await reg.close();
});

t.test('an adapter that cannot fit with the base it is loaded over is refused at once, as more than the budget', async (t) => {
  const MB = 1024 * 1024;
  const loader = new ControlledLoader({ base: 70 * MB, adapter: 40 * MB });
  loader.dependencies.adapter = 'base';
  const reg = new ModelRegistry(['base', 'adapter'], loader, { budgetBytes: 100 * MB, idleUnloadMs: 0 });
  await t.rejects(reg.acquire('adapter'), { status: 507, message: 'model "adapter" needs 110 MB with the model it is loaded over, more than the whole memory budget of 100 MB (memory_budget_mb)' });
  t.same(loader.loads, [], 'nothing loaded for it');
  (await reg.acquire('base')).release();
  t.same(loader.loads, ['base'], 'the base alone fits');
  await reg.close();
});
