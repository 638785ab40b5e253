// The chatbot server: an Express 5 app over the configured models. Routers by concern (routes/), bodies
// validated at the edge, every error answered as JSON by one handler, structured logs and Prometheus metrics
// for every request. Other routers (the Alexa skill, lib/server/alexa) mount before the API's own
// authentication and body parsing, and ask for replies through `chat`.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import path from 'node:path';
import cors from 'cors';
import express, { type NextFunction, type Request, type Response } from 'express';
import { createAlexaRouter } from './alexa';
import { loadSanitizer, type Sanitizer } from '../sanitize';
import { fineTunedModel, type ModelConfig, type ServerConfig } from './config';
import { checkModelFiles, gpt2Loader, type LoadedModel } from './engine';
import { boundedBody } from './body';
import { isOutOfSpace } from '../util/atomic_file';
import { HttpError } from './errors';
import { Batches, type Dispatch } from './batches';
import { FineTuningJobs } from './fine_tuning';
import { FileStore, filesDir } from './files';
import { lockFolder } from '../util/folder_lock';
import { allowedHosts, hostAllowed, hostName, isLoopback } from './hosts';
import { createLog, type Log } from './log';
import { ModelRegistry } from './model_registry';
import { resolveModelSource } from './model_source';
import { HEALTH_PATHS, healthRouter } from './routes/health';
import { fineTuningOffRouter, fineTuningRouter } from './routes/fine_tuning';
import { invocationsRouter } from './routes/invocations';
import { metricsRouter } from './routes/metrics';
import { modelsRouter } from './routes/models';
import { ollamaRouter } from './routes/ollama';
import { openAIRouter } from './routes/openai';
import { IGNORED_FIELDS_HEADER, openAIError } from './routes/api_common';
import { LLAMA_CPP_PATHS, llamaCppError, llamaCppRouter } from './routes/llama_cpp';
import { responsesRouter } from './routes/responses';
import { batchesRouter } from './routes/batches';
import { filesRouter, uploadTimeoutMs } from './routes/files';
import { ChatService, checkSamplingDefaults, type ChatFn } from './service';
import type { GPT2Config } from '../formats/model_folder';
import { packageVersion } from '../util/package_root';
import { quoted } from '../util/quoted';
import { untrainedAudience } from '../train/checkpoint';
import { adapterOverOtherBase } from '../formats/resolve_model';
import { ADAPTER_CONFIG_FILE, readLoraConfig } from '../formats/peft';
import { mb } from '../util/format';

export interface DixieServer {
  readonly app: express.Express;
  readonly service: ChatService;
  readonly chat: ChatFn;                          // for routers that need replies (the Alexa skill)
  readonly log: Log;
  mount(router: express.Router): void;            // adds a router ahead of the API's routes
  listen(port?: number, host?: string): Promise<AddressInfo>;  // default: the config's host and port
  // Serves the models of a config read again (bin/serve on SIGHUP) from now on: those it adds are added, those it
  // leaves out removed, those it changes (or whose run folder has a newer checkpoint to serve) loaded afresh, with
  // requests under way finishing on the models they started on; its api_keys and memory_budget_mb hold from then
  // on. Everything is checked before anything changes: a config that cannot be served throws, and the server stays
  // as it was. Its other fields wait for a restart.
  reload(next: ServerConfig): ReloadReport;
  // Refuses new requests (503), lets those in flight finish (up to shutdown_grace_s), unloads the models.
  shutdown(): Promise<void>;
}

interface ReloadReport {
  added: string[];
  removed: string[];
  replaced: string[];
  needRestart: string[];                          // fields of server_config.json changed that take effect at the next start
}

// What a reload leaves for a restart, everything but the models, the API keys and the memory budget, by its name in
// server_config.json.
const RESTART_FIELDS: Readonly<Record<Exclude<keyof ServerConfig, 'models' | 'apiKeys' | 'memoryBudgetBytes' | 'source' | 'baseDir'>, string>> = {
  host: 'host', port: 'port', debug: 'debug', idleUnloadMs: 'idle_unload_s',
  insecure: 'insecure', metricsPublic: 'metrics_public', trustProxy: 'trust_proxy', allowedHosts: 'allowed_hosts', corsOrigins: 'cors_origins',
  prefixReuse: 'prefix_reuse', requestTimeoutMs: 'request_timeout_s', maxQueue: 'max_queue', batchSlots: 'batch_slots', bodyLimitBytes: 'body_limit_kb',
  threads: 'threads', shutdownGraceMs: 'shutdown_grace_s', alexa: 'alexa', fineTuning: 'fine_tuning',
};

export interface ServerOptions {
  log?: Log;
}

// The folder of the chat page: beside this file in the sources, lib/server/public from dist/.
function publicDir(): string {
  const candidates = [path.join(__dirname, 'public'), path.resolve(__dirname, '..', '..', '..', 'lib', 'server', 'public')];
  return candidates.find((d) => fs.existsSync(path.join(d, 'index.html'))) ?? candidates[1];
}

