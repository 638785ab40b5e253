// The deadline holds with a deliberately slow model: the answer comes back within the budget, cut at the end of
// its last complete sentence; a model that ignores the deadline is abandoned in time.
import t from 'tap';
import type { ChatFn, ConversationOptions } from '../../lib/server/service';
import { attributesOf, intent, launch, post, ssmlOf, startSkill } from './harness';

const DEADLINE_MS = 1500;
const STORY = 'The first sentence is short. The second one says a little more! Is the third a question? '
  + 'The fourth goes on and on, word after word, far longer than any deadline allows, because this model is slow and talkative and never stops.';
const WORDS = STORY.split(' ');
// Every way STORY can be cut at a sentence end.
const SENTENCE_PREFIXES = STORY.match(/[^.!?]+[.!?]/g)!.map((_, i, all) => all.slice(0, i + 1).join('').trim());

// Produces one word every 40 ms, as a slow model on a busy machine would, and stops at the deadline it is given.
function slowModel(): { chat: ChatFn; calls: { options: ConversationOptions; words: number }[] } {
  const calls: { options: ConversationOptions; words: number }[] = [];
  const chat: ChatFn = async (_model, _prompt, options) => {
    const call = { options, words: 0 };
    calls.push(call);
    const stopAt = performance.now() + options.deadlineMs;
    while (call.words < WORDS.length) {
      // A word takes 40 ms; one still coming at the deadline is given up there, as the Batcher gives up its step.
      const wait = Math.min(40, stopAt - performance.now());
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
      if (wait < 40 || performance.now() >= stopAt) return { text: WORDS.slice(0, call.words).join(' '), finishReason: 'deadline' };
      call.words++;
    }
    return { text: STORY, finishReason: 'stop' };
  };
  return { chat, calls };
}

t.test('a slow model is stopped in time and its reply cut at a sentence end', async (t) => {
  const model = slowModel();
  const skill = await startSkill({ verify_signatures: false, deadline_ms: DEADLINE_MS }, model.chat);
  t.teardown(skill.close);
  await post(skill.url, JSON.stringify(launch())); // the first request in a process loads the HTTP client and server code
  const answer = await post(skill.url, JSON.stringify(intent('ChatIntent', { utterance: 'tell me a story' })));
  t.equal(answer.status, 200);
  t.ok(answer.ms < DEADLINE_MS, `answered in ${answer.ms.toFixed(0)} ms (budget ${DEADLINE_MS} ms)`);
  const call = model.calls[0];
  t.ok(call.options.deadlineMs > 0 && call.options.deadlineMs < DEADLINE_MS, `generation budget ${call.options.deadlineMs} ms`);
  t.ok(call.words > 0 && call.words < WORDS.length, `the model was cut after ${call.words} of ${WORDS.length} words`);
  const said = ssmlOf(answer).replace(/^<speak>|<\/speak>$/g, '').replace(/&apos;/g, "'");
  t.ok(SENTENCE_PREFIXES.slice(0, -1).includes(said), `spoke whole sentences only: ${JSON.stringify(said)}`);
  t.same(attributesOf(answer).history, [{ from: 'user', text: 'tell me a story' }, { from: 'bot', text: said }], 'the history holds what was said');
});

t.test('a model that ignores the deadline is abandoned and the skill apologises in time', async (t) => {
  const signals: AbortSignal[] = [];
  const stubborn: ChatFn = (_model, _prompt, options) => {
    signals.push(options.signal);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ text: 'Too late.', finishReason: 'stop' }), 5000);
      options.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve({ text: 'Aborted.', finishReason: 'deadline' });
      });
    });
  };
  const skill = await startSkill({ verify_signatures: false, deadline_ms: DEADLINE_MS }, stubborn);
  t.teardown(skill.close);
  await post(skill.url, JSON.stringify(launch()));
  const before = [{ from: 'user', text: 'hi' }, { from: 'bot', text: 'Hello.' }];
  const answer = await post(skill.url, JSON.stringify(intent('ChatIntent', { utterance: 'are you there' }, { attributes: { history: before } })));
  t.equal(answer.status, 200);
  t.ok(answer.ms < DEADLINE_MS, `answered in ${answer.ms.toFixed(0)} ms (budget ${DEADLINE_MS} ms)`);
  t.match(ssmlOf(answer), /thinking too slowly/);
  t.equal(signals[0].aborted, true, 'the model was told to stop');
  t.same(attributesOf(answer).history, before, 'the unanswered utterance is not recorded');
  t.ok(skill.logs.some((l) => l.message === 'chat missed the deadline'));
});

t.test('a reply cut by the token limit is also trimmed to whole sentences; a finished one is not', async (t) => {
  let reply = { text: 'One sentence. Two sentences and then', finishReason: 'length' as const };
  const skill = await startSkill({ verify_signatures: false }, async () => reply);
  t.teardown(skill.close);
  const cut = await post(skill.url, JSON.stringify(intent('ChatIntent', { utterance: 'go' })));
  t.equal(ssmlOf(cut), '<speak>One sentence.</speak>');
  reply = { ...reply, finishReason: 'stop' as 'length' };
  const whole = await post(skill.url, JSON.stringify(intent('ChatIntent', { utterance: 'go' })));
  t.equal(ssmlOf(whole), '<speak>One sentence. Two sentences and then</speak>');
});
