// Real tiny GPT-2 models for the server tests, and a way to talk to a server over HTTP on 127.0.0.1.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Model } from '../../lib/engine/model';
import { Generator } from '../../lib/generate/generate';
import { loadTokenizer } from '../../lib/tokenizer';
import { createServer, type DixieServer } from '../../lib/server/app';
import { validateServerConfig } from '../../lib/server/config';

// Small enough to load in milliseconds, with GPT-2's vocabulary so that any text is a prompt.
export const TINY = { nLayer: 2, nHead: 2, nEmbd: 32, nCtx: 128, vocabSize: 50257 };
// The same with GPT-2's context: a 1000-token reply is a thousand decoding steps, for tests that need a
// request to be still generating when something else happens.
export const LONG = { ...TINY, nCtx: 1024 };

// Two seeds whose models answer "How big is the earth?" differently under greedy sampling (checked by
// makeModels, so a wrong-model answer cannot go unnoticed).
export const SEEDS = { alpha: 1, beta: 3 } as const;

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `dixie-${prefix}-`));
}

// Creates the models under `root`/<name>/ and returns each one's greedy reply to `prompt` (length tokens).
export async function makeModels(root: string, names: Record<string, number>, prompt: string, length: number, config = TINY): Promise<Record<string, string>> {
  const tokenizer = loadTokenizer();
  const greedy: Record<string, string> = {};
  for (const [name, seed] of Object.entries(names)) {
    const model = Model.create(config, { seed, trainable: false });
    await model.save(path.join(root, name));
    const gen = new Generator(model, tokenizer, { slots: 1 });
    greedy[name] = (await gen.generate(prompt, { maxTokens: length, temperature: 0 })).text;
    await gen.close();
    model.dispose();
  }
  const replies = Object.values(greedy);
  if (new Set(replies).size !== replies.length) throw new Error(`the test models answer alike: ${JSON.stringify(greedy)}`);
  return greedy;
}

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: () => Record<string, unknown>;
}

export async function request(url: string, init: { method?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  const body = init.raw ?? (init.body === undefined ? undefined : JSON.stringify(init.body));
  const res = await fetch(url, {
    method: init.method ?? (body === undefined ? 'GET' : 'POST'),
    body,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, unknown> };
}

export interface Running {
  url: string;
  server: DixieServer;
  logs: Record<string, unknown>[];
  close: () => Promise<void>;
}

// The server as bin/serve runs it, in this process, on a free port of 127.0.0.1; its logs are kept.
export async function startServer(raw: Record<string, unknown>, baseDir: string): Promise<Running> {
  const logs: Record<string, unknown>[] = [];
  const config = validateServerConfig(raw, 'test config', baseDir);
  const server = createServer(config, { log: (level, msg, fields) => logs.push({ level, msg, ...fields }) });
  const address = await server.listen(0, '127.0.0.1');
  return { url: `http://127.0.0.1:${address.port}`, server, logs, close: () => server.shutdown() };
}
