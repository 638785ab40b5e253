// GBNF grammars and their token masks over GPT-2's vocabulary: parsing (a JSON grammar written by hand, repetitions,
// errors with their line and column), texts accepted and refused token by token, characters split across tokens,
// the end of the text, and masks checked against accept() token by token and against a rule written independently.
import t, { type Test } from 'tap';
import { Grammar, GrammarError, GrammarMatcher, GrammarVocabulary } from '../../lib/generate/grammar';
import { MASK_SLICE_WORK } from '../../lib/generate/grammar/matcher';
import { EOT, LOGITS, allowedTokens, encode, expectAccepts, expectRejects, feed, isAllowed, tokenizer, vocab } from './grammar_helpers';

// JSON by hand (objects at the root), with whitespace bounded to 8 characters.
const JSON_GBNF = String.raw`
# A JSON object, spread over lines as a grammar file would be.
root    ::= object
object  ::= "{" sp ( member ( "," sp member )* )? "}" sp
member  ::= string ":" sp value
array   ::= "[" sp ( value ( "," sp value )* )? "]" sp
value   ::= object | array | string | number
          | ( "true" | "false" | "null" ) sp    # literals
string  ::= "\"" (
              [^"\\\x00-\x1F]
            | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )
            )* "\"" sp
number  ::= "-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [+-]? [0-9]+ )? sp
sp      ::= [ \t\n]{0,8}
`;

const byteToken = (b: number): number => tokenizer.vocab.byteTokens[b];

function parseError(t: Test, gbnf: string, expected: RegExp, source?: string): void {
  t.throws(() => Grammar.parse(gbnf, source), GrammarError, JSON.stringify(gbnf));
  try {
    Grammar.parse(gbnf, source);
  } catch (err) {
    t.match((err as Error).message, expected);
  }
}

t.test('a JSON grammar in GBNF accepts JSON objects and refuses the rest', async (t) => {
  const json = Grammar.parse(JSON_GBNF);
  expectAccepts(t, json, [
    '{}',
    '{"a": 1}',
    '{"a": [1, -2.5e3, true, null, "x"], "b": {"c": "d\\n\\u00e9"}}',
    '{ "nested" : { "deeper" : [ [ ], { } ] } }',
    '{"unicode": "日本語 é ω 🎉"}',
    '{"a":1}   ',
  ]);
  expectRejects(t, json, [
    '',
    '[1]',
    '{"a" 1}',
    '{"a": 01}',
    '{"a": tru}',
    '{"a": 1,}',
    '{"a": "\\x"}',
    '{"a": "b}',
    '{"a": 1}         ',
    ' {}',
  ]);
});

t.test('a text is refused at the first token the grammar cannot take', async (t) => {
  const json = Grammar.parse(JSON_GBNF);
  const matcher = new GrammarMatcher(json, vocab);
  const tokens = encode('{"a": [1, 2}');
  t.equal(feed(matcher, tokens), tokens.length - 1, 'the "}" that would close an array');
  t.throws(() => matcher.accept(tokens[tokens.length - 1]), GrammarError, 'accept() refuses it too');
  t.equal(feed(matcher, encode(']}')), -1, 'the matcher is where it was before the refused token');
  t.ok(matcher.canEnd);
});

t.test('repetitions: counts, optional and open ends', async (t) => {
  const g = Grammar.parse('root ::= "a"{2} "b"{1,3} "c"{2,} "d"? ("e" "f")* [x-z]+');
  expectAccepts(t, g, ['aabccx', 'aabbbccccdefefzzy', 'aabbcccdxyz']);
  expectRejects(t, g, ['abccx', 'aabbbbccx', 'aabcx', 'aabccddx', 'aabccefex', 'aabcc']);
  const literal = Grammar.parse('root ::= "ab"* "!"');
  expectAccepts(t, literal, ['!', 'ab!', 'ababab!']);
  expectRejects(t, literal, ['a!', 'aba!']);
});

t.test('character classes, negation, escapes and any character', async (t) => {
  const g = Grammar.parse(String.raw`root ::= [a-c0-9_] [^"\\] "\x41\u00e9\U0001F600" . [\n\t\]-] "\""`);
  expectAccepts(t, g, ['a!Aé😀日\n"', '5zAé😀x]"', '_\'Aé😀 -"', 'bbAé😀a\t"']);
  expectRejects(t, g, ['d!Aé😀x\n"', 'a"Aé😀x\n"', 'a\\Aé😀x\n"', 'a!Ae😀x\n"', 'a!Aé😀xa"']);
});

