// The skill inside the real server (lib/server/app), answered by a real tiny GPT-2 through the server's chat
// function: configured from server_config.json's "alexa" section, and mounted by hand with a test
// certificate authority to show signed requests pass through the server's middleware byte for byte.
import fs from 'node:fs';
import t from 'tap';
import { validateAlexaConfig } from '../../lib/server/alexa/config';
import { buildPrompt } from '../../lib/server/alexa/conversation';
import { createAlexaRouter } from '../../lib/server/alexa/router';
import { ssml } from '../../lib/server/alexa/speech';
import { makeModels, startServer, tempDir, type Running } from '../server/helpers';
import { attributesOf, CERT_BASE, intent, launch, post, signatureHeaders, SKILL_ID, ssmlOf, startCertServer } from './harness';
import { createTestPki } from './pki';

const MAX_TOKENS = 8;
// Made before the server starts: openssl runs synchronously and would stall the server's keep-alive sockets.
const pki = createTestPki();
let dir: string;
let srv: Running;

t.before(async () => {
  dir = tempDir('alexa');
  await makeModels(dir, { bot: 5, other: 6 }, 'Hello', 4);
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

// What the configured model itself says to `prompt`, through the same chat function the skill uses.
async function modelSays(prompt: string): Promise<string> {
  const reply = await srv.server.chat('dixie', prompt, { deadlineMs: 30_000, maxTokens: MAX_TOKENS, signal: new AbortController().signal });
  return ssml(reply.text).ssml;
}

t.test('configured from the alexa section: mounted at /alexa, warns that verification is off', async (t) => {
  t.ok(srv.logs.some((l) => l.level === 'warn' && /verify_signatures is false/.test(String(l.msg))), 'the warning is in the server log');
  const hello = await post(`${srv.url}/alexa`, JSON.stringify(launch()));
  t.equal(hello.status, 200);
  t.equal(ssmlOf(hello), '<speak>Hi from the server.</speak>');
  t.equal((await post(`${srv.url}/alexa`, JSON.stringify(launch({ applicationId: 'amzn1.ask.skill.other' })))).status, 403);
});

t.test('a two-turn conversation answered by the configured model', async (t) => {
  const first = await post(`${srv.url}/alexa`, JSON.stringify(intent('ChatIntent', { utterance: 'how are you' }, { attributes: { history: [] } })));
  t.equal(first.status, 200);
  t.equal(ssmlOf(first), await modelSays(buildPrompt([], 'how are you', 'mom', 2400)), 'the greedy reply of model "dixie" to the chat prompt');
  const history = attributesOf(first).history as { from: 'user' | 'bot'; text: string }[];
  t.same(history.map((m) => m.from), ['user', 'bot']);

  const second = await post(`${srv.url}/alexa`, JSON.stringify(intent('ChatIntent', { utterance: 'tell me more' }, { attributes: attributesOf(first) })));
  t.equal(ssmlOf(second), await modelSays(buildPrompt(history, 'tell me more', 'mom', 2400)), 'the second prompt holds the first turn');
  t.equal((attributesOf(second).history as unknown[]).length, 4);
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
  t.equal(ssmlOf(signed), await modelSays(buildPrompt([], 'hello there', 'alexa', 2400)));
  const altered = await post(`${srv.url}/signed`, raw.replace('hello there', 'hello where'), headers);
  t.equal(altered.status, 401);
  t.match(altered.body.error, /does not match the request body/);
  t.equal((await post(`${srv.url}/signed`, raw)).status, 401, 'unsigned');
});
