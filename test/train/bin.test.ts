// The command line: bin/train's flags and help, --check, bin/encode then bin/train on the token file stopped
// by Ctrl-C, which saves by default, as SIGTERM does, and bin/plot.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { isTokenFile } from '../../lib/data/token_file';
import { latestCheckpoint, readTrainState } from '../../lib/train/checkpoint';
import { readMetrics } from '../../lib/train/metrics';
import { CHAT, REPO, TINY_VOCAB } from './helpers';
import { runCommand } from '../helpers/run_command';
import { withFileSizeLimit } from '../helpers/file_size_limit';

const COMMANDS = path.join(__dirname, '..', '..', 'bin', 'commands');
// A one-layer fresh model on the tiny vocabulary; a run resumed takes its shape from its checkpoint.
const FRESH_TINY = ['--fresh_model', '--tokenizer', TINY_VOCAB, '--n_layer', '1', '--n_head', '1', '--n_embd', '16', '--n_ctx', '32'];


t.test("bin/train --help lists train.py's flags with their defaults", async (t) => {
  const { status, stdout } = runCommand('train', ['--help']);
  t.equal(status, 0);
  const flags: [string, string][] = [
    ['dataset', 'required'], ['model_name', '"124M"'], ['fresh_model', 'false'], ['n_layer', '12'], ['n_head', '12'], ['n_embd', '768'],
    ['n_ctx', '1024'], ['combine', '50000'], ['batch_size', '1'], ['learning_rate', '0.00002'], ['learning_rate_cos', 'false'],
    ['learning_rate_warmup', '100'], ['learning_rate_min', '0.00001'], ['learning_rate_period', '1000'], ['accumulate_gradients', '1'],
    ['optimizer', '"adam"'], ['memory_saving_gradients', 'false'], ['only_train_transformer_layers', 'false'], ['restore_from', '"latest"'],
    ['run_name', '"run1"'], ['save_every', '1000'], ['save_time', '15'], ['max_to_keep', '5'], ['sample_every', '100'],
    ['sample_length', '1023'], ['sample_num', '1'], ['top_k', '40'], ['top_p', '0'], ['min_p', '0'], ['val_dataset', '""'], ['val_split', '0'], ['val_every', '0'], ['keep_best', 'true'], ['early_stopping', '0'],
    ['val_batch_size', '2'], ['val_batch_count', '40'], ['save_on_ctrlc', 'true'], ['seed', '-1'], ['stop_after', '0'], ['check', 'false'],
    // A resumed adapter goes on with its own, whatever the default.
    ['lora_alpha', "0, or the resumed adapter's"], ['lora_targets', "attn,mlp, or the resumed adapter's"], ['lora_dropout', "0, or the resumed adapter's"],
  ];
  for (const [flag, value] of flags) {
    t.match(stdout, new RegExp(`--${flag}(, --\\w+)?\\s[^]*?${value === 'required' ? '\\[required\\]' : `\\[default: ${value.replace(/[.]/g, '\\.')}\\]`}`), `--${flag} ${value}`);
  }
});

t.test('flags: either separator, the last of a flag given twice, a mistake told in a line', async (t) => {
  const valid = path.join(CHAT, 'valid.train');
  const twice = runCommand('train', ['--dataset', 'nowhere.train', '--dataset', valid, '--check']);
  t.equal(twice.status, 0, twice.stderr);
  t.match(twice.stdout, /chat check: 1 file, 541 messages/);
  const dashed = runCommand('train', ['--dataset', valid, '--check', '--batch-size', 'abc']);
  t.equal(dashed.status, 1);
  t.equal(dashed.stderr, 'train: --batch_size must be a number, got "abc"\n');
  const unknown = runCommand('train', ['--dataset', valid, '--check', '--bogus']);
  t.equal(unknown.status, 1);
  t.match(unknown.stderr, /^Unknown argument: bogus\n\ntrain --help lists the options\n$/);
  t.notMatch(unknown.stdout + unknown.stderr, /Options:/, 'not under the whole help');
  // What an unquoted --dataset multi/*.train reaches the command as.
  const spread = runCommand('train', ['--dataset', 'multi/friends.train', 'multi/work.train', '--check']);
  t.equal(spread.status, 1);
  t.equal(spread.stderr, "train: --dataset was given 2 files (multi/friends.train, multi/work.train): the shell expanded an unquoted pattern; quote it so that the pattern reaches the command whole, as in --dataset 'multi/*.train'\n");
  const spreadVal = runCommand('train', ['--dataset', valid, '--val-dataset', 'a/x.train', 'b/y.txt', 'c/z.txt', 'd/w.txt', '--check']);
  t.match(spreadVal.stderr, /^train: --val_dataset was given 4 files \(a\/x\.train, b\/y\.txt, c\/z\.txt, \.\.\. \(4 in all\)\): the shell expanded an unquoted pattern; quote it [^]* --val_dataset '<pattern>'\n$/);
});

