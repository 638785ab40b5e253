// The chat page in headless Chromium (Debian's, driven by playwright-core), as a person uses it: pick a model
// and who it answers as, talk, watch each reply stream in, see when a reply was cut and what went wrong, with
// the keyboard alone, at a phone's width and a desktop's.
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import type { Browser, Page, Request } from 'playwright-core';
import { contrastsOnPage, launchBrowser, makeModels, sayOnPage, startServer, tempDir, VIEWPORTS, type Running } from './helpers';

const PROMPT = 'How big is the earth?';
const LENGTH = 40;
const KEY = 'a-key-of-sixteen-characters';
const greedy = { temperature: 0, penalize: 0, length: LENGTH };

let dir: string;
let srv: Running;
let browser: Browser;
let expected: Record<string, string>;

t.before(async () => {
  dir = tempDir('page');
  expected = await makeModels(dir, { alpha: 1, beta: 3 }, PROMPT, LENGTH);
  // A model trained on chat logs: its training record lists who its chats talk to, mom most.
  fs.cpSync(path.join(dir, 'alpha'), path.join(dir, 'chatty'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'chatty', 'state.json'), JSON.stringify({ audiences: [{ audience: 'mom', sent: 9, received: 8 }, { audience: 'dad', sent: 2, received: 3 }] }));
  srv = await startServer({
    models: [
      { key: 'general', restore_from: 'alpha', sampling: greedy },
      { key: 'other', restore_from: 'beta', sampling: greedy },
      { key: 'chatty', restore_from: 'chatty', sampling: { length: 12 } },
    ],
  }, dir);
  browser = await launchBrowser();
});
t.teardown(async () => {
  await browser?.close();
  await srv?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function open(t: Test, url: string, viewport: { width: number; height: number } = VIEWPORTS.desktop): Promise<{ page: Page; errors: string[]; bodies: Record<string, unknown>[] }> {
  const page = await browser.newPage({ viewport });
  t.teardown(() => page.close());
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  // What the page asks of /v1/chat/completions.
  const bodies: Record<string, unknown>[] = [];
  page.on('request', (r: Request) => {
    if (r.url().endsWith('/v1/chat/completions')) bodies.push(r.postDataJSON() as Record<string, unknown>);
  });
  await page.goto(`${url}/`);
  await page.waitForSelector('#model option', { state: 'attached' });
  return { page, errors, bodies };
}

t.test('the chat page streams a reply from the chosen model, and says it was cut at its length', async (t) => {
  const { page, errors } = await open(t, srv.url);
  t.same(await page.evaluate('[...document.querySelectorAll("#model option")].map((o) => o.value)'), ['general', 'other', 'chatty']);
  t.equal(await page.inputValue('#model'), 'general', 'the default model first');
  await page.selectOption('#model', 'other');
  t.ok(await page.isHidden('#audience-picker'), 'a model that continues text has nobody to pick');
  t.match(await page.textContent('#intro'), /other was not trained on chats: it continues the text you write/);

  // Record every text the reply bubble shows while it is generated.
  await page.evaluate(`
    window.seen = [];
    new MutationObserver(() => {
      const bot = document.querySelector('.msg.bot .bubble');
      if (bot && window.seen[window.seen.length - 1] !== bot.textContent) window.seen.push(bot.textContent);
    }).observe(document.getElementById('log'), { subtree: true, childList: true, characterData: true });
  `);
  const said = await sayOnPage(page, PROMPT);
  t.equal(await page.textContent('.msg.user'), PROMPT);
  t.equal(said.reply, expected.beta, "the chosen model's answer");
  t.equal(said.cut, 'Cut short: the reply reached its length limit.');
  const seen = (await page.evaluate('window.seen')) as string[];
  const partial = seen.filter((s) => s !== '' && s !== expected.beta);
  t.ok(partial.length >= 1, `the reply streamed in (${partial.length} partial texts shown before the whole)`);
  t.ok(partial.every((s) => expected.beta.startsWith(s)), 'each partial text is the start of the answer');
  t.match(await page.textContent('#status'), new RegExp(`${LENGTH} tokens in \\d+ ms`));
  t.same(errors, [], 'no script errors');
});

t.test('a chat model: who it answers as is picked from its audiences; the conversation goes with each message', async (t) => {
  const { page, errors, bodies } = await open(t, srv.url);
  await page.selectOption('#model', 'chatty');
  t.ok(await page.isVisible('#audience-picker'));
  t.same(await page.evaluate('[...document.querySelectorAll("#audience option")].map((o) => o.value)'), ['mom', 'dad'], 'its trained audiences');
  t.equal(await page.inputValue('#audience'), 'mom', 'the one its chats talk to most, by default');
  t.match(await page.textContent('#intro'), /Talk to mom[\s\S]*chatty answers as mom, the one its chats talk to most/);

  const first = await sayOnPage(page, 'Hi mom');
  t.ok(first.reply !== null && !/[|]|<EOM>|<\|endoftext\|>/.test(first.reply), `a sanitized reply: ${JSON.stringify(first.reply)}`);
  t.match(await page.textContent('.msg.bot .who'), /mom/, 'from mom');
  t.same(bodies[0].messages, [{ role: 'system', content: 'audience: mom' }, { role: 'user', content: 'Hi mom' }]);

  await page.selectOption('#audience', 'dad');
  t.equal(await page.evaluate('document.querySelectorAll("#log > li").length'), 0, 'another audience, a new conversation');
  t.match(await page.textContent('#intro-title'), 'Talk to dad');
  const hello = await sayOnPage(page, 'Hello dad');
  await sayOnPage(page, 'And how are you?');
  t.same(bodies[2].messages, [
    { role: 'system', content: 'audience: dad' },
    { role: 'user', content: 'Hello dad' },
    { role: 'assistant', content: hello.reply === 'dad sent nothing back.' ? '' : hello.reply },
    { role: 'user', content: 'And how are you?' },
  ], 'the history, as the page showed it');
  // A long chat, 200 messages of some 600 characters: whole, it would pass the server's body limit (64 KB).
  await page.evaluate(`history = Array.from({ length: 200 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: 'message ' + i + ' ' + 'word '.repeat(120) }))`);
  const long = await sayOnPage(page, 'Still there?');
  t.equal(long.notice, null, `answered, not refused: ${long.notice}`);
  const sent = bodies[3].messages as { role: string; content: string }[];
  t.ok(JSON.stringify(bodies[3]).length < 32 * 1024, 'the request holds the newest messages, well under the limit');
  t.match(sent.slice(-2), [{ role: 'assistant', content: /^message 199 / }, { role: 'user', content: 'Still there?' }], 'up to the new one');
  t.equal(sent[0].content, 'audience: dad');
  t.notOk(sent.some((m) => m.content.startsWith('message 0 ')), 'the oldest left out');
  await page.click('#clear');
  t.equal(await page.evaluate('document.querySelectorAll("#log > li").length'), 0, 'New chat forgets');
  t.same(errors, []);
});

t.test('errors in words: a busy model with its Retry-After, a model loading, a stream cut off, a model waiting on a training job', async (t) => {
  const { page, errors } = await open(t, srv.url);
  await page.route('**/v1/chat/completions', (route) => route.fulfill({
    status: 503,
    headers: { 'Retry-After': '7', 'Content-Type': 'application/json' },
    body: JSON.stringify({ error: { message: 'model "general" has 72 requests in hand; try again later', type: 'server_overloaded', param: null, code: null } }),
  }));
  const busy = await sayOnPage(page, 'Anyone there?');
  t.equal(busy.notice, 'The model is busy with other conversations. Try again in 7 seconds.');
  t.equal(await page.evaluate('document.querySelectorAll(".msg.bot").length'), 0, 'no empty reply left behind');
  await page.unroute('**/v1/chat/completions');
  await page.click('.notice button');
  await page.waitForSelector('.msg.bot:not(.pending)');
  t.equal(await page.textContent('.msg.bot .bubble'), (await makeReply()).text, 'Try again sends it again');
  t.equal(await page.evaluate('document.querySelectorAll(".msg.user").length'), 1, 'without writing it twice');

  // The list says the model is loading; the page says so, and looks again until it is ready.
  await page.route('**/models/list', async (route) => {
    const real = await (await route.fetch()).json() as { models: { state: string }[] };
    real.models[0].state = 'loading';
    await route.fulfill({ json: real });
  });
  await page.click('#clear');
  await page.evaluate('refreshModels()');
  await page.waitForFunction('document.getElementById("status").textContent === "Loading general..."');
  await page.unroute('**/models/list');
  await page.waitForFunction('document.getElementById("status").textContent === "general is ready."', null, { timeout: 30_000 });

  await page.route('**/v1/chat/completions', (route) => route.fulfill({ status: 200, headers: { 'Content-Type': 'text/event-stream' }, body: 'data: {"error": {"message": "the model failed"}}\n\n' }));
  t.equal((await sayOnPage(page, 'Hello?')).notice, 'The reply did not arrive: the model failed.');
  await page.unroute('**/v1/chat/completions');

  // The server's words for a model that waits on a fine-tuning job's memory (fine_tuning_memory.test.ts).
  await page.route('**/v1/chat/completions', (route) => route.fulfill({
    status: 503,
    headers: { 'Retry-After': '60', 'Content-Type': 'application/json' },
    body: JSON.stringify({ error: { message: 'model "general" (12 MB) does not fit in the memory budget of 40 MB (memory_budget_mb) beside the memory held by fine-tuning job ftjob-abc (31 MB) until it ends or is paused: the model can load after that', type: 'server_error', param: null, code: null } }),
  }));
  t.equal((await sayOnPage(page, 'Anyone there?')).notice, 'A fine-tuning job is training and holds the memory this model needs: it loads once the job ends or is paused. Try again in 60 seconds.');
  t.same(errors, []);

  async function makeReply(): Promise<{ text: string }> {
    const r = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'general', messages: [{ role: 'user', content: 'Anyone there?' }] }) });
    return { text: ((await r.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content };
  }
});

