// server_config.json: read, checked field by field at start (errors name the file and the field), defaults
// filled in. A config written for the TensorFlow tools loads unchanged (docs/compatibility.md):
//   {"host": "0.0.0.0", "port": 12345, "debug": 1,
//    "models": [{"key": "chatbot", "model_name": "355M", "restore_from": "checkpoint/run1/", "sanitizer": "sanitizers.chatbot"}]}
// Everything else is optional; see the field list below and lib/server/README.md.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { AUDIENCE_RULE, DEFAULT_AUDIENCE, isAudience } from '../data/chat_format';
import { maxServedRank, type DeviceRequest, type Precision, type WeightDType } from '../engine/native';
import { trainedAudiences } from '../formats/chat_record';
import { checkpointFolder } from '../train/checkpoint';
import { validateAlexaConfig, type AlexaOptions } from './alexa/config';
import { readPeftAdapter } from '../formats/peft';
import { servedRank } from '../engine/model';
import { CHATBOT_SANITIZERS } from '../sanitize';
import { readJsonFile } from '../util/json_file';
import { HttpError } from './errors';
import type { DebugLogging } from './log';
import { resolveModelSource, weightsKey } from './model_source';
import type { ModelFolder } from '../formats/model_folder';
import { GENERATION_CONFIG_FILE, readGenerationConfig } from '../formats/generation_config';
import { definedFields } from '../generate/generate';
import { isJsonObject } from '../util/json_object';
import { fail, SettingError } from '../util/setting_error';

// Per-model sampling defaults; ORIGINAL_SAMPLING holds the values the TensorFlow tools' server hard-coded.
export interface SamplingDefaults {
  length: number;       // tokens generated at most
  temperature: number;  // 0: greedy
  topK: number;         // 0: off
  topP: number;         // 1: off
  minP: number;         // in [0, 1): tokens at least this fraction as likely as the most likely; 0: off
  penalize: number;     // repetition penalty in (0, 1]; 0: off
}

export const ORIGINAL_SAMPLING: SamplingDefaults = { length: 120, temperature: 0.3, topK: 40, topP: 0.9, minP: 0, penalize: 0.85 };

// How raw_text becomes the prompt: 'raw' as it is (docs/compatibility.md), 'chat' as the user's message in the
// chat format (lib/data/chat_format.ts: `1|<audience>|<text> <EOM>` after the history, then `0|<audience>|` for
// the bot to answer as the audience), with chat markers in the text neutralised so that a user cannot speak in
// the bot's voice.
export type PromptFormat = 'raw' | 'chat';

// What a chat model does with an OpenAI system (or developer) message that names no audience: the chat format has
// no place for one, so it is refused (400) unless the model's config has such messages ignored, for chat apps that
// always send one ("You are a helpful assistant.").
export type SystemMessages = 'refuse' | 'ignore';
export const SYSTEM_MESSAGES: readonly SystemMessages[] = ['refuse', 'ignore'];

export interface ModelConfig {
  key: string;
  modelName: string | null;
  restoreFrom: string | null;       // absolute
  adapter: string | null;           // absolute: a PEFT LoRA adapter folder (a training run folder: its latest checkpoint)
  base: string | null;              // the entry whose model the adapter is decoded over, when "base" names one
  sanitizer: string;                // a built-in name, or an absolute module path
  sanitizerOptions: Record<string, unknown>;
  promptFormat: PromptFormat;
  servedAs: string;                 // why it has its prompt format and sanitizer, for the start-up log
  audience: string;
  audiences: string[];              // those its chat data talks to, most messages first; [] when not trained on chat
  systemMessages: SystemMessages;
  sampling: SamplingDefaults;       // the config's, over those of the folder's generation_config.json, over ORIGINAL_SAMPLING
  lengthSet: boolean;               // sampling.length is the config's or the folder's; else ORIGINAL_SAMPLING's, at most n_ctx / 2 when served
  ignoredGeneration: string[];      // a warning for each field of the folder's generation_config.json that dixie does not honour
  weightDtype: WeightDType;
  device: DeviceRequest | null;     // null: the server's --device
  precision: Precision | null;      // null: the server's --precision
  sharesWeights: boolean;           // other plain entries load the same weights (weightsKey): one loaded model serves them all
  where: string;                    // "server_config.json: models[0]", for errors found later
}