t.test('bin/train --check: exit 1 and file:line for malformed chat, 0 when clean', async (t) => {
  const dir = t.testdir({ 'a.train': '1|mom|Hi <EOM>\r\n0|mom|Hello | there <EOM>\r\n1|mom\r\n' });
  const bad = runCommand('train', ['--dataset', dir, '--check']);
  t.equal(bad.status, 1);
  t.match(bad.stdout, `${path.join(dir, 'a.train')}:3: missing fields`);
  const good = runCommand('train', ['--dataset', path.join(CHAT, 'valid.train'), '--check']);
  t.equal(good.status, 0);
  t.match(good.stdout, /chat check: 1 file, 541 messages/);
});

t.test('bin/train --check checks a --val_dataset too, as training stops on either', async (t) => {
  const dir = t.testdir({ 'val.train': '1|mom|Hi <EOM>\n1|mom\n' });
  const run = runCommand('train', ['--dataset', path.join(CHAT, 'valid.train'), '--val_dataset', path.join(dir, 'val.train'), '--check', '--threads', '1']);
  t.equal(run.status, 1, run.stderr);
  t.match(run.stdout, /^--dataset:\nchat check: 1 file, 541 messages [^]*, 0 malformed lines\n/);
  t.match(run.stdout, `\n--val_dataset:\n${path.join(dir, 'val.train')}:2: `);
  t.match(run.stdout, /chat check: 1 file, 1 message [^]*, 1 malformed line\n/);
});

t.test('bin/train --check on CSV and JSONL: chat documents by file:line; chat fine-tuning JSONL sent to bin/import-chat', async (t) => {
  const documents = path.join(REPO, 'test', 'fixtures', 'documents');
  for (const [name, line] of [['chats.csv', 5], ['chats.jsonl', 2]] as const) {
    const checked = runCommand('train', ['--dataset', path.join(documents, name), '--check']);
    t.equal(checked.status, 1, name);
    t.match(checked.stdout, `${path.join(documents, name)}:${line}: flag must be 0 or 1, got "2": "2|sam|yes <EOM>"`);
    t.match(checked.stdout, /chat check: 1 file, 3 messages/);
  }
  const openai = runCommand('train', ['--dataset', path.join(documents, 'openai.jsonl'), '--check']);
  t.equal(openai.status, 1);
  t.match(openai.stderr, `train: ${path.join(documents, 'openai.jsonl')}:1: a conversation in OpenAI's chat fine-tuning format ("messages"), not a document: make it chat training data with bin/import-chat`);
});

t.test("bin/train on a chat app's export, not imported: refused, naming bin/import-chat; --chat_check off trains on it as text", async (t) => {
  const exported = path.join(REPO, 'test', 'fixtures', 'exports', 'whatsapp', 'android-en-us', 'WhatsApp Chat with Mom.txt');
  const dir = t.testdir({ exports: { 'WhatsApp Chat with Mom.txt': fs.readFileSync(exported) } });
  const named = path.join('exports', 'WhatsApp Chat with Mom.txt');
  const refusal = `train: ${named}: a WhatsApp chat export, not training data: make it chat training data with bin/import-chat 'exports/WhatsApp Chat with Mom.txt' --me "<your name>" --out data/, then train on data/ (--chat_check off trains on the export as plain text)\n`;
  const checked = runCommand('train', ['--dataset', 'exports', '--check'], { cwd: dir });
  t.equal(checked.status, 1);
  t.equal(checked.stderr, refusal);
  t.equal(checked.stdout, '', 'no line of the export listed as malformed chat');
  const tiny = ['--dataset', named, '--fresh_model', '--tokenizer', TINY_VOCAB, '--n_layer', '1', '--n_head', '1', '--n_embd', '16', '--n_ctx', '32',
    '--context_length', '16', '--sample_every', '0', '--stop_after', '1', '--threads', '1'];
  const trained = runCommand('train', tiny, { cwd: dir });
  t.equal(trained.status, 1);
  t.match(trained.stderr, refusal);
  t.notOk(fs.existsSync(path.join(dir, 'checkpoint', 'run1', 'model-1')), 'no checkpoint');
  const asText = runCommand('train', [...tiny, '--chat_check', 'off'], { cwd: dir });
  t.equal(asText.status, 0, asText.stderr);
  t.ok(latestCheckpoint(path.join(dir, 'checkpoint', 'run1')), 'trained as text');
});

