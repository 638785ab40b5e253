import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import t from 'tap';
import type { Sanitizer } from '../../lib/sanitize';
import { createChatbotSanitizer, loadSanitizer } from '../../lib/sanitize';

// The example in the TensorFlow tools' sanitizers/chatbot.py (docs/compatibility.md).
const ORIGINAL_EXAMPLE = "1|yahia|I don't have access yet <EOM>0|yahia|I don't mind sending it to you, it will be public <EOM>1|yahia|Thank You! <EOM>0|yahia|TOM! Did we get a resourcing matrix? I was under the impression that Christine did the initial selection! And then Neha did a supplemental interview <EOM> 1|yahia|That\u2019s\u2019right. Neha got a 1 <EOM> 0|yahia|oh that'";

// In a chat the bot answers as the audience, side 0 (lib/data/chat_format.ts): its reply continues the prompt's
// `0|<audience>|`, and the user writes on side 1.

// Whether the reply to `text` is complete (no later text can change it), as the stream says after it.
function complete(s: Sanitizer, text: string): boolean {
  return s.stream().push(text).complete;
}

t.test('sanitizers/chatbot.py\'s example: the first message, then the bot\'s own, stopping where the user (side 1) speaks', async (t) => {
  const s = createChatbotSanitizer({ names: ['yahia'] });
  t.equal(s.sanitize(ORIGINAL_EXAMPLE), "I don't have access yet I don't mind sending it to you, it will be public");
  t.ok(complete(s, ORIGINAL_EXAMPLE));
});

t.test('sanitizers/chatbot.py\'s example with both sides kept (keepOtherSide): four messages', async (t) => {
  const s = createChatbotSanitizer({ names: ['yahia'], keepOtherSide: true });
  t.equal(
    s.sanitize(ORIGINAL_EXAMPLE),
    "I don't have access yet I don't mind sending it to you, it will be public Thank You! TOM! Did we get a resourcing matrix? I was under the impression that Christine did the initial selection! And then Neha did a supplemental interview",
  );
  t.equal(createChatbotSanitizer({ keepOtherSide: true, maxMessages: 2 }).sanitize(ORIGINAL_EXAMPLE), "I don't have access yet I don't mind sending it to you, it will be public");
});

t.test('prefixes of any audience are stripped, with or without "+"', async (t) => {
  const s = createChatbotSanitizer();
  t.equal(s.sanitize('0|mom|Hi! <EOM>0|+dad|How are you? <EOM>\n0|Jo Ann|Fine'), 'Hi! How are you? Fine');
  t.equal(s.sanitize('1|mom|Hi! <EOM>0|mom|Fine'), 'Hi! Fine', 'the first message continues the prompt, whatever its prefix');
  t.equal(s.sanitize('Sure thing 0|mom|see you'), 'Sure thing see you', "the bot's own prefix run into the text starts its next message");
  t.equal(s.sanitize('Sure thing 1|mom|see you'), 'Sure thing', "the user's prefix run into the text ends the reply");
});

t.test('any sign of a new message ends the message: a pipe, with the side digit or audience written against it', async (t) => {
  const s = createChatbotSanitizer({ names: ['mom', 'grandma', 'Jo Ann'] });
  t.equal(s.sanitize('I will call Grandma! 1|grandma. Oh no, how are you?'), 'I will call Grandma!', 'a side digit and a broken prefix');
  t.equal(s.sanitize('I made soup, come by if you want some. mom|Love you too!'), 'I made soup, come by if you want some.', 'an audience name against a pipe');
  t.equal(s.sanitize('I made soup. <EOM>\nmom|Love you too!'), 'I made soup.', 'a line that starts with a prefix without its side');
  t.equal(s.sanitize('Fine <EOM>\n|mom|yes'), 'Fine');
  t.equal(s.sanitize('ok |mom| bye |+mom|'), 'ok', 'a stray |name|');
  t.equal(s.sanitize('see you Jo Ann|Fine'), 'see you', 'names of several words');
  t.equal(s.sanitize('Sure!1|mom|no'), 'Sure!', 'a side digit against the text');
  t.equal(s.sanitize('Room 101|x'), 'Room 101', 'the last digit of a number is no side');
  t.equal(s.sanitize('done | more'), 'done', 'a pipe alone');
  t.equal(s.sanitize('you<EOM EOM>\n0|mom|ok'), 'you ok', 'a broken <EOM> ends the message too');
  t.equal(s.sanitize('fine EOM> 1|mom|x'), 'fine', 'and so does its other half');
  t.equal(s.sanitize('grand willI.EOMale theyes'), 'grand willI. ale theyes', 'and a bare EOM, written into a word, as <EOM> there would');
  t.equal(s.sanitize('fine EOM'), 'fine', 'or at the very end');
  t.equal(createChatbotSanitizer().sanitize('you want some. mom|Love you too!'), 'you want some. mom', 'an unknown name against a pipe stays a word');
  t.equal(s.sanitize('Fine 0|mom|More 1|grandma. no'), 'Fine More', 'the bot may go on in a message of its own, until a broken one');
  t.ok(complete(s, 'Hi 1|mom. and more <EOM>'), 'a prefix that cannot be whole any more ends the reply');
  t.ok(complete(s, `Hi 1|${'x'.repeat(65)}`), 'nor can one with an audience too long');
  t.notOk(complete(s, 'Hi 1|mo'), 'a prefix still being written may yet be whole');
  t.equal(s.sanitize('Hi 1|mo'), 'Hi', 'and is not shown');
});

