// Every command of README.md's quick start, run as written in a folder of a new user's own, in order, with what
// the README says each prints, then those of its LoRA section over the model trained: so the README cannot drift
// from what works. The training is the README's whole run (about a minute and a half on two idle cores); bin/chat
// gets a message on its standard input, bin/serve one conversation on the chat page (on a free port rather than
// 12345, which the machine may have in use).
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Template } from '@huggingface/jinja';
import { openGguf } from '../../lib/formats/gguf';
import { launchBrowser, request, sayOnPage, VIEWPORTS } from '../server/helpers';
import { readmeCommands, readmeSection, run, sandbox, serve, type Step } from './helpers';

const MARKUP = /[|]|EOM|endoftext/;

t.setTimeout(25 * 60_000);

t.test("README.md's quick start, every command as written", async (t) => {
  const steps = readmeCommands();
  t.same(steps.map((s) => s.argv[0]), ['bin/train', 'bin/train', 'bin/chat', 'bin/serve', 'bin/export-gguf'], 'check, train, chat, serve, export');
  const dir = sandbox('readme');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const shownLines = (step: Step): string[] => (step.shown ?? '').split('\n').filter((l) => l !== '...');

  for (const step of steps) {
    const command = step.argv.join(' ');
    const started = Date.now();
    if (step.argv[0] === 'bin/serve') {
      const server = await serve(dir, step.argv);
      // Stopped whatever fails before the end, so that a failure ends the test rather than leaving it waiting.
      t.teardown(() => server.stop());
      for (const line of shownLines(step)) {
        const { time: _time, ...shown } = JSON.parse(line) as Record<string, unknown>;
        const { port: _port, pid: _pid, ...expected } = shown;
        t.ok(server.logs.some((l) => Object.entries(expected).every(([k, v]) => JSON.stringify(l[k]) === JSON.stringify(v))), `${command} logs ${shown.msg as string} as shown`);
      }
      const browser = await launchBrowser();
      t.teardown(() => browser.close());
      const page = await browser.newPage({ viewport: VIEWPORTS.desktop });
      await page.goto(`${server.url}/`);
      await page.waitForSelector('#model option', { state: 'attached' });
      const said = await sayOnPage(page, 'How was your day?');
      t.ok(said.reply !== null && said.reply.length > 0 && !MARKUP.test(said.reply), `the page: a sanitized reply from mom: ${JSON.stringify(said.reply)}`);
      await browser.close();
      t.equal(await server.stop(), 0, `${command} stops on SIGTERM`);
    } else if (step.argv[0] === 'bin/export-gguf') {
      const ran = await run(dir, step.argv, '');
      t.equal(ran.status, 0, `${command}: ${ran.stderr}`);
      for (const line of shownLines(step)) t.ok(ran.stderr.split('\n').includes(line), `${command} says ${JSON.stringify(line)}`);
      const gguf = openGguf(path.join(dir, 'mom.gguf'));
      const template = gguf.string('tokenizer.chat_template');
      gguf.close();
      t.equal(new Template(template).render({ messages: [{ role: 'user', content: 'How was your day?' }], add_generation_prompt: true }), '1|mom|How was your day? <EOM>\n0|mom|', 'the file\'s chat template prompts as dixie does');
      t.match(fs.readFileSync(path.join(dir, 'mom.Modelfile'), 'utf8'), /^FROM \.\/mom\.gguf$/m, 'and the Modelfile beside it names it');
    } else {
      const ran = await run(dir, step.argv, step.argv[0] === 'bin/chat' ? 'How was your day?\n/quit\n' : '');
      t.equal(ran.status, 0, `${command}: ${ran.stderr}`);
      if (step.argv.includes('--check')) t.equal(ran.stdout, `${step.shown}\n`, `${command} prints what the README shows`);
      else if (step.argv[0] === 'bin/train') {
        t.match(ran.stdout, `\n${shownLines(step).pop()}\n`, `${command} ends as the README shows`);
        // "down to 1.1 or 1.2, whatever the seed": this run's is random, and named should it fail. (Without
        // --grad_clip, 12 seeds ended at 1.11 to 1.21 and one in CI at 1.35; at a learning rate of 0.003, six at 1.16
        // to 1.53, and at 1.17 to 1.20 with it: bench/NOTES.md.)
        const last = [...ran.stdout.matchAll(/validation loss (\d+\.\d+)/g)].pop();
        const seed = /seed (\d+)/.exec(ran.stdout)?.[1];
        t.ok(last !== undefined && Number(last[1]) < 1.35, `the last validation loss, ${last?.[1]} (seed ${seed}), is as the README says`);
      } else {
        t.match(ran.stdout, shownLines(step)[0], `${command} starts as the README shows`);
        const reply = ran.stdout.split('mom> ')[1]?.split('\n')[0] ?? '';
        t.ok(reply.length > 0 && !MARKUP.test(reply), `a sanitized reply: ${JSON.stringify(reply)}`);
      }
    }
    t.comment(`${step.argv.slice(0, 2).join(' ')} ...: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }

  // Then the LoRA section over the model just trained, in the same folder: its server_config.json, the two adapters
  // trained as written, the server, and its curl's request to each adapter.
  const lora = readmeSection('## Many chatbots over one base');
  const json = lora.indexOf('```json');
  fs.writeFileSync(path.join(dir, 'server_config.json'), lora.slice(json + 1, lora.indexOf('```', json + 1)).join('\n'));
  const loraSteps = readmeCommands(lora);
  t.same(loraSteps.map((s) => s.argv[0]), ['bin/train', 'bin/train', 'bin/serve', 'curl'], 'train, train, serve, ask');
  for (const step of loraSteps.slice(0, 2)) {
    const started = Date.now();
    const ran = await run(dir, step.argv);
    t.equal(ran.status, 0, `${step.argv.join(' ')}: ${ran.stderr}`);
    t.match(ran.stdout, /LoRA: rank 8, alpha 16, dropout 0, on attn\.c_attn, attn\.c_proj, mlp\.c_fc, mlp\.c_proj of .*; the base stays frozen/);
    t.comment(`bin/train --lora_rank ...: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  const server = await serve(dir, loraSteps[2].argv);
  t.teardown(() => server.stop());
  const curl = loraSteps[3].argv;
  const body = JSON.parse(curl[curl.indexOf('-d') + 1]) as Record<string, unknown>;
  for (const key of ['family', 'friends']) {
    const r = await request(`${server.url}/invocations`, { body: { ...body, model_key: key } });
    t.ok(r.status === 200 && r.text.length > 0 && !MARKUP.test(r.text), `${key} answers, sanitized: ${JSON.stringify(r.text)}`);
  }
  const models = (await request(`${server.url}/models/list`)).json().models as Record<string, unknown>[];
  t.same(models.map((m) => [m.model_key, m.base, m.loaded]), [['base', null, true], ['family', 'base', true], ['friends', 'base', true]], 'one base, two adapters over it');
  t.equal(await server.stop(), 0, 'bin/serve --config server_config.json stops on SIGTERM');
});
