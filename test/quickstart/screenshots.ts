// The screenshots of the chat page that README.md shows: a conversation with the quick start's model, at a
// phone's width and a desktop's. Run it after the quick start, from the folder it was run in:
//   node dist/test/quickstart/screenshots.js checkpoint/chat/model-800 examples/chat
// It serves the model as the README does (bin/serve --model ...), talks to it on the page in headless
// Chromium, and writes chat-page-phone.png and chat-page-desktop.png into the folder given.
import path from 'node:path';
import { launchBrowser, sayOnPage, VIEWPORTS } from '../server/helpers';
import { ROOT, serve } from './helpers';

const CONVERSATION = ['How was your day?', 'What are you doing this weekend?', 'I got the job!'];

async function main(): Promise<void> {
  const [model, out] = process.argv.slice(2);
  if (!model || !out) throw new Error('usage: node dist/test/quickstart/screenshots.js <model folder> <output folder>');
  const server = await serve(process.cwd(), [path.join(ROOT, 'bin', 'serve'), '--model', model]);
  const browser = await launchBrowser();
  try {
    for (const [name, viewport] of Object.entries(VIEWPORTS)) {
      const page = await browser.newPage({ viewport });
      await page.goto(`${server.url}/`);
      await page.waitForSelector('#model option', { state: 'attached' });
      for (const text of CONVERSATION) {
        const said = await sayOnPage(page, text);
        process.stdout.write(`${name}: ${text} -> ${said.reply ?? said.notice}\n`);
      }
      const file = path.resolve(out, `chat-page-${name}.png`);
      await page.screenshot({ path: file });
      process.stdout.write(`wrote ${file}\n`);
      await page.close();
    }
  } finally {
    await browser.close();
    await server.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`screenshots: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
