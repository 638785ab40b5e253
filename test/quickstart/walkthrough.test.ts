// The first hour of a new user, end to end: README.md's quick start with its own commands and flags, but a model
// trained for a few steps (the README's full run is test/quickstart/readme.test.ts): the data checked, a model
// trained, then served with `bin/serve --model <its checkpoint>` and talked to on the chat page in headless
// Chromium, where its replies show no chat markup. Then what a user does next: run the training again, serve
// with no arguments, prime the model with a bare POST.
import fs from 'node:fs';
import t from 'tap';
import { launchBrowser, sayOnPage, VIEWPORTS } from '../server/helpers';
import { readmeCommands, run, sandbox, serve } from './helpers';

const STEPS = 30;
// The flags that set how long the README's training runs, made to fit STEPS; every other flag as written.
const SHORTER: Readonly<Record<string, number>> = { stop_after: STEPS, save_every: STEPS, sample_every: STEPS, val_every: STEPS, learning_rate_period: STEPS, learning_rate_warmup: 5, sample_length: 20 };
// Chat markup, or what is left of it once its symbols are gone.
const MARKUP = /[|]|EOM|endoftext/;

t.setTimeout(15 * 60_000);

function shorter(argv: readonly string[]): string[] {
  return argv.map((word, i) => {
    const flag = argv[i - 1]?.replace(/^--/, '');
    return flag !== undefined && argv[i - 1].startsWith('--') && SHORTER[flag] !== undefined ? String(SHORTER[flag]) : word;
  });
}

t.test('the quick start, with a model trained for a few steps, then served and talked to on the page', async (t) => {
  const steps = readmeCommands();
  const find = (what: string, test: (argv: string[]) => boolean): string[] => {
    const step = steps.find((s) => test(s.argv));
    if (!step) throw new Error(`README.md's quick start has no ${what}`);
    return step.argv;
  };
  const check = find('bin/train --check', (a) => a[0] === 'bin/train' && a.includes('--check'));
  const training = find('training command', (a) => a[0] === 'bin/train' && !a.includes('--check'));
  const trained = (a: string[]) => a.map((w) => w.replace(/checkpoint\/chat\/model-\d+$/, `checkpoint/chat/model-${STEPS}`));
  const chat = trained(find('bin/chat', (a) => a[0] === 'bin/chat'));
  const serving = trained(find('bin/serve', (a) => a[0] === 'bin/serve'));
  t.ok(serving.includes(`checkpoint/chat/model-${STEPS}`), `serves the checkpoint trained: ${serving.join(' ')}`);
  const dir = sandbox('walkthrough');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

  const checked = await run(dir, check);
  t.equal(checked.status, 0, checked.stderr);
  t.match(checked.stdout, /chat check: 3 files, [\d,]+ messages .* 0 malformed lines\n {2}per audience: mom /);

  const started = Date.now();
  const train = await run(dir, shorter(training));
  t.equal(train.status, 0, train.stderr);
  t.match(train.stdout, new RegExp(`stopped at step ${STEPS}; checkpoint checkpoint/chat/model-${STEPS}\\n$`));
  t.comment(`trained ${STEPS} steps in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  t.notMatch(train.stdout, /overfits/, 'no warning meant for fine-tuning GPT-2, for a fresh model');
  t.notMatch(train.stderr, /driver/, 'no driver error on a machine without a GPU');
  t.ok((train.stdout.match(/no GPU found/g) ?? []).length <= 1, 'a missing GPU said at most once');
  t.match(train.stdout, /^(no GPU found, running on the CPU\n)?fresh model: 4 layers/);

  const again = await run(dir, shorter(training));
  t.equal(again.status, 0, again.stderr);
  t.match(again.stdout, /--fresh_model \(--n_layer, --n_head, --n_embd, --n_ctx with it\) starts a new run; checkpoint\/chat has one, resumed instead with its own vocabulary and shape/, 'a second run says it resumes');
  t.match(again.stdout, new RegExp(`nothing to train: the run is at step ${STEPS} already, and --stop_after is ${STEPS}`), 'and why it trains nothing');

  const talked = await run(dir, chat, 'How was your day?\n/quit\n');
  t.equal(talked.status, 0, talked.stderr);
  t.match(talked.stdout, /Talking to mom\./);
  const reply = talked.stdout.split('mom> ')[1]?.split('\n')[0] ?? '';
  t.notMatch(reply, MARKUP, `bin/chat's reply is sanitized: ${JSON.stringify(reply)}`);

  const server = await serve(dir, serving);
  const served = server.logs.find((l) => l.msg === 'serving model');
  t.match(served, { model: 'chatbot', promptFormat: 'chat', sanitizer: 'sanitizers.chatbot', audience: 'mom', why: /^trained on chat logs/ }, 'served as a chatbot, and the log says why');
  const browser = await launchBrowser();
  t.teardown(() => browser.close());
  for (const [name, viewport] of Object.entries(VIEWPORTS)) {
    const page = await browser.newPage({ viewport });
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`${server.url}/`);
    await page.waitForSelector('#model option', { state: 'attached' });
    t.equal(await page.textContent('#intro-title'), 'Talk to mom', `${name}: the page says who answers`);
    const said = await sayOnPage(page, 'How was your day?');
    t.equal(said.notice, null, `${name}: no error`);
    t.ok(said.reply !== null && !MARKUP.test(said.reply), `${name}: a reply without chat markup: ${JSON.stringify(said.reply)}`);
    t.same(errors, [], `${name}: no script errors`);
    await page.close();
  }
  const primed = await fetch(`${server.url}/prime`, { method: 'POST' });
  t.equal(primed.status, 202, 'POST /prime with no body');
  t.same(await primed.json(), { model_key: 'chatbot', state: 'loaded' }, 'primes the default model');
  t.equal(await server.stop(), 0, 'bin/serve stops cleanly');

  // With no arguments, bin/serve finds the run in checkpoint/, and a request that names no model goes to it.
  const found = await serve(dir, ['bin/serve']);
  const asked = await fetch(`${found.url}/invocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ raw_text: 'How was your day?\n', format: 'json' }) });
  t.equal(asked.status, 200, 'the only model is the default');
  const answer = (await asked.json()) as { model_key: string; text: string };
  t.equal(answer.model_key, 'chat', 'named after its run');
  t.notMatch(answer.text, MARKUP, 'and served as a chatbot');
  t.equal(await found.stop(), 0);
});