const SAFE_METHODS = ['GET', 'HEAD', 'OPTIONS'];
// A client's X-Request-Id as proxies and tracers make them (a UUID, a trace id): any other, up to the 16 KB of a
// header, would be echoed in the answer and written into every log line of the request.
const CLIENT_REQUEST_ID = /^[\x21-\x7e]{1,128}$/;
// nginx's status for a request whose connection closed before its answer was whole.
const CLIENT_CLOSED = 499;

// Whether a request that a page of `origin` sent may change anything: the server's own pages (the origin's host is
// the one the request was sent to, port included: a page on another port of the same host may be another site's),
// or a page cors_origins names.
function originAllowed(origin: string, host: string | undefined, corsOrigins: readonly string[] | '*'): boolean {
  if (corsOrigins === '*' || corsOrigins.includes(origin)) return true;
  return host !== undefined && originUrl(origin)?.host === host.toLowerCase();
}

function originUrl(origin: string): URL | null {
  try {
    return new URL(origin);
  } catch {
    return null;  // "null": a sandboxed page or a file
  }
}

// Why a page's request is refused. A page on the very host name the request was sent to, on another port, is most
// likely the server's own chat page behind a proxy that passed the Host without its port.
function originRefusal(origin: string, host: string | undefined): string {
  const page = originUrl(origin);
  if (page !== null && host !== undefined && page.hostname === hostName(host)) {
    return `requests from web pages of ${JSON.stringify(origin)} are refused: the page is at ${page.host}, but the request came for "Host: ${host}". `
      + 'A proxy in front must pass the Host the browser sent, port included (nginx: "proxy_set_header Host $http_host;"), '
      + 'for the chat page\'s requests to be its own';
  }
  return `requests from web pages of ${JSON.stringify(origin)} are refused: cors_origins in the server's config names the pages that may call it`;
}

// The key of "Authorization: Bearer <key>", whose scheme is case-insensitive (RFC 7235).
function bearerKey(req: Request): string | undefined {
  return /^bearer +(.*)$/i.exec(req.get('authorization') ?? '')?.[1].trim();
}

function keyDigests(apiKeys: readonly string[]): Buffer[] {
  return apiKeys.map((k) => crypto.createHash('sha256').update(k).digest());
}

function sameKey(given: string, keys: readonly Buffer[]): boolean {
  const digest = crypto.createHash('sha256').update(given).digest();
  let ok = false;
  for (const k of keys) ok = crypto.timingSafeEqual(digest, k) || ok;
  return ok;
}

export function createServer(config: ServerConfig, options: ServerOptions = {}): DixieServer {
  const log = options.log ?? createLog({ debug: config.debug });
  // One server at a time keeps its files, jobs and batches in a folder: a second would resume the same jobs and
  // batches beside the first, and take the uploads the first is receiving for a crash's leftovers. Released at the
  // end of shutdown, or here where the start fails (a jobs folder that is a file), so that this process can
  // start a server there again; a server killed leaves it to the next start, which takes it over.
  const releaseDataFolder = config.fineTuning ? lockFolder(config.fineTuning.dir, 'a server', (message) => log('warn', message)) : null;
  try {
    return serverOver(config, log, releaseDataFolder);
  } catch (err) {
    releaseDataFolder?.();
    throw err;
  }
}