t.test('settled: what a stream can show for good, never taken back', async (t) => {
  const stream = createChatbotSanitizer({ names: ['grandma'] }).stream();
  const steps = ['I will ', 'call Gra', 'ndma! 1', '|grandma', '. Oh no <EOM>'].map((piece) => stream.push(piece));
  t.same(steps.map((r) => r.settled), ['I', 'I will call', 'I will call Grandma!', 'I will call Grandma!', 'I will call Grandma!'], 'the last word is held');
  t.same(steps.map((r) => r.text), ['I will', 'I will call Gra', 'I will call Grandma!', 'I will call Grandma!', 'I will call Grandma!'], 'a side digit at the end is no word');
  const named = createChatbotSanitizer({ names: ['grandma'] }).stream();
  t.same(['Love you grandma', '|Hi'].map((piece) => named.push(piece).text), ['Love you grandma', 'Love you'], 'the text may shrink');
  t.same(steps.map((r) => r.complete), [false, false, false, false, true]);
  const tag = createChatbotSanitizer().stream();
  t.equal(tag.push('a <b href="x y" ').settled, 'a', 'a tag still open is held');
  t.equal(tag.push('c>d e').settled, 'a d');
});

t.test('keeps up to maxMessages messages', async (t) => {
  const text = 'a <EOM>0|x|b <EOM>0|x|c <EOM>0|x|d <EOM>0|x|e <EOM>';
  t.equal(createChatbotSanitizer().sanitize(text), 'a b c d');
  t.equal(createChatbotSanitizer({ maxMessages: 2 }).sanitize(text), 'a b');
  t.equal(createChatbotSanitizer({ maxMessages: 1 }).sanitize('just one'), 'just one');
  t.throws(() => createChatbotSanitizer({ maxMessages: 0 }), /maxMessages/);
});

t.test("the bot's message ends at <EOM>, at a line break, or where the user's line starts", async (t) => {
  const one = createChatbotSanitizer({ maxMessages: 1 });
  for (const text of ['Fine, thanks <EOM>\n1|mom|great', 'Fine, thanks <EOM>0|mom|more', 'Fine, thanks\n1|mom|great', 'Fine, thanks\r\nmore', 'Fine, thanks\n']) {
    t.equal(one.sanitize(text), 'Fine, thanks', JSON.stringify(text));
    t.ok(complete(one, text), `complete: ${JSON.stringify(text)}`);
  }
  const s = createChatbotSanitizer();
  t.equal(s.sanitize('Fine <EOM>\n0|mom|More <EOM>\n1|mom|and me <EOM>\n0|mom|not this'), 'Fine More', 'the bot may send several messages in a row');
  t.ok(complete(s, 'Fine <EOM>\n0|mom|More <EOM>\n1|mom|'));
  t.equal(s.sanitize('Fine\n1|mom|no'), 'Fine', 'a line break ends the message even without <EOM>');
  t.equal(s.sanitize('Fine\nMore\n'), 'Fine More', 'a line without a prefix is a message of its own');
  const two = createChatbotSanitizer({ maxMessages: 2 });
  t.equal(two.sanitize('Hi <EOM>\n\n\r\n0|mom|there <EOM>\n0|mom|not this'), 'Hi there', 'blank lines are no messages');
  t.equal(one.sanitize('\n0|mom|hello <EOM>'), 'hello', 'nor is an empty first line');
  t.equal(one.sanitize('<EOM>\n1|mom|hello'), '', 'an empty reply stays empty');
});