export interface ServerConfig {
  source: string;                   // the file, or a description of where the config came from
  baseDir: string;                  // relative paths in the file are relative to this folder
  host: string;
  port: number;
  debug: DebugLogging;
  models: ModelConfig[];
  memoryBudgetBytes: number;
  idleUnloadMs: number;             // 0: never
  apiKeys: string[];                // empty: no authentication
  insecure: boolean;                // listen beyond loopback without api_keys
  metricsPublic: boolean;           // /metrics answers without an API key
  trustProxy: false | number | string[];  // whose X-Forwarded-For to believe: none, a hop count, addresses
  allowedHosts: string[] | null;    // Host names answered ("*" any); null: by the address bound (hosts.ts)
  corsOrigins: string[] | '*';      // web pages of other origins allowed to call the API (none by default)
  prefixReuse: boolean;             // a prompt that starts as a free batch slot's holds prefills only the rest
  requestTimeoutMs: number;
  maxQueue: number;                 // requests waiting per model beyond the batch before 503
  batchSlots: number;               // requests of one model decoded together
  bodyLimitBytes: number;
  threads: number;                  // 0: one per core
  shutdownGraceMs: number;
  alexa: AlexaOptions | null;
  fineTuning: FineTuningConfig | null;  // null: the Files, fine-tuning and Batch APIs are off
}

// The OpenAI-style Files, fine-tuning and Batch APIs: what they keep, and how the jobs train.
export interface FineTuningConfig {
  dir: string;            // absolute: uploaded files in <dir>/files, jobs in <dir>/jobs, batches in <dir>/batches
  maxFileBytes: number;   // an upload's largest size
  learningRate: number;   // the rate a job's learning_rate_multiplier scales, fine-tuning every weight
  loraRank: number;       // a job's default: > 0, a LoRA adapter of this rank over the frozen model; 0, every weight
  loraLearningRate: number;  // the rate learning_rate_multiplier scales for an adapter
  threads: number;        // training threads of a job; 0: one per core
}

// OpenAI's own upload limit; gpt-2-simple's learning rate, which the chat models here are trained at, and for an
// adapter the rate of the README's LoRA example.
export const FINE_TUNING_DEFAULTS: Omit<FineTuningConfig, 'dir'> = { maxFileBytes: 512 * 1024 * 1024, learningRate: 1e-4, loraRank: 0, loraLearningRate: 2e-3, threads: 0 };

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 12345;

const MB = 1024 * 1024;

type Raw = Record<string, unknown>;

// `where` names the object ("models[0]"), or, for the config's top level, the file ("server_config.json:"); empty, the
// key names itself (a flag, "--threads").
function settingPath(where: string, key: string): string {
  return where === '' ? key : `${where}${where.endsWith(':') ? ' ' : '.'}${key}`;
}

function checkKeys(raw: Raw, known: readonly string[], where: string): void {
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) throw new Error(`${settingPath(where, key)}: unknown setting (known: ${known.join(', ')})`);
  }
}

function str(raw: Raw, key: string, where: string, fallback: string): string {
  const v = raw[key];
  if (v === undefined) return fallback;
  return typeof v === 'string' && v.trim() !== '' ? v : fail(`${where}.${key}`, 'a non-empty string', v);
}

function optStr(raw: Raw, key: string, where: string): string | null {
  return raw[key] === undefined || raw[key] === null ? null : str(raw, key, where, '');
}

function num(raw: Raw, key: string, where: string, fallback: number, min: number, max: number, integer = false): number {
  const v = raw[key];
  if (v === undefined) return fallback;
  const ok = typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max && (!integer || Number.isInteger(v));
  // A bound that only excludes 0 (top_p's) is said so, not as 5e-324.
  const range = min === Number.MIN_VALUE ? `above 0, at most ${max}` : `from ${min} to ${max}`;
  return ok ? v : fail(settingPath(where, key), `${integer ? 'an integer' : 'a number'} ${range}`, v);
}

// A reply's length at most, in tokens, as a model's config or a request sets it.
export const MAX_REPLY_LENGTH = 4096;

const SAMPLING_KEYS = ['length', 'temperature', 'top_k', 'top_p', 'min_p', 'penalize'] as const;

