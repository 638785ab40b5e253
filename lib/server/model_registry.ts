// The models a server hosts, loaded on demand within a memory budget. The rules that make hot-swapping safe:
//   - a model is loaded once however many requests ask for it at once (they all wait on the one load);
//   - a request holds a lease on its model from before generation until its answer is complete, and a model
//     with leases is never unloaded (eviction only takes idle models; a model chosen to make room while busy
//     ends up "draining": it takes no new leases and is unloaded when its last lease ends);
//   - loads happen in the order requests asked for them: a request whose model must be loaded blocks the
//     loads of later requests until it has its room, so no model starves, while requests for a loaded model
//     that is not draining go straight through (they cost no memory);
//   - requests are batched by model within a bound: a busy model whose room another model waits for goes on
//     taking its own requests for a turn (turnMs, or turnGrants more leases, whichever ends first), then
//     drains; swapping models at every request would spend the time loading instead of answering;
//   - the sum of the loaded and loading models' sizes never passes the budget (least recently used idle
//     models are evicted first; a budget lowered below it is met the same way); a model idle for idleUnloadMs is
//     unloaded;
//   - a load that fails is not tried again before a back-off (loadRetryMs, doubling at each failure up to
//     loadRetryMaxMs): requests meanwhile are refused at once (503 with the time to wait), so a broken model
//     costs one attempt per back-off, not one per request. A reload, which says it may be fixed, has it tried
//     again at once; until a load works, its status says "failed", with the reason.
//   - a model may depend on another (a LoRA adapter on its base, an entry on the model it shares with others): it
//     is loaded with a lease on that one, which it holds until it is unloaded, so the other is loaded once for all
//     its dependants, counted once in the budget, and never unloaded under them; its room is made by ending their
//     turns too;
//   - memory that is no model's (a fine-tuning job's training) is claimed from the same budget, in the same queue:
//     a claim makes room as a load does, and its bytes are held until it is released. A model that cannot fit
//     beside the claims held and queued before it is refused at once (503, saying which), rather than after the
//     request's timeout: a claim lasts as long as a job trains.
// The registry knows nothing of GPT-2: a ModelLoader loads, sizes and unloads (lib/server/engine.ts).
import { withoutPaths } from './errors';
import { mb } from '../util/format';

export interface ModelLoader<T> {
  estimateBytes(key: string): number;   // memory the model will take, known before loading it (its own, not its dependency's)
  dependsOn(key: string): string | null;  // the model it is loaded over, or null
  load(key: string, dependency: T | null): Promise<T>;
  unload(value: T): Promise<void>;
}

export interface Lease<T> {
  readonly key: string;
  readonly value: T;
  release(): void;                       // idempotent
}

export interface MemoryClaim {
  readonly bytes: number;
  release(): void;                       // idempotent
}

type LoadState = 'unloaded' | 'loading' | 'loaded' | 'unloading';
// As status() tells it: "failed" is an unloaded model whose last load failed.
type ModelState = LoadState | 'failed';

export interface ModelStatus {
  key: string;
  state: ModelState;
  draining: boolean;
  leases: number;
  bytes: number;                         // reserved for it (0 when unloaded)
  lastUsed: number | null;               // Date.now() of its last lease's end or start
  loads: number;
  unloads: number;                       // for whatever reason: idle, evicted, at close
  evictions: number;                     // unloads to make room for another model
  loadFailures: number;
  waiting: number;                       // requests queued for it
  failure: { reason: string; retryInMs: number } | null;  // the last load's, until one works; 0: at the next request
  over: string | null;                   // while loaded, the model it is loaded over (ModelLoader.dependsOn)
}

export interface RegistryOptions {
  budgetBytes: number;
  idleUnloadMs: number;                  // 0: never
  turnMs?: number;                       // default 5000
  turnGrants?: number;                   // default 32
  loadRetryMs?: number;                  // default 1000
  loadRetryMaxMs?: number;               // default 60000
  log?: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
  now?: () => number;
}

export class ModelUnavailableError extends Error {
  constructor(message: string, readonly status: number, readonly retryAfterS: number | null = null) {
    super(message);
    this.name = 'ModelUnavailableError';
  }
}

interface LoadCounts {
  loads: number;
  unloads: number;
  evictions: number;
  loadFailures: number;
}