t.test("bin/train on a chat app's JSON export: refused, naming the app and bin/import-chat; --chat_check off trains on it as text", async (t) => {
  const exports = path.join(REPO, 'test', 'fixtures', 'exports');
  const cases: [string, string][] = [
    ['a Telegram', path.join('telegram', 'account', 'result.json')],
    ['a Telegram', path.join('telegram', 'chat', 'result.json')],
    ['a Discord', path.join('discord', 'Direct Messages - sam_lee [887766554433221100].json')],
    ['a Messenger', path.join('instagram', 'your_instagram_activity', 'messages', 'inbox', 'weekendcrew_17845', 'message_1.json')],
    ['a Slack', path.join('slack', 'general', '2024-03-04.json')],
    ['a Signal', path.join('signal', 'NoahWilliams', 'data.json')],
    ['an Element (Matrix)', path.join('element', 'matrix - Lena Fischer - Chat Export - 2024-03-04T18-20-11.512Z.json')],
  ];
  const dir = t.testdir();
  const tiny = ['--fresh_model', '--tokenizer', TINY_VOCAB, '--n_layer', '1', '--n_head', '1', '--n_embd', '16', '--n_ctx', '32',
    '--context_length', '16', '--sample_every', '0', '--stop_after', '1', '--threads', '1'];
  for (const [app, file] of cases) {
    const name = path.basename(file);
    fs.rmSync(path.join(dir, 'data'), { recursive: true, force: true });
    fs.mkdirSync(path.join(dir, 'data'));
    fs.copyFileSync(path.join(exports, file), path.join(dir, 'data', name));
    const trained = runCommand('train', ['--dataset', 'data', ...tiny], { cwd: dir });
    t.equal(trained.status, 1, file);
    const named = path.join('data', name);
    t.equal(trained.stderr.split('\n').at(-2), `train: ${named}: ${app} chat export, not training data: make it chat training data with bin/import-chat ${named.includes(' ') ? `'${named}'` : named} ` +
      '--me "<your name>" --out data/, then train on data/ (--chat_check off trains on the export as plain text)');
    t.notOk(fs.existsSync(path.join(dir, 'checkpoint')), `${file}: no checkpoint`);
  }
  const asText = runCommand('train', ['--dataset', 'data', ...tiny, '--chat_check', 'off'], { cwd: dir });
  t.equal(asText.status, 0, asText.stderr);
  t.ok(latestCheckpoint(path.join(dir, 'checkpoint', 'run1')), 'trained as text');
});

t.test("bin/train stopped before its first validation says so, not that the validation loss never went down; the run's best asked for then points to its latest checkpoint", async (t) => {
  const dir = t.testdir();
  const trained = runCommand('train', ['--dataset', path.join(CHAT, 'train', 'work.train'), '--val_dataset', path.join(CHAT, 'valid.train'), '--val_every', '200',
    '--val_batch_count', '1', '--fresh_model', '--tokenizer', TINY_VOCAB, '--n_layer', '1', '--n_head', '1', '--n_embd', '16', '--n_ctx', '32',
    '--context_length', '16', '--sample_every', '0', '--stop_after', '2', '--threads', '1'], { cwd: dir });
  t.equal(trained.status, 0, trained.stderr);
  const start = /^\[0 \| 0s\] validation loss (\d+\.\d{4})$/m.exec(trained.stdout)?.[1];
  t.ok(start, 'the starting validation loss');
  t.match(trained.stdout, `\nno validation since the starting model's (${start}), the next being at step 200 (--val_every 200): ${path.join('checkpoint', 'run1', 'best')} names a checkpoint once a validation does better\n`);
  t.notMatch(trained.stdout, /never went below/);
  t.notOk(fs.existsSync(path.join(dir, 'checkpoint', 'run1', 'best')), 'no best yet');

  // The run's best asked for before there is one: the run's latest checkpoint, not a download, is the way on.
  const noBest = (run: string): string => `${run} has no best checkpoint yet: \`best\` names the checkpoint of the lowest validation loss of held-out data (--val_split or --val_dataset, with --val_every), once a validation does better than the starting model; give \`${run}\` for its latest checkpoint, ${run}/model-2`;
  const run = path.join(fs.realpathSync(dir), 'checkpoint', 'run1');
  const chat = runCommand('chat', ['--restore_from', 'checkpoint/run1/best', '--device', 'cpu'], { cwd: dir });
  t.equal(chat.status, 1);
  t.equal(chat.stderr, `chat: model "checkpoint/run1/best" not found: no folder ${run}/best; ${noBest('checkpoint/run1')}\n`);
  const served = runCommand('serve', ['--model', 'checkpoint/run1/best', '--device', 'cpu', '--port', '0'], { cwd: dir });
  t.equal(served.status, 1);
  t.equal(served.stderr, `serve: --model checkpoint/run1/best: model "${run}/best" not found: no folder ${run}/best; ${noBest(run)}\n`);
});

t.test('bin/train --model_name over a run of another model: the run is resumed, and it says so, and how to fine-tune the model named', async (t) => {
  const dir = t.testdir();
  const tiny = ['--dataset', path.join(CHAT, 'train', 'work.train'), '--context_length', '16', '--sample_every', '0', '--threads', '1'];
  t.equal(runCommand('train', [...tiny, ...FRESH_TINY, '--stop_after', '1'], { cwd: dir }).status, 0);
  const resumed = runCommand('train', [...tiny, '--model_name', '355M', '--stop_after', '2'], { cwd: dir });
  t.equal(resumed.status, 0, resumed.stderr);
  t.match(resumed.stdout, `\nresuming from ${path.join('checkpoint', 'run1', 'model-1')} at step 1\n`);
  t.match(resumed.stdout, `\n--model_name 355M starts a new run; ${path.join('checkpoint', 'run1')} has one, of a fresh model, resumed instead (to fine-tune 355M: another --run_name, or move ${path.join('checkpoint', 'run1')} away)\n`);
  t.equal(readTrainState(latestCheckpoint(path.join(dir, 'checkpoint', 'run1')) as string).step, 2);
  const asBegun = runCommand('train', [...tiny, '--stop_after', '3'], { cwd: dir });
  t.equal(asBegun.status, 0, asBegun.stderr);
  t.notMatch(asBegun.stdout, /starts a new run/, 'resumed without --model_name: nothing to say');
});

