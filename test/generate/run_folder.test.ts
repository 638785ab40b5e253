// A training run folder (checkpoint/run1) stands for its latest checkpoint in every command that takes a model:
// bin/generate, bin/chat, bin/export-gguf, bin/train --restore_from and the server's restore_from.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { validateServerConfig } from '../../lib/server/config';
import { resolveModelSource } from '../../lib/server/model_source';
import { train } from '../../lib/train/train';
import { tinyRun } from '../train/helpers';
import { runCommand } from '../helpers/run_command';


t.test('a run folder is its latest checkpoint', async (t) => {
  const dir = t.testdir();
  const result = await train(tinyRun(dir, { stop_after: 2, save_every: 1 }), { log: () => undefined });
  const runDir = result.runDir;
  const latest = path.join(runDir, 'model-2');
  t.equal(result.checkpoint, latest);

  const sample = ['--length', '8', '--seed', '3', '--prompt', '1|team|Morning <EOM>'];
  const fromRun = runCommand('generate', ['--restore_from', runDir, ...sample]);
  t.equal(fromRun.status, 0, fromRun.stderr);
  t.match(fromRun.stdout, /SAMPLE 1/);
  t.equal(fromRun.stdout, runCommand('generate', ['--restore_from', latest, ...sample]).stdout, 'bin/generate: the same samples as from model-2');

  const chat = runCommand('chat', ['--restore_from', runDir, '--length', '4', '--seed', '1'], { input: 'Hi\n/quit\n' });
  t.equal(chat.status, 0, chat.stderr);
  t.match(chat.stdout, /Talking to team\./, "bin/chat: the audience of the run's training record");

  const gguf = path.join(dir, 'run.gguf');
  const exported = runCommand('export-gguf', [runDir, gguf, '--type', 'f32']);
  t.equal(exported.status, 0, exported.stderr);
  t.match(exported.stderr, `${latest} -> ${gguf}`, 'bin/export-gguf exports model-2');
  const weights = path.join(latest, 'model.safetensors');
  const before = fs.readFileSync(weights);
  const overItself = runCommand('export-gguf', [runDir, weights]);
  t.equal(overItself.stderr, `export-gguf: ${weights} is the model's weights, which the export reads: write the GGUF to another file\n`);
  const overRun = runCommand('merge-lora', [runDir, path.join(dir, 'adapter'), runDir, '--force']);
  t.equal(overRun.stderr, `merge-lora: ${runDir} holds the base model, ${latest}, which replacing it would delete; write the merged model to another folder\n`, 'bin/merge-lora never replaces the run it merges into');
  t.ok(fs.readFileSync(weights).equals(before), 'the run as it was');

  const config = validateServerConfig({ models: [{ key: 'chatbot', restore_from: runDir }] }, 'cfg', dir);
  t.equal(resolveModelSource(config.models[0]).dir, latest, "the server's restore_from");

  const lines: string[] = [];
  const resumed = await train(tinyRun(dir, { run_name: 'branch', restore_from: runDir, stop_after: 3 }), { log: (line) => lines.push(line) });
  t.equal(resumed.stepsThisRun, 3, "bin/train --restore_from <another run's folder> starts from its latest checkpoint's weights at step 0");
  t.ok(lines.includes(`starting from the weights of ${latest}, a checkpoint of another run, at step 0`), lines.join('\n'));
  t.ok(fs.existsSync(path.join(dir, 'checkpoint', 'branch', 'model-3')));
});