interface Entry<T> {
  key: string;
  state: LoadState;
  value: T | null;
  bytes: number;
  leases: number;
  draining: boolean;
  lastUsed: number | null;
  counts: LoadCounts;                    // the key's: a replaced model's carry on in the one replacing it
  // Since when another model has waited for this one's room, and the leases granted since then.
  turn: { since: number; grants: number } | null;
  // After a failed load: no new attempt before `at`; `reason` is the failure without server paths.
  retry: { at: number; delayMs: number; reason: string } | null;
  dependency: Lease<T> | null;           // held from its load to its unload
  removed: boolean;                      // served no more: unloaded once its leases end, then forgotten
}

interface Waiting {
  reject: (err: Error) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

interface ModelWaiter<T> extends Waiting {
  key: string;
  pin: boolean;                          // false for prime(): load, take no lease
  resolve: (lease: Lease<T> | null) => void;
}

interface ClaimWaiter extends Waiting {
  key: null;                             // no model's
  label: string;                         // what the memory is for, in the log
  bytes: number;
  resolve: (claim: MemoryClaim) => void;
}

type Waiter<T> = ModelWaiter<T> | ClaimWaiter;

export class ModelRegistry<T> {
  private readonly entries = new Map<string, Entry<T>>();
  private queue: Waiter<T>[] = [];
  private reserved = 0;                  // by the loaded and loading models, and the claims
  private budget: number;                // a reload may change it
  private readonly claims = new Set<{ label: string; bytes: number }>();  // granted, not yet released
  private readonly retired = new Set<Entry<T>>();  // replaced, finishing the requests under way
  private readonly timer: NodeJS.Timeout | null;
  private closed = false;
  private readonly log: NonNullable<RegistryOptions['log']>;
  private readonly now: () => number;
  private readonly turnMs: number;
  private readonly turnGrants: number;
  private readonly loadRetryMs: number;
  private readonly loadRetryMaxMs: number;

  constructor(keys: readonly string[], private readonly loader: ModelLoader<T>, private readonly options: RegistryOptions) {
    this.budget = options.budgetBytes;
    for (const key of keys) this.add(key);
    this.log = options.log ?? (() => undefined);
    this.now = options.now ?? Date.now;
    this.turnMs = options.turnMs ?? 5000;
    this.turnGrants = options.turnGrants ?? 32;
    this.loadRetryMs = options.loadRetryMs ?? 1000;
    this.loadRetryMaxMs = options.loadRetryMaxMs ?? 60_000;
    this.timer = options.idleUnloadMs > 0 ? setInterval(() => this.unloadIdle(), Math.min(5000, Math.max(10, options.idleUnloadMs / 4))) : null;
    this.timer?.unref();
  }

  // A model to serve from now on (one a fine-tuning job made while serving, one a reloaded config adds), unloaded
  // until a request asks for it. One removed under that key but still finishing its requests is retired, as if
  // replaced.
  add(key: string): void {
    const old = this.entries.get(key);
    if (old !== undefined && !old.removed) throw new Error(`model "${key}" is already served`);
    if (old !== undefined) {
      this.entries.delete(key);
      this.retired.add(old);
    }
    this.addEntry(key, old?.counts);
  }

  // The counts go on under the key (Prometheus's counters must not fall back to 0 while the server runs).
  private addEntry(key: string, counts: LoadCounts = { loads: 0, unloads: 0, evictions: 0, loadFailures: 0 }): void {
    this.entries.set(key, {
      key, state: 'unloaded', value: null, bytes: 0, leases: 0, draining: false, lastUsed: null,
      counts, turn: null, retry: null, dependency: null, removed: false,
    });
  }

  // A model served no more (a fine-tuned one deleted): requests waiting for it are refused, those under way finish,
  // then it is unloaded and forgotten.
  remove(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    e.removed = true;
    const refused = this.takeWaiters(key);
    for (const w of refused) this.settle(w, new ModelUnavailableError(`model "${key}" was deleted`, 404));
    if (e.state === 'unloaded') this.forget(e);
    else void this.unload(e, 'removed');
    this.pump();
  }

