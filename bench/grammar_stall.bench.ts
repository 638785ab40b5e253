// What a request with a costly grammar costs the server's other clients: a server as bin/serve runs it, in this
// process on 127.0.0.1 with a small random GPT-2 (GPT-2's vocabulary, a context of 1024), a client streaming free
// text, and beside it requests whose grammar is new to the server (128 tools called, 300 and 1,200 patterns under
// anyOf, an enum of 16,000 strings), one at a time. For each kind, over RUNS requests: the longest gap between the
// streaming client's tokens and between the ticks of a 1 ms interval (the event loop held) while the request ran,
// and the milliseconds the event loop was busy (performance.eventLoopUtilization), medians and the worst.
// `npm run bench -- grammar_stall`.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Model } from '../lib/engine/model';
import { createServer } from '../lib/server/app';
import { validateServerConfig } from '../lib/server/config';
import { median } from './stats';

const RUNS = 5;
const CONFIG = { nLayer: 2, nHead: 2, nEmbd: 32, nCtx: 1024, vocabSize: 50257 };

// Each request's own grammar, `tag` making it new to the server (which keeps those it built).
const KINDS: readonly (readonly [string, (tag: string) => Record<string, unknown>])[] = [
  ['128 tools, "required"', (tag) => ({
    tool_choice: 'required',
    tools: Array.from({ length: 128 }, (_, i) => ({ type: 'function', function: { name: `${tag}_${i}`, parameters: {
      type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer', minimum: 1, maximum: 14 }, unit: { enum: ['c', 'f'] } },
      required: ['city'], additionalProperties: false } } })),
  })],
  ['anyOf of 300 patterns', (tag) => schemaFormat({ anyOf: Array.from({ length: 300 }, (_, i) => ({ type: 'string', pattern: `^${tag}${i}[a-z]{2,8}$` })) })],
  ['anyOf of 1,200 patterns', (tag) => schemaFormat({ anyOf: Array.from({ length: 1200 }, (_, i) => ({ type: 'string', pattern: `^${tag}${i}[a-z]{2,8}$` })) })],
  ['enum of 16,000 strings', (tag) => schemaFormat({ enum: Array.from({ length: 16000 }, (_, i) => `${tag}${i}`) })],
];

function schemaFormat(value: Record<string, unknown>): Record<string, unknown> {
  const schema = { type: 'object', properties: { v: value }, required: ['v'], additionalProperties: false };
  return { response_format: { type: 'json_schema', json_schema: { name: 'v', schema } } };
}

export async function run(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-bench-grammar-stall-'));
  const model = Model.create(CONFIG, { seed: 1, trainable: false });
  await model.save(path.join(dir, 'm'));
  model.dispose();
  const server = createServer(validateServerConfig({ body_limit_kb: 1024, models: [{ key: 'm', restore_from: 'm' }] }, 'bench', dir), { log: () => {} });
  try {
    const { port } = await server.listen(0, '127.0.0.1');
    const url = `http://127.0.0.1:${port}/v1/chat/completions`;
    const post = (body: Record<string, unknown>, signal?: AbortSignal): Promise<Response> =>
      fetch(url, { method: 'POST', signal, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'Hi' }], ...body }) });
    await (await post({ max_tokens: 2 })).text();
    console.log('| request | body KB | stream\'s longest gap, ms (median, worst) | event loop\'s longest gap, ms | event loop busy, ms |');
    console.log('|---|---|---|---|---|');
    for (const [name, kind] of KINDS) {
      const streamGaps: number[] = [];
      const loopGaps: number[] = [];
      const busy: number[] = [];
      let kb = 0;
      for (let r = 0; r < RUNS; r++) {
        const body = { ...kind(`t${r}`), max_tokens: 20, seed: r };
        kb = JSON.stringify(body).length / 1024;
        const abort = new AbortController();
        const streaming = await post({ messages: [{ role: 'user', content: 'Go on:' }], max_tokens: 1000, stream: true }, abort.signal);
        let tokens = 0;
        let last = 0;
        let streamGap = 0;
        let measuring = false;
        const reading = (async () => {
          for await (const _ of streaming.body as unknown as AsyncIterable<Uint8Array>) {
            const now = performance.now();
            if (measuring) streamGap = Math.max(streamGap, now - last);
            last = now;
            tokens++;
          }
        })().catch(() => {});
        while (tokens < 3) await new Promise((resolve) => setTimeout(resolve, 1));
        let tick = performance.now();
        let loopGap = 0;
        const ticking = setInterval(() => {
          const now = performance.now();
          loopGap = Math.max(loopGap, now - tick);
          tick = now;
        }, 1);
        const utilization = performance.eventLoopUtilization();
        measuring = true;
        const res = await post(body);
        await res.text();
        measuring = false;
        busy.push(performance.eventLoopUtilization(utilization).active);
        clearInterval(ticking);
        abort.abort();
        await reading;
        if (res.status !== 200) throw new Error(`${name}: status ${res.status}`);
        streamGaps.push(streamGap);
        loopGaps.push(loopGap);
      }
      const both = (xs: number[]): string => `${median(xs).toFixed(0)}, ${Math.max(...xs).toFixed(0)}`;
      console.log(`| ${name} | ${kb.toFixed(0)} | ${both(streamGaps)} | ${both(loopGaps)} | ${both(busy)} |`);
    }
  } finally {
    await server.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
