// Who can reach the server and what they see, over real HTTP on 127.0.0.1: it will not listen beyond loopback
// without api_keys unless told it is insecure; api_keys cover every route that tells anything (/ping and the chat
// page stay open); X-Forwarded-For is believed only from configured proxies; the Host header is checked against
// DNS rebinding.
import fs from 'node:fs';
import t from 'tap';
import { createServer } from '../../lib/server/app';
import { validateServerConfig } from '../../lib/server/config';
import { allowedHosts, isLoopback } from '../../lib/server/hosts';
import { makeModels, rawRequest, request, startServer, tempDir } from './helpers';

const API_KEY = 'exposure-test-key-0123456789';

let dir: string;
t.before(async () => {
  dir = tempDir('exposure');
  await makeModels(dir, { alpha: 1 }, 'x', 1);
});
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

const models = [{ key: 'chatbot', restore_from: 'alpha' }];

t.test('beyond loopback without api_keys the server refuses to listen, and says how to set them', async (t) => {
  const open = createServer(validateServerConfig({ models }, 'test config', dir), { log: () => undefined });
  // 192.0.2.1 (TEST-NET-1) is no address of this machine: a server that gets past the check fails to bind there,
  // so nothing is ever exposed.
  for (const host of ['0.0.0.0', '::', '192.0.2.1']) {
    await t.rejects(open.listen(0, host), { message: /^refusing to listen on .* without api_keys: .*"api_keys" in server_config\.json.*--insecure or "insecure": true/ }, host);
  }
  const insecure = createServer(validateServerConfig({ models, insecure: true }, 'test config', dir), { log: () => undefined });
  await t.rejects(insecure.listen(0, '192.0.2.1'), { code: 'EADDRNOTAVAIL' }, '"insecure": true lets it try');
  const keyed = createServer(validateServerConfig({ models, api_keys: [API_KEY] }, 'test config', dir), { log: () => undefined });
  await t.rejects(keyed.listen(0, '192.0.2.1'), { code: 'EADDRNOTAVAIL' }, 'so do api_keys');
  for (const host of ['127.0.0.1', 'localhost']) {
    const local = createServer(validateServerConfig({ models }, 'test config', dir), { log: () => undefined });
    await local.listen(0, host);
    await local.shutdown();
    t.pass(`${host} needs no key`);
  }
  t.same(['127.0.0.1', '127.0.0.2', 'localhost', '::1', '[::1]', '0.0.0.0', '::', '10.0.0.1', 'example.com'].map(isLoopback), [true, true, true, true, true, false, false, false, false]);
});

t.test('api_keys cover every route that tells anything; /ping, /health and the chat page stay open', async (t) => {
  const srv = await startServer({ models, api_keys: [API_KEY] }, dir);
  t.teardown(srv.close);
  for (const open of ['/ping', '/health', '/', '/app.js', '/tune.js', '/style.css']) t.equal((await request(`${srv.url}${open}`)).status, 200, `${open} is open`);
  // Every route the API lists (its 404 says which there are), asked without a key.
  const listed = (await request(`${srv.url}/nothing-here`, { headers: { 'x-api-key': API_KEY } })).json().routes as string[];
  t.ok(listed.includes('GET /metrics') && listed.includes('GET /models/list'));
  for (const route of listed) {
    const [method, path] = route.split(' ');
    if (path === '/ping' || path === '/health' || path === '/') continue;
    const answer = await request(`${srv.url}${path}`, method === 'GET' ? {} : { body: {} });
    t.equal(answer.status, 401, `${route} needs a key`);
    t.equal(answer.headers.get('www-authenticate'), 'Bearer');
  }
  t.equal((await request(`${srv.url}/nothing-here`)).status, 401, 'unknown routes too: the 404 lists the routes');
  const metrics = await request(`${srv.url}/metrics`, { headers: { authorization: `Bearer ${API_KEY}` } });
  t.equal(metrics.status, 200);
  t.match(metrics.text, /^dixie_model_loaded\{model="chatbot"\} 0$/m);
});

t.test('"metrics_public": true opens /metrics alone', async (t) => {
  const srv = await startServer({ models, api_keys: [API_KEY], metrics_public: true }, dir);
  t.teardown(srv.close);
  t.equal((await request(`${srv.url}/metrics`)).status, 200);
  t.equal((await request(`${srv.url}/models/list`)).status, 401);
});

t.test('X-Forwarded-For is believed only from the proxies in trust_proxy', async (t) => {
  const ipOf = async (raw: Record<string, unknown>): Promise<unknown> => {
    const srv = await startServer({ models, ...raw }, dir);
    t.teardown(srv.close);
    t.equal((await request(`${srv.url}/models/list`, { headers: { 'x-forwarded-for': '203.0.113.9' } })).status, 200);
    return srv.logs.find((l) => l.msg === 'request' && l.path === '/models/list')?.ip;
  };
  t.match(await ipOf({}), /^(::ffff:)?127\.0\.0\.1$/, 'by default the address the request came from, whatever the header says');
  t.equal(await ipOf({ trust_proxy: 'loopback' }), '203.0.113.9', 'from a trusted proxy, the client it names');
  t.match(await ipOf({ trust_proxy: ['10.0.0.0/8'] }), /^(::ffff:)?127\.0\.0\.1$/, 'a proxy elsewhere is not this one');
});