  // The model under `key` loaded afresh from now on (a reloaded config changed it): requests under way finish on the
  // one loaded, which is then unloaded; those waiting, and those to come, get the new one.
  replace(key: string): void {
    const old = this.entries.get(key);
    if (old === undefined || old.removed) throw new Error(`model "${key}" is not served`);
    old.removed = true;
    this.entries.delete(key);
    if (old.state !== 'unloaded') {
      this.retired.add(old);
      void this.unload(old, 'removed');  // at once when idle; else at its last lease's end, or once loaded
    }
    this.addEntry(key, old.counts);
    this.pump();
  }

  get keys(): string[] {
    return [...this.entries.keys()];
  }

  get reservedBytes(): number {
    return this.reserved;
  }

  get budgetBytes(): number {
    return this.budget;
  }

  // The budget from now on. One smaller than what the models hold has idle models unloaded at once and busy ones
  // drained after their turn, as for a load; claims are kept until released.
  setBudget(bytes: number): void {
    this.budget = bytes;
    this.log('info', 'memory budget set', { bytes });
    this.pump();
  }

  // A lease on the loaded model, after loading it if need be. Rejects when the signal fires first.
  acquire(key: string, signal?: AbortSignal): Promise<Lease<T>> {
    return this.enqueue(key, true, signal) as Promise<Lease<T>>;
  }

  // Loads the model (waiting its turn like a request) without holding it. One whose load failed waits out its
  // back-off as a request does: anyone who may prime could otherwise have a broken model read again and again.
  async prime(key: string): Promise<void> {
    await this.enqueue(key, false);
  }

  // Unloads the model now unless a request holds it (Ollama's keep_alive 0): one in use finishes its requests and is
  // unloaded when idle, as any other.
  async unloadNow(key: string): Promise<void> {
    const e = this.entries.get(key);
    if (e !== undefined) await this.unload(e, 'asked');
  }

  // The model's next request tries to load it again, whatever its back-off (a reload: it may be fixed); the back-off
  // goes on doubling should it fail again.
  retryNow(key: string): void {
    const e = this.entries.get(key);
    if (e?.retry) e.retry = { ...e.retry, at: this.now() };
  }

  // Bytes of the budget for something other than a model, held until released: granted in turn with the loads, after
  // evicting idle models and draining busy ones as a load would. Rejects when the signal fires first, and at once
  // (507) for more than the whole budget.
  claimMemory(label: string, bytes: number, signal?: AbortSignal): Promise<MemoryClaim> {
    if (this.closed) return Promise.reject(new ModelUnavailableError('the server is shutting down', 503));
    if (bytes > this.budget) {
      return Promise.reject(new ModelUnavailableError(`${label} needs ${mb(bytes)} MB, more than the whole memory budget of ${mb(this.budget)} MB (memory_budget_mb)`, 507));
    }
    return new Promise((resolve, reject) => this.wait({ key: null, label, bytes, resolve, reject, signal }));
  }

  // The loaded model, for observation only: it may be unloaded at any time unless a lease holds it.
  peek(key: string): T | null {
    return this.entries.get(key)?.value ?? null;
  }

  status(): ModelStatus[] {
    return [...this.entries.values()].map((e) => ({
      key: e.key,
      state: e.state === 'unloaded' && e.retry !== null ? 'failed' : e.state,
      draining: e.draining,
      leases: e.leases,
      bytes: e.bytes,
      lastUsed: e.lastUsed,
      ...e.counts,
      waiting: this.queue.filter((w) => w.key === e.key).length,
      failure: e.retry && { reason: e.retry.reason, retryInMs: Math.max(0, e.retry.at - this.now()) },
      over: e.dependency?.key ?? null,
    }));
  }

