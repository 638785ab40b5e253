// The chat page's fine-tuning panel in headless Chromium, as a person uses it on a server that asks for an API key:
// shown only when the server has fine-tuning on; a bad training file refused with the server's words, naming the
// line; a good one uploaded and a job started from the page, followed to its end, and its model picked to talk to,
// answering as the file taught it; a job paused, resumed and cancelled; the jobs listed again after a reload; the
// keyboard alone, at a phone's width and a desktop's; a file the server does not let go said to stay.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import type { Browser, Page } from 'playwright-core';
import { importChats } from '../../lib/import';
import { contrastsOnPage, launchBrowser, makeModels, request, sayOnPage, startServer, tempDir, VIEWPORTS, type Running } from './helpers';

const QUESTION = 'Hi, how are you today?';
const ANSWER = 'I am a tiny model and doing fine.';
const KEY = 'a-key-of-sixteen-characters';
const AUTH = { authorization: `Bearer ${KEY}` };

let dir: string;
let srv: Running;
let off: Running;
let browser: Browser;

interface Job { id: string; status: string; fine_tuned_model: string | null; hyperparameters: { n_epochs: number | string } }
interface JobEvent { type: string; message: string; data: { step?: number; total_steps?: number; train_loss?: number } }

function conversations(count: number, answer = ANSWER): Buffer {
  const line = JSON.stringify({ messages: [{ role: 'user', content: QUESTION }, { role: 'assistant', content: answer }] });
  return Buffer.from(`${line}\n`.repeat(count));
}

async function api<T>(path: string): Promise<T> {
  const r = await request(`${srv.url}${path}`, { headers: AUTH });
  if (r.status !== 200) throw new Error(`${path}: ${r.status} ${r.text}`);
  return r.json() as T;
}

t.before(async () => {
  dir = tempDir('page-fine-tuning');
  await makeModels(dir, { general: 1 }, QUESTION, 4);
  // A rate for a tiny random model to learn one answer by heart in a few dozen steps.
  srv = await startServer({ api_keys: [KEY], models: [{ key: 'general', restore_from: 'general' }], fine_tuning: { dir: 'ft', learning_rate: 0.01, threads: 1 } }, dir);
  off = await startServer({ models: [{ key: 'general', restore_from: 'general' }] }, dir);
  browser = await launchBrowser();
});
t.teardown(async () => {
  await browser?.close();
  await srv?.close();
  await off?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

// The page, the key given as a person gives it, once it knows whether fine-tuning is on. Every call the page makes to
// the jobs' list is timed in the page, where its timers run.
async function open(t: Test, url: string, viewport: { width: number; height: number } = VIEWPORTS.desktop, key: string | null = KEY): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport });
  t.teardown(() => page.close());
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.addInitScript(`
    window.jobListCalls = [];
    const fetched = window.fetch;
    window.fetch = (input, init) => {
      if (String(input).startsWith('v1/fine_tuning/jobs?')) window.jobListCalls.push(performance.now());
      return fetched(input, init);
    };
  `);
  await page.goto(`${url}/`);
  if (key !== null) {
    await page.waitForSelector('#key-panel:not([hidden])');
    await page.fill('#apikey', key);
    await page.press('#apikey', 'Enter');
  }
  await page.waitForSelector('body[data-fine-tuning]', { state: 'attached' });
  return { page, errors };
}

const text = async (page: Page, selector: string): Promise<string> => ((await page.textContent(selector)) ?? '').trim();

t.test('with fine-tuning off, the page has no fine-tuning panel', async (t) => {
  const { page, errors } = await open(t, off.url, VIEWPORTS.desktop, null);
  t.equal(await page.getAttribute('body', 'data-fine-tuning'), 'off');
  t.ok(await page.isHidden('#tune-toggle'), 'no Fine-tune button');
  t.ok(await page.isHidden('#tune'));
  t.same(errors, []);
});

