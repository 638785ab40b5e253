// The skill inside the real server (lib/server/app), answered by a real tiny GPT-2 through the server's chat
// function: configured from server_config.json's "alexa" section, and mounted by hand with a test
// certificate authority to show signed requests pass through the server's middleware byte for byte.
import fs from 'node:fs';
import t, { type Test } from 'tap';
import { validateAlexaConfig } from '../../lib/server/alexa/config';
import { createServer } from '../../lib/server/app';
import { validateServerConfig } from '../../lib/server/config';
import { fitConversation, type Turn } from '../../lib/data/chat_format';
import { createAlexaRouter } from '../../lib/server/alexa/router';
import { lastCompleteSentence, ssml } from '../../lib/server/alexa/speech';
import { loadTokenizer } from '../../lib/tokenizer';
import { LONG, makeModels, rawRequest, startServer, tempDir, type Running } from '../server/helpers';
import { attributesOf, CERT_BASE, intent, launch, post, signatureHeaders, SKILL_ID, ssmlOf, startCertServer, type Answer } from './harness';
import { createTestPki } from './pki';

const MAX_TOKENS = 8;
// Made before the server starts: openssl runs synchronously and would stall the server's keep-alive sockets.
const pki = createTestPki();
let dir: string;
let srv: Running;

t.before(async () => {
  dir = tempDir('alexa');
  // Seed 8: a model whose greedy replies start with words, not with a pipe (which ends a reply at once).
  await makeModels(dir, { bot: 8, other: 6 }, 'Hello', 4);
  srv = await startServer({
    models: [
      { key: 'other', restore_from: 'other', sampling: { temperature: 0 } },
      { key: 'dixie', restore_from: 'bot', sanitizer: 'sanitizers.chatbot', sampling: { temperature: 0, penalize: 0 } },
    ],
    alexa: { application_id: SKILL_ID, model_key: 'dixie', verify_signatures: false, audience: 'mom', max_tokens: MAX_TOKENS, greeting: 'Hi from the server.' },
  }, dir);
});
t.teardown(async () => {
  await srv.close();
  fs.rmSync(dir, { recursive: true, force: true });
  pki.cleanup();
});

// What the configured model itself says to `prompt`, through the server's generation and the model's sanitizer,
// as the skill speaks a reply.
async function modelSays(prompt: string): Promise<string> {
  const model = srv.server.service.model('dixie');
  const reply = await srv.server.service.generate('dixie', { prompt, sampling: { ...model.sampling, length: MAX_TOKENS } });
  return ssml(reply.finishReason === 'stop' ? reply.text : lastCompleteSentence(reply.text)).ssml;
}

// The prompts model "dixie" was given since the server's log had `since` lines (the server logs each generation
// at debug level, with its prompt).
function promptsSince(since: number): { prompt: string; promptTokens: number; trimmed: { tokens: number; messages: number; messageChars: number } }[] {
  return srv.logs
    .slice(since)
    .filter((l) => l.msg === 'generated' && l.model === 'dixie')
    .map((l) => ({ prompt: l.prompt as string, promptTokens: l.promptTokens as number, trimmed: l.trimmed as { tokens: number; messages: number; messageChars: number } }));
}

t.test('configured from the alexa section: mounted at /alexa, warns that verification is off', async (t) => {
  t.ok(srv.logs.some((l) => l.level === 'warn' && /verify_signatures is false/.test(String(l.msg))), 'the warning is in the server log');
  const hello = await post(`${srv.url}/alexa`, JSON.stringify(launch()));
  t.equal(hello.status, 200);
  t.equal(ssmlOf(hello), '<speak>Hi from the server.</speak>');
  t.equal((await post(`${srv.url}/alexa`, JSON.stringify(launch({ applicationId: 'amzn1.ask.skill.other' })))).status, 403);
});