// Sampling settings under their server_config.json names, over `base`; used for per-model defaults and per-request overrides.
export function readSampling(raw: Raw, where: string, base: SamplingDefaults): SamplingDefaults {
  return {
    length: num(raw, 'length', where, base.length, 1, MAX_REPLY_LENGTH, true),
    temperature: num(raw, 'temperature', where, base.temperature, 0, 100),
    topK: num(raw, 'top_k', where, base.topK, 0, 1_000_000, true),
    topP: raw.top_p === undefined ? base.topP : num(raw, 'top_p', where, base.topP, Number.MIN_VALUE, 1),
    minP: raw.min_p === undefined ? base.minP : typeof raw.min_p === 'number' && raw.min_p >= 0 && raw.min_p < 1 ? raw.min_p : fail(`${where}.min_p`, 'a number from 0 (off) to below 1', raw.min_p),
    penalize: num(raw, 'penalize', where, base.penalize, 0, 1),
  };
}

// A request's sampling settings over the model's defaults; a bad one is a 400 naming the request's field for
// it (`fieldOf` maps the settings' names above to the request's).
export function requestSampling(raw: Raw, base: SamplingDefaults, fieldOf: (key: string) => string): SamplingDefaults {
  try {
    return readSampling(raw, 'body', base);
  } catch (err) {
    if (!(err instanceof SettingError)) throw err;
    const field = fieldOf(err.setting.slice('body.'.length));
    throw new HttpError(400, `${field}: must be ${err.rule}`, { field });
  }
}

// The prompt format and sanitizer a model entry gets when it names none, and why (for the start-up log): chat and
// the chatbot sanitizer for a model trained on chat logs (`trained`: its audiences) unless the entry asks for
// no sanitizer or a raw prompt; chat for any model given the chatbot sanitizer; raw and none otherwise.
function chatDefaults(raw: Raw, trained: readonly string[]): { sanitizer: string; promptFormat: PromptFormat; servedAs: string } {
  const chatbot = typeof raw.sanitizer === 'string' && CHATBOT_SANITIZERS.includes(raw.sanitizer);
  const chatModel = trained.length > 0 && raw.sanitizer !== 'none' && raw.prompt_format !== 'raw';
  const given = ['sanitizer', 'prompt_format'].filter((k) => raw[k] !== undefined).map((k) => `"${k}": ${JSON.stringify(raw[k])} in the config`);
  const reasons = trained.length > 0 ? [`trained on chat logs (audiences: ${trained.slice(0, 6).join(', ')}${trained.length > 6 ? ', ...' : ''})`, ...given] : given;
  return {
    sanitizer: chatModel ? CHATBOT_SANITIZERS[0] : 'none',
    promptFormat: chatbot || chatModel ? 'chat' : 'raw',
    servedAs: reasons.length > 0 ? reasons.join('; ') : 'no chat training record in its folder (a state.json or audiences.json listing audiences)',
  };
}

const MODEL_KEYS = ['key', 'model_name', 'restore_from', 'base', 'adapter', 'sanitizer', 'sanitizer_options', 'prompt_format', 'audience', 'system_messages', 'sampling', 'weight_dtype', 'device', 'precision'];

