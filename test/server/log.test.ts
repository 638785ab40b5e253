// The server's log and users' text: "debug": 1 logs each generation's prompt in full and says so when the log is
// made (at start); "debug": "redacted" logs the same lines with the prompt replaced by its length.
import t from 'tap';
import { validateServerConfig } from '../../lib/server/config';
import { createLog, type DebugLogging } from '../../lib/server/log';

const PROMPT = '1|mom|my new address is 12 Elm Street <EOM>\n0|mom|';

function logged(debug: DebugLogging): Record<string, unknown>[] {
  const lines: string[] = [];
  const log = createLog({ debug, write: (line) => lines.push(line) });
  log('debug', 'generated', { model: 'chatbot', prompt: PROMPT, promptTokens: 17 });
  log('info', 'request', { path: '/invocations', status: 200 });
  return lines.map((line) => JSON.parse(line) as Record<string, unknown>);
}

t.test('"debug": 1 logs the prompt in full, after a warning that says so', async (t) => {
  const [warning, generated, request] = logged(true);
  t.equal(warning.level, 'warn');
  t.match(warning.msg, /every prompt is logged in full, users' chat text included; "debug": "redacted" logs the same lines without the text/);
  t.match(generated, { level: 'debug', msg: 'generated', prompt: PROMPT, promptTokens: 17 });
  t.match(request, { msg: 'request', status: 200 });
});

t.test('"debug": "redacted" logs the generation lines without the text, and warns of nothing', async (t) => {
  const lines = logged('redacted');
  t.same(lines.map((l) => l.msg), ['generated', 'request']);
  t.match(lines[0], { level: 'debug', model: 'chatbot', prompt: `[redacted: ${PROMPT.length} characters]`, promptTokens: 17 });
  t.notOk(JSON.stringify(lines).includes('Elm Street'), 'the text is nowhere in the log');
});

t.test('without debug there are no debug lines and no warning', async (t) => {
  t.same(logged(false).map((l) => l.msg), ['request']);
});

t.test('server_config.json takes "debug": "redacted", and says so when debug is anything else', async (t) => {
  const models = [{ key: 'g', model_name: '124M' }];
  t.equal(validateServerConfig({ models, debug: 'redacted' }, 'cfg', '/base').debug, 'redacted');
  t.equal(validateServerConfig({ models, debug: 1 }, 'cfg', '/base').debug, true);
  t.equal(validateServerConfig({ models, debug: 0 }, 'cfg', '/base').debug, false);
  t.throws(() => validateServerConfig({ models, debug: 'on' }, 'cfg', '/base'), { message: /^cfg: debug: must be true, false, 0 or 1 \(true and 1 log every prompt in full\), or "redacted"/ });
});
