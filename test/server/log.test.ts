// The server's log and users' text: "debug": 1 logs each generation's prompt in full and says so when the log is
// made (at start); "debug": "redacted" logs the same lines with the prompt replaced by its length. What a client
// sends reaches the log's lines without anything a terminal would act on.
import fs from 'node:fs';
import t, { type Test } from 'tap';
import { createServer } from '../../lib/server/app';
import { validateServerConfig } from '../../lib/server/config';
import { createLog, type DebugLogging } from '../../lib/server/log';
import { makeModels, rawRequest, tempDir } from './helpers';

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

// A server whose log lines are kept as written.
async function serverWritingTo(t: Test, lines: string[]): Promise<string> {
  const dir = tempDir('log');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await makeModels(dir, { alpha: 1 }, 'Hi', 1);
  const server = createServer(validateServerConfig({ models: [{ key: 'alpha', restore_from: 'alpha' }] }, 'cfg', dir), { log: createLog({ debug: false, write: (line) => lines.push(line) }) });
  const address = await server.listen(0, '127.0.0.1');
  t.teardown(() => server.shutdown());
  return `http://127.0.0.1:${address.port}`;
}

// Node reads a header's bytes as Latin-1: these come to the server as C1 controls, 0x9B (CSI, "clear the screen" with
// "2J") among them.
const HOSTILE = '\u009b2J\u2028\u202e';
const asReceived = (header: string): string => Buffer.from(header).toString('latin1');

t.test("a client's Host reaches the log's lines as JSON escapes, not as controls a terminal acts on", async (t) => {
  const lines: string[] = [];
  const url = await serverWritingTo(t, lines);
  await rawRequest(url, { path: '/v1/models', headers: { host: `evil${HOSTILE}.example` } });
  const refused = lines.filter((line) => line.includes('host refused'));
  t.equal(refused.length, 1, 'the refused host is logged');
  t.notMatch(refused[0], /[\u007f-\u009f\u2028\u2029\u202a-\u202e]/, `no control in ${JSON.stringify(refused[0])}`);
  t.equal((JSON.parse(refused[0]) as { host: string }).host, asReceived(`evil${HOSTILE}.example`), 'the host reads back as the server received it');
});

t.test("a client's X-Request-Id is kept when it is an id, and replaced by the server's when it is anything else", async (t) => {
  const lines: string[] = [];
  const url = await serverWritingTo(t, lines);
  const loggedId = (answerId: string): unknown => lines.map((line) => JSON.parse(line) as { msg: string; id?: string }).find((l) => l.msg === 'request' && l.id === answerId)?.id;
  const kept = await rawRequest(url, { path: '/ping', headers: { 'x-request-id': 'trace-0123:abc' } });
  t.equal(kept.headers['x-request-id'], 'trace-0123:abc', 'an id is answered as sent');
  t.equal(loggedId('trace-0123:abc'), 'trace-0123:abc', 'and logged');
  for (const [what, id] of [['controls', `id${HOSTILE}`], ['10,000 characters', 'x'.repeat(10_000)], ['a space', 'two words']]) {
    const replaced = await rawRequest(url, { path: '/ping', headers: { 'x-request-id': id } });
    t.match(replaced.headers['x-request-id'], /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, `${what}: the server's id is answered`);
    t.equal(loggedId(replaced.headers['x-request-id']), replaced.headers['x-request-id'], `${what}: and logged`);
    t.notOk(lines.some((line) => line.includes(JSON.stringify(asReceived(id)).slice(1, -1))), `${what}: the id sent is logged nowhere`);
  }
});