// An adapter named in the config is read at start (its config and tensors' names and shapes, and a rank the server
// decodes), so that a wrong folder stops the start rather than every load; whether it fits its base is checked when
// the base loads.
function checkAdapterFolder(dir: string, where: string): void {
  try {
    servedRank(readPeftAdapter(dir));
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`);
  }
}

function readModel(raw: unknown, where: string, baseDir: string): ModelConfig {
  if (!isJsonObject(raw)) fail(where, 'an object', raw);
  checkKeys(raw, MODEL_KEYS, where);
  const key = raw.key;
  if (typeof key !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(key)) {
    fail(`${where}.key`, 'a name of letters, digits, ".", "_" or "-" (at most 64)', key);
  }
  const modelName = optStr(raw, 'model_name', where);
  const restoreFrom = optStr(raw, 'restore_from', where);
  const given = optStr(raw, 'adapter', where);
  const adapter = given === null ? null : checkpointFolder(path.resolve(baseDir, given));
  if (adapter !== null) checkAdapterFolder(adapter, `${where}.adapter`);
  const base = optStr(raw, 'base', where);
  if (base !== null) {
    if (adapter === null) throw new Error(`${where}.base: names the model an "adapter" is decoded over; give the adapter too`);
    const own = ['model_name', 'restore_from', 'weight_dtype', 'device', 'precision'].find((k) => raw[k] !== undefined);
    if (own) throw new Error(`${where}.${own}: an entry with "base" takes its model, weight type and device from the base`);
  } else if (modelName === null && restoreFrom === null) {
    throw new Error(`${where}: give "restore_from" (a model folder or a training run folder) or "model_name" (such as "124M")`);
  }
  // A model whose training record lists the audiences of its chat data is a chatbot: served by default in the
  // chat format, its replies sanitized, answering as the audience its chat data talks to most (as bin/chat
  // offers first). "sanitizer": "none" or "prompt_format": "raw" serves it raw instead. An adapter trained by
  // bin/train keeps that record too, and speaks for its entry.
  const audiencesOf = (dir: string | null): string[] => (dir === null ? [] : trainedAudiences(checkpointFolder(path.resolve(baseDir, dir))));
  const fromAdapter = audiencesOf(adapter);
  const trained = fromAdapter.length > 0 ? fromAdapter : audiencesOf(restoreFrom);
  const { servedAs, sanitizer: defaultSanitizer, promptFormat: defaultFormat } = chatDefaults(raw, trained);
  let sanitizer = str(raw, 'sanitizer', where, defaultSanitizer);
  if (sanitizer.includes('/') || sanitizer.endsWith('.js')) sanitizer = path.resolve(baseDir, sanitizer);
  const options = raw.sanitizer_options ?? {};
  if (!isJsonObject(options)) fail(`${where}.sanitizer_options`, 'an object', options);
  const promptFormat = str(raw, 'prompt_format', where, defaultFormat);
  if (promptFormat !== 'raw' && promptFormat !== 'chat') fail(`${where}.prompt_format`, '"raw" or "chat"', promptFormat);
  const audience = str(raw, 'audience', where, trained[0] ?? DEFAULT_AUDIENCE);
  if (!isAudience(audience)) fail(`${where}.audience`, `a name of ${AUDIENCE_RULE}`, audience);
  const systemMessages = str(raw, 'system_messages', where, 'refuse');
  if (!(SYSTEM_MESSAGES as readonly string[]).includes(systemMessages)) fail(`${where}.system_messages`, '"refuse" or "ignore"', systemMessages);
  const sampling = raw.sampling ?? {};
  if (!isJsonObject(sampling)) fail(`${where}.sampling`, 'an object', sampling);
  checkKeys(sampling, SAMPLING_KEYS, `${where}.sampling`);
  const weightDtype = str(raw, 'weight_dtype', where, 'f32');
  if (weightDtype !== 'f32' && weightDtype !== 'f16' && weightDtype !== 'bf16' && weightDtype !== 'q8_0') fail(`${where}.weight_dtype`, '"f32", "f16", "bf16" or "q8_0"', weightDtype);
  const device = optStr(raw, 'device', where);
  if (device !== null && device !== 'cpu' && device !== 'cuda' && device !== 'auto') fail(`${where}.device`, '"cpu", "cuda" or "auto"', device);
  const precision = optStr(raw, 'precision', where);
  if (precision !== null && precision !== 'f32' && precision !== 'bf16') fail(`${where}.precision`, '"f32" or "bf16"', precision);
  return {
    key,
    modelName,
    restoreFrom: restoreFrom === null ? null : path.resolve(baseDir, restoreFrom),
    adapter,
    base,
    sanitizer,
    // The chatbot sanitizer knows the audiences' names, so that one written against a pipe ends a message.
    sanitizerOptions: CHATBOT_SANITIZERS.includes(sanitizer) && options.names === undefined ? { ...options, names: trained } : options,
    promptFormat,
    servedAs,
    audience,
    audiences: trained,
    systemMessages: systemMessages as SystemMessages,
    sampling: readSampling(sampling, `${where}.sampling`, ORIGINAL_SAMPLING),
    lengthSet: sampling.length !== undefined,
    ignoredGeneration: [],
    weightDtype,
    device,
    precision,
    sharesWeights: false,
    where,
  };
}

// A model a fine-tuning job made while serving, configured as an entry for its checkpoint would be: a chatbot, its data
// being chat, that ignores system messages, as its training data's were dropped. It is served as the entry it was
// trained from is (`from`, when that is still served): its sampling defaults, weight type, device and precision; an
// adapter (`adapter`) over that entry. Its name follows OpenAI's pattern (ft:<model>:personal:<suffix>:<id>), whose
// colons the rule for keys written in a config does not allow.
export function fineTunedModel(name: string, checkpoint: string, from: ModelConfig | null, adapter: boolean): ModelConfig {
  if (adapter && from === null) throw new Error(`${name}: an adapter is served over the model it was trained from, which is not served`);
  const weights = adapter && from !== null ? { base: from.key, adapter: checkpoint } : { restore_from: checkpoint };
  const model = { ...readModel({ key: 'fine-tuned', ...weights, system_messages: 'ignore' }, `the fine-tuned model ${name}`, path.dirname(checkpoint)), key: name };
  if (from === null) return model;
  Object.assign(model, { sampling: from.sampling, lengthSet: from.lengthSet, weightDtype: from.weightDtype, device: from.device, precision: from.precision });
  if (adapter) resolveBase(model, [from], path.dirname(checkpoint));
  return model;
}

const TOP_KEYS = [
  'host', 'port', 'debug', 'models', 'memory_budget_mb', 'idle_unload_s', 'api_keys', 'request_timeout_s',
  'max_queue', 'batch_slots', 'body_limit_kb', 'threads', 'shutdown_grace_s', 'alexa', 'insecure', 'metrics_public',
  'trust_proxy', 'allowed_hosts', 'cors_origins', 'prefix_reuse', 'fine_tuning',
];

const FINE_TUNING_KEYS = ['dir', 'max_file_mb', 'learning_rate', 'lora_rank', 'lora_learning_rate', 'threads'];

function readFineTuning(raw: unknown, where: string, baseDir: string): FineTuningConfig {
  if (!isJsonObject(raw)) fail(where, 'an object such as {"dir": "fine-tuning"}', raw);
  checkKeys(raw, FINE_TUNING_KEYS, where);
  if (raw.dir === undefined) throw new Error(`${where}.dir: required: the folder that keeps the uploaded files, the jobs and the batches`);
  const rate = (key: string, fallback: number): number => {
    const v = raw[key];
    if (v !== undefined && !(typeof v === 'number' && v > 0 && v <= 1)) fail(`${where}.${key}`, 'a number above 0, at most 1', v);
    return typeof v === 'number' ? v : fallback;
  };
  return {
    dir: path.resolve(baseDir, str(raw, 'dir', where, '')),
    maxFileBytes: Math.floor(num(raw, 'max_file_mb', where, FINE_TUNING_DEFAULTS.maxFileBytes / MB, 0.001, 1024 * 1024) * MB),
    learningRate: rate('learning_rate', FINE_TUNING_DEFAULTS.learningRate),
    loraRank: num(raw, 'lora_rank', where, FINE_TUNING_DEFAULTS.loraRank, 0, maxServedRank(), true),
    loraLearningRate: rate('lora_learning_rate', FINE_TUNING_DEFAULTS.loraLearningRate),
    threads: num(raw, 'threads', where, FINE_TUNING_DEFAULTS.threads, 0, 1024, true),
  };
}

const PROXY_NAMES = ['loopback', 'linklocal', 'uniquelocal'];

// An entry of trust_proxy as Express takes it: a name of a range, an address, or an address/prefix or netmask.
function isProxyAddress(entry: string): boolean {
  if (PROXY_NAMES.includes(entry)) return true;
  const [address, range, ...rest] = entry.split('/');
  const family = net.isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (range === undefined) return true;
  return /^\d+$/.test(range) ? Number(range) <= (family === 4 ? 32 : 128) : family === 4 && net.isIPv4(range);
}

function readTrustProxy(raw: unknown, where: string): false | number | string[] {
  if (raw === undefined || raw === false) return false;
  if (Number.isInteger(raw) && (raw as number) >= 1 && (raw as number) <= 100) return raw as number;
  const entries = typeof raw === 'string' ? raw.split(',').map((e) => e.trim()) : raw;
  if (Array.isArray(entries) && entries.length > 0 && entries.every((e) => typeof e === 'string' && isProxyAddress(e.trim()))) {
    return entries.map((e: string) => e.trim());
  }
  return fail(where, `false, a number of proxies from 1 to 100, or the proxies' addresses (${PROXY_NAMES.join(', ')}, an address or a subnet such as "10.0.0.0/8")`, raw);
}

// A host name, "*.example.com" (any name under it), an IPv4 address, a bracketed IPv6 address, or "*" (any).
const ALLOWED_HOST = /^(\*|(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])$/;

function readAllowedHosts(raw: unknown, where: string): string[] | null {
  if (raw === undefined) return null;
  if (!Array.isArray(raw) || raw.length === 0) fail(where, 'a non-empty array of host names ("example.com", "*.example.com", "127.0.0.1", "[::1]", or "*" for any)', raw);
  return raw.map((h: unknown, i) => (typeof h === 'string' && ALLOWED_HOST.test(h.toLowerCase()) ? h.toLowerCase() : fail(`${where}[${i}]`, 'a host name without port, such as "example.com", "*.example.com" or "[::1]"', h)));
}

// An entry's "base": another entry (a plain one), whose model, weight type and device it takes and whose loaded model
// it shares, or else a model as "restore_from" (a path that exists) or "model_name" name one. An adapter's entry
// that names no entry shares a plain entry of the same weights (weightsKey) where there is one.
function resolveBase(m: ModelConfig, all: readonly ModelConfig[], baseDir: string): void {
  if (m.adapter === null) return;
  const named = m.base === null ? undefined : all.find((o) => o.key === m.base);
  if (named === undefined) {
    if (m.base !== null) {
      const dir = path.resolve(baseDir, m.base);
      if (fs.existsSync(dir)) m.restoreFrom = dir;
      else m.modelName = m.base;
    }
    m.base = all.find((o) => o.adapter === null && weightsKey(o) === weightsKey(m))?.key ?? null;
    return;
  }
  if (named.adapter !== null || named.base !== null) {
    throw new Error(`${m.where}.base: "${m.base}" has an adapter itself; an adapter's base is a plain model entry`);
  }
  Object.assign(m, { modelName: named.modelName, restoreFrom: named.restoreFrom, weightDtype: named.weightDtype, device: named.device, precision: named.precision });
}

// The sampling defaults of the entry's model folder (its generation_config.json) under the entry's own (`given`, its
// "sampling"), as transformers and vLLM take them. A folder that cannot be resolved now is left to the start's check
// of the entry, which says why. A max_new_tokens past what the server lets a reply be (MAX_REPLY_LENGTH, the bound
// of the config's length and of every request's) is held to it, and warned of: it is the reply length of every API's
// request that sizes none.
function takeFolderSampling(m: ModelConfig, given: Raw = {}): void {
  let folder: ModelFolder;
  try {
    folder = resolveModelSource(m);
  } catch {
    return;
  }
  const generation = folder.config === null ? null : readGenerationConfig(folder.dir, folder.config.vocabSize);
  if (generation === null) return;
  const { maxTokens, temperature, topK, topP, minP, penalize } = generation.defaults;
  const length = maxTokens === undefined ? undefined : Math.min(maxTokens, MAX_REPLY_LENGTH);
  const fromFolder = definedFields({ length, temperature, topK, topP, minP, penalize });
  m.sampling = readSampling(given, `${m.where}.sampling`, { ...ORIGINAL_SAMPLING, ...fromFolder });
  m.lengthSet ||= maxTokens !== undefined;
  m.ignoredGeneration = generation.ignored;
  if (maxTokens !== undefined && maxTokens > MAX_REPLY_LENGTH && given.length === undefined) {
    m.ignoredGeneration = [...generation.ignored, `${path.join(folder.dir, GENERATION_CONFIG_FILE)}: field "max_new_tokens" is ${maxTokens}, past the server's bound on a reply: a reply is ${MAX_REPLY_LENGTH} tokens at most`];
  }
}

// The settings bin/serve also takes as flags of the same name (--threads 2), in place of a config's: a server started
// with --model has no config, and one machine's bound on threads or memory is no business of a config shared by many.
// So with API keys, which a config checked in or shared had better not hold: the keys of a file (--api_key_file) and
// of DIXIE_API_KEYS together replace the config's api_keys. The file is read again at every reload, so that keys are
// rotated by rewriting it and sending SIGHUP.
export interface ServeFlags {
  threads?: number;
  batch_slots?: number;
  memory_budget_mb?: number;
  api_key_file?: string;            // absolute
  api_keys_env?: string;            // DIXIE_API_KEYS's value
}

export const API_KEYS_ENV = 'DIXIE_API_KEYS';

// What an API key must be, wherever it is given. A bad one is described, never shown: the error is logged, and the key
// may be a real one mistyped.
function checkApiKey(key: unknown, where: string): string {
  if (typeof key === 'string' && key.length >= 16 && !/\s/.test(key)) return key;
  const blank = typeof key === 'string' ? key.search(/\s/) : -1;
  const got = typeof key !== 'string' ? kindOf(key) : blank >= 0 ? `a key with a space or other blank at character ${blank + 1}` : `${key.length} characters`;
  throw new SettingError(where, `a key of at least 16 characters without spaces (got ${got})`);
}

function kindOf(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function readConfigApiKeys(raw: unknown, where: string): string[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw new SettingError(where, `an array of keys (got ${kindOf(raw)})`);
  return raw.map((k: unknown, i) => checkApiKey(k, `${where}[${i}]`));
}

// One key a line; blank lines and lines that begin with "#" are skipped.
function readApiKeyFile(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`--api_key_file ${file}: cannot read: ${(err as Error).message}`);
  }
  const keys: string[] = [];
  // An editor on Windows starts the file with a byte-order mark, and ends its lines with \r.
  text.replace(/^\uFEFF/, '').split('\n').forEach((line, i) => {
    const key = line.trim();
    if (key !== '' && !key.startsWith('#')) keys.push(checkApiKey(key, `--api_key_file ${file}:${i + 1}`));
  });
  if (keys.length === 0) throw new Error(`--api_key_file ${file}: holds no key (one a line; blank lines and lines beginning with "#" are skipped)`);
  return keys;
}