t.test('isComplete: enough whole messages, or the user started; not while a message is being written', async (t) => {
  const s = createChatbotSanitizer({ maxMessages: 2 });
  t.notOk(complete(s, 'Hello'));
  t.notOk(complete(s, 'Hello <EOM>'));
  t.notOk(complete(s, 'Hello <EOM>\n'));
  t.notOk(complete(s, 'Hello <EOM>0|x|there'));
  t.ok(complete(s, 'Hello <EOM>0|x|there <EOM>'));
  t.ok(complete(s, 'Hello <EOM>1|x|'));
  t.ok(complete(s, 'Hello\n1|x|'));
  t.notOk(complete(s, 'Hello <EOM>1|x'), 'a prefix still being written');
  t.equal(s.sanitize('Hello <EOM>1|x'), 'Hello', 'a prefix being written is not shown');
  t.equal(s.sanitize('Hello <EOM>\n0'), 'Hello');
});

t.test('markup, URLs, end-of-text and a half-written <EOM> go', async (t) => {
  const s = createChatbotSanitizer();
  t.equal(s.sanitize('<b>bold</b> &amp; <i>it</i> &#39;s'), 'bold it s');
  t.equal(s.sanitize('see https://example.com/a?b=1&c=2 and www.foo.org/x now'), 'see and now');
  t.equal(s.sanitize('the end<|endoftext|>Another doc'), 'the end Another doc');
  t.equal(s.sanitize('Hi <EOM>0|<|endoftext|>'), 'Hi', "end-of-text's pipes close no prefix");
  t.equal(s.sanitize('Hello there <EO'), 'Hello there');
  t.equal(s.sanitize('Hello there <E'), 'Hello there');
  t.equal(s.sanitize('Hello there <'), 'Hello there');
});

t.test('symbols a speech engine reads badly go; words, apostrophes and punctuation stay', async (t) => {
  const s = createChatbotSanitizer();
  t.equal(s.sanitize("a b = c + d (e) [f] {g} #h *i* ~j ^k `l` \\m @n $o %p -- q"), 'a b c d e f g h i j k l m n o p q');
  t.equal(s.sanitize('love it \u2764\uFE0F \u2615\uFE0F \uD83D\uDE2C \uD83D\uDC4D\uD83C\uDFFD \uD83D\uDC68\u200D\uD83D\uDC69\u200D\uD83D\uDC67 ok'), 'love it ok');
  t.equal(s.sanitize("Don't stop, it's \"fine\": really? Yes! well-known."), "Don't stop, it's \"fine\": really? Yes! well-known.");
});

t.test('whitespace collapses', async (t) => {
  t.equal(createChatbotSanitizer().sanitize('  a\t\t b   c\u00a0 d \r\n'), 'a b c d');
});

t.test('configured acronyms are spelled out as whole words, case-sensitively', async (t) => {
  const s = createChatbotSanitizer({ acronyms: { COE: 'C. O. E.', SEA: 'S. E. A.' } });
  t.equal(s.sanitize('The COE met in SEA.'), 'The C. O. E. met in S. E. A.');
  t.equal(s.sanitize('COEX and coe and SEAL stay'), 'COEX and coe and SEAL stay');
  t.equal(s.sanitize('1|x|COE <EOM>'), 'C. O. E.');
});

t.test('property: nothing of the chat format, markup or URLs survives, whatever the model writes', async (t) => {
  const pieces = fc.constantFrom('<EOM>', 'EOM', 'E', 'OM', '0|mom|', '1|mom|', '1|+dad|', '|', '<', '>', 'http://x.io/a', 'www.y.com', '<b>', '&amp;', '<|endoftext|>', ' ', '\n', 'hello', "it's", 'COE', '\u2764\uFE0F', '--', '=', '(', ')');
  const s = createChatbotSanitizer({ names: ['mom'], acronyms: { COE: 'C. O. E.' } });
  fc.assert(
    fc.property(fc.array(fc.oneof(pieces, fc.string({ maxLength: 4 })), { maxLength: 40 }), (parts) => {
      const out = s.sanitize(parts.join(''));
      return !/EOM|[|<>]|https?:|www\.|endoftext|\s{2}|^\s|\s$|\u2764|--|=/.test(out);
    }),
    { numRuns: 2000 },
  );
  t.pass('2000 random generations sanitized clean');
});