t.test('a two-turn conversation answered by the configured model: the user on side 1, the model answering on side 0', async (t) => {
  let since = srv.logs.length;
  const first = await post(`${srv.url}/alexa`, JSON.stringify(intent('ChatIntent', { utterance: 'how are you' }, { attributes: { history: [] } })));
  t.equal(first.status, 200);
  const firstPrompt = '1|mom|how are you <EOM>\n0|mom|';
  t.same(promptsSince(since).map((p) => p.prompt), [firstPrompt], 'the prompt the model was given');
  t.equal(ssmlOf(first), await modelSays(firstPrompt), 'the greedy reply of model "dixie" to that prompt');
  const history = attributesOf(first).history as Turn[];
  t.same(history.map((m) => m.from), ['user', 'bot']);
  t.equal(history[0].text, 'how are you');

  since = srv.logs.length;
  const second = await post(`${srv.url}/alexa`, JSON.stringify(intent('ChatIntent', { utterance: 'tell me more' }, { attributes: attributesOf(first) })));
  const secondPrompt = `1|mom|how are you <EOM>\n0|mom|${history[1].text} <EOM>\n1|mom|tell me more <EOM>\n0|mom|`;
  t.same(promptsSince(since).map((p) => p.prompt), [secondPrompt], 'the second prompt holds the first turn, the reply as the audience');
  t.equal(ssmlOf(second), await modelSays(secondPrompt));
  t.equal((attributesOf(second).history as unknown[]).length, 4);
  t.match(srv.logs.slice(since).find((l) => l.msg === 'request'), { path: '/alexa', status: 200, model: 'dixie' }, 'the request line names the model that answered');
});

t.test("a conversation longer than the model's context loses its oldest messages, whole", async (t) => {
  const history: Turn[] = [];
  for (let i = 1; i <= 12; i++) history.push({ from: 'user', text: `question number ${i}` }, { from: 'bot', text: `answer number ${i}` });
  const since = srv.logs.length;
  const answer = await post(`${srv.url}/alexa`, JSON.stringify(intent('ChatIntent', { utterance: 'and now' }, { attributes: { history } })));
  t.equal(answer.status, 200);
  const [given] = promptsSince(since);
  const whole = fitConversation({ audience: 'mom', turns: [...history, { from: 'user', text: 'and now' }] }).prompt;
  const tokenizer = loadTokenizer();
  const room = 128 - MAX_TOKENS;  // the test model's context less the reply
  t.ok(tokenizer.encode(whole, { allowSpecial: false }).length > room, 'the whole conversation would not fit');
  t.equal(given.promptTokens, tokenizer.encode(given.prompt, { allowSpecial: false }).length);
  t.ok(given.promptTokens <= room, `${given.promptTokens} tokens fit in ${room}`);
  t.equal(given.trimmed.messageChars, 0, 'nothing cut from the start of a line');
  const kept = (given.prompt.match(/\n/g) ?? []).length;
  t.equal(given.trimmed.messages, history.length + 1 - kept, 'the messages left out are reported');
  t.equal(given.trimmed.tokens, tokenizer.encode(whole, { allowSpecial: false }).length - given.promptTokens, 'and their tokens');
  t.ok(given.prompt.endsWith('0|mom|answer number 12 <EOM>\n1|mom|and now <EOM>\n0|mom|'), 'the newest messages stay');
  t.ok(whole.endsWith(given.prompt) && whole[whole.length - given.prompt.length - 1] === '\n', 'a suffix of whole lines');
  // The oldest go a step (half the room) at a time, so that the next turns keep this one's start: at most
  // a step and two messages fewer than fit.
  const longest = Math.max(...whole.split('\n').map((line) => tokenizer.encode(`${line}\n`, { allowSpecial: false }).length));
  t.ok(given.promptTokens > room - Math.floor(room / 2) - 2 * longest, `${given.promptTokens} tokens: at most a step and two messages fewer than fit`);
});

t.test('verification off beyond loopback: refused at start, API keys or not, unless insecure on purpose', async (t) => {
  const raw = { models: [{ key: 'dixie', restore_from: 'bot' }], alexa: { application_id: SKILL_ID, model_key: 'dixie', verify_signatures: false }, api_keys: ['alexa-test-key-0123456789'] };
  // 192.0.2.1 (TEST-NET-1) is no address of this machine: a server past the check fails to bind there.
  const keyed = createServer(validateServerConfig(raw, 'test config', dir), { log: () => undefined });
  await t.rejects(keyed.listen(0, '192.0.2.1'), { message: /^refusing to listen on 192\.0\.2\.1 with "alexa": \{"verify_signatures": false\}: anyone who can reach it could use \/alexa without a key\. .*--insecure/ });
  const insecure = createServer(validateServerConfig({ ...raw, insecure: true }, 'test config', dir), { log: () => undefined });
  await t.rejects(insecure.listen(0, '192.0.2.1'), { code: 'EADDRNOTAVAIL' }, '"insecure": true lets it try');
});