t.test('the end of the text is allowed exactly when the grammar can end; done when nothing else can come', async (t) => {
  const g = Grammar.parse('root ::= "a" "b"? | "c" "d"+');
  const m = new GrammarMatcher(g, vocab);
  t.notOk(isAllowed(m.allowed(), EOT), 'not at the start');
  t.notOk(m.canEnd);
  m.accept(encode('a')[0]);
  t.ok(isAllowed(m.allowed(), EOT), 'after "a"');
  t.ok(m.canEnd);
  t.notOk(m.done, '"b" may still come');
  t.ok(isAllowed(m.allowed(), encode('b')[0]));
  m.accept(encode('b')[0]);
  t.ok(m.done, 'after "ab"');
  t.same(allowedTokens(m.allowed()), [EOT], 'only the end of the text');
  m.accept(EOT);
  t.same(allowedTokens(m.allowed()), [], 'nothing after the end');
  t.throws(() => m.accept(encode('a')[0]), GrammarError);

  const d = new GrammarMatcher(g, vocab);
  t.equal(feed(d, encode('cddd')), -1);
  t.ok(d.canEnd);
  t.notOk(d.done, 'd+ goes on');
  t.throws(() => new GrammarMatcher(g, vocab).accept(EOT), GrammarError, 'the end of the text before the grammar can end');
});

t.test('characters split across tokens', async (t) => {
  const g = Grammar.parse('root ::= "é" | "日本" | [α-γ]+');
  const m = () => new GrammarMatcher(g, vocab);
  // é is C3 A9; 日 E6 97 A5, 本 E6 9C AC; α-γ CE B1 .. CE B3.
  const start = m().allowed();
  for (const b of [0xc3, 0xe6, 0xce]) t.ok(isAllowed(start, byteToken(b)), `lead byte ${b.toString(16)} may start an allowed character`);
  for (const b of [0xc4, 0xe5, 0xcf, 0xa9, 0xf0]) t.notOk(isAllowed(start, byteToken(b)), `lead byte ${b.toString(16)} may not`);
  t.notOk(isAllowed(start, EOT));

  const e = m();
  e.accept(byteToken(0xc3));
  t.notOk(e.canEnd, 'no end inside a character');
  t.notOk(isAllowed(e.allowed(), EOT));
  t.same(allowedTokens(e.allowed()), [byteToken(0xa9)], 'only the byte that completes é');
  e.accept(byteToken(0xa9));
  t.ok(e.done);

  // GPT-2 writes 日本 as E6 97 | A5 | E6 9C | AC: tokens that end and start inside characters.
  const tokens = encode('日本');
  t.same(tokens.map((id) => Buffer.from(tokenizer.tokenBytes(id)).toString('hex')), ['e697', 'a5', 'e69c', 'ac']);
  const n = m();
  t.equal(feed(n, tokens), -1);
  t.ok(n.done);
  const wrong = m();
  wrong.accept(tokens[0]);
  t.notOk(isAllowed(wrong.allowed(), byteToken(0xa6)), 'E6 97 A6 is not 日');
  t.throws(() => wrong.accept(byteToken(0xa6)), GrammarError);

  const greek = m();
  t.equal(feed(greek, [0xce, 0xb1, 0xce].map(byteToken)), -1);
  const mid = greek.allowed();
  for (const b of [0xb1, 0xb2, 0xb3]) t.ok(isAllowed(mid, byteToken(b)), `CE ${b.toString(16)} is in [α-γ]`);
  for (const b of [0xb0, 0xb4, 0xce]) t.notOk(isAllowed(mid, byteToken(b)), `CE ${b.toString(16)} is not`);
  const text = (id: number): string => Buffer.from([0xce, ...tokenizer.tokenBytes(id)]).toString('latin1');
  t.ok(allowedTokens(mid).every((id) => /^(\xce[\xb1-\xb3])+\xce?$/.test(text(id))), 'every token allowed continues with α, β or γ');
  t.notOk(greek.canEnd);
  greek.accept(byteToken(0xb3));
  t.ok(greek.canEnd);
  t.notOk(greek.done);
});