t.test('property: the stream, fed a text in any pieces, says what sanitize says of the whole; settled only grows; complete means final', async (t) => {
  const pieces = fc.constantFrom('<EOM>', '<EO', 'M>', '<EOM', 'EOM>', 'EOM', 'E', 'OM', '\n', '0|mom|', '1|mom|', '1|', 'mom|', '|', '<|endoftext|>', '<|end', 'oftext|>', ' ', 'hello', 'COE', 'http://x.io', '<b ', 'x>', 'Jo ', 'Ann', '1');
  const sanitizers = [createChatbotSanitizer(), createChatbotSanitizer({ maxMessages: 1, names: ['mom', 'Jo Ann'] }), createChatbotSanitizer({ keepOtherSide: true, names: ['mom'], acronyms: { COE: 'C. O. E.' } })];
  fc.assert(
    fc.property(fc.array(fc.oneof(pieces, fc.string({ maxLength: 3 })), { maxLength: 30 }), fc.nat(2), (parts, which) => {
      const s = sanitizers[which];
      const stream = s.stream();
      let text = '';
      let last = { text: '', settled: '', complete: false };
      const settled: string[] = [];
      for (const part of parts) {
        text += part;
        const was = last;
        last = stream.push(part);
        if (last.text !== s.sanitize(text)) return false;
        if (!last.text.startsWith(last.settled) || !last.settled.startsWith(was.settled)) return false;
        if (last.complete && last.settled !== last.text) return false;
        if (was.complete && last.text !== was.text) return false;  // complete: nothing later changes it
        settled.push(last.settled);
      }
      // What was settled along the way starts the reply of the whole text.
      return settled.every((t) => s.sanitize(text).startsWith(t));
    }),
    { numRuns: 3000 },
  );
  t.pass('3000 random generations, streamed in random pieces');
});

t.test('property: over random model output, the reply is cut at any sign of a new message and keeps none of it', async (t) => {
  // Model output: messages of plain words, each after a separator and a sign of a new message, well formed or
  // broken. The words hold no digit and no audience name, so any in the reply would be a fragment of a sign.
  const NAMES = ['mom', 'grandma', 'sam'];
  const word = fc.constantFrom('hello', 'there', 'how', 'are', 'you', 'Love', 'soup', 'I', 'will', 'call', 'Grandma!', 'Oh', 'no,', 'ok.', "it's", 'fine?', 'Mom');
  const text = fc.array(word, { minLength: 1, maxLength: 6 }).map((w) => w.join(' '));
  const separator = fc.constantFrom('', ' ', ' <EOM>', ' <EOM>\n', '\n', ' <EOM> ');
  const bot = fc.constantFrom('0|mom|', '0|+grandma|', '0|sam|');
  const user = fc.constantFrom('1|mom|', '1|+sam|');
  // (Not an unclosed "0|" or "0|mom ": with the next sign's "1|" it would make a whole prefix of the bot's, "0|mom hello 1|".)
  const broken = fc.constantFrom('1|mom.', '1|', 'mom|', '|mom|', '|', '1 |mom|', 'grandma|', '|+sam|', '1|grandma ');
  const message = fc.tuple(separator, fc.oneof(bot, user, broken), text);
  const s = createChatbotSanitizer({ names: NAMES });
  // A name is looked for in the reply to a whole output: one cut short may end in "mom", as the user's words may.
  const fragment = (whole: boolean) => new RegExp(`(^|\\s)([01]${whole ? `|${NAMES.join('|')}` : ''})(\\s|$|[.!?,])|[|<>]`);
  fc.assert(
    fc.property(text, fc.array(message, { maxLength: 6 }), fc.nat(), (first, rest, cut) => {
      const output = first + rest.map(([sep, sign, words]) => sep + sign + words).join('');
      const reply = s.sanitize(output.slice(0, output.length - (cut % 8)));
      if (fragment(cut % 8 === 0).test(reply)) return false;
      if (rest.length === 0 || cut % 8 !== 0) return true;
      // The first message is kept whole; a user's or broken sign after it ends the reply there.
      const [sep, sign] = rest[0];
      if (sep === '') return true;
      return reply.startsWith(first) && (/^0\|/.test(sign) || reply === first);
    }),
    { numRuns: 3000 },
  );
  t.pass('3000 random model outputs');
});