// A TLS proxy in front (Caddy by default, nginx with $http_host) passes the skill's public name in Host, which a server
// bound to loopback without api_keys answers for nothing else.
t.test('the Alexa endpoint that verifies signatures is answered under the public name a TLS proxy passes; the rest of the server is not', async (t) => {
  const verified = await startServer({ models: [{ key: 'dixie', restore_from: 'bot' }], alexa: { application_id: SKILL_ID, model_key: 'dixie', path: '/Skill' } }, dir);
  t.teardown(verified.close);
  const body = JSON.stringify(launch());
  const publicName = { host: 'skill.example.com', 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) };
  const skill = await rawRequest(verified.url, { method: 'POST', path: '/skill', headers: publicName, body });
  t.equal(skill.status, 401, 'the skill itself answers');
  t.match(JSON.parse(skill.text), { error: 'missing SignatureCertChainUrl header' });
  t.equal((await rawRequest(verified.url, { path: '/v1/models', headers: { host: publicName.host } })).status, 421, 'the API still refuses the name');
  // The skill answers POSTs alone; another method on its path would reach the routes after it.
  const onApiPath = await startServer({ models: [{ key: 'dixie', restore_from: 'bot' }], alexa: { application_id: SKILL_ID, model_key: 'dixie', path: '/v1/models' } }, dir);
  t.teardown(onApiPath.close);
  t.equal((await rawRequest(onApiPath.url, { path: '/v1/models', headers: { host: publicName.host } })).status, 421, 'a GET of the skill\'s path under the name: refused');
  t.equal((await rawRequest(onApiPath.url, { method: 'POST', path: '/v1/models', headers: publicName, body })).status, 401, 'a POST: the skill, which asks for a signature');
  // A path configured with a trailing slash is routed as the same path without it.
  const slashed = await startServer({ models: [{ key: 'dixie', restore_from: 'bot' }], alexa: { application_id: SKILL_ID, model_key: 'dixie', path: '/Skill/' } }, dir);
  t.teardown(slashed.close);
  t.equal((await rawRequest(slashed.url, { method: 'POST', path: '/skill/', headers: publicName, body })).status, 401, 'alexa.path "/Skill/": the skill answers under the name');
  // Unverified, a rebinding page could drive the endpoint: the name is refused there too.
  const unverified = await rawRequest(srv.url, { method: 'POST', path: '/alexa', headers: publicName, body });
  t.equal(unverified.status, 421);
});

t.test('signed requests pass through the server untouched; altered ones are refused', async (t) => {
  const certs = await startCertServer({ 'chain.pem': pki.signer.cert + pki.intermediate.cert });
  t.teardown(certs.close);
  const options = validateAlexaConfig({ application_id: SKILL_ID, path: '/signed', model_key: 'dixie', max_tokens: MAX_TOKENS }, 'alexa');
  srv.server.mount(createAlexaRouter(options, srv.server.chat, { trustedRoots: [pki.root.cert], fetchCertChain: certs.fetcher, log: srv.server.log }));

  const raw = JSON.stringify(intent('ChatIntent', { utterance: 'hello there' }));
  const headers = signatureHeaders(raw, pki.signer, `${CERT_BASE}chain.pem`);
  const signed = await post(`${srv.url}/signed`, raw, headers);
  t.equal(signed.status, 200);
  t.equal(ssmlOf(signed), await modelSays('1|user|hello there <EOM>\n0|user|'));
  const altered = await post(`${srv.url}/signed`, raw.replace('hello there', 'hello where'), headers);
  t.equal(altered.status, 401);
  t.match(altered.body.error, /does not match the request body/);
  t.equal((await post(`${srv.url}/signed`, raw)).status, 401, 'unsigned');
});