t.test('invalid UTF-8 is never allowed', async (t) => {
  const g = Grammar.parse('root ::= .*');
  const m = new GrammarMatcher(g, vocab);
  const start = m.allowed();
  for (const b of [0x80, 0xbf, 0xc0, 0xc1, 0xf5, 0xff]) t.notOk(isAllowed(start, byteToken(b)), `byte ${b.toString(16)} cannot start a character`);
  m.accept(byteToken(0xe0));
  t.notOk(isAllowed(m.allowed(), byteToken(0x80)), 'E0 80 would be overlong');
  t.ok(isAllowed(m.allowed(), byteToken(0xa0)));
  const surrogate = new GrammarMatcher(g, vocab);
  surrogate.accept(byteToken(0xed));
  t.notOk(isAllowed(surrogate.allowed(), byteToken(0xa0)), 'ED A0 would start a surrogate');
  t.ok(isAllowed(surrogate.allowed(), byteToken(0x9f)));
  t.ok(isAllowed(start, byteToken(0x41)), 'ASCII is');
});

t.test('masks agree with accept() token by token, and with a rule written independently', async (t) => {
  const g = Grammar.parse('root ::= [a-c]+ "x" | "-" [0-9]{1,3}');
  // Every token that is a viable start of a text of the language, by a regex that spells the same language.
  const viable = /^([a-c]+x?|-[0-9]{0,3})$/;
  const start = new GrammarMatcher(g, vocab).allowed();
  let checked = 0;
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    if (id === EOT) continue;
    const text = Buffer.from(tokenizer.tokenBytes(id)).toString('latin1');
    const byAccept = (() => {
      try {
        new GrammarMatcher(g, vocab).accept(id);
        return true;
      } catch {
        return false;
      }
    })();
    if (isAllowed(start, id) !== viable.test(text) || byAccept !== viable.test(text)) {
      t.fail(`token ${id} ${JSON.stringify(text)}: mask ${isAllowed(start, id)}, accept ${byAccept}, expected ${viable.test(text)}`);
      return;
    }
    checked++;
  }
  t.equal(checked, tokenizer.vocabSize - 1, 'every token');

  // Inside a JSON string, where the walk visits nearly the whole trie.
  const json = Grammar.parse(JSON_GBNF);
  const prefix = encode('{"key": "some text');
  const inside = new GrammarMatcher(json, vocab);
  feed(inside, prefix);
  const mask = inside.allowed();
  let disagreements = 0;
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    const m = new GrammarMatcher(json, vocab);
    feed(m, prefix);
    let ok = true;
    try {
      m.accept(id);
    } catch {
      ok = false;
    }
    if (ok !== isAllowed(mask, id)) disagreements++;
  }
  t.equal(disagreements, 0, 'inside a JSON string');
  t.ok(allowedTokens(mask).length > 49000, 'nearly every token continues a string');
});

t.test('the vocabulary: padded logits and the end-of-text token', async (t) => {
  const g = Grammar.parse('root ::= .*');
  const mask = new GrammarMatcher(g, vocab).allowed();
  t.equal(mask.length, Math.ceil(LOGITS / 32));
  // The tokens that begin valid UTF-8, by the WHATWG decoder (which refuses an overlong or surrogate start early).
  const validStart = (id: number): boolean => {
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(tokenizer.tokenBytes(id), { stream: true });
      return true;
    } catch {
      return false;
    }
  };
  const expected = Array.from({ length: tokenizer.vocabSize }, (_, id) => id).filter((id) => id === EOT || validStart(id));
  t.same(allowedTokens(mask), expected, 'every token that begins valid UTF-8, and no padding id');
  t.ok(isAllowed(mask, EOT), 'the end, since .* may be empty');
  t.throws(() => new GrammarMatcher(g, vocab).accept(tokenizer.vocabSize + 1), GrammarError, 'a padding id is refused');
  t.equal(GrammarVocabulary.of(tokenizer, LOGITS), vocab, 'one vocabulary per tokenizer and logit count');
  const exact = GrammarVocabulary.of(tokenizer, tokenizer.vocabSize);
  t.not(exact, vocab);
  t.equal(new GrammarMatcher(g, exact).allowed().length, Math.ceil(tokenizer.vocabSize / 32));
  t.throws(() => GrammarVocabulary.of(tokenizer, 100), RangeError, 'too few logits for the end-of-text token');
});