// The page of a server that asks for an API key, as it waits for one.
async function openKeyed(t: Test, viewport: { width: number; height: number }): Promise<Page> {
  const keyed = await startServer({ api_keys: [KEY], models: [{ key: 'general', restore_from: 'alpha', sampling: greedy }] }, dir);
  t.teardown(keyed.close);
  const page = await browser.newPage({ viewport });
  t.teardown(() => page.close());
  await page.goto(`${keyed.url}/`);
  await page.waitForSelector('#key-panel:not([hidden])');
  return page;
}

t.test('a server with API keys: the page asks for one, in words, and then works', async (t) => {
  const page = await openKeyed(t, VIEWPORTS.phone);
  t.match(await page.textContent('#intro'), /An API key is needed[\s\S]*This server needs an API key: enter it above/);
  t.equal(await page.evaluate('document.activeElement.id'), 'apikey', 'the key field has the focus');
  await page.keyboard.type(KEY);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#model option[value="general"]', { state: 'attached' });
  t.ok(await page.isHidden('#key-panel'));
  t.equal((await sayOnPage(page, PROMPT)).reply, expected.alpha);
});

t.test('the keyboard alone, at a phone\'s width and a desktop\'s', async (t) => {
  for (const [name, viewport] of Object.entries(VIEWPORTS)) {
    const { page } = await open(t, srv.url, viewport);
    t.equal(await page.evaluate('document.activeElement.id'), 'text', `${name}: the message box has the focus`);
    t.ok((await page.evaluate('document.documentElement.scrollWidth')) as number <= viewport.width, `${name}: nothing wider than the screen`);
    for (const id of ['#text', '#send', '#model', '#clear']) {
      const box = await page.locator(id).boundingBox();
      t.ok(box && box.x >= 0 && box.x + box.width <= viewport.width && box.y + box.height <= viewport.height, `${name}: ${id} on screen`);
    }
    // Tab goes through the controls in order.
    const order: string[] = [];
    await page.focus('#model');
    for (let i = 0; i < 4; i++) {
      order.push((await page.evaluate('document.activeElement.id')) as string);
      await page.keyboard.press('Tab');
    }
    t.same(order, ['model', 'clear', 'text', 'send'], `${name}: Tab order`);
    await page.focus('#text');
    await page.keyboard.type('two');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('lines');
    t.equal(await page.inputValue('#text'), 'two\nlines', 'Shift+Enter: a new line, nothing sent');
    await page.keyboard.press('Enter');
    await page.waitForSelector('.msg.bot:not(.pending)');
    t.equal(await page.textContent('.msg.user'), 'two\nlines', 'Enter sends');
    t.equal(await page.inputValue('#text'), '', 'and empties the box');
  }
});