t.test('bin/train refuses a flag that the others leave without effect, naming both, before it loads anything', async (t) => {
  const dir = t.testdir();
  const data = ['--dataset', path.join(CHAT, 'valid.train'), '--threads', '1'];
  const refusals: [string[], string][] = [
    [['--model_name', '124M', '--tokenizer', TINY_VOCAB], '--tokenizer is for a --fresh_model, and --model_name 124M (or the run resumed) has its own vocabulary and shape: add --fresh_model, or drop --tokenizer'],
    [['--n_layer', '24', '--n_embd', '1024'], '--n_layer, --n_embd are for a --fresh_model, and --model_name 124M (or the run resumed) has its own vocabulary and shape: add --fresh_model, or drop --n_layer, --n_embd'],
    [[...FRESH_TINY, '--restore_from', 'checkpoint/other'], '--fresh_model starts from random weights, and --restore_from checkpoint/other from that checkpoint\'s: drop one of them'],
    [['--lora_alpha', '32'], '--lora_alpha is for a LoRA adapter, and the run trains every weight: give --lora_rank too, or drop --lora_alpha'],
    // Given, even as the default: a flag that cannot apply is refused whatever its value.
    [['--lora_targets', 'attn,mlp', '--lora_dropout', '0'], '--lora_targets, --lora_dropout are for a LoRA adapter, and the run trains every weight: give --lora_rank too, or drop --lora_targets, --lora_dropout'],
    [['--check', '--tokenizer', TINY_VOCAB], '--tokenizer is for a --fresh_model, and --model_name 124M (or the run resumed) has its own vocabulary and shape: add --fresh_model, or drop --tokenizer'],
    [['--check', ...FRESH_TINY, '--restore_from', 'checkpoint/other'], '--fresh_model starts from random weights, and --restore_from checkpoint/other from that checkpoint\'s: drop one of them'],
  ];
  for (const [flags, message] of refusals) {
    const run = runCommand('train', [...data, ...flags], { cwd: dir });
    t.equal(run.status, 1, flags.join(' '));
    t.equal(run.stderr, `train: ${message}\n`, flags.join(' '));
  }
  t.same(fs.readdirSync(dir), [], 'no run begun');
});

t.test("bin/train --check counts a --fresh_model's tokens by its --tokenizer, as training would", async (t) => {
  const check = (flags: string[]): string => {
    const run = runCommand('train', ['--dataset', path.join(CHAT, 'valid.train'), '--check', '--threads', '1', ...flags]);
    t.equal(run.status, 0, run.stderr);
    return run.stdout;
  };
  t.match(check([]), /, 9,121 tokens, 0 malformed lines\n[^]*a 124M model overfits/, "124M's vocabulary");
  const fresh = check(['--fresh_model', '--tokenizer', TINY_VOCAB]);
  t.match(fresh, /, 12,046 tokens, 0 malformed lines\n/, 'the tiny vocabulary');
  t.notMatch(fresh, /overfits/, 'and no advice meant for a pre-trained model');
});

t.test('bin/train --check counts tokens by the vocabulary of the checkpoint the run would resume or start from', async (t) => {
  const dir = t.testdir();
  const valid = path.join(CHAT, 'valid.train');
  const begun = runCommand('train', ['--dataset', valid, ...FRESH_TINY, '--context_length', '16', '--sample_every', '0', '--threads', '1', '--stop_after', '1'], { cwd: dir });
  t.equal(begun.status, 0, begun.stderr);
  const check = (flags: string[]): string => {
    const run = runCommand('train', ['--dataset', valid, '--check', '--threads', '1', ...flags], { cwd: dir });
    t.equal(run.status, 0, run.stderr);
    return run.stdout;
  };
  const checkpoint = path.join('checkpoint', 'run1', 'model-1');
  const resumed = check([]);
  t.match(resumed, /, 12,046 tokens, 0 malformed lines\n/, 'the run resumed: its own');
  t.match(resumed, `\ntokens counted by the vocabulary of ${checkpoint}, where the run starts (--restore_from latest)\n`);
  t.match(check(['--restore_from', 'checkpoint/run1', '--run_name', 'other']), /, 12,046 tokens, 0 malformed lines\n/, "another run from its weights: the checkpoint's");
  t.match(check(['--run_name', 'other']), /, 9,121 tokens, 0 malformed lines\n/, "a new run of 124M: GPT-2's");
  const fresh = runCommand('train', ['--dataset', valid, '--check', '--restore_from', 'fresh'], { cwd: dir });
  t.equal(fresh.status, 1, 'refused as training refuses it');
  t.equal(fresh.stderr, `train: ${path.join('checkpoint', 'run1')} already holds checkpoints (model-1); a run that does not resume them (--restore_from fresh) would mix into them: pick another --run_name or move them away\n`);
});

