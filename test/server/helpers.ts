// Real tiny GPT-2 models for the server tests, and a way to talk to a server over HTTP on 127.0.0.1.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
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

export interface RawReply {
  status: number;
  headers: Record<string, string>;   // names in lower case
  text: string;
  closed: boolean;                   // the server closed the connection after answering
  ms: number;                        // from the request's first byte to the answer (or the close)
}

export interface RawRequest {
  method?: string;
  path: string;
  headers?: Record<string, string>;  // default: the URL's Host and "Connection: close"; nothing else
  body?: string | Buffer;            // sent after the head
  trickle?: { bytes: string | Buffer; pieces: number; everyMs: number };  // then these, a piece at a time, while the connection is open
}

// HTTP/1.1 over a bare socket, for requests fetch() will not make: a Host of the test's choosing, a
// Content-Length the body does not match, a body that trickles in. Resolves when the server closes the
// connection, or half a second after its answer if it keeps the connection open (closed: false).
export function rawRequest(url: string, req: RawRequest): Promise<RawReply> {
  const { hostname, port, host } = new URL(url);
  const headers = { host, connection: 'close', ...req.headers };
  const head = `${req.method ?? 'GET'} ${req.path} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = net.connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    let answeredMs = 0;
    const pieces = req.trickle === undefined ? [] : split(Buffer.from(req.trickle.bytes), req.trickle.pieces);
    const drip = setInterval(() => {
      const piece = pieces.shift();
      if (piece !== undefined && !socket.destroyed) socket.write(piece);
    }, req.trickle?.everyMs ?? 100);
    let linger: NodeJS.Timeout | undefined;
    let finished = false;
    const finish = (closed: boolean) => {
      if (finished) return;
      finished = true;
      clearInterval(drip);
      clearTimeout(linger);
      socket.destroy();
      const raw = Buffer.concat(chunks).toString('utf8');
      const split = raw.indexOf('\r\n\r\n');
      if (split < 0) {
        reject(new Error(`no answer (got ${JSON.stringify(raw)})`));
        return;
      }
      const [statusLine, ...lines] = raw.slice(0, split).split('\r\n');
      resolve({
        status: Number(statusLine.split(' ')[1]),
        headers: Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()])),
        text: raw.slice(split + 4),
        closed,
        ms: answeredMs || performance.now() - started,
      });
    };
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (answeredMs === 0) answeredMs = performance.now() - started;
      clearTimeout(linger);
      linger = setTimeout(() => finish(false), 500);
    });
    socket.on('end', () => finish(true));
    socket.on('error', (err) => (chunks.length > 0 ? finish(true) : reject(err)));
    socket.write(head);
    if (req.body !== undefined) socket.write(req.body);
  });
}

function split(bytes: Buffer, pieces: number): Buffer[] {
  const size = Math.ceil(bytes.length / pieces);
  return Array.from({ length: pieces }, (_, i) => bytes.subarray(i * size, (i + 1) * size)).filter((piece) => piece.length > 0);
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

// What the API tests serve, on a server that asks for `apiKey`: a tiny model as "general" (raw, greedy, `length`
// tokens), "chatbot" (the chatbot sanitizer, answering as mom) and "lenient" (the same, leaving out system
// messages), and one with a context of 1024 as "long". `greedy`: the tiny model's greedy continuation of `prompt`.
export interface ApiModels {
  dir: string;
  greedy: string;
  srv: Running;
  close: () => Promise<void>;
}

export async function serveApiModels(name: string, apiKey: string, prompt: string, length: number): Promise<ApiModels> {
  const dir = tempDir(name);
  const { alpha } = await makeModels(dir, { alpha: 1 }, prompt, length);
  await makeModels(dir, { long: 2 }, prompt, 1, LONG);
  const srv = await startServer({
    api_keys: [apiKey],
    models: [
      { key: 'general', restore_from: 'alpha', sampling: { temperature: 0, penalize: 0, length } },
      { key: 'chatbot', restore_from: 'alpha', sanitizer: 'sanitizers.chatbot', audience: 'mom', sampling: { length } },
      { key: 'long', restore_from: 'long' },
      { key: 'lenient', restore_from: 'alpha', sanitizer: 'sanitizers.chatbot', audience: 'mom', system_messages: 'ignore', sampling: { length } },
    ],
  }, dir);
  return {
    dir,
    greedy: alpha,
    srv,
    close: async () => {
      await srv.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// Once a streaming client has gone away: the requests in flight for `model` (by /metrics, with `apiKey`) within two
// seconds, and the batch slots it still runs; both 0 when its generation stopped at once.
export async function inFlightAfterLeaving(srv: Running, model: string, apiKey: string): Promise<{ inFlight: number; running: number | undefined }> {
  const inFlight = async (): Promise<number> => {
    const metrics = await request(`${srv.url}/metrics`, { headers: { authorization: `Bearer ${apiKey}` } });
    return Number(new RegExp(`dixie_requests_in_flight\\{model="${model}"\\} (\\d+)`).exec(metrics.text)?.[1]);
  };
  let n = await inFlight();
  for (let i = 0; i < 100 && n !== 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
    n = await inFlight();
  }
  return { inFlight: n, running: srv.server.service.registry.peek(model)?.generator.load.running };
}

// Debian's Chromium, headless, as the web-page tests drive it (test/setup/ensure-package.sh installs it).
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

// Phone and desktop widths the chat page must be readable at.
export const VIEWPORTS = { phone: { width: 375, height: 720 }, desktop: { width: 1280, height: 800 } } as const;

// Says `text` on the chat page as a person would (types it, presses Enter) and resolves, once the reply is
// whole or an error notice is shown, to what the page shows. Scripts for the page are strings: this package
// compiles without the DOM's types.
export async function sayOnPage(page: Page, text: string, timeoutMs = 120_000): Promise<{ reply: string | null; cut: string | null; notice: string | null }> {
  const before = (await page.evaluate('document.querySelectorAll("#log > li").length')) as number;
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  // The user's message, then the reply or a notice.
  await page.waitForFunction(`(() => {
    const items = [...document.querySelectorAll('#log > li')].slice(${before});
    return items.some((li) => li.matches('.notice') || (li.matches('.msg.bot') && !li.matches('.pending')));
  })()`, null, { timeout: timeoutMs });
  return (await page.evaluate(`(() => {
    const items = [...document.querySelectorAll('#log > li')].slice(${before});
    const bot = items.find((li) => li.matches('.msg.bot'));
    const notice = items.find((li) => li.matches('.notice'));
    return {
      reply: bot ? bot.querySelector('.bubble').textContent : null,
      cut: bot?.querySelector('.meta')?.textContent ?? null,
      notice: notice ? notice.firstChild.textContent : null,
    };
  })()`)) as { reply: string | null; cut: string | null; notice: string | null };
}

// The contrast (WCAG's ratio) of the text of the first element each selector finds with what is behind it, as the
// browser paints them: colors as computed (color-mix() ones included), the background the nearest one not
// transparent; for a selector ending in :focus-visible, that of the element's focus ring with what is around it.
export async function contrastsOnPage(page: Page, selectors: string[]): Promise<Record<string, number>> {
  return (await page.evaluate(`((selectors) => {
    const rgb = (color) => {
      const numbers = color.match(/[\\d.]+/g).map(Number);
      return color.startsWith('color(') ? numbers.slice(0, 3).map((n) => n * 255) : numbers.slice(0, 3);
    };
    const transparent = (color) => color === 'transparent' || /^rgba\\(.*, 0\\)$/.test(color);
    const luminance = (color) => {
      const [r, g, b] = rgb(color).map((v) => v / 255).map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const behind = (el) => {
      for (let at = el; at; at = at.parentElement) {
        const color = getComputedStyle(at).backgroundColor;
        if (!transparent(color)) return color;
      }
      return 'rgb(255, 255, 255)';
    };
    const ratio = (a, b) => {
      const [dark, light] = [luminance(a), luminance(b)].sort((x, y) => x - y);
      return Math.round(((light + 0.05) / (dark + 0.05)) * 100) / 100;
    };
    const found = {};
    for (const selector of selectors) {
      const el = document.querySelector(selector);
      if (!el) continue;
      found[selector] = selector.endsWith(':focus-visible') ? ratio(getComputedStyle(el).outlineColor, behind(el.parentElement)) : ratio(getComputedStyle(el).color, behind(el));
    }
    return found;
  })(${JSON.stringify(selectors)})`)) as Record<string, number>;
}