t.test('a model that fails to load: picking it and writing to it say why, and what to do', async (t) => {
  fs.cpSync(path.join(dir, 'alpha'), path.join(dir, 'broken'), { recursive: true });
  const failing = await startServer({ models: [{ key: 'general', restore_from: 'alpha', sampling: greedy }, { key: 'broken', restore_from: 'broken' }] }, dir);
  t.teardown(failing.close);
  // Whole when the server checks its config, cut short before it loads.
  fs.truncateSync(path.join(dir, 'broken', 'model.safetensors'), 4096);
  const { page, errors } = await open(t, failing.url);
  await page.selectOption('#model', 'broken');
  await page.waitForSelector('#status.error');
  t.match(await page.textContent('#status'), /^broken could not be loaded \(model\.safetensors: .+\): the server's log says more\. Pick another model, or send a message to try it again\.$/);
  const said = await sayOnPage(page, 'Hello?');
  t.match(said.notice, /^The model could not be loaded \(model\.safetensors: .+\): the server's log says more\. Pick another model, or try this one again in \d+ seconds?\.$/, 'not "still loading"');
  t.same(errors, []);
});

t.test('a connection lost before the reply was whole: said in words, the message kept to send again', async (t) => {
  const { page, errors } = await open(t, srv.url);
  // A stream that stops after its first words, without the [DONE] that ends a whole one.
  await page.route('**/v1/chat/completions', (route) => route.fulfill({ status: 200, headers: { 'Content-Type': 'text/event-stream' }, body: 'data: {"choices": [{"index": 0, "delta": {"content": "Half a rep"}, "finish_reason": null}]}\n\n' }));
  const cut = await sayOnPage(page, 'Are you there?');
  t.equal(cut.notice, 'The connection to the server was lost before the reply came: check that the server is still running, then try again.');
  t.equal(cut.reply, null, 'no half reply shown as if whole');
  await page.route('**/v1/chat/completions', (route) => route.abort('connectionreset'));
  t.equal((await sayOnPage(page, 'Hello?')).notice, 'The connection to the server was lost before the reply came: check that the server is still running, then try again.');
  await page.unroute('**/v1/chat/completions');
  await page.click('.notice:last-child button');
  await page.waitForSelector('.msg.bot:not(.pending)');
  t.equal(await page.evaluate('[...document.querySelectorAll(".msg.user")].at(-1).textContent'), 'Hello?', 'Try again sends it once the server is back');
  t.same(errors, []);
});

t.test('a message refused is never lost: sent again with Try again when waiting helps, back in the box when it must change', async (t) => {
  const { page, errors } = await open(t, srv.url);
  const refuse = (status: number, message: string, headers: Record<string, string> = {}) => page.route('**/v1/chat/completions', (route) => route.fulfill({
    status, headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify({ error: { message, type: 'invalid_request_error', param: null, code: null } }),
  }));
  await refuse(429, 'rate limit reached', { 'Retry-After': '3' });
  t.equal((await sayOnPage(page, 'Too fast?')).notice, 'Too many messages at once. Try again in 3 seconds.');
  t.ok(await page.isVisible('.notice:last-child button'), '429: Try again');
  await refuse(500, 'the disk is full');
  t.equal((await sayOnPage(page, 'Broken?')).notice, "Something went wrong on the server (500: the disk is full). Try again; if it happens again, the server's log says more.");
  t.ok(await page.isVisible('.notice:last-child button'), '500: Try again');
  await refuse(401, 'a valid API key is needed');
  t.equal((await sayOnPage(page, 'Locked?')).notice, 'This server needs an API key: enter it above, then send again.');
  t.ok(await page.isVisible('#key-panel'), 'the key asked for');
  t.ok(await page.isVisible('.notice:last-child button'), '401: Try again once the key is given');
  await page.unroute('**/v1/chat/completions');
  await page.click('.notice:last-child button');
  await page.waitForSelector('.msg.bot:not(.pending)');
  t.equal(await page.evaluate('[...document.querySelectorAll(".msg.user")].at(-1).textContent'), 'Locked?', 'sent again');

  await refuse(413, 'the body is larger than the limit of 65536 bytes');
  t.equal((await sayOnPage(page, 'A long story')).notice, 'The message is too long for this server: shorten it, then send it again.');
  t.equal(await page.inputValue('#text'), 'A long story', 'back in the box, to be shortened');
  await refuse(400, 'messages: too many');
  await page.fill('#text', '');
  t.equal((await sayOnPage(page, 'Odd one')).notice, 'The server refused the message: messages: too many');
  t.equal(await page.inputValue('#text'), 'Odd one', 'back in the box');
  t.same(errors, []);
});

t.test('a reply can be stopped, by its button or Escape, keeping its words; a new conversation stops the one being written', async (t) => {
  const { page, errors } = await open(t, srv.url);
  await page.selectOption('#model', 'chatty');
  // Replies that begin and then wait, as a long one does, until the page ends them; what the page asks is kept.
  await page.evaluate(`
    window.asked = [];
    const fetched = window.fetch;
    window.fetch = (input, init) => {
      if (input !== 'v1/chat/completions') return fetched(input, init);
      window.asked.push(JSON.parse(init.body));
      const body = new ReadableStream({ start(controller) {
        controller.enqueue(new TextEncoder().encode('data: {"choices": [{"index": 0, "delta": {"content": "Once upon a time"}, "finish_reason": null}]}\\n\\n'));
        init.signal.addEventListener('abort', () => controller.error(new DOMException('The user aborted a request.', 'AbortError')));
      } });
      return Promise.resolve(new Response(body, { headers: { 'Content-Type': 'text/event-stream' } }));
    };
  `);
  const begun = async (text: string) => {
    await page.fill('#text', text);
    await page.press('#text', 'Enter');
    await page.waitForFunction('[...document.querySelectorAll(".msg.bot .bubble")].at(-1)?.textContent === "Once upon a time"');
  };
  await begun('Tell me a story');
  t.ok(await page.isVisible('#stop'), 'Stop shown while the reply is written');
  t.ok(await page.isHidden('#send'), 'in the place of Send');
  await page.click('#stop');
  await page.waitForSelector('.msg.bot:not(.pending)');
  t.equal(await page.textContent('.msg.bot .bubble'), 'Once upon a time', 'the words so far kept');
  t.equal(await page.textContent('.msg.bot .meta'), 'Stopped: you ended the reply here.');
  t.ok(await page.isVisible('#send'), 'Send back');
  t.equal(await page.evaluate('document.activeElement.id'), 'text', 'the focus in the box, to write on');

  await begun('Another?');
  await page.press('#text', 'Escape');
  await page.waitForFunction('document.querySelectorAll(".msg.bot:not(.pending)").length === 2');
  t.same((await page.evaluate('window.asked[1].messages')), [
    { role: 'system', content: 'audience: mom' },
    { role: 'user', content: 'Tell me a story' },
    { role: 'assistant', content: 'Once upon a time' },
    { role: 'user', content: 'Another?' },
  ], 'a stopped reply is part of the conversation');

  await begun('Hi mom');
  await page.selectOption('#audience', 'dad');
  t.equal(await page.evaluate('document.querySelectorAll("#log > li").length'), 0, 'a new conversation');
  await page.waitForSelector('#send', { state: 'visible' });  // the reply to the old one stopped
  await begun('Hi dad');
  t.same(await page.evaluate('window.asked.at(-1).messages'), [{ role: 'system', content: 'audience: dad' }, { role: 'user', content: 'Hi dad' }], 'nothing of the old conversation in the new');
  t.same(errors, []);
});

t.test('the conversation is kept through a reload, with its model and audience, until New chat', async (t) => {
  const { page, errors, bodies } = await open(t, srv.url);
  await page.selectOption('#model', 'chatty');
  await page.selectOption('#audience', 'dad');
  const first = await sayOnPage(page, 'Hello dad 👋 ça va?');
  await sayOnPage(page, 'And the garden?');
  const before = await page.evaluate('[...document.querySelectorAll("#log > li")].map((li) => li.textContent)');
  await page.reload();
  await page.waitForSelector('#log > li');
  t.equal(await page.inputValue('#model'), 'chatty', 'the model it was with');
  t.equal(await page.inputValue('#audience'), 'dad', 'who it was with');
  t.same(await page.evaluate('[...document.querySelectorAll("#log > li")].map((li) => li.textContent)'), before, 'every message, as shown');
  t.ok(await page.isHidden('#intro'));
  await sayOnPage(page, 'Still there?');
  t.same((bodies.at(-1) as { messages: unknown[] }).messages.slice(0, 3), [
    { role: 'system', content: 'audience: dad' },
    { role: 'user', content: 'Hello dad 👋 ça va?' },
    { role: 'assistant', content: first.reply === 'dad sent nothing back.' ? '' : first.reply },
  ], 'and the conversation goes on where it was');
  await page.click('#clear');
  await page.reload();
  await page.waitForSelector('#intro:not([hidden])');
  await page.waitForFunction('document.getElementById("intro-title").textContent === "Talk to dad"');
  t.equal(await page.evaluate('document.querySelectorAll("#log > li").length'), 0, 'New chat forgets it');
  t.same(errors, []);
});

t.test('a wrong API key: the page says the server did not accept it, and takes the right one', async (t) => {
  const page = await openKeyed(t, VIEWPORTS.desktop);
  await page.keyboard.type('a-key-with-a-typo-in-it');
  await page.keyboard.press('Enter');
  await page.waitForFunction('document.getElementById("intro-title").textContent === "That API key was not accepted"');
  t.equal(await page.textContent('#intro-detail'), 'The server did not accept this API key: check it and enter it above again.');
  t.ok(await page.isVisible('#key-panel'), 'asked again');
  t.equal(await page.evaluate('document.activeElement.id'), 'apikey', 'the key field has the focus');
  t.same(await page.evaluate('[document.activeElement.selectionStart, document.activeElement.selectionEnd]'), [0, 'a-key-with-a-typo-in-it'.length], 'the wrong key selected, to be written over');
  await page.keyboard.type(KEY);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#model option[value="general"]', { state: 'attached' });
  t.equal((await sayOnPage(page, PROMPT)).reply, expected.alpha);
});

t.test('every text is readable, in light and dark mode: a contrast of 4.5 at least, 3 for the focus ring', async (t) => {
  for (const colorScheme of ['light', 'dark'] as const) {
    const { page, errors } = await open(t, srv.url);
    await page.emulateMedia({ colorScheme });
    await sayOnPage(page, PROMPT);
    await page.route('**/v1/chat/completions', (route) => route.fulfill({ status: 503, headers: { 'Content-Type': 'application/json' }, body: '{"error": {"message": "the server is shutting down"}}' }));
    await sayOnPage(page, 'And now?');
    await page.focus('#clear');
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Tab');  // a focus the keyboard gave, which shows the ring
    const shown = ['.msg.user .bubble', '.msg.bot .bubble', '.who', '.avatar', '.meta', '.notice', '#status', '#clear', '#model', '#text', '.picker > span', '#clear:focus-visible'];
    const contrasts = await contrastsOnPage(page, shown);
    t.same(Object.keys(contrasts), shown, `${colorScheme}: each one shown`);
    for (const [what, ratio] of Object.entries(contrasts)) t.ok(ratio >= (what.endsWith(':focus-visible') ? 3 : 4.5), `${colorScheme}: ${what}: ${ratio}`);
    t.same(errors, []);
  }
});

t.test('the page loads without a failed request in the console: its icon is its own', async (t) => {
  const page = await browser.newPage({ viewport: VIEWPORTS.desktop });
  t.teardown(() => page.close());
  const failed: string[] = [];
  page.on('console', (message) => {
    // The fine-tuning panel asks whether fine-tuning is on, and a 404 says it is off (tune.js).
    if (message.type() === 'error' && !message.location().url.includes('/v1/fine_tuning/jobs')) failed.push(`${message.text()} (${message.location().url})`);
  });
  await page.goto(`${srv.url}/`);
  await page.waitForFunction('document.getElementById("status").textContent === "general is ready."');
  await sayOnPage(page, PROMPT);
  t.same(failed, [], 'no console errors');
});

t.test('a long reply streaming in leaves the user where they scrolled up to, and is followed while they are at the end', async (t) => {
  const { page, errors } = await open(t, srv.url, VIEWPORTS.phone);
  // A reply whose lines come when the test sends them.
  await page.evaluate(`
    const fetched = window.fetch;
    window.fetch = (input, init) => {
      if (input !== 'v1/chat/completions') return fetched(input, init);
      const body = new ReadableStream({ start(controller) {
        window.moreLines = (n) => {
          for (let i = 0; i < n; i++) controller.enqueue(new TextEncoder().encode('data: {"choices": [{"index": 0, "delta": {"content": "Another line of a long story.\\\\n"}, "finish_reason": null}]}\\n\\n'));
        };
        window.endReply = () => {
          controller.enqueue(new TextEncoder().encode('data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\\n\\ndata: [DONE]\\n\\n'));
          controller.close();
        };
      } });
      return Promise.resolve(new Response(body, { headers: { 'Content-Type': 'text/event-stream' } }));
    };
  `);
  const lines = async (): Promise<number> => (await page.evaluate('(document.querySelector(".msg.bot .bubble").textContent.match(/\\n/g) ?? []).length')) as number;
  const grown = async (n: number) => {
    const before = await lines();
    await page.evaluate(`window.moreLines(${n})`);
    await page.waitForFunction(`(document.querySelector(".msg.bot .bubble").textContent.match(/\\n/g) ?? []).length === ${before + n}`);
  };
  const gapBelow = 'document.getElementById("chat").scrollHeight - document.getElementById("chat").scrollTop - document.getElementById("chat").clientHeight';
  await page.fill('#text', 'Tell me a long story');
  await page.press('#text', 'Enter');
  await page.waitForFunction('typeof window.moreLines === "function"');
  await grown(60);
  t.ok((await page.evaluate(gapBelow)) as number < 2, 'followed to its end while the user is there');
  await page.evaluate('document.getElementById("chat").scrollTop = 0');
  await grown(10);
  t.equal(await page.evaluate('document.getElementById("chat").scrollTop'), 0, 'left where the user scrolled up to');
  await page.evaluate('window.endReply()');
  await page.waitForSelector('.msg.bot:not(.pending)');
  t.equal(await page.evaluate('document.getElementById("chat").scrollTop'), 0, 'and when it ends');
  t.same(errors, []);
});

t.test('a server that cannot be reached: the page says so and what to do, and comes back with it', async (t) => {
  const page = await browser.newPage({ viewport: VIEWPORTS.desktop });
  t.teardown(() => page.close());
  await page.route('**/models/list', (route) => route.abort('connectionrefused'));
  await page.goto(`${srv.url}/`);
  const words = 'The server cannot be reached: check that it is still running. The page tries again every few seconds.';
  await page.waitForFunction(`document.getElementById("status").textContent === ${JSON.stringify(words)}`);
  t.equal(await page.textContent('#intro-title'), 'The server cannot be reached', 'not "Loading the models..." for ever');
  t.equal(await page.textContent('#intro-detail'), words);
  await page.unroute('**/models/list');
  await page.waitForFunction('document.getElementById("status").textContent === "general is ready."');
  t.equal(await page.textContent('#intro-title'), 'Write to general');
  t.notOk(await page.evaluate('document.getElementById("status").classList.contains("error")'));
});