  // Unloads every model once its leases end; queued requests are refused.
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const w of this.queue.splice(0)) {
      this.detach(w);
      w.reject(new ModelUnavailableError('the server is shutting down', 503));
    }
    const pending: Promise<void>[] = [];
    for (const e of this.entries.values()) {
      if (e.state === 'loaded' && e.leases === 0) pending.push(this.unload(e, 'closing'));
      else if (e.state === 'loaded') e.draining = true;
    }
    await Promise.all(pending);
    while ([...this.entries.values(), ...this.retired].some((e) => e.state !== 'unloaded')) await new Promise((r) => setTimeout(r, 10));
  }

  private enqueue(key: string, pin: boolean, signal?: AbortSignal): Promise<Lease<T> | null> {
    if (!this.entries.has(key) || this.entries.get(key)?.removed) return Promise.reject(new ModelUnavailableError(`unknown model "${key}"`, 404));
    if (this.closed) return Promise.reject(new ModelUnavailableError('the server is shutting down', 503));
    return new Promise((resolve, reject) => this.wait({ key, pin, resolve, reject, signal }));
  }

  // Queues a waiter, to be served in order by pump(), or to leave the queue when its signal fires.
  private wait(waiter: Waiter<T>): void {
    const { signal } = waiter;
    if (signal?.aborted) {
      waiter.reject(signal.reason as Error);
      return;
    }
    if (signal) {
      waiter.onAbort = () => {
        const i = this.queue.indexOf(waiter);
        if (i < 0) return;
        this.queue.splice(i, 1);
        waiter.reject(signal.reason as Error);
        this.pump();  // the drains it asked for may no longer be needed
      };
      signal.addEventListener('abort', waiter.onAbort, { once: true });
    }
    this.queue.push(waiter);
    this.pump();
  }

  private settle(w: ModelWaiter<T>, outcome: Lease<T> | null | Error): void {
    this.detach(w);
    if (outcome instanceof Error) w.reject(outcome);
    else w.resolve(outcome);
  }

  private detach(w: Waiter<T>): void {
    if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
  }

  // Holds a claim's bytes from now until it is released.
  private grantClaim(w: ClaimWaiter): void {
    this.detach(w);
    this.reserved += w.bytes;
    const claim = { label: w.label, bytes: w.bytes };
    this.claims.add(claim);
    this.log('info', 'memory claimed', { for: w.label, bytes: w.bytes });
    let released = false;
    w.resolve({
      bytes: w.bytes,
      release: () => {
        if (released) return;
        released = true;
        this.reserved -= w.bytes;
        this.claims.delete(claim);
        this.log('info', 'memory released', { for: w.label, bytes: w.bytes });
        this.pump();
      },
    });
  }

  // Serves the queue in order as far as memory allows. Draining marks and turns are recomputed from scratch
  // each time, so a waiter that gives up releases the models it was waiting on.
  private pump(): void {
    if (this.closed) return;
    for (const e of this.entries.values()) e.draining = false;
    const contended = new Set<Entry<T>>();
    if (this.reserved > this.budget) this.makeRoom(0, 'the memory budget', contended);  // lowered by a reload
    const queuedClaims: ClaimWaiter[] = [];
    let blocked = false;
    for (let i = 0; i < this.queue.length; ) {
      const w = this.queue[i];
      if (w.key === null) {
        if (!blocked && this.makeRoom(w.bytes, w.label, contended)) {
          this.queue.splice(i, 1);
          this.grantClaim(w);
          continue;
        }
        blocked = true;  // later loads wait for this claim, as for a load
        queuedClaims.push(w);
        i++;
        continue;
      }
      const e = this.entries.get(w.key) as Entry<T>;
      if (e.state === 'loaded' && !e.draining) {
        this.queue.splice(i, 1);
        this.grant(w, e);
        if (contended.has(e) && this.turnOver(e)) e.draining = true;
        continue;
      }
      if (e.state === 'unloaded' && e.retry !== null && this.now() < e.retry.at) {
        this.queue.splice(i, 1);
        this.settle(w, this.failedLoad(e));
        continue;
      }
      // Past a claim queued before it, a load is blocked, but one that will not fit beside the claims is refused now.
      if (e.state === 'unloaded' && (!blocked || this.claims.size > 0 || queuedClaims.length > 0)) {
        let need: number;
        try {
          need = this.loader.estimateBytes(e.key);
        } catch (err) {
          this.loadFailed(e, err as Error);
          continue;  // the waiter at i was refused with the others of its model
        }
        // An adapter needs its base loaded too: the two must fit together.
        const withDependency = need + this.unloadedDependencyBytes(e);
        if (withDependency > this.budget) {
          this.queue.splice(i, 1);
          const what = withDependency > need ? `${mb(withDependency)} MB with the model it is loaded over` : `${mb(need)} MB`;
          this.settle(w, new ModelUnavailableError(`model "${e.key}" needs ${what}, more than the whole memory budget of ${mb(this.budget)} MB (memory_budget_mb)`, 507));
          continue;
        }
        const claimed = [...this.claims, ...queuedClaims];
        if (claimed.length > 0 && withDependency + claimed.reduce((sum, c) => sum + c.bytes, 0) > this.budget) {
          const error = this.crowdedOut(e, need, claimed);
          for (const refused of this.takeWaiters(e.key)) this.settle(refused, error);
          continue;
        }
        if (!blocked) {
          if (this.makeRoom(need, e.key, contended)) this.load(e, need);
          else blocked = true;  // later loads wait for this one: first come, first served
        }
      }
      i++;
    }
    for (const e of this.entries.values()) if (!contended.has(e)) e.turn = null;
  }

  // What loading a model over another (an adapter over its base) adds when that other is not loaded yet.
  private unloadedDependencyBytes(e: Entry<T>): number {
    const key = this.loader.dependsOn(e.key);
    const dependency = key === null ? undefined : this.entries.get(key);
    if (dependency === undefined || dependency.state !== 'unloaded') return 0;
    try {
      return this.loader.estimateBytes(dependency.key);
    } catch {
      return 0;  // its own load tells why it cannot be loaded
    }
  }

  private crowdedOut(e: Entry<T>, need: number, claimed: { label: string; bytes: number }[]): ModelUnavailableError {
    const holders = claimed.map((c) => `${c.label} (${mb(c.bytes)} MB)`).join(' and ');
    return new ModelUnavailableError(
      `model "${e.key}" (${mb(need)} MB) does not fit in the memory budget of ${mb(this.budget)} MB (memory_budget_mb) `
      + `beside the memory held by ${holders} until ${claimed.length === 1 ? 'it ends or is paused' : 'they end or are paused'}: the model can load after that`,
      503, CROWDED_OUT_RETRY_S,
    );
  }

  private turnOver(e: Entry<T>): boolean {
    return e.turn !== null && (e.turn.grants >= this.turnGrants || this.now() - e.turn.since >= this.turnMs);
  }

  // Evicts idle models, least recently used first, until `need` more bytes fit; when that is not enough, busy
  // models (least recently used first) are to make room: each ends its turn, then drains. Returns whether the
  // bytes fit now.
  private makeRoom(need: number, forWhat: string, contended: Set<Entry<T>>): boolean {
    if (this.reserved + need <= this.budget) return true;
    const others = [...this.entries.values()]
      .filter((e) => e.key !== forWhat && e.state === 'loaded')
      .sort((a, b) => (a.lastUsed ?? 0) - (b.lastUsed ?? 0));
    let freeing = [...this.entries.values()].filter((e) => e.state === 'unloading').reduce((s, e) => s + e.bytes, 0);
    for (const e of others) {
      if (this.reserved - freeing + need <= this.budget) break;
      if (e.leases > 0) continue;
      freeing += e.bytes;
      this.log('info', 'evicting model to make room', { model: e.key, for: forWhat, bytes: e.bytes });
      void this.unload(e, 'evicted');
    }
    for (const e of others) {
      if (this.reserved - freeing + need <= this.budget) break;
      if (e.leases === 0 || e.draining) continue;
      // A model that others are loaded over is held by their leases until they are unloaded: they end their turn too.
      for (const turning of [e, ...this.loadedOver(e)]) {
        contended.add(turning);
        turning.turn ??= { since: this.now(), grants: 0 };
        if (this.turnOver(turning)) turning.draining = true;
      }
      freeing += e.bytes;
    }
    return false;  // room is made asynchronously: pump() runs again when a lease ends or an unload completes
  }

  // The models loaded over this one: each holds a lease on its value.
  private loadedOver(e: Entry<T>): Entry<T>[] {
    return [...this.entries.values()].filter((d) => d.dependency !== null && d.dependency.value === e.value);
  }

  private load(e: Entry<T>, need: number): void {
    e.state = 'loading';
    e.bytes = need;
    this.reserved += need;
    const started = this.now();
    this.log('info', 'loading model', { model: e.key, bytes: need });
    const dependsOn = this.loader.dependsOn(e.key);
    const loading = async (): Promise<T> => {
      const lease = dependsOn === null ? null : await this.acquire(dependsOn);
      try {
        const value = await this.loader.load(e.key, lease?.value ?? null);
        e.dependency = lease;
        return value;
      } catch (err) {
        lease?.release();
        throw err;
      }
    };
    loading().then(
      (value) => {
        e.value = value;
        e.state = 'loaded';
        e.counts.loads++;
        e.retry = null;
        e.lastUsed = this.now();
        this.log('info', 'model loaded', { model: e.key, ms: this.now() - started });
        if (this.closed || e.removed) void this.unload(e, this.closed ? 'closing' : 'removed');
        this.pump();
      },
      (err: Error) => {
        e.state = 'unloaded';
        this.reserved -= e.bytes;
        e.bytes = 0;
        if (e.removed) this.forget(e);  // its waiters were refused when it was removed
        else this.loadFailed(e, err);
        this.pump();
      },
    );
  }

  // Logs the whole error (with its paths, for the operator), starts the back-off and refuses the model's waiters.
  private loadFailed(e: Entry<T>, err: Error): void {
    e.counts.loadFailures++;
    const delayMs = e.retry === null ? this.loadRetryMs : Math.min(this.loadRetryMaxMs, e.retry.delayMs * 2);
    e.retry = { at: this.now() + delayMs, delayMs, reason: withoutPaths(err.message) };
    this.log('error', 'model failed to load', { model: e.key, error: err.message, retryInMs: delayMs });
    const failed = this.takeWaiters(e.key);
    for (const w of failed) this.settle(w, this.failedLoad(e));
  }

  private failedLoad(e: Entry<T>): ModelUnavailableError {
    const retry = e.retry as NonNullable<Entry<T>['retry']>;
    const seconds = Math.max(1, Math.ceil((retry.at - this.now()) / 1000));
    return new ModelUnavailableError(`model "${e.key}" failed to load (${retry.reason}); it is tried again in ${seconds} s`, 503, seconds);
  }

  // The waiters for a model, out of the queue.
  private takeWaiters(key: string): ModelWaiter<T>[] {
    const taken = this.queue.filter((w): w is ModelWaiter<T> => w.key === key);
    this.queue = this.queue.filter((w) => w.key !== key);
    return taken;
  }

  private grant(w: ModelWaiter<T>, e: Entry<T>): void {
    e.lastUsed = this.now();
    if (e.turn) e.turn.grants++;
    if (!w.pin) {
      this.settle(w, null);
      return;
    }
    e.leases++;
    let released = false;
    this.settle(w, {
      key: e.key,
      value: e.value as T,
      release: () => {
        if (released) return;
        released = true;
        e.leases--;
        e.lastUsed = this.now();
        if (e.leases === 0 && (e.draining || this.closed || e.removed)) void this.unload(e, this.closed ? 'closing' : e.removed ? 'removed' : 'evicted');
        else this.pump();
      },
    });
  }

  private async unload(e: Entry<T>, reason: 'idle' | 'evicted' | 'closing' | 'removed' | 'asked'): Promise<void> {
    if (e.state !== 'loaded' || e.leases > 0) return;
    if (reason === 'evicted') e.counts.evictions++;
    e.state = 'unloading';
    e.draining = false;
    e.turn = null;
    const value = e.value as T;
    e.value = null;
    try {
      await this.loader.unload(value);
    } catch (err) {
      this.log('error', 'model failed to unload cleanly', { model: e.key, error: (err as Error).message });
    }
    e.dependency?.release();
    e.dependency = null;
    this.reserved -= e.bytes;
    e.bytes = 0;
    e.state = 'unloaded';
    e.counts.unloads++;
    this.log('info', 'model unloaded', { model: e.key, reason });
    if (e.removed) this.forget(e);
    this.pump();
  }

  private forget(e: Entry<T>): void {
    this.retired.delete(e);
    if (this.entries.get(e.key) === e) this.entries.delete(e.key);
  }

  private unloadIdle(): void {
    const now = this.now();
    for (const e of this.entries.values()) {
      if (e.state === 'loaded' && e.leases === 0 && e.lastUsed !== null && now - e.lastUsed >= this.options.idleUnloadMs) {
        this.log('info', 'unloading idle model', { model: e.key, idleMs: now - e.lastUsed });
        void this.unload(e, 'idle');
      }
    }
  }
}

// Retry-After for a model that waits on a claim: a training job's end cannot be foretold, and a client's retries
// should not keep the queue busy.
const CROWDED_OUT_RETRY_S = 60;