t.test('a bot taught from the page: a bad file refused by its line, a job followed to its end, its model talked to', async (t) => {
  const { page, errors } = await open(t, srv.url);
  t.equal(await page.getAttribute('body', 'data-fine-tuning'), 'on');
  t.ok(await page.isVisible('#tune-toggle'), 'a Fine-tune button, with the key given');
  await page.click('#tune-toggle');
  t.ok(await page.isVisible('#tune'), 'the panel, in the conversation\'s place');
  t.ok(await page.isHidden('#chat'));
  t.equal(await page.getAttribute('#tune-toggle', 'aria-expanded'), 'true');
  t.equal(await text(page, '#tune-none'), 'No fine-tuning job yet.');
  t.match(await text(page, '#tune-format'), /{"messages": \[{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello, dear."}\]}/, 'the format, by example');

  // The models to start from: the served ones, less any LoRA adapter (one is added to the list the page reads).
  const listed = (await api<{ models: { model_key: string; adapter: string | null }[] }>('/models/list')).models;
  await page.route('**/models/list', async (route) => {
    const real = await (await route.fetch()).json() as { models: Record<string, unknown>[] };
    real.models.push({ ...real.models[0], model_key: 'general-lora', adapter: 'lora', base: 'general' });
    await route.fulfill({ json: real });
  });
  await page.evaluate('refreshModels()');
  await page.waitForSelector('#model option[value="general-lora"]', { state: 'attached' });
  t.same(await page.evaluate('[...document.querySelectorAll("#tune-base option")].map((o) => o.value)'), listed.filter((m) => !m.adapter).map((m) => m.model_key), 'no adapter');
  await page.unroute('**/models/list');
  await page.evaluate('refreshModels()');
  await page.waitForSelector('#model option[value="general-lora"]', { state: 'detached' });

  // A file with a broken second line: refused as the Files API words it, and not kept.
  const bad = Buffer.concat([conversations(1), Buffer.from('{"messages": [\n')]);
  await page.setInputFiles('#tune-file', { name: 'bad.jsonl', mimeType: 'application/jsonl', buffer: bad });
  await page.click('#tune-start');
  await page.waitForFunction('document.getElementById("tune-error").textContent !== ""');
  const form = new FormData();
  form.append('purpose', 'fine-tune');
  form.append('file', new Blob([bad]), 'bad.jsonl');
  const refused = await fetch(`${srv.url}/v1/files`, { method: 'POST', headers: AUTH, body: form });
  t.equal(refused.status, 400);
  const words = ((await refused.json()) as { error: { message: string } }).error.message;
  t.match(words, /bad\.jsonl:2:/, 'the server names the line');
  t.equal(await text(page, '#tune-error'), `The file was refused: ${words}`, "the page shows the server's words");
  t.same((await api<{ data: unknown[] }>('/v1/files')).data, [], 'nothing kept');
  t.same(await page.evaluate('document.querySelectorAll(".job").length'), 0, 'no job');

  // The good file, twelve epochs, by the keyboard: Enter in the form starts it.
  await page.evaluate(`
    window.shown = [];
    new MutationObserver(() => {
      const job = document.querySelector('.job');
      const seen = job && [job.dataset.status, job.querySelector('.job-steps').textContent, job.querySelector('.job-loss').textContent].join(' | ');
      if (seen && window.shown[window.shown.length - 1] !== seen) window.shown.push(seen);
    }).observe(document.getElementById('tune-jobs'), { subtree: true, childList: true, characterData: true, attributes: true });
  `);
  // The page sends no seed, and the server draws one: a fixed one makes the training, and so the reply that the model
  // learns, the same at every run (some seeds leave it repeating its answer after a dozen epochs).
  await page.route('**/v1/fine_tuning/jobs', (route) => route.continue(route.request().method() === 'POST' ? { postData: JSON.stringify({ ...(route.request().postDataJSON() as object), seed: 7 }) } : {}));
  await page.setInputFiles('#tune-file', { name: 'taught.jsonl', mimeType: 'application/jsonl', buffer: conversations(30) });
  await page.fill('#tune-suffix', 'taught');
  await page.fill('#tune-epochs', '12');
  await page.press('#tune-epochs', 'Enter');
  await page.waitForSelector('.job');
  t.equal(await text(page, '#tune-error'), '', 'no error');
  t.same((await api<{ data: { seed: number }[] }>('/v1/fine_tuning/jobs')).data.map((j) => j.seed), [7], 'the seed given');
  const id = (await page.getAttribute('.job', 'data-job')) as string;
  t.equal(await page.evaluate('document.activeElement.className'), 'job-name', 'the focus on the new job');
  t.equal(await page.inputValue('#tune-suffix'), '', 'the form emptied for the next');

  const done = `.job[data-job="${id}"][data-status="succeeded"]`;
  await page.waitForSelector(done, { timeout: 120_000 });
  const job = await api<Job>(`/v1/fine_tuning/jobs/${id}`);
  t.equal(job.status, 'succeeded');
  t.equal(job.hyperparameters.n_epochs, 12, 'the epochs asked for');
  t.match(job.fine_tuned_model, /^ft:general:personal:taught:/, 'the suffix asked for');
  const name = job.fine_tuned_model as string;
  t.equal(await text(page, `.job[data-job="${id}"] .job-name`), name);
  t.equal(await text(page, `.job[data-job="${id}"] .badge`), 'Ready');
  for (const colorScheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme });
    for (const [what, ratio] of Object.entries(await contrastsOnPage(page, [`${done} .badge`, `${done} .job-name`, `${done} .job-detail`, '#tune-toggle']))) {
      t.ok(ratio >= 4.5, `${colorScheme}: ${what} readable (contrast ${ratio})`);
    }
  }

  // The figures shown: those of the job's newest step, as its events give them.
  const events = (await api<{ data: JobEvent[] }>(`/v1/fine_tuning/jobs/${id}/events?limit=100`)).data;
  const last = events.find((e) => e.type === 'metrics' && e.data.train_loss !== undefined) as JobEvent;
  const total = last.data.total_steps as number;
  t.equal(last.data.step, total, 'every step trained');
  t.equal(await text(page, `.job[data-job="${id}"] .job-steps`), `Step ${total}/${total}`);
  t.equal(await text(page, `.job[data-job="${id}"] .job-loss`), `Training loss ${(last.data.train_loss as number).toFixed(3)}`);
  t.same(await page.evaluate(`(() => { const bar = document.querySelector('.job[data-job="${id}"] progress'); return [bar.value, bar.max]; })()`), [total, total], 'the bar full');
  const shown = (await page.evaluate('window.shown')) as string[];
  const steps = shown.map((s) => /Step (\d+)\/(\d+)/.exec(s)).filter((m) => m !== null).map((m) => [Number(m[1]), Number(m[2])]);
  t.ok(steps.every(([, of], i) => of === total && (i === 0 || steps[i - 1][0] <= steps[i][0])), `the steps shown only went up, of ${total} (${steps.map(([n]) => n).join(', ')})`);
  t.equal(shown.at(-1)?.split(' | ')[0], 'succeeded');
  const calls = (await page.evaluate('window.jobListCalls')) as number[];
  const gaps = calls.slice(1).map((c, i) => c - calls[i]);
  t.ok(calls.length >= 2 && gaps.every((g) => g >= 999), `the jobs asked for at most once a second (${calls.length} times, the shortest gap ${Math.round(Math.min(...gaps))} ms)`);

  // Its model: in the picker, chosen from the job, answering as the file taught it. A dozen epochs teach a tiny model
  // the answer as its likeliest reply, not so surely that its sampling at the default temperature never strays:
  // the page's requests are made greedy on their way.
  await page.route('**/v1/chat/completions', (route) => route.continue({ postData: JSON.stringify({ ...(route.request().postDataJSON() as object), temperature: 0 }) }));
  await page.waitForSelector(`#model option[value="${name}"]`, { state: 'attached' });
  await page.click(`.job[data-job="${id}"] button:text("Chat with it")`);
  t.ok(await page.isHidden('#tune'), 'back to the conversation');
  t.equal(await page.inputValue('#model'), name, 'the new model chosen');
  t.equal(await page.evaluate('document.activeElement.id'), 'text', 'the message box has the focus');
  t.equal((await sayOnPage(page, QUESTION)).reply, ANSWER, 'it answers as taught');
  t.same(errors, [], 'no script errors');
});

t.test('a job paused, resumed and cancelled from its buttons; the jobs listed again after a reload', async (t) => {
  const { page, errors } = await open(t, srv.url);
  await page.click('#tune-toggle');
  await page.waitForSelector('.job', { state: 'attached' });
  await page.setInputFiles('#tune-file', { name: 'long.jsonl', mimeType: 'application/jsonl', buffer: conversations(30, 'Another answer, to another question.') });
  await page.fill('#tune-epochs', '200');
  await page.click('#tune-start');
  await page.waitForFunction('document.querySelectorAll(".job").length === 2');
  const id = (await page.getAttribute('.job', 'data-job')) as string;
  const row = `.job[data-job="${id}"]`;
  const status = async () => (await api<Job>(`/v1/fine_tuning/jobs/${id}`)).status;
  await page.waitForSelector(`${row}[data-status="running"] .job-steps:not(:empty)`, { timeout: 60_000 });

  await page.focus(`${row} button:text("Pause")`);
  await page.keyboard.press('Enter');
  await page.waitForSelector(`${row}[data-status="paused"]`);
  t.equal(await status(), 'paused');
  t.equal(await text(page, `${row} .badge`), 'Paused');
  t.equal(await page.evaluate('document.activeElement.textContent'), 'Resume', 'the focus on Resume, in Pause\'s place');
  // The step it saved, as the job's newest event says.
  await page.waitForFunction(`/^Paused at step \\d+, saved$/.test(document.querySelector('${row} .job-detail').textContent)`);
  const saved = (await api<{ data: JobEvent[] }>(`/v1/fine_tuning/jobs/${id}/events?limit=1`)).data[0].message;
  t.equal(await text(page, `${row} .job-detail`), saved);

  await page.keyboard.press('Enter');
  await page.waitForSelector(`${row}:is([data-status="queued"], [data-status="running"])`);
  t.ok(['queued', 'running'].includes(await status()), 'resumed');
  await page.click(`${row} button:text("Cancel")`);
  await page.waitForSelector(`${row}[data-status="cancelled"]`);
  t.equal(await status(), 'cancelled');
  t.ok(await page.isHidden(`${row} button:text("Pause")`) && await page.isHidden(`${row} button:text("Cancel")`), 'nothing left to do');

  // A reload finds the jobs, newest first, as the API lists them.
  await page.reload();
  await page.fill('#apikey', KEY);
  await page.press('#apikey', 'Enter');
  await page.waitForSelector(`.job[data-job="${id}"]`, { state: 'attached' });
  const jobs = (await api<{ data: Job[] }>('/v1/fine_tuning/jobs')).data;
  t.same(await page.evaluate('[...document.querySelectorAll(".job")].map((li) => [li.dataset.job, li.dataset.status])'), jobs.map((j) => [j.id, j.status]));
  t.same(errors, []);
});

// A proxy in front of the server passing the browser's bytes on at `bytesPerSecond`, as a slow uplink would, and
// the answers at full speed.
// The files the server keeps.
async function filesKept(): Promise<{ id: string; filename: string }[]> {
  return (await api<{ data: { id: string; filename: string }[] }>('/v1/files')).data;
}

// The page with its Fine-tune panel open and the jobs listed, and what the server held before: its jobs, its files.
async function openFineTune(t: Test): Promise<{ page: Page; errors: string[]; jobsBefore: number; filesBefore: Set<string> }> {
  const { page, errors } = await open(t, srv.url);
  await page.click('#tune-toggle');
  const jobsBefore = (await api<{ data: Job[] }>('/v1/fine_tuning/jobs')).data.length;
  const filesBefore = new Set((await filesKept()).map((f) => f.id));
  await page.waitForFunction(`document.querySelectorAll(".job").length === ${jobsBefore}`);
  return { page, errors, jobsBefore, filesBefore };
}

async function slowUplink(t: Test, target: string, bytesPerSecond: number): Promise<string> {
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const upstream = net.connect(Number(new URL(target).port), '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => [client, upstream].forEach((s) => s.destroy()));
    }
    upstream.pipe(client);
    client.on('data', (chunk: Buffer) => {
      client.pause();
      upstream.write(chunk);
      setTimeout(() => client.resume(), (1000 * chunk.length) / bytesPerSecond);
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    sockets.forEach((s) => s.destroy());
    return new Promise<void>((resolve) => proxy.close(() => resolve()));
  });
  return `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
}

t.test('a large upload over a slow connection tells its progress as it goes, then what the server said of it', async (t) => {
  // 6 MB at 500 kB/s, past what the sockets' buffers take at once (a few MB); its last line is broken, so that the
  // server refuses it once it has it all, and no job starts.
  const lines = conversations(50_000);
  const file = Buffer.concat([lines, Buffer.from('{"messages": [\n')]);
  const { page, errors } = await open(t, await slowUplink(t, srv.url, 500_000));
  await page.click('#tune-toggle');
  await page.evaluate(`window.progressSaid = [];
    new MutationObserver(() => window.progressSaid.push(document.getElementById('tune-progress').textContent))
      .observe(document.getElementById('tune-progress'), { childList: true, characterData: true, subtree: true })`);
  await page.setInputFiles('#tune-file', { name: 'large.jsonl', mimeType: 'application/jsonl', buffer: file });
  await page.click('#tune-start');
  await page.waitForFunction('document.getElementById("tune-error").textContent !== ""', undefined, { timeout: 60_000 });
  t.match(await text(page, '#tune-error'), /^The file was refused: file: large\.jsonl:50001: not valid JSON/, 'the server\'s words, naming the line');
  const said = await page.evaluate('window.progressSaid') as string[];
  const size = `${(file.length / 1e6).toFixed(1)} MB`;
  const percents = said.map((line) => new RegExp(`^Uploading large\\.jsonl: (\\d+)% of ${size.replace('.', '\\.')}$`).exec(line)?.[1]).filter((p) => p !== undefined).map(Number);
  t.ok(percents.filter((p) => p > 0 && p < 100).length >= 2, `the upload's progress told as it went: ${percents.join(', ')}`);
  t.same(percents, [...percents].sort((a, b) => a - b), 'rising');
  const reading = said.indexOf('Reading large.jsonl...');
  t.ok(reading > said.indexOf('Uploading large.jsonl...') && said.slice(reading).every((line) => !line.startsWith('Uploading')), 'then the server\'s reading of it');
  t.equal(await text(page, '#tune-progress'), '', 'and nothing once it answered');
  t.same(errors, []);
});

t.test('the panel with the keyboard alone, at a phone\'s width and a desktop\'s', async (t) => {
  for (const [name, viewport] of Object.entries(VIEWPORTS)) {
    const { page, errors } = await open(t, srv.url, viewport);
    await page.waitForSelector('.job', { state: 'attached' });
    const order: string[] = [];
    await page.focus('#model');
    for (let i = 0; i < 3; i++) {
      order.push((await page.evaluate('document.activeElement.id')) as string);
      await page.keyboard.press('Tab');
    }
    t.same(order, ['model', 'tune-toggle', 'clear'], `${name}: Fine-tune after the model`);
    await page.focus('#tune-toggle');
    await page.keyboard.press('Enter');
    t.ok(await page.isVisible('#tune'), `${name}: Enter opens the panel`);
    t.equal(await page.evaluate('document.activeElement.id'), 'tune-title', `${name}: the focus on its title`);
    t.ok(await page.isHidden('#clear'), `${name}: no New chat to clear the conversation out of sight`);
    const fields: string[] = [];
    for (let i = 0; i < 5; i++) {
      await page.keyboard.press('Tab');
      fields.push((await page.evaluate('document.activeElement.id')) as string);
    }
    t.same(fields, ['tune-base', 'tune-file', 'tune-suffix', 'tune-epochs', 'tune-start'], `${name}: Tab goes through the form`);
    t.ok((await page.evaluate('document.documentElement.scrollWidth')) as number <= viewport.width, `${name}: nothing wider than the screen`);
    t.ok(await page.evaluate('(() => { const tune = document.getElementById("tune"); return tune.scrollWidth <= tune.clientWidth; })()'), `${name}: nothing wider than the panel`);
    for (const id of ['#tune-toggle', '#tune-base', '#tune-file', '#tune-suffix', '#tune-epochs', '#tune-start', '.job']) {
      const box = await page.locator(id).first().boundingBox();
      t.ok(box && box.x >= 0 && box.x + box.width <= viewport.width, `${name}: ${id} within the width`);
    }
    await page.keyboard.press('Escape');
    t.ok(await page.isHidden('#tune'), `${name}: Escape closes it`);
    t.ok(await page.isVisible('#chat'));
    t.equal(await page.evaluate('document.activeElement.id'), 'tune-toggle', `${name}: the focus back on Fine-tune`);
    t.ok(await page.isVisible('#clear'), `${name}: New chat back`);
    t.same(errors, []);
  }
});

t.test('a chat app\'s export from the page: the senders offered when it does not say which is you, then imported and trained on', async (t) => {
  const { page, errors, jobsBefore, filesBefore } = await openFineTune(t);
  const exported = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'exports', 'whatsapp', 'android-en-us', 'WhatsApp Chat with Mom.txt'));
  await page.setInputFiles('#tune-file', { name: 'WhatsApp Chat with Mom.txt', mimeType: 'text/plain', buffer: exported });
  t.ok(await page.isHidden('#tune-me-field'), 'no question before the server asks it');
  await page.click('#tune-start');
  await page.waitForSelector('#tune-me-field:not([hidden])');
  t.equal(await text(page, '#tune-error'), 'WhatsApp Chat with Mom.txt is a chat app\'s export: pick which of its senders is you, then start again.');
  t.same(await page.evaluate('[...document.querySelectorAll("#tune-me option")].map((o) => [o.value, o.textContent])'),
    [['', 'Pick yourself'], ['Mom', 'Mom (6 messages)'], ['Jane Doe', 'Jane Doe (4 messages)']], 'the senders, most messages first');
  t.equal(await page.evaluate('document.activeElement.id'), 'tune-me', 'the focus on the question');
  t.equal((await filesKept()).length, filesBefore.size, 'nothing kept yet');

  await page.click('#tune-start');
  t.equal(await text(page, '#tune-error'), 'Pick which of the senders is you.', 'not sent again without an answer');
  await page.selectOption('#tune-me', 'Jane Doe');
  await page.fill('#tune-epochs', '1');
  await page.click('#tune-start');
  await page.waitForFunction(`document.querySelectorAll(".job").length === ${jobsBefore + 1}`);
  t.equal(await text(page, '#tune-error'), '');
  t.ok(await page.isHidden('#tune-me-field'), 'the question gone with the file');
  t.equal(await text(page, '#tune-imported'), 'Imported 7 messages with Mom from WhatsApp Chat with Mom.txt, 2 of them yours.');
  const files = (await filesKept()).filter((f) => !filesBefore.has(f.id));
  t.same(files.map((f) => f.filename), ['WhatsApp Chat with Mom.train'], 'kept in the chat format');
  const content = await request(`${srv.url}/v1/files/${files[0].id}/content`, { headers: AUTH });
  t.match(content.text, /^1\|Mom\|Yes! I'll bring the cake <EOM>$/m, 'Jane\'s messages as the user\'s');
  const id = (await page.getAttribute('.job', 'data-job')) as string;
  const job = await api<Job & { training_file: string }>(`/v1/fine_tuning/jobs/${id}`);
  t.equal(job.training_file, files[0].id, 'the job trains on the imported file');
  await page.waitForSelector(`.job[data-job="${id}"]:is([data-status="succeeded"], [data-status="failed"])`, { timeout: 120_000 });
  t.equal((await api<Job>(`/v1/fine_tuning/jobs/${id}`)).status, 'succeeded', 'trained on it');
  t.same(errors, [], 'no script errors');
});