function serverOver(config: ServerConfig, log: Log, releaseDataFolder: (() => void) | null): DixieServer {
  // Everything a model needs is checked before it is served, so that a typo or a broken checkpoint fails the start (or
  // the reload) and not the first request: its folder, what can be read of its weights and vocabulary without loading
  // them, the sanitizer it is served with.
  const sanitizers = new Map<string, Sanitizer>();
  const check = (m: ModelConfig): Sanitizer => {
    const folder = resolveModelSource(m);
    try {
      checkModelFiles(folder);
    } catch (err) {
      throw new Error(`${m.where} ("${m.key}"): ${(err as Error).message}`);
    }
    checkSamplingDefaults(m, (folder.config as GPT2Config).vocabSize);
    return loadSanitizer(m.sanitizer, m.sanitizerOptions, config.baseDir, `${m.where}.sanitizer`);
  };
  const announce = (m: ModelConfig): void => {
    const chat = m.promptFormat === 'chat' ? { audience: m.audience, audiences: m.audiences } : {};
    log('info', 'serving model', { model: m.key, promptFormat: m.promptFormat, sanitizer: m.sanitizer, ...chat, why: m.servedAs });
    const untrained = m.promptFormat === 'chat' ? untrainedAudience(m.audience, m.audiences) : null;
    if (untrained !== null) log('warn', `model "${m.key}" answers as "${m.audience}": ${untrained}`, { model: m.key, audiences: m.audiences });
    const otherBase = m.adapter === null ? null : adapterOverOtherBase(m.adapter, readLoraConfig(path.join(m.adapter, ADAPTER_CONFIG_FILE)).baseModel, resolveModelSource(m).dir);
    if (otherBase !== null) log('warn', `model "${m.key}": ${otherBase}`, { model: m.key });
    for (const ignored of m.ignoredGeneration) log('warn', `model "${m.key}": ${ignored}`, { model: m.key });
  };
  const loader = gpt2Loader(config.models, { threads: config.threads, batchSlots: config.batchSlots, reusePrefixes: config.prefixReuse, warn: (message, fields) => log('warn', message, fields) });
  // A model larger than the whole budget could never load: its requests would all be refused.
  const checkFits = (m: ModelConfig, budgetBytes: number): void => {
    const need = loader.sizeOf(m) + (m.adapter === null ? 0 : loader.sizeOf({ ...m, adapter: null }));
    if (need > budgetBytes) {
      const what = m.adapter === null ? '' : ' with the model it is loaded over';
      throw new Error(`${m.where} ("${m.key}"): the model needs ${mb(need)} MB${what} (its weights, and the KV cache and scratch of batch_slots requests at its full context), more than the whole memory_budget_mb (${mb(budgetBytes)} MB): raise memory_budget_mb, or lower batch_slots`);
    }
  };
  for (const m of config.models) {
    sanitizers.set(m.key, check(m));
    checkFits(m, config.memoryBudgetBytes);
    announce(m);
  }
  // The models of the config (those of fine-tuning jobs are served beside them), as a reload compares them.
  let configured = new Map(config.models.map((m) => [m.key, m]));
  const registry = new ModelRegistry<LoadedModel>(
    loader.keys,
    loader,
    // A model whose room another model waits for takes up to four more batches of its own requests first.
    { budgetBytes: config.memoryBudgetBytes, idleUnloadMs: config.idleUnloadMs, turnGrants: 4 * config.batchSlots, log },
  );
  const service = new ChatService(config, registry, sanitizers, log);
  // A model served from now on, beside the configured ones: a fine-tuning job's.
  const serveModel = (m: ModelConfig, sanitizer = check(m)): void => {
    if (service.models.has(m.key)) throw new Error(`a model "${m.key}" is served already`);
    for (const key of loader.add(m)) registry.add(key);
    service.addModel(m, sanitizer);
    announce(m);
  };
  const unserveModel = (key: string): void => {
    service.removeModel(key);
    loader.remove(key);
  };
  const files = config.fineTuning && new FileStore(filesDir(config.fineTuning));
  const jobs = config.fineTuning && files && new FineTuningJobs(config.fineTuning, {
    files,
    log,
    modelFolder(key) {
      const m = service.models.get(key);
      if (!m) throw new HttpError(404, `model: no model "${key}" is served (GET /v1/models lists them)`, { field: 'model', code: 'model_not_found' });
      if (m.adapter !== null) throw new HttpError(400, `model: "${key}" is a LoRA adapter over another model; fine-tune that one`, { field: 'model' });
      try {
        return resolveModelSource(m);
      } catch (err) {
        throw new HttpError(400, `model: ${(err as Error).message}`, { field: 'model' });
      }
    },
    claimMemory: (label, bytes, signal) => registry.claimMemory(label, bytes, signal),
    serve: (name, checkpoint, from, adapter) => serveModel(fineTunedModel(name, checkpoint, service.models.get(from) ?? null, adapter)),
    unserve(name) {
      const adapters = [...service.models.values()].filter((m) => m.base === name).map((m) => m.key);
      if (adapters.length > 0) throw new HttpError(400, `model: ${adapters.join(', ')} ${adapters.length === 1 ? 'is an adapter' : 'are adapters'} over "${name}": delete ${adapters.length === 1 ? 'it' : 'them'} first`, { field: 'model' });
      unserveModel(name);
    },
  });
  jobs?.start();
  // The server's own requests, a batch's, go to the app over a listener of its own on the loopback address, with a
  // key no one else has: they pass the Host and API-key checks, as a client's from this machine would, and
  // everything after as any request does.
  const internalKey = crypto.randomBytes(32).toString('hex');
  const internalKeys = keyDigests([internalKey]);
  const isInternal = (req: Request): boolean => {
    const key = bearerKey(req);
    return key !== undefined && sameKey(key, internalKeys);
  };
  let internalServer: Promise<{ server: http.Server; port: number }> | null = null;
  const dispatch: Dispatch = async (url, body) => {
    internalServer ??= new Promise((resolve, reject) => {
      const server = http.createServer(app);
      countRequests(server);
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port }));
    });
    const { port } = await internalServer;
    const payload = JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const headers = { authorization: `Bearer ${internalKey}`, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) };
      const sent = http.request({ host: '127.0.0.1', port, path: url, method: 'POST', headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown = text;
          try {
            json = JSON.parse(text);
          } catch {
            // Not JSON: the answer as text.
          }
          resolve({ status: res.statusCode ?? 500, body: json, requestId: String(res.headers['x-request-id'] ?? '') });
        });
      });
      sent.on('error', reject);
      sent.end(payload);
    });
  };
  // Half the batch slots at most, so that clients' requests keep the rest.
  const batches = config.fineTuning && files && new Batches(config.fineTuning, { files, dispatch, concurrency: Math.max(1, Math.floor(config.batchSlots / 2)), log });
  let draining = false;
  let httpServer: http.Server | null = null;
  // Every request being received or answered, on both listeners (an upload's body, a generation, a batch's request):
  // what a shutdown waits for.
  let openRequests = 0;
  const countRequests = (server: http.Server): void => {
    server.on('request', (_req: http.IncomingMessage, res: http.ServerResponse) => {
      openRequests++;
      res.once('close', () => openRequests--);
    });
  };
  // The Host names answered (hosts.ts); listen() sets them again for the address it binds.
  let hosts = allowedHosts(config.allowedHosts, config.host, config.apiKeys.length > 0);
  let boundHost: string | null = null;
  // The API keys, as digests; a reload replaces them, so that a key is rotated without a restart. None: no authentication.
  let keys = keyDigests(config.apiKeys);

  const app = express();
  app.disable('x-powered-by');
  // X-Forwarded-For is believed only from the proxies configured: anyone else could write any address there.
  app.set('trust proxy', config.trustProxy);

  // Request id, logs and metrics for every request, whichever router answers it.
  app.use((req: Request, res: Response, next: NextFunction) => {
    const started = performance.now();
    const given = req.get('x-request-id');
    const id = given !== undefined && CLIENT_REQUEST_ID.test(given) ? given : crypto.randomUUID();
    const ip = req.ip;  // now: a socket destroyed (a client gone) no longer has its address
    res.setHeader('X-Request-Id', id);
    const record = (status: number) => {
      const seconds = (performance.now() - started) / 1000;
      // A route's path is a string, or a list of them where a router registers one handler for several: a label
      // that is not a string would stop /metrics from rendering at all.
      const routePath = (req.route as { path?: unknown } | undefined)?.path;
      const route = typeof routePath === 'string' ? routePath : Array.isArray(routePath) ? routePath.join(' ') : 'unmatched';
      service.httpRequests.inc({ route, status: String(status) });
      service.httpLatency.observe({ route }, seconds);
      log(status >= 500 ? 'warn' : 'info', 'request', {
        id, method: req.method, path: req.path, status, ms: Math.round(seconds * 1000), model: res.locals.model, ip,
      });
    };
    // 'finish' also comes when the socket is destroyed with the answer unsent (server.timeout, below).
    res.on('finish', () => record(req.socket.destroyed ? CLIENT_CLOSED : res.statusCode));
    // The connection closed before the answer was whole: the client went away, or shutdown cut a stream. Counted
    // as nginx counts a client that closed.
    res.on('close', () => {
      if (!res.writableFinished) record(CLIENT_CLOSED);
    });
    if (draining && !HEALTH_PATHS.includes(routedPath(req)) && routedPath(req) !== '/metrics') {
      res.setHeader('Connection', 'close');
      next(new HttpError(503, 'the server is shutting down', {}, { 'Retry-After': '1' }));
      return;
    }
    next();
  });

  // The Host header as sent (req.hostname would believe X-Forwarded-Host from a trusted proxy). /ping and /health are
  // exempt: they tell nothing, and load balancers often ask for them by address. So is the Alexa endpoint where it
  // verifies signatures: Alexa asks for it by the skill's public name, through the TLS proxy in front, and a
  // rebinding page could not sign its requests. A POST only: the skill answers no other method, which would pass on to
  // the routes after it (a path chosen as one of theirs, "/v1/models").
  const signedPath = config.alexa?.verifySignatures ? routeKey(config.alexa.path) : null;
  const signed = (req: Request): boolean => req.method === 'POST' && routedPath(req) === signedPath;
  app.use((req: Request, _res: Response, next: NextFunction) => {
    if (hosts === null || HEALTH_PATHS.includes(routedPath(req)) || signed(req) || hostAllowed(req.headers.host, hosts) || isInternal(req)) {
      next();
      return;
    }
    // The names allowed are the operator's to know, not every client's: they go to the log.
    log('info', 'host refused', { host: req.headers.host, allowedHosts: hosts, ip: req.ip });
    next(new HttpError(421, `this server does not answer for the host ${JSON.stringify(req.headers.host)}: ask for it by a name its allowed_hosts lists`));
  });

  // A web page of another origin can send a request that needs no preflight (a POST of text or a form) to a server
  // that asks for no key, and have it generate, load models or keep an upload, though it cannot read the answer.
  // Browsers name the page's origin in such requests: only the server's own pages and cors_origins' may change
  // anything. Clients that are no web page send no Origin.
  app.use((req: Request, _res: Response, next: NextFunction) => {
    const origin = req.get('origin');
    if (origin === undefined || SAFE_METHODS.includes(req.method) || originAllowed(origin, req.headers.host, config.corsOrigins)) {
      next();
      return;
    }
    next(new HttpError(403, originRefusal(origin, req.headers.host)));
  });

  // Web pages of the origins in cors_origins may call the API from a browser; their preflight requests carry no
  // API key, so they are answered here, before authentication. A preflight's headers are allowed as it asks for
  // them: clients send headers of their own with every request (the openai library its X-Stainless-* ones, more
  // with each release), and a browser refuses the whole request if one is not allowed; the origin is what is checked.
  if (config.corsOrigins.length > 0) {
    app.use(cors({ origin: config.corsOrigins === '*' ? '*' : config.corsOrigins, methods: ['GET', 'POST', 'DELETE'], exposedHeaders: ['X-Request-Id', 'Retry-After', 'X-Dixie-Ignored-Messages', IGNORED_FIELDS_HEADER], maxAge: 600 }));
  }

  app.use(healthRouter(() => draining));
  // No redirects: the page's folder has no folders, and a path that climbs out of another with encoded dots and
  // slashes (/v1/batches/..%2f..%2f) would otherwise be answered with an HTML redirect, not by the error handler.
  app.use(express.static(publicDir(), { index: 'index.html', maxAge: '1h', redirect: false }));
  const metrics = metricsRouter(service);
  if (config.metricsPublic) app.use(metrics);

  // Routers mounted by others go here, ahead of authentication (the Alexa skill authenticates by signature).
  const extensions = express.Router();
  app.use(extensions);
  if (config.alexa) extensions.use(createAlexaRouter(config.alexa, service.chat, { log }));
  if (config.alexa) log('info', 'Alexa skill', { path: config.alexa.path, model: config.alexa.modelKey });

  app.use((req: Request, res: Response, next: NextFunction) => {
    res.locals.sentByBatch = isInternal(req);  // only the batches send with the internal key (dispatch)
    if (keys.length === 0 || res.locals.sentByBatch) {
      next();
      return;
    }
    const given = bearerKey(req) ?? req.get('x-api-key');
    if (given === undefined || !sameKey(given, keys)) {
      next(new HttpError(401, 'an API key is required: send "Authorization: Bearer <key>" or "X-API-Key: <key>"', {}, { 'WWW-Authenticate': 'Bearer' }));
      return;
    }
    next();
  });
  if (!config.metricsPublic) app.use(metrics);

  const jsonBody = boundedBody(
    express.json({ limit: config.bodyLimitBytes, type: ['application/json', 'application/*+json'], strict: true }),
    config.bodyLimitBytes,
    config.requestTimeoutMs,
  );
  const requireJson = (req: Request, res: Response, next: NextFunction) => {
    if (!req.is(['application/json', 'application/*+json'])) {
      next(new HttpError(415, 'send the body as JSON with "Content-Type: application/json"'));
      return;
    }
    jsonBody(req, res, next);
  };
  app.use(invocationsRouter(service, requireJson));
  app.use(modelsRouter(service, requireJson, log));
  app.use(openAIRouter(service, requireJson, packageVersion()));
  app.use(responsesRouter(service, requireJson));
  if (files && jobs && batches) {
    // Uploads are multipart, streamed to disk by the router itself, past the JSON body limit.
    app.use(filesRouter(files, config));
    app.use(fineTuningRouter(jobs, requireJson));
    app.use(batchesRouter(batches, requireJson));
  } else {
    app.use(fineTuningOffRouter());
  }
  // Ollama reads every body as JSON, and its recipes (curl -d, which says form encoding) count on it.
  const anyTypeJson = boundedBody(express.json({ limit: config.bodyLimitBytes, type: () => true, strict: true }), config.bodyLimitBytes, config.requestTimeoutMs);
  app.use(ollamaRouter(service, anyTypeJson, packageVersion()));
  app.use(llamaCppRouter(service, requireJson, packageVersion()));

  app.use((req: Request, _res: Response, next: NextFunction) => {
    next(new HttpError(404, `no route for ${req.method} ${req.path}`, { routes: ['POST /invocations', 'GET /v1/models', 'GET /v1/models/<key>', 'POST /v1/completions', 'POST /v1/chat/completions', 'POST /v1/responses', 'POST /v1/embeddings', 'POST /v1/files', 'GET /v1/files', 'GET /v1/files/<id>', 'GET /v1/files/<id>/content', 'DELETE /v1/files/<id>', 'POST /v1/fine_tuning/jobs', 'GET /v1/fine_tuning/jobs', 'GET /v1/fine_tuning/jobs/<id>', 'GET /v1/fine_tuning/jobs/<id>/events', 'GET /v1/fine_tuning/jobs/<id>/checkpoints', 'POST /v1/fine_tuning/jobs/<id>/cancel', 'POST /v1/fine_tuning/jobs/<id>/pause', 'POST /v1/fine_tuning/jobs/<id>/resume', 'POST /v1/batches', 'GET /v1/batches', 'GET /v1/batches/<id>', 'POST /v1/batches/<id>/cancel', 'DELETE /v1/models/<model>', 'GET /api/tags', 'GET /api/ps', 'GET /api/version', 'POST /api/show', 'POST /api/chat', 'POST /api/generate', 'POST /api/embed', 'POST /api/embeddings', 'POST /completion', 'POST /embedding', 'POST /apply-template', 'GET /props', 'GET /slots', 'POST /tokenize', 'POST /detokenize', 'GET /ping', 'GET /health', 'POST /prime', 'GET /models/list', 'GET /metrics', 'GET /'] }));
  });

  // The one error handler: HttpError as it says; a client error from a library (http-errors marks those it
  // may show with `expose`) by its status; anything else is a 500 whose details go to the log only.
  app.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    let status = 500;
    let body: Record<string, unknown> = { error: 'internal error' };
    let headers: Record<string, string> = {};
    const exposed = err as { status?: unknown; expose?: unknown; message?: unknown };
    if (err instanceof HttpError) {
      status = err.status;
      body = { error: err.message, ...err.extra };
      headers = err.headers;
    } else if (exposed?.expose === true && typeof exposed.status === 'number' && exposed.status >= 400 && exposed.status < 500) {
      status = exposed.status;
      body = { error: String(exposed.message) };
    } else if (err instanceof URIError && exposed.status === 400) {
      // The router's, for a path parameter (/v1/models/<key>) that does not decode; it marks the status, not `expose`.
      status = 400;
      body = { error: `path: ${quoted(req.path)} is not valid percent-encoding`, field: 'path' };
    } else if (isOutOfSpace(err)) {
      // The client can do nothing about it but wait, and should know that: not an "internal error". The file that did
      // not fit is the operator's to know, in the log.
      status = 507;
      body = { error: `the server has no room left to write this request's files (${(err as NodeJS.ErrnoException).code}): nothing of it was kept; try again once room is made` };
      log('error', 'out of disk space', { path: req.path, error: (err as Error).message });
    } else {
      log('error', 'unhandled error', { path: req.path, error: (err as Error)?.stack ?? String(err) });
    }
    // Node would read the rest of an unread body to keep the connection: a client could make that gigabytes.
    if (!req.complete) headers = { ...headers, Connection: 'close' };
    // OpenAI's and llama.cpp's clients read their errors in their API's shape.
    const routed = routedPath(req);
    if (routed.startsWith('/v1/')) body = openAIError(status, String(body.error), (body.field as string | undefined) ?? null, (body.code as string | undefined) ?? null, body.details as Record<string, unknown> | undefined);
    else if (LLAMA_CPP_PATHS.includes(routed)) body = llamaCppError(status, String(body.error), body.field as string | undefined);
    res.status(status).set(headers).json(body);
  });

  // Once every route is in place: a batch of an earlier run may send its requests at once.
  batches?.start();

  return {
    app,
    service,
    chat: service.chat,
    log,
    mount(router) {
      extensions.use(router);
    },
    listen(port = config.port, host = config.host) {
      if (!isLoopback(host) && config.apiKeys.length === 0 && !config.insecure) {
        return Promise.reject(new Error(
          `refusing to listen on ${host} without api_keys: anyone who can reach it could use the models and read what they say. `
          + 'Set "api_keys" in server_config.json, or give keys with --api_key_file FILE or DIXIE_API_KEYS (keys of 16 characters or more; clients send "Authorization: Bearer <key>"), '
          + 'or serve openly on purpose (behind a proxy that authenticates) with --insecure or "insecure": true.',
        ));
      }
      if (!isLoopback(host) && config.alexa !== null && !config.alexa.verifySignatures && !config.insecure) {
        return Promise.reject(new Error(
          `refusing to listen on ${host} with "alexa": {"verify_signatures": false}: anyone who can reach it could use ${config.alexa.path} without a key. `
          + 'Turn verify_signatures back on (Alexa signs every request), listen on 127.0.0.1 for local testing, '
          + 'or serve it openly on purpose with --insecure or "insecure": true.',
        ));
      }
      hosts = allowedHosts(config.allowedHosts, host, keys.length > 0);
      boundHost = host;
      return new Promise((resolve, reject) => {
        const server = http.createServer(app);
        countRequests(server);
        // Node's own limit on receiving a request, a backstop behind ours (bodies time out at
        // request_timeout_s with a JSON 408, body.ts; uploads for fine-tuning take longer, routes/files.ts).
        server.requestTimeout = (config.fineTuning === null ? config.requestTimeoutMs : uploadTimeoutMs(config)) + 10_000;
        server.headersTimeout = Math.min(60_000, server.requestTimeout);
        server.keepAliveTimeout = 5_000;
        // An answer stays in the server's memory until the client takes it (some are megabytes: embeddings,
        // log-probabilities, files): a connection on which nothing moves for longer than a request may take, as a
        // client that reads none of its answer, is closed. Node waits while a write makes progress. A request may
        // wait request_timeout_s for its model (for its tokenizer, say), then as long again to generate.
        server.timeout = 2 * config.requestTimeoutMs + 10_000;
        // A request Node cannot parse (a Content-Length that is no number, headers past its limit) never reaches the
        // app: answered in JSON too, in place of Node's empty 400, so that a client can say what went wrong.
        server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
          if (err.code === 'ECONNRESET' || !socket.writable) {
            socket.destroy();
            return;
          }
          const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
          const body = JSON.stringify({ error: `the request is not HTTP this server can read: ${err.message}` });
          log('info', 'unreadable request', { code: err.code ?? null, status });
          socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
        });
        const refused = (err: NodeJS.ErrnoException): void => reject(err.code === 'EADDRINUSE'
          ? new Error(`port ${port} on ${host} is taken by another program (another bin/serve?): stop it, or serve on another port with --port (or "port" in server_config.json; 0 takes any free port)`, { cause: err })
          : err);
        server.once('error', refused);
        server.listen(port, host, () => {
          server.off('error', refused);
          httpServer = server;
          const address = server.address() as AddressInfo;
          log('info', 'listening', { host: address.address, port: address.port, pid: process.pid, models: config.models.map((m) => m.key) });
          resolve(address);
        });
      });
    },
    reload(next) {
      if (draining) throw new Error('the server is shutting down');
      const plan = planReload(configured, next, service.models, (key) => registry.peek(key)?.dir ?? null);
      if (config.alexa !== null && !next.models.some((m) => m.key === config.alexa?.modelKey)) {
        throw new Error(`the Alexa skill answers with "${config.alexa.modelKey}", which ${next.source} no longer serves: keep it, or restart the server`);
      }
      // A file read while it was being rewritten, or api_keys left out by mistake, must not open a server whose keys
      // guard it (a proxy on the same machine reaches it over loopback too): turning them off takes a restart.
      if (next.apiKeys.length === 0 && keys.length > 0) {
        throw new Error(`${next.source} has no api_keys, and the server has some: a reload does not turn authentication off; keep a key, or restart the server to serve without keys`);
      }
      // Every model, not only the changed ones: a folder moved away or a checkpoint broken since is found now, not by
      // the requests after it.
      const checked = new Map(next.models.map((m) => {
        const sanitizer = check(m);
        checkFits(m, next.memoryBudgetBytes);
        return [m.key, sanitizer];
      }));
      for (const key of plan.removed) unserveModel(key);
      // Plain entries before adapters: an adapter is placed over its base entry as the loader knows it, which must be
      // the entry as this config has it (added now, or sharing its folder now or no more).
      const adaptersLast = [...plan.replaced, ...plan.added].sort((a, b) => Number(a.adapter !== null) - Number(b.adapter !== null));
      for (const m of adaptersLast) {
        if (plan.added.includes(m)) {
          serveModel(m, checked.get(m.key));
          continue;
        }
        for (const key of loader.add(m)) if (key !== m.key) registry.add(key);  // a hidden model it has not been loaded over
        service.replaceModel(m, checked.get(m.key) as Sanitizer);
        announce(m);
      }
      // A hidden shared model that no entry is loaded over any more (one of two entries left out, or changed to
      // another folder) is unloaded once the requests on it finish.
      for (const key of loader.forgetUnshared()) registry.remove(key);
      // One loaded from a run's older checkpoint is loaded afresh for the entries loaded over it from now on (those
      // loaded over it now are replaced above, their folder being outdated too).
      const shared = new Set([...service.models.keys()].map((key) => loader.dependsOn(key)).filter((key): key is string => key !== null && !service.models.has(key)));
      for (const key of shared) {
        const loaded = registry.peek(key);
        if (loaded !== null && loaded.dir !== loader.folderOf(key)) registry.replace(key);
      }
      // A model that failed to load may be fixed now: its next request tries it at once.
      for (const key of registry.keys) registry.retryNow(key);
      configured = new Map(next.models.map((m) => [m.key, m]));
      keys = keyDigests(next.apiKeys);
      hosts = allowedHosts(config.allowedHosts, boundHost ?? config.host, keys.length > 0);
      if (next.memoryBudgetBytes !== registry.budgetBytes) registry.setBudget(next.memoryBudgetBytes);
      const report: ReloadReport = {
        added: plan.added.map((m) => m.key),
        removed: plan.removed,
        replaced: plan.replaced.map((m) => m.key),
        needRestart: (Object.keys(RESTART_FIELDS) as (keyof typeof RESTART_FIELDS)[])
          .filter((field) => JSON.stringify(config[field]) !== JSON.stringify(next[field]))
          .map((field) => RESTART_FIELDS[field]),
      };
      log('info', 'config reloaded', { source: next.source, ...report, apiKeys: next.apiKeys.length });
      if (report.needRestart.length > 0) log('warn', 'config fields changed that take effect at the next start', { fields: report.needRestart });
      return report;
    },
    async shutdown() {
      if (draining) return;
      // The batches send nothing more (what they have in flight finishes below), and go on at the next start.
      const batchesClosed = batches?.close();
      draining = true;
      log('info', 'shutting down: finishing requests in flight', { inFlight: openRequests });
      const closed = httpServer ? new Promise<void>((resolve) => (httpServer as http.Server).close(() => resolve())) : Promise.resolve();
      httpServer?.closeIdleConnections();
      const until = Date.now() + config.shutdownGraceMs;
      while (openRequests > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 25));
      if (openRequests > 0) log('warn', 'shutdown grace period over: aborting requests in flight', { inFlight: openRequests });
      httpServer?.closeAllConnections();
      // A shutdown that fails part way (a job's close, a model's unload) still takes its other steps, and then frees
      // the folder: the batches must have stopped writing in it first (a server started there next would send their
      // requests in flight again), and this process, a library caller's, could otherwise start no server there again
      // for as long as it runs. The first failure is thrown.
      const failures: unknown[] = [];
      const step = (close: () => Promise<unknown> | undefined): Promise<void> => Promise.resolve().then(close).then(() => undefined, (err: unknown) => {
        failures.push(err);
      });
      await step(() => jobs?.close());
      await step(() => batchesClosed);
      await step(async () => {
        if (!internalServer) return;
        const { server } = await internalServer;
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      });
      await step(() => registry.close());
      await step(() => service.close());
      await step(() => closed);
      releaseDataFolder?.();
      if (failures.length > 0) throw failures[0];
      log('info', 'stopped');
    },
  };
}