t.test('the Host header: a loopback or keyless server answers loopback names and addresses only, unless allowed_hosts says more', async (t) => {
  const srv = await startServer({ models }, dir);
  t.teardown(srv.close);
  const port = new URL(srv.url).port;
  const ask = (host: string, path = '/models/list') => rawRequest(srv.url, { path, headers: { host } });
  for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'LOCALHOST', 'localhost.', '10.1.2.3', '[fe80::1]:8080']) t.equal((await ask(host)).status, 200, `${host}: a loopback name, or an address, which no rebinding can give`);
  for (const host of ['rebound.example', `rebound.example:${port}`, 'localhost.rebound.example', '127.0.0.1.nip.io']) {
    const refused = await ask(host);
    t.equal(refused.status, 421, host);
    t.match(JSON.parse(refused.text).error, /^this server does not answer for the host ".*": ask for it by a name its allowed_hosts lists$/);
    t.notMatch(refused.text, /\[::1\]|IP address/, 'the names it answers are not told to whoever asks');
  }
  t.match(srv.logs.find((l) => l.msg === 'host refused'), { host: 'rebound.example', allowedHosts: ['localhost', '127.0.0.1', '[::1]', 'any IP address'] }, 'the log tells the operator');
  t.equal((await ask('rebound.example', '/')).status, 421, 'the chat page too');
  t.equal((await ask('rebound.example', '/ping')).status, 200, '/ping tells nothing and answers any name');
  t.equal((await ask('rebound.example', '/PING/')).status, 200, 'however its path is spelled');
  t.equal((await ask('rebound.example', '/health')).status, 200, 'nor does /health');

  const named = await startServer({ models, allowed_hosts: ['chat.example.com', '*.internal.example'] }, dir);
  t.teardown(named.close);
  const askNamed = (host: string) => rawRequest(named.url, { path: '/models/list', headers: { host } });
  for (const host of ['chat.example.com', 'Chat.Example.com:8443', 'a.internal.example', 'b.c.internal.example']) t.equal((await askNamed(host)).status, 200, host);
  // Prometheus scraping by address, curl on the machine: no rebinding sends those.
  for (const host of [`localhost:${named.url.split(':')[2]}`, '127.0.0.1:9090', '[::1]', '10.1.2.3:12345']) t.equal((await askNamed(host)).status, 200, `${host}: loopback names and addresses, whatever allowed_hosts lists`);
  for (const host of ['example.com', 'internal.example', 'evilinternal.example', 'localhost.example']) t.equal((await askNamed(host)).status, 421, host);
  const any = await startServer({ models, allowed_hosts: ['*'] }, dir);
  t.teardown(any.close);
  t.equal((await rawRequest(any.url, { path: '/models/list', headers: { host: 'whatever.example' } })).status, 200, '"*": any');
  t.equal(allowedHosts(null, '0.0.0.0', true), null, 'bound beyond loopback with api_keys: any name unless configured');
  t.same(allowedHosts(null, '127.0.0.5', true), ['localhost', '127.0.0.1', '[::1]', 'any IP address']);

  // Beyond loopback without keys (--insecure: a container published on 127.0.0.1), a page's name is refused too.
  const insecure = createServer(validateServerConfig({ models, insecure: true }, 'test config', dir), { log: () => undefined });
  const address = await insecure.listen(0, '0.0.0.0');
  t.teardown(() => insecure.shutdown());
  const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
  t.equal((await rawRequest(url, { path: '/models/list', headers: { host: 'rebound.example:12345' } })).status, 421, 'an --insecure server: a name refused');
  t.equal((await rawRequest(url, { path: '/models/list', headers: { host: '127.0.0.1:12345' } })).status, 200, 'an address answered');
});

t.test("a web page of another origin cannot make a keyless server do anything: only its own pages and cors_origins' may", async (t) => {
  const srv = await startServer({ models, cors_origins: ['https://app.example.com'] }, dir);
  t.teardown(srv.close);
  const host = new URL(srv.url).host;
  // As a page's fetch with mode "no-cors" sends them: no preflight, the page's origin named.
  const body = '{"model": "chatbot", "prompt": "Hi", "stream": false, "options": {"num_predict": 1}}';
  const post = (origin: string | null, path = '/api/generate') => rawRequest(srv.url, {
    method: 'POST', path, body,
    headers: { host, 'content-type': 'text/plain', 'content-length': String(body.length), ...(origin !== null && { origin }) },
  });
  for (const origin of ['https://evil.example', 'null', `http://evil.example:${new URL(srv.url).port}`]) {
    const refused = await post(origin);
    t.equal(refused.status, 403, origin);
    t.match(JSON.parse(refused.text).error, /^requests from web pages of ".*" are refused: cors_origins in the server's config names the pages that may call it$/);
  }
  t.equal((await post('https://evil.example', '/prime')).status, 403, '/prime too');
  // A proxy that passes the Host without its port (nginx's $host): the page's own origin no longer matches, and
  // the refusal says so rather than blame cors_origins.
  const portless = await rawRequest(srv.url, {
    method: 'POST', path: '/api/generate', body,
    headers: { host: '127.0.0.1', 'content-type': 'text/plain', 'content-length': String(body.length), origin: `http://${host}` },
  });
  t.equal(portless.status, 403, 'a Host without the port the page has');
  t.match(JSON.parse(portless.text).error, `the page is at ${host}, but the request came for "Host: 127.0.0.1". A proxy in front must pass the Host the browser sent, port included (nginx: "proxy_set_header Host $http_host;")`);
  t.equal((await post(`http://${host}`)).status, 200, "the server's own chat page");
  const allowed = await post('https://app.example.com');
  t.equal(allowed.status, 200, 'a page cors_origins names');
  t.match(allowed.headers['access-control-expose-headers'], /\bX-Dixie-Ignored-Fields\b/, 'which may read the fields the answer passed over');
  t.equal((await post(null)).status, 200, 'a client that is no web page');
  t.equal((await rawRequest(srv.url, { path: '/models/list', headers: { host, origin: 'https://evil.example' } })).status, 200, 'a GET changes nothing, and its answer is CORS\'s to keep from the page');
});