t.test('an upload cut off: the page says to check the server and try again, the file still chosen', async (t) => {
  const { page, errors } = await open(t, srv.url);
  await page.click('#tune-toggle');
  await page.route('**/v1/files', (route) => route.abort('connectionreset'));
  await page.setInputFiles('#tune-file', { name: 'chats.jsonl', mimeType: 'application/jsonl', buffer: conversations(3) });
  await page.click('#tune-start');
  await page.waitForSelector('#tune-error:not(:empty)');
  t.equal(await text(page, '#tune-error'), 'The server could not be reached (the upload was cut off): check that it is still running, then try again. The file is still chosen.');
  t.equal(await page.evaluate('document.getElementById("tune-file").files[0]?.name'), 'chats.jsonl', 'the file still chosen');
  t.same(errors, []);
});

t.test('an export in another encoding, its dates reading either way: the page offers the encoding the server asks for, then the order it guessed', async (t) => {
  const { page, errors, jobsBefore, filesBefore } = await openFineTune(t);
  // Day and month both 12 or less: either order reads; "café" in Windows-1252 is no UTF-8.
  const chat = '3/4/21, 10:14 - Mom: Hi Jane\n3/4/21, 10:15 - Jane Doe: Hi Mom, café?\n5/4/21, 09:00 - Mom: Yes, at noon\n';
  const folder = t.testdir();
  const latin = path.join(folder, 'WhatsApp Chat with Mom.txt');
  fs.writeFileSync(latin, Buffer.from(chat, 'latin1'));
  await page.setInputFiles('#tune-file', latin);
  t.ok(await page.isHidden('#tune-encoding-field') && await page.isHidden('#tune-date-order-field'), 'no question before the server asks it');

  await page.click('#tune-start');
  await page.waitForSelector('#tune-encoding-field:not([hidden])');
  t.match(await text(page, '#tune-error'), /^The file was refused: file: WhatsApp Chat with Mom\.txt:2: not UTF-8 text: .*\. Pick its text encoding below, then start again\.$/);
  t.equal(await page.evaluate('document.activeElement.id'), 'tune-encoding', 'the focus on the question');
  t.ok(await page.isHidden('#tune-date-order-field'), 'only what was asked');
  await page.click('#tune-start');
  t.equal(await text(page, '#tune-error'), 'Pick its text encoding.', 'not sent again without an answer');
  await page.selectOption('#tune-encoding', 'windows-1252');
  await page.click('#tune-start');
  await page.waitForSelector('#tune-me-field:not([hidden])');
  await page.selectOption('#tune-me', 'Jane Doe');
  await page.click('#tune-start');
  await page.waitForSelector('#tune-date-order-field:not([hidden])');
  t.equal(await text(page, '#tune-error'), 'WhatsApp Chat with Mom.txt: dates that read as well day first as month first (3/4/24: 3 April or March 4), read day first; if that is wrong, give the order with "date_order": "mdy". Pick how it writes its dates below, then start again.');
  t.equal(await page.evaluate('document.activeElement.id'), 'tune-date-order');
  t.equal((await filesKept()).length, filesBefore.size, 'the file of the guess let go');
  t.equal((await api<{ data: Job[] }>('/v1/fine_tuning/jobs')).data.length, jobsBefore, 'no job on a guess');

  await page.selectOption('#tune-date-order', 'mdy');
  await page.fill('#tune-epochs', '1');
  await page.click('#tune-start');
  await page.waitForFunction(`document.querySelectorAll(".job").length === ${jobsBefore + 1}`);
  t.equal(await text(page, '#tune-error'), '');
  t.ok(await page.isHidden('#tune-encoding-field') && await page.isHidden('#tune-date-order-field'), 'the questions gone with the file');
  const files = (await filesKept()).filter((f) => !filesBefore.has(f.id));
  t.same(files.map((f) => f.filename), ['WhatsApp Chat with Mom.train']);
  const reference = path.join(folder, 'reference.train');
  await importChats([latin], { out: reference, me: ['Jane Doe'], encoding: 'windows-1252', dateOrder: 'mdy' });
  const content = await request(`${srv.url}/v1/files/${files[0].id}/content`, { headers: AUTH });
  t.equal(content.text, fs.readFileSync(reference, 'utf8'), 'imported as bin/import-chat --me "Jane Doe" --encoding windows-1252 --date-order mdy imports it');
  const id = (await page.getAttribute('.job', 'data-job')) as string;
  await request(`${srv.url}/v1/fine_tuning/jobs/${id}/cancel`, { method: 'POST', headers: AUTH });
  t.same(errors, [], 'no script errors');
});

