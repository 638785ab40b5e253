// Routers mounted into the server: the Alexa skill from the config's "alexa" section, answered by a real model
// through the server's chat function, and any router passed to mount(), ahead of the API-key check.
import fs from 'node:fs';
import express from 'express';
import t from 'tap';
import { lastCompleteSentence, speakable } from '../../lib/server/alexa/speech';
import { intent, launch } from '../alexa/harness';
import { makeModels, request, startServer, tempDir } from './helpers';

const SKILL_ID = 'amzn1.ask.skill.00000000-1111-2222-3333-444444444444';
const API_KEY = 'mount-test-key-0123456789';

t.test('the alexa section mounts the skill, which answers with the model through chat()', async (t) => {
  const dir = tempDir('mount');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await makeModels(dir, { alpha: 1 }, 'x', 1);
  const srv = await startServer({
    models: [{ key: 'chatbot', restore_from: 'alpha', sanitizer: 'sanitizers.chatbot', sampling: { temperature: 0, penalize: 0 } }],
    api_keys: [API_KEY],
    alexa: { application_id: SKILL_ID, verify_signatures: false, max_tokens: 6, deadline_ms: 6000 },
  }, dir);
  t.teardown(srv.close);

  const hello = await request(`${srv.url}/alexa`, { raw: JSON.stringify(launch({ applicationId: SKILL_ID })) });
  t.equal(hello.status, 200, 'Alexa needs no API key: it is verified by signature');
  t.match(JSON.stringify(hello.json()), /Dixie/);

  const asked = await request(`${srv.url}/alexa`, { raw: JSON.stringify(intent('ChatIntent', { utterance: 'how big is the earth' }, { applicationId: SKILL_ID })) });
  t.equal(asked.status, 200);
  const history = (asked.json().sessionAttributes as { history: { from: string; text: string }[] }).history;
  t.equal(history.length, 2);
  t.equal(history[0].text, 'how big is the earth');
  // The reply is what the model answers to the same conversation through chat(), cleaned by its sanitizer;
  // both times the model was given the same chat-format prompt: the user on side 1, the bot answering on side 0.
  const conversation = { audience: 'user', turns: [{ from: 'user' as const, text: 'how big is the earth' }] };
  const direct = await srv.server.chat('chatbot', conversation, { deadlineMs: 6000, maxTokens: 6, maxPromptChars: 2400, signal: new AbortController().signal });
  const prompts = srv.logs.filter((l) => l.msg === 'generated').map((l) => l.prompt);
  t.same(prompts, ['1|user|how big is the earth <EOM>\n0|user|', '1|user|how big is the earth <EOM>\n0|user|']);
  t.equal(history[1].text, speakable(direct.finishReason === 'stop' ? direct.text : lastCompleteSentence(direct.text)));
  t.ok(['stop', 'length'].includes(direct.finishReason));
  const list = (await request(`${srv.url}/models/list`, { headers: { 'x-api-key': API_KEY } })).json();
  t.equal((list.models as Record<string, unknown>[])[0].num_inferences, 2, 'the skill and the direct call were both counted');
});

t.test('mount() adds a router ahead of authentication and of the 404 handler', async (t) => {
  const dir = tempDir('mount');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await makeModels(dir, { alpha: 1 }, 'x', 1);
  const srv = await startServer({ models: [{ key: 'chatbot', restore_from: 'alpha' }], api_keys: [API_KEY] }, dir);
  t.teardown(srv.close);
  const router = express.Router();
  router.get('/extra', (_req, res) => {
    res.json({ ok: true });
  });
  srv.server.mount(router);
  const r = await request(`${srv.url}/extra`);
  t.equal(r.status, 200);
  t.same(r.json(), { ok: true });
  t.equal((await request(`${srv.url}/models/list`)).status, 401, 'the API itself still needs its key');
});
