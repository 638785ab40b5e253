// ChatSession (bin/chat's conversation) on a real tiny GPT-2: the prompts the model gets, in the chat format's
// roles, and the conversation's oldest messages dropped to fit the context.
import t from 'tap';
import { messageText } from '../../lib/data/chat_format';
import { Model } from '../../lib/engine/model';
import { ChatSession } from '../../lib/generate/chat';
import { Generator } from '../../lib/generate/generate';
import { loadTokenizer } from '../../lib/tokenizer';

const tokenizer = loadTokenizer();
const model = Model.create({ nLayer: 2, nHead: 2, nEmbd: 16, nCtx: 128, vocabSize: 50257 }, { seed: 4, trainable: false });
const generator = new Generator(model, tokenizer, { slots: 1 });
t.teardown(async () => {
  await generator.close();
  model.dispose();
});

const count = (text: string): number => tokenizer.encode(text, { allowSpecial: false }).length;

t.test('the user writes as "you" (side 1), the model answers as the audience (side 0)', async (t) => {
  const session = new ChatSession(generator, { audience: 'mom', maxTokens: 8, temperature: 0 });
  t.equal(session.prompt('Hi mom'), '1|mom|Hi mom <EOM>\n0|mom|');
  const first = await session.send('Hi mom');
  t.notMatch(first.result.text, /<EOM>|\n/, 'the reply stops at the end of its message');
  t.notMatch(first.text, /\||<EOM>|\n/, 'and is shown sanitized');
  t.equal(session.prompt('How are you?\n<EOM>'), `1|mom|Hi mom <EOM>\n0|mom|${messageText(first.result.text)} <EOM>\n1|mom|How are you? <EOM>\n0|mom|`);
  const second = await session.send('How are you?');
  t.equal(
    session.prompt('Bye'),
    `1|mom|Hi mom <EOM>\n0|mom|${messageText(first.result.text)} <EOM>\n1|mom|How are you? <EOM>\n0|mom|${messageText(second.result.text)} <EOM>\n1|mom|Bye <EOM>\n0|mom|`,
    'the conversation so far, then the new message and the reply prefix',
  );
  session.reset();
  t.equal(session.prompt('Bye'), '1|mom|Bye <EOM>\n0|mom|', 'reset forgets the conversation');
  t.throws(() => new ChatSession(generator, { audience: 'mom|dad' }), /audience must be 1 to 64 characters/);
  // From JavaScript: options missing or wrong.
  const refused: [unknown, RegExp][] = [
    [{}, /ChatSession: options\.audience must name whom the model answers as, such as \{ audience: "Alice" \}, got \{\}/],
    [undefined, /options\.audience must name whom the model answers as.*, got undefined/],
    [{ audience: 'mom', maxTokens: NaN }, /ChatSession: options\.maxTokens must be an integer >= 1, got NaN/],
    [{ audience: 'mom', maxTokens: '5' }, /options\.maxTokens must be an integer >= 1, got "5"/],
  ];
  for (const [options, message] of refused) t.throws(() => new ChatSession(generator, options as never), message);
});

t.test("the oldest messages go first, whole and a step at a time, so that the prompt and a full reply fit the context", async (t) => {
  const maxTokens = 40;  // leaves 88 of the 128 tokens of context for the prompt
  const session = new ChatSession(generator, { audience: 'dad', maxTokens, temperature: 0 });
  const said = ['Hey Dad, how was the game?', 'Did you fix the heater?', 'Save me some lasagna.'];
  const all: string[] = [];
  for (const text of said) {
    const reply = await session.send(text);
    all.push(`1|dad|${text} <EOM>\n`, `0|dad|${messageText(reply.result.text)} <EOM>\n`);
  }
  all.push('1|dad|See you Friday. <EOM>\n');
  const prompt = session.prompt('See you Friday.');
  t.ok(count(prompt) <= 128 - maxTokens, `${count(prompt)} tokens`);
  const kept = all.findIndex((_, i) => all.slice(i).join('') + '0|dad|' === prompt);
  t.ok(kept > 0 && kept < all.length - 1, `the newest ${all.length - kept} of ${all.length} messages, whole`);
  // The oldest go a step (half the room) at a time, so that the next turns keep this one's start: at most
  // a step and two messages fewer than fit.
  const room = 128 - maxTokens;
  const longest = Math.max(...all.map(count));
  t.ok(count(prompt) > room - Math.floor(room / 2) - 2 * longest, `${count(prompt)} tokens: at most a step and two messages fewer than fit`);
});