t.test('a guess whose file the server does not let go: the page says the file stays, by its id, and why', async (t) => {
  const { page, errors, jobsBefore } = await openFineTune(t);
  const folder = t.testdir();
  const chat = path.join(folder, 'WhatsApp Chat with Mom.txt');
  fs.writeFileSync(chat, '3/4/21, 10:14 - Mom: Hi Jane\n3/4/21, 10:15 - Jane Doe: Hi Mom\n5/4/21, 09:00 - Mom: Yes, at noon\n');
  await page.route('**/v1/files/*', (route) => (route.request().method() === 'DELETE'
    ? route.fulfill({ status: 500, contentType: 'application/json', body: JSON.stringify({ error: { message: 'EIO: i/o error, unlink', type: 'server_error' } }) })
    : route.continue()));
  await page.setInputFiles('#tune-file', chat);
  await page.click('#tune-start');
  await page.waitForSelector('#tune-me-field:not([hidden])');
  await page.selectOption('#tune-me', 'Jane Doe');
  await page.click('#tune-start');
  await page.waitForSelector('#tune-date-order-field:not([hidden])');
  const kept = (await filesKept()).find((f) => f.filename === 'WhatsApp Chat with Mom.train');
  t.ok(kept, 'the file is on the server still');
  t.match(await text(page, '#tune-error'), new RegExp(`Pick how it writes its dates below, then start again\\. The file of the guess could not be removed from the server, where it stays as ${kept?.id}: Something went wrong on the server \\(500\\): EIO: i/o error, unlink$`));
  t.equal((await api<{ data: Job[] }>('/v1/fine_tuning/jobs')).data.length, jobsBefore, 'no job on a guess');
  await request(`${srv.url}/v1/files/${kept?.id}`, { method: 'DELETE', headers: AUTH });
  t.same(errors, [], 'no script errors');
});