t.test('streaming: sanitizing a growing text only ever shows clean text and ends at the full answer', async (t) => {
  const s = createChatbotSanitizer({ names: ['yahia'], keepOtherSide: true });
  const full = s.sanitize(ORIGINAL_EXAMPLE);
  for (let i = 1; i <= ORIGINAL_EXAMPLE.length; i++) {
    const shown = s.sanitize(ORIGINAL_EXAMPLE.slice(0, i));
    if (/[|<>]/.test(shown)) t.fail(`prefix ${i} shows ${JSON.stringify(shown)}`);
  }
  t.equal(s.sanitize(ORIGINAL_EXAMPLE), full);
});

t.test('sanitizers by name and by module path', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-sanitize-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  t.equal(loadSanitizer('sanitizers.chatbot', { max_messages: 1 }, dir, 'm.sanitizer').sanitize('a <EOM>1|x|b'), 'a');
  t.equal(loadSanitizer('chatbot', { acronyms: { ADG: 'A. D. G.' } }, dir, 'm.sanitizer').sanitize('ADG'), 'A. D. G.');
  t.equal(loadSanitizer('none', {}, dir, 'm.sanitizer').sanitize(' <EOM> x '), ' <EOM> x ');
  fs.writeFileSync(path.join(dir, 'upper.js'), 'exports.sanitize = (text) => text.toUpperCase();\n');
  t.equal(loadSanitizer('./upper.js', {}, dir, 'm.sanitizer').sanitize('shout'), 'SHOUT');
  fs.writeFileSync(path.join(dir, 'made.js'), 'exports.createSanitizer = (o) => ({ sanitize: (t) => o.prefix + t, isComplete: (t) => t.length > 3 });\n');
  const made = loadSanitizer(path.join(dir, 'made.js'), { prefix: '> ' }, dir, 'm.sanitizer');
  t.equal(made.sanitize('hi'), '> hi');
  t.ok(complete(made, 'long'));
  fs.writeFileSync(path.join(dir, 'nothing.js'), 'exports.other = 1;\n');
  t.throws(() => loadSanitizer('./nothing.js', {}, dir, 'models[0].sanitizer'), /models\[0\]\.sanitizer: .*nothing\.js exports neither/);
  t.throws(() => loadSanitizer('./missing.js', {}, dir, 'models[0].sanitizer'), /models\[0\]\.sanitizer: cannot load sanitizer module/);
  t.throws(() => loadSanitizer('sanitizers.pirate', {}, dir, 'models[0].sanitizer'), /models\[0\]\.sanitizer: unknown sanitizer "sanitizers.pirate"/);
  t.throws(() => loadSanitizer('chatbot', { max_messages: 0 }, dir, 'models[0].sanitizer'), /models\[0\]\.sanitizer_options\.max_messages: must be an integer from 1 to 100/);
  t.throws(() => loadSanitizer('chatbot', { acronyms: { COE: 3 } }, dir, 'models[0].sanitizer'), /models\[0\]\.sanitizer_options\.acronyms\.COE: must be a string/);
  t.throws(() => loadSanitizer('chatbot', { names: ['a|b'] }, dir, 'models[0].sanitizer'), /models\[0\]\.sanitizer_options\.names\[0\]/);
  t.throws(() => loadSanitizer('chatbot', { nmes: [] }, dir, 'models[0].sanitizer'), /models\[0\]\.sanitizer_options\.nmes: unknown setting/);
});

t.test('a reply of very long words is read, its last words held as any reply\'s', async (t) => {
  const sanitizer = createChatbotSanitizer({ names: ['mom'] });
  const long = 'x'.repeat(32_000);
  t.equal(sanitizer.sanitize(`${long} and more`), `${long} and more`);
  const stream = sanitizer.stream();
  let progress = stream.push(`${long} a`);
  t.equal(progress.settled, long, 'the last word held back, as a pipe could still follow it');
  progress = stream.push(' 1 b');
  t.equal(progress.settled, `${long} a`, 'and a side digit standing before it');
});