t.test('bin/train resuming a run whose dataset changed says what it trained on and what it goes on over', async (t) => {
  const dir = t.testdir({ data: { 'work.train': fs.readFileSync(path.join(CHAT, 'train', 'work.train')) } });
  const tiny = ['--dataset', 'data', '--context_length', '16', '--sample_every', '0', '--threads', '1'];
  const run = path.join('checkpoint', 'run1');
  t.equal(runCommand('train', [...tiny, ...FRESH_TINY, '--stop_after', '1'], { cwd: dir }).status, 0);
  const work = fs.statSync(path.join(dir, 'data', 'work.train')).size;
  t.match(readTrainState(path.join(dir, run, 'model-1')).dataset, { files: 1, bytes: work, tokens: 31018, digest: /^[0-9a-f]{64}$/ }, 'state.json records the data');

  fs.copyFileSync(path.join(CHAT, 'train', 'family.train'), path.join(dir, 'data', 'family.train'));
  const added = runCommand('train', [...tiny, '--stop_after', '2'], { cwd: dir });
  t.equal(added.status, 0, added.stderr);
  t.match(added.stdout, `\nthe dataset changed since ${path.join(run, 'model-1')}: it was 1 file, 60.4 kB, 31,018 tokens, and is now 2 files, 220 kB, 115,560 tokens; training goes on over it as it is now, from step 1\n`);
  t.match(readTrainState(path.join(dir, run, 'model-2')).dataset, { files: 2, tokens: 115560 });

  const same = runCommand('train', [...tiny, '--stop_after', '3'], { cwd: dir });
  t.equal(same.status, 0, same.stderr);
  t.notMatch(same.stdout, /dataset changed/, 'the same data: nothing to say');

  // The same files, as big, their lines in another order.
  const file = path.join(dir, 'data', 'work.train');
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  [lines[0], lines[1]] = [lines[1], lines[0]];
  fs.writeFileSync(file, lines.join('\n'));
  const edited = runCommand('train', [...tiny, '--stop_after', '4'], { cwd: dir });
  t.equal(edited.status, 0, edited.stderr);
  t.match(edited.stdout, `\nthe dataset changed since ${path.join(run, 'model-3')}: it was 2 files, 220 kB, 115,560 tokens, and is now as big, with other contents; training goes on over it as it is now, from step 3\n`);
});

t.test('bin/train resuming a checkpoint that does not record its dataset says that it cannot be compared', async (t) => {
  const dir = t.testdir({ data: { 'work.train': fs.readFileSync(path.join(CHAT, 'train', 'work.train')) } });
  const tiny = ['--dataset', 'data', '--context_length', '16', '--sample_every', '0', '--threads', '1'];
  t.equal(runCommand('train', [...tiny, ...FRESH_TINY, '--stop_after', '1'], { cwd: dir }).status, 0);
  // As a checkpoint from before state.json recorded the dataset.
  const stateFile = path.join(dir, 'checkpoint', 'run1', 'model-1', 'state.json');
  const { dataset: _, ...older } = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
  fs.writeFileSync(stateFile, JSON.stringify(older));
  const resumed = runCommand('train', [...tiny, '--stop_after', '2'], { cwd: dir });
  t.equal(resumed.status, 0, resumed.stderr);
  t.match(resumed.stdout, '\ndataset: 31,018 tokens in 1 chunk from 1 file\n', 'one chunk, one file: no plural');
  t.match(resumed.stdout, `\n${path.join('checkpoint', 'run1', 'model-1')} does not record the dataset it trained on (a checkpoint from before state.json kept it): whether the dataset changed since cannot be told; training goes on over it as it is now, from step 1\n`);
  t.match(readTrainState(path.join(dir, 'checkpoint', 'run1', 'model-2')).dataset, { files: 1, tokens: 31018 }, 'recorded from now on');
  const again = runCommand('train', [...tiny, '--stop_after', '3'], { cwd: dir });
  t.notMatch(again.stdout, /cannot be told|dataset changed/, 'compared from then on: nothing to say');
});

