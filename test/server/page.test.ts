// The chat page in headless Chromium (Debian's, driven by playwright-core): type a message, watch the reply
// stream in, and get the model's answer.
import fs from 'node:fs';
import t from 'tap';
import { chromium, type Browser } from 'playwright-core';
import { makeModels, startServer, tempDir } from './helpers';

const CHROMIUM = '/usr/bin/chromium';
const PROMPT = 'How big is the earth?';
const LENGTH = 40;

t.test('the chat page streams a reply from the chosen model', async (t) => {
  const dir = tempDir('page');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const expected = await makeModels(dir, { alpha: 1, beta: 3 }, PROMPT, LENGTH);
  const greedy = { temperature: 0, penalize: 0, length: LENGTH };
  const srv = await startServer({ models: [{ key: 'general', restore_from: 'alpha', sampling: greedy }, { key: 'other', restore_from: 'beta', sampling: greedy }] }, dir);
  t.teardown(srv.close);

  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(`${srv.url}/`);
  await page.waitForSelector('#model option[value="other"]', { state: 'attached' });
  t.same(await page.evaluate('[...document.querySelectorAll("#model option")].map((o) => o.value)'), ['general', 'other']);
  await page.selectOption('#model', 'other');

  // Record every text the reply bubble shows while it is generated.
  // (Scripts for the page are strings: this package compiles without the DOM's types.)
  await page.evaluate(`
    window.seen = [];
    new MutationObserver(() => {
      const bot = document.querySelector('.msg.bot');
      if (bot && window.seen[window.seen.length - 1] !== bot.textContent) window.seen.push(bot.textContent);
    }).observe(document.getElementById('log'), { subtree: true, childList: true, characterData: true });
  `);
  await page.fill('#text', PROMPT);
  await page.press('#text', 'Enter');
  await page.waitForSelector('.msg.user');
  t.equal(await page.textContent('.msg.user'), PROMPT);
  await page.waitForSelector('.msg.bot:not(.pending)');
  t.equal(await page.textContent('.msg.bot'), expected.beta, "the chosen model's answer");
  const seen = (await page.evaluate('window.seen')) as string[];
  const partial = seen.filter((s) => s !== '' && s !== expected.beta);
  t.ok(partial.length >= 1, `the reply streamed in (${partial.length} partial texts shown before the whole)`);
  t.ok(partial.every((s) => expected.beta.startsWith(s)), 'each partial text is the start of the answer');
  t.match(await page.textContent('#status'), new RegExp(`${LENGTH} tokens in \\d+ ms`));
  t.same(errors, [], 'no script errors');
});