t.test('masks are cached on the grammar by state, shared by its matchers, and bounded', async (t) => {
  const json = Grammar.parse(JSON_GBNF);
  const a = new GrammarMatcher(json, vocab);
  const b = new GrammarMatcher(json, vocab);
  feed(a, encode('{"a": "hello'));
  feed(b, encode('{"bc": "world, this is a longer'));
  t.equal(a.allowed(), b.allowed(), 'the same state inside a string: the same mask');
  const again = Grammar.parse(JSON_GBNF);
  t.equal(again.key, json.key, 'the same text, the same key');
  t.not(new GrammarMatcher(again, vocab).allowed(), new GrammarMatcher(json, vocab).allowed(), 'a cache per grammar object');

  const counting = Grammar.parse('root ::= [a-z]{0,400}');
  const m = new GrammarMatcher(counting, vocab);
  for (let i = 0; i < 400; i++) {
    m.allowed();
    m.accept(byteToken(0x61));
  }
  t.ok(m.done);
  const cached = counting.automaton.masks.get(vocab);
  t.ok(cached !== undefined && cached.size <= 256 && cached.size >= 200, `the cache holds at most 256 masks (holds ${cached?.size})`);
});

t.test('the key is canonical GBNF: it parses back to itself', async (t) => {
  const texts = [
    JSON_GBNF,
    String.raw`root ::= "a"{2,4} (b | "c")*
b ::= [^\x00-\x1F"\\\]\x2D] "é日" .`,
    String.raw`root ::= "\x00\t\n\"\\" [\U0001F600-\U0001F64F] | [\x2D\x5E]`,
  ];
  for (const text of texts) {
    const key = Grammar.parse(text).key;
    t.equal(Grammar.parse(key).key, key, key.split('\n')[0]);
  }
  t.equal(Grammar.parse('root ::= x\nx ::= "a"').key, Grammar.parse('# comment\nroot::=x   \n\n  x ::=\n "a"  ').key, 'spacing and comments do not count');
  t.equal(Grammar.parse('root ::= "a"\nunused ::= "b"').key, 'root ::= "a"', 'unreachable rules are left out');
});

