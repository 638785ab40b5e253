// Grammars built on the worker thread (lib/generate/grammar/thread.ts), as the server builds them: the same rules as
// built here (their printed key), the same token masks, and the same errors.
import { spawnSync } from 'node:child_process';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import path from 'node:path';
import t from 'tap';
import { Grammar, GrammarError, GrammarMatcher } from '../../lib/generate/grammar';
import { buildGrammar, buildOffThread, builtReply, grammarOfReply, type BuildReply } from '../../lib/generate/grammar/thread';
import { allowedTokens, encode, vocab } from './grammar_helpers';

const SCHEMA = {
  type: 'object',
  properties: { name: { type: 'string', pattern: '^[A-Z][a-zé]{1,9}$' }, w: { enum: Array.from({ length: 2000 }, (_, i) => `w${i}`) } },
  required: ['name', 'w'],
  additionalProperties: false,
};

t.test('a grammar built on the worker thread is the one built here: the same rules and masks', async (t) => {
  const cases: [string, Promise<Grammar>, Grammar, string][] = [
    ['a schema', buildOffThread({ schema: SCHEMA, where: 'json_schema' }), Grammar.fromJsonSchema(SCHEMA), '{"name": "Zoé", "w": "w1999"}'],
    ['GBNF', buildOffThread({ gbnf: 'root ::= ("a" | [^a-c\\n]){2,5} x\nx ::= "!"?', where: 'grammar' }), Grammar.parse('root ::= ("a" | [^a-c\\n]){2,5} x\nx ::= "!"?'), 'aé€!'],
    ['GBNF around a schema', buildOffThread({ gbnf: 'root ::= "<" call ">"', name: 'call', schema: SCHEMA, where: 'tools' }), Grammar.withJsonSchema('root ::= "<" call ">"', 'call', SCHEMA, 'tools'), '<{"name":"Al","w":"w7"}>'],
  ];
  for (const [what, offThread, here, text] of cases) {
    const built = await offThread;
    t.equal(built.key, here.key, `${what}: the same rules`);
    const a = new GrammarMatcher(built, vocab);
    const b = new GrammarMatcher(here, vocab);
    for (const token of encode(text)) {
      t.same(allowedTokens(a.allowed()), allowedTokens(b.allowed()), `${what}: the same mask before token ${token}`);
      a.accept(token);
      b.accept(token);
    }
    t.ok(a.canEnd && b.canEnd, `${what}: ${text} is complete`);
  }
});

t.test('a grammar built on the worker thread comes with its start state: the event loop does not work it out again', async (t) => {
  // 16,000 alternatives: 16,000 stacks to begin with, tens of milliseconds to expand.
  const gbnf = `root ::= ${Array.from({ length: 16000 }, (_, i) => `"w${i}"`).join(' | ')}`;
  const built = (await buildOffThread({ gbnf, where: 'grammar' })).automaton;
  const here = Grammar.parse(gbnf).automaton;
  t.equal(built.start.key, here.start.key, 'the same start state');
  t.equal(built.work, 0, 'none of its stacks expanded here');
  t.ok(here.work >= 16000, `built here, its ${here.start.stacks.length} stacks cost ${here.work} units`);
});

t.test("a worker's reply hands its rules over as typed arrays, moved and not copied, that the automaton reads as they are", async (t) => {
  const source = { schema: SCHEMA, where: 'json_schema' };
  const { reply, transfer } = builtReply(7, buildGrammar(source));
  if (!('rules' in reply)) throw new Error('the schema was refused');
  const sent = [reply.rules.alternatives, reply.rules.lengths, reply.rules.elements, reply.rules.ranges, reply.rules.setStarts, reply.start];
  t.ok(sent.every((a) => a.length > 0), 'each array holds the grammar');
  const { port1, port2 } = new MessageChannel();
  port1.postMessage(reply, transfer);
  const got = receiveMessageOnPort(port2)?.message as BuildReply;
  port1.close();
  t.same(sent.map((a) => a.byteLength), [0, 0, 0, 0, 0, 0], "every buffer moved: the sender's arrays are empty");
  if (!('rules' in got)) throw new Error('no rules received');
  const received = grammarOfReply(got);
  t.equal(received.automaton.start.key, Grammar.fromJsonSchema(SCHEMA).automaton.start.key, 'the automaton of the arrays received begins as the grammar built here');
});

t.test('a mistake in a grammar built on the worker thread is the GrammarError it is here', async (t) => {
  const sources = [
    { gbnf: 'root ::= "a" |\nthing ::= [a-', where: 'grammar' },
    { schema: { type: 'object', properties: { tags: { type: 'array', uniqueItems: true } } }, where: 'response_format.json_schema.schema' },
    { gbnf: `root ::= ${'("a"?){9000} '.repeat(2)}`, where: 'grammar' },  // too ambiguous to begin
  ];
  for (const source of sources) {
    let here: unknown;
    try {
      void ('schema' in source ? Grammar.fromJsonSchema(source.schema, source.where) : Grammar.parse(source.gbnf, source.where)).automaton.start;
    } catch (err) {
      here = err;
    }
    const there = await buildOffThread(source).catch((err: unknown) => err);
    t.ok(here instanceof GrammarError && there instanceof GrammarError, 'a GrammarError both ways');
    t.equal((there as Error).message, (here as Error).message, (here as Error).message.slice(0, 80));
  }
});

t.test('a schema too deep to send to the worker thread is refused, and leaves nothing that holds the process alive', async (t) => {
  const thread = path.join(__dirname, '..', '..', 'lib', 'generate', 'grammar', 'thread.js');
  const script = `
    const { buildOffThread } = require(${JSON.stringify(thread)});
    const schema = JSON.parse('{"type":"array","items":'.repeat(20000) + '{"type":"integer"}' + '}'.repeat(20000));
    (async () => {
      await Promise.resolve().then(() => buildOffThread({ schema, where: 'json_schema' })).then(() => console.log('built'), (err) => console.log('refused: ' + err.name));
      await buildOffThread({ gbnf: 'root ::= "a"', where: 'grammar' });
      console.log('then built another');
    })().catch((err) => console.log('thrown: ' + err.name));`;
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 15_000 });
  t.equal(run.signal, null, `the process ended by itself: ${run.stdout}${run.stderr}`);
  t.equal(run.stdout, 'refused: RangeError\nthen built another\n');
});