t.test('bin/train resumed over other held-out data starts the lowest validation loss over, and records the windows it validates on', async (t) => {
  const dir = t.testdir({ data: { 'work.train': fs.readFileSync(path.join(CHAT, 'train', 'work.train')) } });
  const tiny = ['--dataset', 'data', '--context_length', '16', '--sample_every', '0', '--threads', '1', '--val_split', '0.1', '--val_every', '1', '--val_batch_count', '4'];
  const run = path.join(dir, 'checkpoint', 'run1');
  const state = (step: number) => readTrainState(path.join(run, `model-${step}`));
  const stateFile = (step: number) => path.join(run, `model-${step}`, 'state.json');
  const first = runCommand('train', [...tiny, ...FRESH_TINY, '--seed', '1', '--stop_after', '2'], { cwd: dir });
  t.equal(first.status, 0, first.stderr);
  t.match(state(2).validation, /^[0-9a-f]{64}$/, 'state.json records the validation windows');
  const windows = state(2).validation;

  const same = runCommand('train', [...tiny, '--stop_after', '3'], { cwd: dir });
  t.equal(same.status, 0, same.stderr);
  t.notMatch(same.stdout, /validation data differs/, 'the same held-out data: the lowest goes on');
  t.equal(state(3).validation, windows);

  // Another file: other chunks, and so other windows held out of them.
  fs.copyFileSync(path.join(CHAT, 'train', 'family.train'), path.join(dir, 'data', 'family.train'));
  // Held-out data on which the run did far better than any model does on the new: its lowest must not stand.
  const easier = JSON.parse(fs.readFileSync(stateFile(3), 'utf8'));
  easier.best.loss = 0.5;
  fs.writeFileSync(stateFile(3), JSON.stringify(easier));
  const before = state(3).best as { step: number; loss: number };
  const changed = runCommand('train', [...tiny, '--stop_after', '4'], { cwd: dir });
  t.equal(changed.status, 0, changed.stderr);
  t.match(changed.stdout, `\nthe validation data differs from that of ${path.join('checkpoint', 'run1', 'model-3')} (other held-out data, or another --context_length, --val_batch_count or --val_batch_size): its lowest validation loss, ${before.loss.toFixed(4)} at step ${before.step}, compares with none to come, so the lowest starts over at the next validation, at step 4, and ${path.join('checkpoint', 'run1', 'best')} names the best checkpoint among those from then on\n`);
  t.match(changed.stdout, /\[4 \| [^\]]*\] validation loss \d+\.\d+ \(the lowest yet\)\n/, 'the first validation over the new data is the lowest, whatever the old losses were');
  t.match(state(4), { best: { step: 4, validationsSince: 0 } });
  t.not(state(4).validation, windows, 'the new windows recorded');
  t.equal(fs.readFileSync(path.join(run, 'best'), 'utf8'), 'model-4\n');

  // A checkpoint of a dixie that recorded the dataset but not the windows: a changed --dataset under --val_split
  // changes them.
  const withoutWindows = JSON.parse(fs.readFileSync(stateFile(4), 'utf8'));
  delete withoutWindows.validation;
  fs.writeFileSync(stateFile(4), JSON.stringify(withoutWindows));
  fs.rmSync(path.join(dir, 'data', 'family.train'));
  const recorded = runCommand('train', [...tiny, '--stop_after', '5'], { cwd: dir });
  t.equal(recorded.status, 0, recorded.stderr);
  t.match(recorded.stdout, /\nthe dataset changed since [^\n]*\n[^]*\nthe validation data differs from that of [^\n]*model-4 [^\n]*the lowest starts over at the next validation, at step 5/);
  t.match(state(5), { best: { step: 5 } });

  // One from before state.json recorded its dataset (or the windows): nothing known to compare with, its lowest kept.
  const withoutDataset = JSON.parse(fs.readFileSync(stateFile(5), 'utf8'));
  delete withoutDataset.validation;
  delete withoutDataset.dataset;
  fs.writeFileSync(stateFile(5), JSON.stringify(withoutDataset));
  const old = runCommand('train', [...tiny, '--stop_after', '6'], { cwd: dir });
  t.equal(old.status, 0, old.stderr);
  t.notMatch(old.stdout, /validation data differs/);
  t.match(state(6).validation, /^[0-9a-f]{64}$/, 'recorded from now on');
});

t.test('bin/train says it is drawing samples before the wait for them, with the flags that set how many and how long', async (t) => {
  const dir = t.testdir();
  const run = runCommand('train', ['--dataset', path.join(CHAT, 'valid.train'), '--fresh_model', '--tokenizer', TINY_VOCAB, '--n_layer', '1', '--n_head', '1',
    '--n_embd', '16', '--n_ctx', '32', '--context_length', '16', '--sample_every', '1', '--sample_length', '8', '--stop_after', '1', '--threads', '1'], { cwd: dir });
  t.equal(run.status, 0, run.stderr);
  t.match(run.stdout, /\n\[1 \| [^\]]*\] loss [^\n]*\ndrawing 1 sample of up to 8 tokens \(--sample_every 1, --sample_num 1, --sample_length 8\)\n={20} SAMPLE 1 ={20}\n/);
});

