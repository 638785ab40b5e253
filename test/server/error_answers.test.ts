// Every error the server answers, provoked over real HTTP on 127.0.0.1, none of them showing where the server
// keeps its files; a model that fails to load is tried again after a back-off, not at every request; a body
// that is wrong in transit (a bad Content-Encoding, a Content-Length past the limit, a body that trickles in)
// gets its 4xx at once.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import t, { type Test } from 'tap';
import { launch } from '../alexa/harness';
import { makeModels, rawRequest, request, startServer, tempDir, type RawReply, type Reply, type Running } from './helpers';

const PROMPT = 'How big is the earth?';
const API_KEY = 'errors-test-key-0123456789';
const SKILL_ID = 'amzn1.ask.skill.00000000-aaaa-bbbb-cccc-000000000000';
const auth = { authorization: `Bearer ${API_KEY}` };

let dir: string;
let srv: Running;

t.before(async () => {
  dir = tempDir('errors');
  await makeModels(dir, { alpha: 1, beta: 3 }, PROMPT, 1);
  fs.mkdirSync(path.join(dir, 'broken'));
  for (const file of fs.readdirSync(path.join(dir, 'beta'))) fs.copyFileSync(path.join(dir, 'beta', file), path.join(dir, 'broken', file));
  srv = await startServer({
    models: [
      { key: 'alpha', restore_from: 'alpha', sampling: { temperature: 0, length: 4 } },
      { key: 'broken', restore_from: 'broken' },
    ],
    memory_budget_mb: 100,
    api_keys: [API_KEY],
    body_limit_kb: 4,
    request_timeout_s: 1,
    alexa: { application_id: SKILL_ID, model_key: 'alpha' },
  }, dir);
  // Broken once served (a start refuses a checkpoint cut short): its load finds it.
  fs.truncateSync(path.join(dir, 'broken', 'model.safetensors'), 4096);
});
t.teardown(async () => {
  await srv.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

// "/a/b" that is not the path of a URL; the routes the 404 lists are the API's own.
const ABSOLUTE_PATH = /(?<![\w.:/])\/[\w.-]+\/[\w.-]*/;

// Asserts the status, a JSON {"error"} body, and that nothing in it is a path of this machine.
function errorAnswer(t: Test, reply: Reply | RawReply, status: number, what: string): Record<string, unknown> {
  t.equal(reply.status, status, `${what}: status`);
  const body = JSON.parse(reply.text) as Record<string, unknown>;
  t.type(body.error, 'string', `${what}: {"error": "..."}`);
  const { routes: _routes, ...rest } = body;
  const text = JSON.stringify(rest);
  for (const local of [dir, fs.realpathSync(dir), os.tmpdir(), process.cwd()]) t.notOk(text.includes(local), `${what}: ${local} is not in ${text}`);
  t.notMatch(text, ABSOLUTE_PATH, `${what}: no absolute path in ${text}`);
  return body;
}

const invoke = (body: unknown, headers: Record<string, string> = auth) => request(`${srv.url}/invocations`, { body, headers });
const metric = async (line: RegExp) => Number(line.exec((await request(`${srv.url}/metrics`, { headers: auth })).text)?.[1]);

t.test('a model that fails to load: 503 with Retry-After and the reason without paths, tried again after a back-off', async (t) => {
  const first = await invoke({ model_key: 'broken', raw_text: PROMPT });
  const body = errorAnswer(t, first, 503, 'failed load');
  t.match(body.error, /^model "broken" failed to load \(model\.safetensors: .+\); it is tried again in 1 s$/);
  t.equal(first.headers.get('retry-after'), '1');
  const failure = srv.logs.find((l) => l.msg === 'model failed to load');
  t.match(failure, { level: 'error', model: 'broken' });
  t.ok(String(failure?.error).includes(path.join(dir, 'broken')), 'the log has the whole error, with the path');

  for (let i = 0; i < 5; i++) {
    const again = await invoke({ model_key: 'broken', raw_text: PROMPT });
    errorAnswer(t, again, 503, 'during the back-off');
    t.ok(Number(again.headers.get('retry-after')) >= 1);
  }
  t.equal(srv.logs.filter((l) => l.msg === 'loading model' && l.model === 'broken').length, 1, 'one attempt for six requests');
  t.equal(await metric(/^dixie_model_load_failures_total\{model="broken"\} (\d+)$/m), 1);

  // Repaired during the back-off: the first request after it loads the model.
  fs.copyFileSync(path.join(dir, 'beta', 'model.safetensors'), path.join(dir, 'broken', 'model.safetensors'));
  await new Promise((r) => setTimeout(r, 1100));
  const repaired = await invoke({ model_key: 'broken', raw_text: PROMPT });
  t.equal(repaired.status, 200, 'tried again once the back-off is over');
  t.equal(srv.logs.filter((l) => l.msg === 'loading model' && l.model === 'broken').length, 2);
  t.equal(await metric(/^dixie_model_loads_total\{model="broken"\} (\d+)$/m), 1);
});

t.test('bodies: a bad Content-Encoding is 400 or 415, not 500', async (t) => {
  const json = JSON.stringify({ model_key: 'alpha', raw_text: PROMPT });
  const post = (encoding: string, body: Buffer | string) => rawRequest(srv.url, {
    method: 'POST', path: '/invocations', body,
    headers: { ...auth, 'content-type': 'application/json', 'content-encoding': encoding, 'content-length': String(Buffer.byteLength(body)) },
  });
  t.match(errorAnswer(t, await post('gzip', json), 400, 'gzip that is not gzip').error, /^body: not valid gzip data/);
  t.match(errorAnswer(t, await post('deflate', 'not deflate at all'), 400, 'deflate that is not deflate').error, /^body: not valid deflate data/);
  t.match(errorAnswer(t, await post('br2', json), 415, 'an unknown encoding').error, /br2/);
  const gzipped = await post('gzip', zlib.gzipSync(json));
  t.equal(gzipped.status, 200, 'real gzip is read');
});

t.test('bodies: JSON nested deeper than any field goes is a 400 on every endpoint, not a stack overflow', async (t) => {
  let deep: unknown = 1;
  for (let i = 0; i < 65; i++) deep = i % 2 === 0 ? [deep] : { a: deep };
  for (const [path, body, field] of [
    ['/invocations', { model_key: 'alpha', raw_text: PROMPT, history: deep }, 'history'],
    ['/v1/chat/completions', { model: 'alpha', messages: [{ role: 'user', content: 'hi' }], response_format: { type: 'json_schema', json_schema: { name: 'x', schema: deep } } }, 'response_format'],
    ['/api/chat', { model: 'alpha', messages: [{ role: 'user', content: 'hi' }], format: deep }, 'format'],
    ['/completion', { model: 'alpha', prompt: 'hi', json_schema: deep }, 'json_schema'],
  ] as const) {
    const r = await request(`${srv.url}${path}`, { headers: auth, body });
    t.equal(r.status, 400, `${path}: 400`);
    t.match(r.text, `${field}: nests arrays and objects more than 64 deep`, `${path}: says why, naming the field`);
  }
  let shallower: unknown = 1;
  for (let i = 0; i < 60; i++) shallower = { a: shallower };
  const read = await request(`${srv.url}/invocations`, { headers: auth, body: { model_key: 'alpha', raw_text: PROMPT, history: shallower } });
  t.match([read.status, read.text], [400, /history/], 'a body as deep as the limit is read, and its field judged');
});

t.test('bodies: a Content-Length past body_limit_kb is refused at once and the connection closed', async (t) => {
  const huge = await rawRequest(srv.url, {
    method: 'POST', path: '/invocations', body: '{"raw_text": "',
    headers: { ...auth, connection: 'keep-alive', 'content-type': 'application/json', 'content-length': String(10 * 1024 ** 3) },
  });
  t.match(errorAnswer(t, huge, 413, '10 GB declared').error, /larger than the limit of 4096 bytes/);
  t.equal(huge.headers.connection, 'close');
  t.ok(huge.closed, 'the server closed the connection rather than read 10 GB');
  t.ok(huge.ms < 1000, `answered in ${Math.round(huge.ms)} ms, before request_timeout_s`);
  const sent = await invoke({ raw_text: 'x'.repeat(5000) });
  t.match(errorAnswer(t, sent, 413, 'a body past the limit').error, /larger than the limit/);
});

t.test('bodies: one that trickles in is given up after request_timeout_s with 408', async (t) => {
  const slow = await rawRequest(srv.url, {
    method: 'POST', path: '/invocations', trickle: { bytes: 'x'.repeat(100), pieces: 100, everyMs: 100 },
    headers: { ...auth, connection: 'keep-alive', 'content-type': 'application/json', 'content-length': '100' },
  });
  t.match(errorAnswer(t, slow, 408, 'a body a byte at a time').error, /did not arrive within 1 s/);
  t.ok(slow.closed, 'and the connection closed');
  t.ok(slow.ms >= 900 && slow.ms < 3000, `after ${Math.round(slow.ms)} ms`);
});

t.test('a request Node cannot parse gets a JSON error too, and the connection closed', async (t) => {
  const badLength = await rawRequest(srv.url, { method: 'POST', path: '/invocations', headers: { ...auth, 'content-type': 'application/json', 'content-length': 'ten' }, body: '{}' });
  t.match(errorAnswer(t, badLength, 400, 'a Content-Length that is no number').error, /^the request is not HTTP this server can read: Parse Error/);
  t.ok(badLength.closed);
  const bigHeaders = await rawRequest(srv.url, { path: '/ping', headers: { 'x-padding': 'x'.repeat(20_000) } });
  t.match(errorAnswer(t, bigHeaders, 431, 'headers past 16 KB').error, /^the request is not HTTP this server can read/);
  t.equal((await request(`${srv.url}/ping`)).status, 200, 'the server answers on');
});

t.test('every other error answer names no path either', async (t) => {
  errorAnswer(t, await invoke({ raw_text: PROMPT }, {}), 401, 'no API key');
  errorAnswer(t, await request(`${srv.url}/models/list`), 401, 'no API key for /models/list');
  errorAnswer(t, await invoke({ model_key: 'nope', raw_text: PROMPT }), 404, 'unknown model');
  errorAnswer(t, await request(`${srv.url}/prime`, { body: { model_key: 'nope' }, headers: auth }), 404, 'prime an unknown model');
  errorAnswer(t, await request(`${srv.url}/invocations`, { raw: '{"raw_text": ', headers: auth }), 400, 'bad JSON');
  for (const fields of [{}, { raw_text: 5 }, { raw_text: 'x', temperature: -1 }, { raw_text: 'x', top_k: 2.5 }, { raw_text: 'x', history: 'hi' }, { raw_text: 'x', nonsense: 1 }]) {
    errorAnswer(t, await invoke({ model_key: 'alpha', ...fields }), 400, `bad field ${JSON.stringify(fields)}`);
  }
  errorAnswer(t, await invoke([1]), 400, 'a body that is not an object');
  errorAnswer(t, await request(`${srv.url}/nothing-here`, { headers: auth }), 404, 'no route');
  errorAnswer(t, await request(`${srv.url}/invocations`, { headers: auth }), 404, 'wrong method');
  errorAnswer(t, await request(`${srv.url}/invocations`, { raw: 'raw_text=x', headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' } }), 415, 'not JSON');
  errorAnswer(t, await request(`${srv.url}/invocations`, { raw: '{}', headers: { ...auth, 'content-type': 'application/json; charset=klingon' } }), 415, 'unknown charset');
  const host = await rawRequest(srv.url, { path: '/models/list', headers: { ...auth, host: 'rebound.example:80' } });
  errorAnswer(t, host, 421, 'a Host not served');
  errorAnswer(t, await request(`${srv.url}/alexa`, { raw: JSON.stringify(launch({ applicationId: SKILL_ID })) }), 401, 'Alexa request without a signature');
  const forged = await request(`${srv.url}/alexa`, {
    raw: JSON.stringify(launch({ applicationId: SKILL_ID })),
    headers: { SignatureCertChainUrl: 'https://evil.example/echo.api/cert.pem', 'Signature-256': 'AAAA' },
  });
  errorAnswer(t, forged, 401, 'Alexa request with a foreign certificate URL');
});

t.test('a path that climbs with encoded dots and slashes gets a JSON error, not a redirect to the chat page', async (t) => {
  for (const climbing of ['/v1/batches/..%2f..%2f', '/x/..%2f', '/foo%2f..%2f']) {
    for (const [headers, status] of [[{}, 401], [auth, 404]] as const) {
      const reply = await rawRequest(srv.url, { path: climbing, headers });
      t.equal(reply.status, status, `${climbing}, ${status}: status`);
      t.match(reply.headers['content-type'], /^application\/json/, `${climbing}, ${status}: JSON`);
      t.ok(JSON.parse(reply.text).error, `${climbing}, ${status}: an error`);
    }
  }
});

t.test("the OpenAI API's errors, in OpenAI's shape, name no path either", async (t) => {
  const openAI = async (route: string, body: unknown, headers: Record<string, string> = auth): Promise<Record<string, unknown>> => {
    const reply = await request(`${srv.url}${route}`, { body, headers });
    const error = (JSON.parse(reply.text) as { error: Record<string, unknown> }).error;
    t.type(error.message, 'string', `${route} ${JSON.stringify(body)}: {"error": {"message", ...}}`);
    // The route itself may be named ("no route for POST /v1/nothing"): it is the client's own.
    t.notMatch(JSON.stringify(error).replace(route, ''), ABSOLUTE_PATH, `${route}: no absolute path in ${JSON.stringify(error)}`);
    for (const local of [dir, fs.realpathSync(dir), os.tmpdir(), process.cwd()]) t.notOk(JSON.stringify(error).includes(local), `${route}: ${local} is not in it`);
    return { status: reply.status, ...error };
  };
  t.match(await openAI('/v1/completions', { model: 'alpha', prompt: 'x' }, {}), { status: 401, type: 'authentication_error', code: 'invalid_api_key' });
  t.match(await openAI('/v1/completions', { model: 'nope', prompt: 'x' }), { status: 404, code: 'model_not_found', param: 'model' });
  t.match(await openAI('/v1/chat/completions', { model: 'alpha', messages: [] }), { status: 400, type: 'invalid_request_error', param: 'messages' });
  t.match(await openAI('/v1/nothing', {}), { status: 404 });
});