// What a reload changes: the models `next` adds, removes and changes. A model is changed when its config is (where it
// stands in the file aside), or when the folder it would load now (a run's newer checkpoint) is not the one loaded;
// adapters (configured or fine-tuned) go with a base entry that changes. A model of the new config named as a
// fine-tuned one is refused, as is leaving out the base of a fine-tuned adapter.
function planReload(configured: ReadonlyMap<string, ModelConfig>, next: ServerConfig, served: ReadonlyMap<string, ModelConfig>, loadedDir: (key: string) => string | null): { added: ModelConfig[]; removed: string[]; replaced: ModelConfig[] } {
  const same = (a: ModelConfig, b: ModelConfig) => JSON.stringify({ ...a, where: null }) === JSON.stringify({ ...b, where: null });
  const added: ModelConfig[] = [];
  const replaced: ModelConfig[] = [];
  for (const m of next.models) {
    const old = configured.get(m.key);
    if (old === undefined) {
      if (served.has(m.key)) throw new Error(`${m.where}: "${m.key}" is the name of a fine-tuned model served already: choose another key`);
      added.push(m);
      continue;
    }
    const dir = loadedDir(m.key);
    if (!same(old, m) || (dir !== null && dir !== resolveModelSource(m).dir)) replaced.push(m);
  }
  const changedBases = new Set(replaced.map((m) => m.key));
  const fineTuned = [...served.values()].filter((m) => !configured.has(m.key));
  for (const m of [...next.models.filter((n) => configured.has(n.key)), ...fineTuned]) {
    if (m.base !== null && changedBases.has(m.base) && !replaced.some((r) => r.key === m.key)) replaced.push(m);
  }
  const keys = new Set(next.models.map((m) => m.key));
  const removed = [...configured.keys()].filter((key) => !keys.has(key));
  for (const m of fineTuned) {
    if (m.base !== null && removed.includes(m.base)) throw new Error(`the fine-tuned adapter "${m.key}" is served over "${m.base}", which ${next.source} leaves out: delete the adapter first (DELETE /v1/models/${m.key})`);
  }
  return { added, removed, replaced };
}

// The path as the routers match it, which ignore its case and a trailing slash: what is decided here by the path (an
// error's shape, the health checks' exemptions) must hold for every spelling that reaches the same route.
function routedPath(req: Request): string {
  return routeKey(req.path);
}

function routeKey(routePath: string): string {
  return routePath.toLowerCase().replace(/(.)\/$/, '$1');
}