t.test('bin/encode, then bin/train on the token file until Ctrl-C, which saves; bin/plot', async (t) => {
  const dir = t.testdir();
  const tokens = path.join(dir, 'chat.tokens');
  const encoded = runCommand('encode', [path.join(CHAT, 'train', '*.train'), tokens, '--tokenizer', TINY_VOCAB]);
  t.equal(encoded.status, 0, encoded.stderr);
  t.match(encoded.stdout, /chat check: 3 files, 7,753 messages/);
  t.match(encoded.stdout, /chat\.tokens: [\d,]+ tokens in 3 chunks from 3 files/);

  const args = ['--dataset', tokens, '--fresh_model', '--tokenizer', TINY_VOCAB, '--n_layer', '2', '--n_head', '4', '--n_embd', '64', '--n_ctx', '64',
    '--context_length', '32', '--batch_size', '4', '--learning_rate', '0.003', '--sample_every', '0', '--seed', '5', '--threads', '2'];
  const child = spawn(process.execPath, [path.join(COMMANDS, 'train.js'), ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let interrupted = false;
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    if (!interrupted && /^\[3 \| /m.test(stdout)) {
      interrupted = true;
      child.kill('SIGINT');
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.equal(code, 0, stderr);
  t.match(stderr, /stopping after this step, then saving/);
  const runDir = path.join(dir, 'checkpoint', 'run1');
  const checkpoint = latestCheckpoint(runDir) as string;
  t.ok(checkpoint, 'a checkpoint was saved');
  const step = readTrainState(checkpoint).step;
  t.ok(step >= 3, `at step ${step}`);
  t.match(stdout, new RegExp(`saved ${checkpoint.replace(dir + path.sep, '')}`));
  t.match(stdout, new RegExp(`stopped at step ${step}; checkpoint`));

  fs.rmSync(path.join(runDir, 'loss.svg'));
  const plotted = runCommand('plot', ['run1'], { cwd: dir });
  t.equal(plotted.status, 0, plotted.stderr);
  t.equal(plotted.stdout.trim(), path.join('checkpoint', 'run1', 'loss.svg'));
  t.match(fs.readFileSync(path.join(runDir, 'loss.svg'), 'utf8'), /<polyline /);
  const missing = runCommand('plot', ['nope'], { cwd: dir });
  t.equal(missing.status, 1);
  t.match(missing.stderr, /no metrics log for "nope"/);
});

t.test('bin/train stopped by SIGTERM (kill, systemd, timeout) saves the steps since the last checkpoint, as Ctrl-C does', async (t) => {
  const dir = t.testdir();
  const args = ['--dataset', path.join(CHAT, 'train', 'work.train'), '--fresh_model', '--tokenizer', TINY_VOCAB, '--n_layer', '1', '--n_head', '1', '--n_embd', '16',
    '--n_ctx', '32', '--sample_every', '0', '--save_every', '0', '--save_time', '0', '--seed', '5', '--threads', '1'];
  const child = spawn(process.execPath, [path.join(COMMANDS, 'train.js'), ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    if (/^\[2 \| /m.test(stdout) && !child.killed) child.kill('SIGTERM');
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.equal(code, 0, stderr);
  t.match(stderr, /SIGTERM: stopping after this step, then saving; SIGTERM again to stop now/);
  const checkpoint = latestCheckpoint(path.join(dir, 'checkpoint', 'run1')) as string;
  t.ok(checkpoint, 'a checkpoint was saved, though --save_every and --save_time are off');
  t.ok(readTrainState(checkpoint).step >= 2);
});

t.test('bin/train whose metrics log cannot be appended to saves the steps since the last checkpoint, then fails naming the log', async (t) => {
  const dir = t.testdir();
  const runDir = path.join(dir, 'checkpoint', 'run1');
  const metricsFile = path.join(runDir, 'metrics.jsonl');
  const named = path.join('checkpoint', 'run1', 'metrics.jsonl');  // as the command names it, from the default --checkpoint_dir
  // A model of 46 KB of weights (SGD: no optimizer file), whose log of some 200 bytes a step outgrows a limit first.
  const args = ['--dataset', path.join(CHAT, 'train', 'work.train'), '--fresh_model', '--tokenizer', TINY_VOCAB, '--n_layer', '1', '--n_head', '2', '--n_embd', '16',
    '--n_ctx', '32', '--context_length', '16', '--batch_size', '2', '--optimizer', 'sgd', '--sample_every', '0', '--save_every', '0', '--save_time', '0', '--seed', '5', '--threads', '1'];
  const trainLimited = (kib: number, more: string[]): { status: number | null; stdout: string; stderr: string } => {
    const command = withFileSizeLimit(kib, [process.execPath, path.join(COMMANDS, 'train.js'), ...args, ...more]);
    const r = spawnSync(command.file, command.args, { cwd: dir, env: command.env, encoding: 'utf8', timeout: 300_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  // 64 KiB: the log outgrows it, the checkpoint fits, and is saved though Ctrl-C would not.
  const fits = trainLimited(64, ['--stop_after', '100000', '--no-save_on_ctrlc']);
  t.equal(fits.status, 1, fits.stderr);
  const step = Number(/training stopped at step (\d+)/.exec(fits.stderr)?.[1]);
  const checkpoint = path.join(runDir, `model-${step}`);
  t.equal(fits.stderr, `train: ${named}: EFBIG: file too large, write: training stopped at step ${step}; ${path.relative(dir, checkpoint)} is saved\n`);
  t.match(fits.stdout, `${named}: EFBIG: file too large, write: stopping after this step, then saving`);
  t.equal(latestCheckpoint(runDir), checkpoint, 'the checkpoint of the step the log failed at is the latest');
  t.equal(readTrainState(checkpoint).step, step);
  const logged = readMetrics(metricsFile);
  t.equal(logged[logged.length - 1].step, step - 1, 'the log holds every step but the one whose record did not fit');
  t.ok(fs.statSync(metricsFile).size > 60 * 1024, 'the log outgrew the limit');

  const resumed = runCommand('train', [...args, '--stop_after', String(step + 2)], { cwd: dir });
  t.equal(resumed.status, 0, resumed.stderr);
  t.match(resumed.stdout, `training from step ${step} to ${step + 2}`);
  t.same(readMetrics(metricsFile).slice(-2).map((r) => r.step), [step + 1, step + 2], 'the torn record is dropped, and the log goes on');

  // 40 KiB: the weights do not fit either, and the checkpoint saved before is the one kept.
  fs.rmSync(runDir, { recursive: true });
  t.equal(runCommand('train', [...args, '--stop_after', '3'], { cwd: dir }).status, 0);
  const refused = trainLimited(40, ['--stop_after', '100000']);
  t.equal(refused.status, 1, refused.stderr);
  const failedAt = Number(/training stopped at step (\d+)/.exec(refused.stderr)?.[1]);
  t.ok(failedAt > 3);
  t.match(refused.stderr, `train: ${named}: EFBIG: file too large, write: training stopped at step ${failedAt}; model-${failedAt} was not saved: `);
  t.match(refused.stderr, /model\.safetensors: EFBIG: file too large, write; model-3, saved before, is kept\n$/);
  t.equal(latestCheckpoint(runDir), path.join(runDir, 'model-3'));
  t.same(fs.readdirSync(runDir).sort(), ['latest', 'loss.svg', 'metrics.jsonl', 'model-3'], 'no half-written checkpoint left');
});

t.test("bin/train: --top_p given alone overrides --top_k's default for the samples, as train.py's sampler did; given both, both apply", async (t) => {
  const dir = t.testdir();
  const tiny = ['--dataset', path.join(CHAT, 'valid.train'), '--fresh_model', '--tokenizer', TINY_VOCAB, '--n_layer', '1', '--n_head', '1', '--n_embd', '16',
    '--n_ctx', '32', '--sample_every', '1', '--sample_length', '4', '--stop_after', '1', '--threads', '1'];
  for (const [run_name, flags, topK] of [['default', [], 40], ['top_p', ['--top_p', '0.9'], 0], ['both', ['--top_p', '0.9', '--top_k', '5'], 5], ['top_p_off', ['--top_p', '1'], 40]] as const) {
    const trained = runCommand('train', [...tiny, '--run_name', run_name, ...flags], { cwd: dir });
    t.equal(trained.status, 0, trained.stderr);
    t.equal(readTrainState(latestCheckpoint(path.join(dir, 'checkpoint', run_name)) as string).options.top_k, topK, `${flags.join(' ') || 'no flags'}: --top_k ${topK}`);
  }
});

t.test("bin/encode to a .npz name warns that it writes dixie's token file, not NumPy's", async (t) => {
  const dir = t.testdir();
  const out = path.join(dir, 'chat.npz');
  const encoded = runCommand('encode', [path.join(CHAT, 'valid.train'), out, '--tokenizer', TINY_VOCAB]);
  t.equal(encoded.status, 0, encoded.stderr);
  t.match(encoded.stdout, `warning: ${out} will be dixie's token file, which bin/train reads, not a NumPy .npz as encode.py wrote (numpy.load cannot read it): name it .tokens to say so`);
  t.ok(isTokenFile(out), 'and writes its token file all the same');
  t.notMatch(runCommand('encode', [path.join(CHAT, 'valid.train'), path.join(dir, 'chat.tokens'), '--tokenizer', TINY_VOCAB]).stdout, /token file/);
});

t.test('bin/train --check fails, naming the file, on invalid UTF-8, an empty file, a folder holding only a blank README, a binary file', async (t) => {
  const dir = t.testdir({ 'utf8.train': Buffer.from([...Buffer.from('1|mom|Hi <EOM>\n1|mom|caf'), 0xe9, ...Buffer.from(' <EOM>\n')]), 'empty.train': '', readme: { 'README.md': '\n' }, 'image.png': Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]) });
  const utf8 = runCommand('train', ['--dataset', path.join(dir, 'utf8.train'), '--check']);
  t.equal(utf8.status, 1);
  t.match(utf8.stdout, `${path.join(dir, 'utf8.train')}:2: invalid UTF-8 (read as U+FFFD)`);
  t.match(utf8.stdout, /0 malformed lines\n[^]*check failed: the files have problems besides malformed lines/);
  const empty = runCommand('train', ['--dataset', path.join(dir, 'empty.train'), '--check']);
  t.equal(empty.status, 1);
  t.match(empty.stdout, `${path.join(dir, 'empty.train')}: empty, nothing to train on`);
  const readme = runCommand('train', ['--dataset', path.join(dir, 'readme'), '--check']);
  t.equal(readme.status, 1);
  t.match(readme.stdout, `${path.join(dir, 'readme', 'README.md')}: only white space, nothing to train on`);
  fs.writeFileSync(path.join(dir, 'readme', 'README.md'), '');
  const readmeEmpty = runCommand('train', ['--dataset', path.join(dir, 'readme'), '--check']);
  t.equal(readmeEmpty.status, 1);
  t.match(readmeEmpty.stdout, `${path.join(dir, 'readme', 'README.md')}: empty`);
  const image = runCommand('train', ['--dataset', path.join(dir, 'image.png'), '--check']);
  t.equal(image.status, 1);
  t.match(image.stderr, `train: ${path.join(dir, 'image.png')}:3: a NUL byte (at byte 8): a binary file (or UTF-16 text), not UTF-8 text`);
});
