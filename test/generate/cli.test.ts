// bin/generate and bin/chat as a user runs them, on a tiny random model saved to a temporary folder.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { runCommand } from '../helpers/run_command';


t.test('bin/generate and bin/chat', async (t) => {
  const dir = t.testdir({});
  const modelDir = path.join(dir, 'tiny');
  const model = Model.create({ nLayer: 2, nHead: 2, nEmbd: 16, nCtx: 64, vocabSize: 50257 }, { seed: 4 });
  await model.save(modelDir);
  model.dispose();

  t.test('samples stream in order; a seed fixes them whatever the batch size and thread count', async (t) => {
    const base = ['--restore_from', modelDir, '--nsamples', '3', '--length', '12', '--seed', '5', '--top_k', '20'];
    const batched = runCommand('generate', [...base, '--batch_size', '2', '--threads', '2']);
    t.equal(batched.status, 0, batched.stderr);
    const headers = batched.stdout.split('\n').filter((l) => l.startsWith('='));
    t.same(headers, [1, 2, 3].map((i) => `${'='.repeat(40)} SAMPLE ${i} ${'='.repeat(40)}`).concat(['='.repeat(80)]));
    const single = runCommand('generate', [...base, '--batch_size', '1', '--threads', '1']);
    t.equal(single.stdout, batched.stdout, 'batch 2 on 2 threads = batch 1 on 1 thread');
    const other = runCommand('generate', [...base.slice(0, -4), '--seed', '6', '--top_k', '20']);
    t.not(other.stdout, batched.stdout, 'another seed, other samples');
    t.equal(runCommand('generate', ['--model', modelDir, ...base.slice(2), '--batch_size', '2']).stdout, batched.stdout, '--model names the model, as --model_name does');
  });

  t.test('--model_name and --restore_from together are refused, naming both, rather than one passed over', async (t) => {
    for (const [command, prompt] of [['generate', ['--prompt', 'x']], ['chat', []]] as const) {
      const both = runCommand(command, ['--restore_from', modelDir, '--model_name', '355M', ...prompt, '--length', '2'], { input: 'Hi\n' });
      t.equal(both.status, 1, command);
      t.match(both.stderr, `${command}: --model_name 355M and --restore_from ${modelDir} both name the model to load: give one of them\n`, command);
      t.equal(both.stdout, '', `${command}: nothing generated`);
    }
  });

  t.test('a prompt from a file, stop sequences, 16-bit weights', async (t) => {
    const promptFile = path.join(dir, 'prompt.txt');
    fs.writeFileSync(promptFile, 'The meaning of life is');
    const r = runCommand('generate', ['--restore_from', modelDir, '--prompt', promptFile, '--length', '30', '--seed', '1', '--stop', 'e', '--dtype', 'f16']);
    t.equal(r.status, 0, r.stderr);
    const body = r.stdout.split('\n')[1];
    t.notOk(body.includes('e'), `cut before the first "e": ${JSON.stringify(body)}`);
    const typo = runCommand('generate', ['--restore_from', modelDir, '--prompt', path.join(dir, 'prompt.tx'), '--length', '2']);
    t.equal(typo.status, 0, typo.stderr);
    t.match(typo.stderr, `generate: warning: there is no file ${path.join(dir, 'prompt.tx')}; --prompt is taken as the text itself`, 'a mistyped file name is warned of');
    const words = runCommand('generate', ['--restore_from', modelDir, '--prompt', 'Hello there.', '--length', '2']);
    t.notMatch(words.stderr, /no file/, 'a sentence is not taken for a file name');
    const bad = runCommand('generate', ['--restore_from', modelDir, '--top_p', '1.5', '--prompt', 'x']);
    t.equal(bad.status, 1);
    t.match(bad.stderr, /^generate: --top_p must be in \(0, 1\].*, got 1\.5$/m, 'a refused setting named by its flag');
    const greedy = ['--restore_from', modelDir, '--prompt', 'The meaning of life is', '--length', '16', '--temperature', '0'];
    const plain = runCommand('generate', greedy);
    const penalized = runCommand('generate', [...greedy, '--frequency_penalty', '2', '--presence_penalty', '1']);
    t.equal(penalized.status, 0, penalized.stderr);
    t.not(penalized.stdout, plain.stdout, "OpenAI's frequency and presence penalties change greedy text");
    const tooMuch = runCommand('generate', [...greedy, '--frequency_penalty', '-3']);
    t.match(tooMuch.stderr, /^generate: --frequency_penalty must be a number from -2 to 2, got -3$/m);
  });

  t.test('samples held to a JSON schema or a GBNF grammar, from a file or given whole; a mistake named with its file', async (t) => {
    const schemaFile = path.join(dir, 'answer.schema.json');
    fs.writeFileSync(schemaFile, JSON.stringify({ type: 'object', properties: { answer: { enum: ['yes', 'no'] }, sure: { type: 'boolean' } }, required: ['answer', 'sure'], additionalProperties: false }));
    const base = ['--restore_from', modelDir, '--prompt', 'Is it?', '--nsamples', '3', '--length', '40', '--seed', '3'];
    const r = runCommand('generate', [...base, '--json_schema', schemaFile]);
    t.equal(r.status, 0, r.stderr);
    // A sample's JSON may hold newlines (its whitespace): each is what lies between its header and the next.
    const samples = r.stdout.split(/^=+ SAMPLE \d+ =+\n/m).slice(1).map((block) => block.replace(/\n(=+\n)?$/, ''));
    t.equal(samples.length, 3, r.stdout);
    for (const sample of samples) t.match(JSON.parse(sample), { answer: /^(yes|no)$/, sure: Boolean }, `a sample that keeps to the schema: ${sample}`);
    const inline = runCommand('generate', [...base, '--json_schema', fs.readFileSync(schemaFile, 'utf8')]);
    t.equal(inline.stdout, r.stdout, 'the schema given whole: the same samples');
    const gbnf = runCommand('generate', [...base, '--grammar', 'root ::= [0-9]{3} "-" [0-9]{4}']);
    t.equal(gbnf.status, 0, gbnf.stderr);
    t.match(gbnf.stdout, /SAMPLE 1 =+\n\d{3}-\d{4}\n/, 'a sample of the grammar');
    const badFile = path.join(dir, 'bad.schema.json');
    fs.writeFileSync(badFile, JSON.stringify({ type: 'object', properties: { tags: { type: 'array', uniqueItems: true } } }));
    const bad = runCommand('generate', [...base, '--json_schema', badFile]);
    t.equal(bad.status, 1);
    t.match(bad.stderr, /^generate: .*bad\.schema\.json.*properties\.tags\.uniqueItems.*$/m, `named with its file and path: ${bad.stderr}`);
    const notJson = runCommand('generate', [...base, '--json_schema', '{"type": ']);
    t.match(notJson.stderr, /^generate: --json_schema: not a JSON schema/m, notJson.stderr);
    const both = runCommand('generate', [...base, '--json_schema', schemaFile, '--grammar', 'root ::= "a"']);
    t.match(both.stderr, /mutually exclusive/, 'one or the other');
  });

  t.test('interactive: a prompt, its samples, a prompt again', async (t) => {
    const r = runCommand('generate', ['--restore_from', modelDir, '--interactive', '--length', '5', '--seed', '2'], { input: 'Hello\n\nWorld\n' });
    t.equal(r.status, 0, r.stderr);
    t.equal(r.stdout.split('SAMPLE 1').length - 1, 2, 'two prompts answered');
    t.match(r.stdout, /Prompt should not be empty!/);
  });

  t.test('--interactive with --prompt is refused: the prompts come from stdin, and the --prompt would be passed over', async (t) => {
    const r = runCommand('generate', ['--restore_from', modelDir, '--interactive', '--prompt', 'Hello', '--length', '5'], { input: 'World\n' });
    t.equal(r.status, 1);
    t.match(r.stderr, /^--prompt gives the samples' prompt, and --interactive asks for prompts on stdin instead: give one of them$/m);
    t.equal(r.stdout, '', 'no sample');
  });

  t.test('bin/generate stops each sample of a chat model at <EOM> unless told otherwise', async (t) => {
    const state = path.join(modelDir, 'state.json');
    fs.writeFileSync(state, JSON.stringify({ audiences: [{ audience: 'mom', sent: 3, received: 2 }] }));
    t.teardown(() => fs.rmSync(state, { force: true }));
    const args = ['--restore_from', modelDir, '--prompt', '1|mom|Hi <EOM>\n0|mom|', '--length', '8', '--seed', '3'];
    const chat = runCommand('generate', args);
    t.equal(chat.status, 0, chat.stderr);
    t.match(chat.stderr, /a chat model: each sample stops at <EOM> \(--stop '' for none\)/);
    t.equal(runCommand('generate', [...args, '--stop', '<EOM>']).stdout, chat.stdout, 'as --stop "<EOM>" does');
    const none = runCommand('generate', [...args, '--stop', '']);
    t.equal(none.status, 0, none.stderr);
    t.notMatch(none.stderr, /stops at/, "--stop '' stops at nothing");
  });

  t.test('a model folder missing a file: which, and what to do', async (t) => {
    const broken = path.join(dir, 'broken');
    fs.cpSync(modelDir, broken, { recursive: true });
    fs.rmSync(path.join(broken, 'config.json'));
    const noConfig = runCommand('chat', ['--restore_from', broken, '--device', 'cpu'], { input: 'Hey\n' });
    t.equal(noConfig.status, 1);
    t.equal(noConfig.stderr, `chat: ${broken}: has model.safetensors but no config.json, which gives its shapes (layers, heads, context): copy it from where the weights came from (an interrupted download or copy? bin/download-model fetches a release's again)\n`);
    fs.copyFileSync(path.join(modelDir, 'config.json'), path.join(broken, 'config.json'));
    fs.rmSync(path.join(broken, 'model.safetensors'));
    const noWeights = runCommand('generate', ['--restore_from', broken, '--device', 'cpu', '--length', '2']);
    t.equal(noWeights.status, 1);
    t.match(noWeights.stderr, `generate: ${broken}: has config.json but no model.safetensors (an interrupted download?`);
  });

  t.test('bin/chat through piped stdin', async (t) => {
    fs.writeFileSync(path.join(modelDir, 'state.json'), JSON.stringify({ audiences: [{ audience: 'mom', sent: 3, received: 2 }, 'dad'] }));
    const input = 'Hi mom\nHow are you?\n/reset\nStill there?\n/quit\nnever sent\n';
    const r = runCommand('chat', ['--restore_from', modelDir, '--length', '12', '--seed', '9'], { input });
    t.equal(r.status, 0, r.stderr);
    t.match(r.stdout, /Talking to mom\./, 'the first audience of the training record');
    const replies = r.stdout.split('mom> ').slice(1).map((s) => s.split('\n')[0]);
    t.equal(replies.length, 3, 'three replies, nothing after /quit');
    for (const reply of replies) t.notOk(/\||<EOM>/.test(reply), `sanitized: ${JSON.stringify(reply)}`);
    t.match(r.stdout, /\(conversation cleared\)/);
    t.equal(runCommand('chat', ['--restore_from', modelDir, '--length', '12', '--seed', '9'], { input }).stdout, r.stdout, 'a seed repeats the chat');
    const dad = runCommand('chat', ['--restore_from', modelDir, '--audience', 'dad', '--length', '4'], { input: 'Hey\n' });
    t.match(dad.stdout, /Talking to dad\.[\s\S]*dad> /);
    t.match(dad.stderr, 'chat: warning: --audience dad: its chat data never talks to "dad" (it talks to "mom")');
    const cased = runCommand('chat', ['--restore_from', modelDir, '--audience', 'Mom', '--length', '2'], { input: 'Hey\n' });
    t.match(cased.stderr, 'its chat data never talks to "Mom", but to "mom" (audiences are told apart by case)');
    t.notMatch(runCommand('chat', ['--restore_from', modelDir, '--audience', 'mom', '--length', '2'], { input: 'Hey\n' }).stderr, /warning: --audience/);
    const cut = runCommand('chat', ['--restore_from', modelDir, '--length', '2', '--seed', '9'], { input: 'Hey\n' });
    t.match(cut.stdout, /mom> .*\(cut short: the reply reached --length, 2 tokens\)\n/, 'a reply cut by --length says so, as the chat page does');
    fs.rmSync(path.join(modelDir, 'state.json'));
    const none = runCommand('chat', ['--restore_from', modelDir], { input: 'Hey\n' });
    t.equal(none.status, 1);
    t.match(none.stderr, /--audience/);
  });
});
