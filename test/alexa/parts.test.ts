// The skill's parts on their own: config validation, the prompt, speech and SSML, the URL rules, and the
// interaction model shipped for the Alexa developer console.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ALEXA_DEFAULTS, validateAlexaConfig } from '../../lib/server/alexa/config';
import type { Turn } from '../../lib/data/chat_format';
import { historyFrom, keepRecent } from '../../lib/server/alexa/conversation';
import { CHAT_INTENT, UTTERANCE_SLOT } from '../../lib/server/alexa/router';
import { lastCompleteSentence, MAX_SPEECH_CHARS, speakable, ssml } from '../../lib/server/alexa/speech';
import { checkCertChainUrl, checkTimestamp } from '../../lib/server/alexa/verify';
import { escapeXml } from '../../lib/util/xml';

const ID = 'amzn1.ask.skill.abc';

t.test('config: defaults, and errors that name the field', async (t) => {
  t.same(validateAlexaConfig({ application_id: ID }, 'alexa'), { ...ALEXA_DEFAULTS, applicationId: ID });
  t.equal(ALEXA_DEFAULTS.deadlineMs, 6500);
  t.equal(ALEXA_DEFAULTS.verifySignatures, true, 'verification is on unless turned off');
  const full = validateAlexaConfig({ application_id: ID, path: '/skills/dixie', model_key: 'mom', verify_signatures: false, deadline_ms: 5000, audience: 'mom', max_history_turns: 2 }, 'alexa');
  t.match(full, { path: '/skills/dixie', modelKey: 'mom', verifySignatures: false, deadlineMs: 5000, audience: 'mom', maxHistoryTurns: 2 });
  const cases: [unknown, RegExp][] = [
    [{}, /^cfg\.application_id: required/],
    [{ application_id: 'my-skill' }, /^cfg\.application_id: must be the skill id/],
    [{ application_id: ID, deadline_ms: 9000 }, /^cfg\.deadline_ms: must be an integer from 500 to 7500 \(got 9000\)/],
    [{ application_id: ID, deadline_ms: '6500' }, /^cfg\.deadline_ms: must be an integer/],
    [{ application_id: ID, verify_signatures: 'no' }, /^cfg\.verify_signatures: must be true or false/],
    [{ application_id: ID, audience: 'a|b' }, /^cfg\.audience: must be a name of 1 to 64 characters, not all blank, without "\|"/],
    [{ application_id: ID, path: 'alexa' }, /^cfg\.path: must be a URL path starting with \//],
    [{ application_id: ID, greeting: '  ' }, /^cfg\.greeting: must be a non-empty string/],
    [{ application_id: ID, verify_signature: false }, /^cfg\.verify_signature: unknown setting/],
    [{ application_id: ID, constructor: 1 }, /^cfg\.constructor: unknown setting/],
    [JSON.parse(`{"application_id": "${ID}", "__proto__": {"verify_signatures": false}}`), /^cfg\.__proto__: unknown setting/],
    [[], /^cfg: must be an object/],
  ];
  for (const [raw, message] of cases) t.throws(() => validateAlexaConfig(raw, 'cfg'), { message }, JSON.stringify(raw));
});

// The prompt made of the history: test/data/chat_format.test.ts, and the real server's in server.test.ts.
t.test('history: checked as it comes back from the session, bounded to the latest turns', async (t) => {
  const history: Turn[] = [
    { from: 'user', text: 'first question' },
    { from: 'bot', text: 'first answer' },
    { from: 'user', text: 'second question' },
    { from: 'bot', text: 'second answer' },
  ];
  t.same(keepRecent(history, 1), history.slice(2));
  t.same(keepRecent(history, 0), []);
  t.same(historyFrom({ history }), history);
  t.same(historyFrom({}), [], 'a new session has none');
  t.throws(() => historyFrom({ history: [{ from: 'bot', text: 7 }] }), /^session\.attributes\.history\[0\]\.text: must be a string/);
  t.throws(() => historyFrom({ history: 'hi' }), /must be an array/);
});

t.test('speech: sentences, SSML escaping, characters Alexa rejects, length', async (t) => {
  t.equal(lastCompleteSentence('Hi there. How are you? I was'), 'Hi there. How are you?');
  t.equal(lastCompleteSentence('She said "stop." Then she'), 'She said "stop."');
  t.equal(lastCompleteSentence('Wait... what'), 'Wait...');
  t.equal(lastCompleteSentence('no sentence end here'), 'no sentence end here');
  t.equal(lastCompleteSentence('version 3.5 is out'), 'version 3.5 is out', 'a decimal point is not a sentence end');
  t.equal(escapeXml(`a & b < c > d "e" 'f'`), 'a &amp; b &lt; c &gt; d &quot;e&quot; &apos;f&apos;');
  t.equal(speakable('a\u0000b\u001Fc \uD800 d\n\t e'), 'abc d e');
  t.same(ssml('<speak>x</speak>'), { type: 'SSML', ssml: '<speak>&lt;speak&gt;x&lt;/speak&gt;</speak>' });
  const long = speakable('word '.repeat(3000));
  t.ok(long.length <= MAX_SPEECH_CHARS && long.endsWith('word'), 'bounded at a word boundary');
});

t.test('certificate URL rules and timestamp tolerance', async (t) => {
  t.equal(checkCertChainUrl('https://s3.amazonaws.com/echo.api/echo-api-cert.pem').href, 'https://s3.amazonaws.com/echo.api/echo-api-cert.pem');
  t.equal(checkCertChainUrl('https://s3.amazonaws.com/echo.api/../echo.api/echo-api-cert.pem').pathname, '/echo.api/echo-api-cert.pem');
  t.equal(checkCertChainUrl('HTTPS://S3.AMAZONAWS.COM:443/echo.api/c.pem').href, 'https://s3.amazonaws.com/echo.api/c.pem');
  for (const bad of [
    'http://s3.amazonaws.com/echo.api/echo-api-cert.pem',
    'https://notamazon.com/echo.api/echo-api-cert.pem',
    'https://s3.amazonaws.com/EcHo.aPi/echo-api-cert.pem',
    'https://s3.amazonaws.com/invalid.path/echo-api-cert.pem',
    'https://s3.amazonaws.com:563/echo.api/echo-api-cert.pem',
    'https://s3.amazonaws.com/echo.api/%2e%2e/x/echo-api-cert.pem',
    'https://user:pw@s3.amazonaws.com/echo.api/echo-api-cert.pem',
  ]) {
    t.throws(() => checkCertChainUrl(bad), { name: 'AlexaRejection', status: 401 }, bad);
  }
  const now = Date.parse('2026-01-01T00:00:00Z');
  t.doesNotThrow(() => checkTimestamp('2025-12-31T23:57:30Z', now), '150 s old');
  t.throws(() => checkTimestamp('2025-12-31T23:57:29Z', now), { name: 'AlexaRejection', status: 400 }, '151 s old');
  t.throws(() => checkTimestamp('yesterday-ish', now), { name: 'AlexaRejection', status: 400 });
});

t.test('the interaction model matches the router', async (t) => {
  const file = path.join(__dirname, '../../../alexa/interaction-model.json');
  const model = JSON.parse(fs.readFileSync(file, 'utf8')).interactionModel.languageModel;
  t.match(model.invocationName, /^[a-z]+( [a-z]+)+$/, 'two or more lowercase words');
  const intents = new Map<string, { slots?: { name: string; type: string }[]; samples: string[] }>(model.intents.map((i: { name: string }) => [i.name, i]));
  for (const builtIn of ['AMAZON.HelpIntent', 'AMAZON.StopIntent', 'AMAZON.CancelIntent', 'AMAZON.FallbackIntent', 'AMAZON.NavigateHomeIntent']) {
    t.ok(intents.has(builtIn), builtIn);
  }
  const chat = intents.get(CHAT_INTENT);
  t.same(chat?.slots, [{ name: UTTERANCE_SLOT, type: 'AMAZON.SearchQuery' }]);
  t.ok(chat!.samples.length >= 10);
  for (const sample of chat!.samples) {
    // AMAZON.SearchQuery needs a carrier phrase beside the slot.
    t.match(sample, new RegExp(`^[a-zA-Z' ]+ \\{${UTTERANCE_SLOT}\\}$`), sample);
  }
  t.equal(new Set(chat!.samples.map((s) => s.toLowerCase())).size, chat!.samples.length, 'no duplicate samples');
});