// Every request comes from Amazon's addresses: each user takes turns at the model's slots as the user a signed
// request names, so that one user's many requests (a chatty user, a device stuck in a loop) delay another user's by a
// turn, not by all of them. Unsigned requests, which could name anyone, take turns by their address.
t.test("the skill's users take turns at the model's one slot", async (t) => {
  await makeModels(dir, { long: 8 }, 'Hello', 4, LONG);
  const users = await startServer({
    batch_slots: 1,
    trust_proxy: 'loopback',  // the unsigned requests' addresses are told apart by the X-Forwarded-For this test sends
    models: [{ key: 'dixie', restore_from: 'long', sampling: { temperature: 0 } }],
    alexa: { application_id: SKILL_ID, model_key: 'dixie', verify_signatures: false, max_tokens: MAX_TOKENS },
  }, dir);
  const certs = await startCertServer({ 'chain.pem': pki.signer.cert + pki.intermediate.cert });
  t.teardown(async () => {
    await users.close();
    await certs.close();
  });
  const options = validateAlexaConfig({ application_id: SKILL_ID, path: '/signed', model_key: 'dixie', max_tokens: MAX_TOKENS }, 'alexa');
  users.server.mount(createAlexaRouter(options, users.server.chat, { trustedRoots: [pki.root.cert], fetchCertChain: certs.fetcher, log: users.server.log }));

  // Until the model's batcher has `waiting` requests waiting beside the one decoding (or five seconds have passed).
  async function untilWaiting(waiting: number): Promise<{ running: number; waiting: number } | undefined> {
    const load = () => users.server.service.registry.peek('dixie')?.generator.load;
    for (let i = 0; i < 500 && !(load()?.running === 1 && load()?.waiting === waiting); i++) await new Promise((r) => setTimeout(r, 10));
    return load();
  }

  // The model's one slot held by a generation that ends only when the returned function is called, so that the
  // requests the test sends all wait, however slowly they come (a reply of the skill's own could end before them).
  async function holdSlot(t: Test): Promise<() => Promise<void>> {
    const lease = await users.server.service.registry.acquire('dixie');
    const stop = new AbortController();
    const held = lease.value.generator.generate('Hello', { maxTokens: 1_000_000, temperature: 0, stopTokens: [], queue: 'dixie', client: 'holder', signal: stop.signal });
    t.same(await untilWaiting(0), { running: 1, waiting: 0 }, 'the slot held');
    return async () => {
      stop.abort();
      await held;
      lease.release();
    };
  }

  // Sends the requests one after another, each once the one before waits for the slot, so that they wait in the
  // order sent.
  async function queued(t: Test, sends: (() => Promise<void>)[]): Promise<Promise<void>[]> {
    const sent: Promise<void>[] = [];
    for (const send of sends) {
      sent.push(send());
      t.same(await untilWaiting(sent.length), { running: 1, waiting: sent.length }, `${sent.length} waiting`);
    }
    return sent;
  }

  // Sends a chat request and puts `name` in `answered` once it is answered with a reply.
  function recorder(t: Test, answered: string[]): (name: string, send: Promise<Answer>) => Promise<void> {
    return (name, send) => send.then((answer) => {
      t.equal(answer.status, 200, `${name} answered`);
      answered.push(name);
    });
  }

  t.test("one user's many requests delay another user's by a turn, though all come from Amazon's address", async (t) => {
    const answered: string[] = [];
    const record = recorder(t, answered);
    const say = (name: string, user: string) => {
      const raw = JSON.stringify(intent('ChatIntent', { utterance: `this is ${name}` }, { user }));
      return record(name, post(`${users.url}/signed`, raw, signatureHeaders(raw, pki.signer, `${CERT_BASE}chain.pem`)));
    };
    const release = await holdSlot(t);
    const sent = await queued(t, [() => say('ann 1', 'amzn1.ask.account.ANN'), () => say('ann 2', 'amzn1.ask.account.ANN'),
      () => say('ann 3', 'amzn1.ask.account.ANN'), () => say('bob', 'amzn1.ask.account.BOB')]);
    await release();
    await Promise.all(sent);
    t.same(answered, ['ann 1', 'bob', 'ann 2', 'ann 3'], "the other user's request is admitted before the chatty user's waiting ones");
  });

  t.test('unsigned requests take turns by their address: naming a new user for each request takes no more turns', async (t) => {
    const answered: string[] = [];
    const record = recorder(t, answered);
    const say = (name: string, user: string, address: string) => record(name, post(`${users.url}/alexa`,
      JSON.stringify(intent('ChatIntent', { utterance: `this is ${name}` }, { user })), { 'x-forwarded-for': address }));
    const release = await holdSlot(t);
    const sent = await queued(t, [() => say('flood 1', 'amzn1.ask.account.U1', '10.0.0.1'), () => say('flood 2', 'amzn1.ask.account.U2', '10.0.0.1'),
      () => say('flood 3', 'amzn1.ask.account.U3', '10.0.0.1'), () => say('other address', 'amzn1.ask.account.U4', '10.0.0.2')]);
    await release();
    await Promise.all(sent);
    t.same(answered, ['flood 1', 'other address', 'flood 2', 'flood 3'], "the other address's request is admitted before the flood's waiting ones");
  });
});