t.test('errors say where: source, line and column', async (t) => {
  parseError(t, 'root ::= "a" foo', /^grammar:1:14: rule "foo" is not defined$/);
  parseError(t, 'root ::= "a"\n\nexpr ::= "b"\nother ::= expr missing "c"', /^grammar:4:16: rule "missing" is not defined$/);
  parseError(t, 'expr ::= "a"', /^grammar:1:1: the grammar has no "root" rule$/);
  parseError(t, 'root ::= expr\nexpr ::= expr "+" term | term\nterm ::= [0-9]', /^grammar:2:1: rule "expr" is left-recursive \(expr -> expr\)$/);
  parseError(t, 'root ::= a\na ::= b "x" | "y"\nb ::= "z"? a', /^grammar:2:1: rule "a" is left-recursive \(a -> b -> a\)$/);
  parseError(t, 'root ::= "abc', /^grammar:1:10: the string is not closed$/);
  parseError(t, 'root ::= [a-z', /^grammar:1:10: the character class is not closed$/);
  parseError(t, 'root ::= "a" []', /^grammar:1:14: empty character class$/);
  parseError(t, 'root ::= [^\\x00-\\U0010FFFF]', /^grammar:1:10: the character class matches no character$/);
  parseError(t, 'root ::= [z-a]', /^grammar:1:11: the range ends before it starts$/);
  parseError(t, 'root ::= ("a" | "b"', /^grammar:1:20: expected "\)" to close the group$/);
  parseError(t, 'root ::= "a"{3,2}', /^grammar:1:13: the repetition's maximum 2 is less than its minimum 3$/);
  parseError(t, 'root ::= "a"{99999}', /^grammar:1:13: a repetition may count up to 10000$/);
  parseError(t, 'root ::= * "a"', /^grammar:1:10: "\*" follows nothing it could repeat$/);
  parseError(t, `root ::= ${'"a"{0,10000} '.repeat(5)}"a"{0,10000}`, /^grammar:1:78: the repetitions write out more than 100,000 copies of what they repeat in all/);
  parseError(t, 'root ::= "a" "\uD800"', /^grammar:1:15: U\+D800 is a surrogate, half of a UTF-16 pair, not a character$/);
  parseError(t, 'root ::= [\uD800-\uDFFF]', /^grammar:1:11: U\+D800 is a surrogate/);
  parseError(t, 'root ::= "\uDC00"', /^grammar:1:11: U\+DC00 is a surrogate/);
  parseError(t, 'root ::= "\\q"', /^grammar:1:11: unknown escape "\\q"$/);
  parseError(t, 'root ::= "\\x4"', /^grammar:1:11: "\\x" needs 2 hex digits$/);
  parseError(t, 'root ::= "a" ; "b"', /^grammar:1:14: unexpected ";"$/);
  parseError(t, 'root = "a"', /^grammar:1:6: expected "::=" after the rule name$/);
  parseError(t, 'root ::= "a"\nroot ::= "b"', /^grammar:2:1: rule "root" is defined twice \(first at 1:1\)$/);
  parseError(t, 'root ::= "a")', /^grammar:1:13: expected a rule name, found "\)"$/);
  parseError(t, '\n  root ::= x', /^my\.gbnf:2:12: rule "x" is not defined$/, 'my.gbnf');
});

t.test('a grammar too ambiguous to read is refused once it reads a text in more ways than a state may hold', async (t) => {
  const ambiguous = Grammar.parse(`root ::= ${'("a"?){9000} '.repeat(2)}`);
  t.throws(() => ambiguous.automaton.start, { name: 'GrammarError', message: /^the grammar is too ambiguous: it reads the text so far in more than 16,384 ways/ });
  // An enum of many strings begins in as many ways, and is read.
  const words = Array.from({ length: 5000 }, (_, i) => `"w${i}"`).join(' | ');
  const wide = new GrammarMatcher(Grammar.parse(`root ::= ${words}`), vocab);
  t.ok(isAllowed(wide.allowed(), encode('w')[0]));
});

t.test('a mask worked out in slices, as the Batcher works it out, is the mask worked out whole', async (t) => {
  // Each from a grammar of its own, so that neither finds the other's masks kept.
  const words = Array.from({ length: 16000 }, (_, i) => `"w${i}"`).join(' | ');
  for (const [gbnf, text, slice] of [[JSON_GBNF, '{"a": [1.5e3, "x\\u00e9y", {"b": null}]}', 97], [`root ::= ${words}`, 'w15999', MASK_SLICE_WORK]] as const) {
    const whole = new GrammarMatcher(Grammar.parse(gbnf), vocab);
    const sliced = new GrammarMatcher(Grammar.parse(gbnf), vocab);
    let slices = 0;
    for (const token of [...encode(text), EOT]) {
      while (!sliced.workOut(slice)) slices++;
      t.same(allowedTokens(sliced.allowed()), allowedTokens(whole.allowed()), `${gbnf.slice(0, 20)}: the same mask before token ${token}`);
      whole.accept(token);
      sliced.accept(token);
    }
    t.ok(slices > 10, `${gbnf.slice(0, 20)}: worked out in ${slices} more slices than masks`);
  }
});

t.test('a grammar whose every token costs its recognizer too much is stopped after its first tokens', async (t) => {
  // Under the bound on ways, but every state new: tens of milliseconds a token for as long as the reply ran.
  const slow = new GrammarMatcher(Grammar.parse('root ::= ("a"?){3000}'), vocab);
  const tokens = encode('a'.repeat(400));
  let stoppedAt = -1;
  try {
    for (let i = 0; i < tokens.length && stoppedAt < 0; i++) {
      stoppedAt = i;
      slow.allowed();
      slow.accept(tokens[i]);
      stoppedAt = -1;
    }
  } catch (err) {
    t.match(err, { name: 'GrammarError', message: /^the grammar is too ambiguous to follow: after \d+ tokens it has cost [\d,]+ steps of its recognizer/ });
  }
  t.ok(stoppedAt > 0 && stoppedAt < tokens.length / 2, `stopped at token ${stoppedAt} of ${tokens.length}`);
  // A long reply held to a JSON schema, its states new at every character of a string with a maximum length, and an
  // enum of thousands of strings, stay far inside it.
  t.equal(feed(new GrammarMatcher(Grammar.fromJsonSchema({ type: 'string', maxLength: 5000 }), vocab), encode(JSON.stringify('word '.repeat(900)))), -1);
  const words = Array.from({ length: 16000 }, (_, i) => `"w${i}"`).join(' | ');
  t.equal(feed(new GrammarMatcher(Grammar.parse(`root ::= ${words}`), vocab), encode('w15999')), -1);
  // Such an enum at the bottom of a JSON schema nested 16 objects deep begins in 16,000 ways, each 16 rules deep
  // and more: far fewer positions of open rules than a chain of rules each beginning with the next holds.
  let nested: Record<string, unknown> = { enum: Array.from({ length: 16000 }, (_, i) => `w${i}`) };
  for (let depth = 0; depth < 16; depth++) nested = { type: 'object', properties: { a: nested }, required: ['a'], additionalProperties: false };
  const document = JSON.stringify(Array.from({ length: 16 }).reduce<unknown>((inner) => ({ a: inner }), 'w15999'));
  t.equal(feed(new GrammarMatcher(Grammar.fromJsonSchema(nested), vocab), encode(document)), -1, 'a deep schema over a large enum is followed');
});

t.test('a byte read in a state of many stacks costs a test of each distinct set on their tops, not of each stack', async (t) => {
  // 16,000 strings begin with the same letter: 16,000 stacks, one set on their tops (each literal's own copy of it).
  const automaton = Grammar.parse(`root ::= ${Array.from({ length: 16000 }, (_, i) => `"w${i}"`).join(' | ')}`).automaton;
  const start = automaton.start;
  t.equal(start.stacks.length, 16000);
  let before = automaton.work;
  t.equal(automaton.step(start, 'x'.charCodeAt(0)), null, 'x begins none');
  t.equal(automaton.work - before, 1, 'one set tested');
  before = automaton.work;
  t.equal(automaton.step(start, 0xc3), null, 'no character of two bytes begins one');
  t.equal(automaton.work - before, 1, 'one set tested for it too');
  t.equal(automaton.step(start, 'w'.charCodeAt(0))?.stacks.length, 16000, 'w begins each');
});

t.test('a step of the automaton over 16,000 stacks is worked out in slices, as the mask is', async (t) => {
  // After its opening quote the text may be any of 16,000 strings, all beginning with w: reading the quote (in the
  // start's mask) expands the one rule into them all, and reading w expands each.
  const words = Array.from({ length: 16000 }, (_, i) => `"w${i}"`).join(' | ');
  const grammar = Grammar.parse(`root ::= "\\"" (${words})`);
  const sliced = new GrammarMatcher(grammar, vocab);
  const [quote] = encode('"');
  const { automaton } = grammar;
  const slicesOf = (matcher: GrammarMatcher): { most: number; slices: number } => {
    let most = 0;
    let slices = 0;
    for (let done = false; !done; slices++) {
      const before = automaton.work;
      done = matcher.workOut(MASK_SLICE_WORK);
      most = Math.max(most, automaton.work - before);
    }
    return { most, slices };
  };
  const atStart = slicesOf(sliced);
  t.ok(atStart.most < MASK_SLICE_WORK + 1000, `the start's mask: no slice went far past its ${MASK_SLICE_WORK} units: ${atStart.most} at most, over ${atStart.slices} slices`);
  const before = automaton.work;
  sliced.accept(quote);
  t.ok(automaton.work - before < 100, 'the quote, read in the start\'s mask, is not read again');
  const { most, slices } = slicesOf(sliced);
  t.ok(most < MASK_SLICE_WORK + 1000, `no slice went far past its ${MASK_SLICE_WORK} units: ${most} at most, over ${slices} slices`);
  const whole = new GrammarMatcher(Grammar.parse(`root ::= "\\"" (${words})`), vocab);
  whole.accept(quote);
  t.same(allowedTokens(sliced.allowed()), allowedTokens(whole.allowed()), 'the mask worked out whole');
  t.equal(feed(sliced, encode('w15999')), -1, 'the text read on');
});