// Comma-separated; an empty entry (a trailing comma) is skipped.
function readApiKeysEnv(value: string): string[] {
  const entries = value.split(',').map((k) => k.trim());
  const keys = entries.flatMap((key, i) => (key === '' ? [] : [checkApiKey(key, `${API_KEYS_ENV} (key ${i + 1} of ${entries.length})`)]));
  if (keys.length === 0) throw new Error(`${API_KEYS_ENV} is set but holds no key (keys separated by commas); unset it to serve with the config's api_keys`);
  return keys;
}

// Checks a parsed config; `source` names it in errors, `baseDir` anchors its relative paths. `flags` are checked as
// the fields they replace, and named as flags in errors.
export function validateServerConfig(raw: unknown, source: string, baseDir: string, flags: ServeFlags = {}): ServerConfig {
  if (!isJsonObject(raw)) fail(source, 'a JSON object', raw);
  checkKeys(raw, TOP_KEYS, `${source}:`);
  const at = (key: string) => `${source}: ${key}`;
  const models = raw.models;
  if (!Array.isArray(models) || models.length === 0) fail(at('models'), 'a non-empty array of models', models);
  const parsed = models.map((m, i) => readModel(m, at(`models[${i}]`), baseDir));
  const seen = new Set<string>();
  parsed.forEach((m, i) => {
    if (seen.has(m.key)) throw new Error(`${at(`models[${i}].key`)}: "${m.key}" is used by an earlier model; keys must be unique`);
    seen.add(m.key);
  });
  for (const m of parsed) resolveBase(m, parsed, baseDir);
  parsed.forEach((m, i) => takeFolderSampling(m, (models[i] as Raw).sampling as Raw | undefined));
  // Entries that differ only in how they serve a model (audience, sanitizer, sampling) load it once between them.
  for (const m of parsed) m.sharesWeights = m.adapter === null && parsed.some((o) => o !== m && o.adapter === null && weightsKey(o) === weightsKey(m));
  const debug = raw.debug;
  if (debug !== undefined && typeof debug !== 'boolean' && debug !== 0 && debug !== 1 && debug !== 'redacted') {
    fail(at('debug'), 'true, false, 0 or 1 (true and 1 log every prompt in full), or "redacted" (the same lines, without the text)', debug);
  }
  const configKeys = readConfigApiKeys(raw.api_keys, at('api_keys'));
  const { api_key_file: keyFile, api_keys_env: keysEnv, ...numeric } = flags;
  const apiKeys = keyFile === undefined && keysEnv === undefined
    ? configKeys
    : [...(keyFile === undefined ? [] : readApiKeyFile(keyFile)), ...(keysEnv === undefined ? [] : readApiKeysEnv(keysEnv))];
  const given: Raw = Object.fromEntries(Object.entries(numeric).filter(([, v]) => v !== undefined).map(([key, v]) => [`--${key}`, v]));
  const field = (key: string, fallback: number, min: number, max: number, integer = false): number =>
    given[`--${key}`] !== undefined ? num(given, `--${key}`, '', fallback, min, max, integer) : num(raw, key, `${source}:`, fallback, min, max, integer);
  const flag = (key: string): boolean => (raw[key] === undefined ? false : typeof raw[key] === 'boolean' ? raw[key] : fail(at(key), 'true or false', raw[key]));
  const host = raw.host === undefined ? DEFAULT_HOST : typeof raw.host === 'string' && raw.host !== '' ? raw.host : fail(at('host'), 'a host name or address', raw.host);
  const alexa = raw.alexa === undefined ? null : validateAlexaConfig(raw.alexa, at('alexa'), (key) => parsed.find((m) => m.key === key)?.audience);
  if (alexa !== null && !seen.has(alexa.modelKey)) {
    const given = (raw.alexa as Record<string, unknown>).model_key === undefined ? `left out, it is "${alexa.modelKey}"` : `"${alexa.modelKey}"`;
    throw new Error(`${at('alexa')}.model_key: the model the Alexa skill answers with (${given}) is not one of models: set it to one of ${[...seen].map((k) => `"${k}"`).join(', ')}`);
  }
  return {
    source,
    baseDir,
    host,
    port: field('port', DEFAULT_PORT, 0, 65535, true),
    debug: debug === 'redacted' ? 'redacted' : debug === true || debug === 1,
    models: parsed,
    memoryBudgetBytes: field('memory_budget_mb', Math.floor(os.totalmem() / 2 / MB), 1, 1 << 30) * MB,
    idleUnloadMs: field('idle_unload_s', 600, 0, 7 * 24 * 3600) * 1000,
    apiKeys,
    requestTimeoutMs: field('request_timeout_s', 60, 0.1, 3600) * 1000,
    maxQueue: field('max_queue', 64, 0, 100_000, true),
    batchSlots: field('batch_slots', 8, 1, 256, true),
    bodyLimitBytes: field('body_limit_kb', 64, 1, 100 * 1024) * 1024,
    threads: field('threads', 0, 0, 1024, true),
    shutdownGraceMs: field('shutdown_grace_s', 30, 0, 3600) * 1000,
    insecure: flag('insecure'),
    metricsPublic: flag('metrics_public'),
    trustProxy: readTrustProxy(raw.trust_proxy, at('trust_proxy')),
    allowedHosts: readAllowedHosts(raw.allowed_hosts, at('allowed_hosts')),
    corsOrigins: readCorsOrigins(raw.cors_origins, at('cors_origins')),
    prefixReuse: raw.prefix_reuse === undefined ? true : flag('prefix_reuse'),
    alexa,
    fineTuning: raw.fine_tuning === undefined ? null : readFineTuning(raw.fine_tuning, at('fine_tuning'), baseDir),
  };
}

// "*" (any page), or the origins allowed ("https://app.example.com"): a scheme, a host and an optional port.
function readCorsOrigins(raw: unknown, where: string): string[] | '*' {
  if (raw === undefined) return [];
  if (raw === '*') return '*';
  const isOrigin = (o: unknown): boolean => typeof o === 'string' && /^https?:\/\/[^/\s]+$/.test(o);
  if (!Array.isArray(raw) || !raw.every(isOrigin)) fail(where, '"*" or an array of origins such as "https://app.example.com"', raw);
  return raw as string[];
}

export function loadServerConfig(file: string, flags: ServeFlags = {}): ServerConfig {
  return validateServerConfig(readJsonFile(file), file, path.dirname(path.resolve(file)), flags);
}
