// bin/export-gguf: writes a model as one GGUF file, so that llama.cpp and the tools built on it (ollama,
// node-llama-cpp, LM Studio) run a model trained here.
import fs from 'node:fs';
import path from 'node:path';
import { AUDIENCE_RULE, isAudience } from '../../lib/data/chat_format';
import { progressCallback } from '../../lib/download/progress';
import { Model } from '../../lib/engine/model';
import { GGUF_WEIGHT_TYPES, type GgufWeightType, writeGguf, writeGgufAdapter } from '../../lib/formats/gguf';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, readPeftAdapter } from '../../lib/formats/peft';
import { modelfilePath, ollamaModelfile } from '../../lib/formats/ollama';
import { modelDir, resolveModel } from '../../lib/formats/resolve_model';
import type { GPT2Config } from '../../lib/formats/model_folder';
import { chatRecordOf, readChatRecord } from '../../lib/formats/chat_record';
import { checkpointFolder, untrainedAudience } from '../../lib/train/checkpoint';
import { modelTokenizer } from '../../lib/tokenizer';
import { writeTextAtomic } from '../../lib/util/atomic_file';
import { isWithin } from '../../lib/util/paths';
import { commandLine } from './command_line';
import { quoted } from '../../lib/util/quoted';

async function main(): Promise<void> {
  const argv = await commandLine('export-gguf')
    .usage('$0 <model> <out.gguf>\n\nWrites a model (a name under models/, a model folder, or a training run folder: its latest checkpoint) as a GGUF file for llama.cpp\'s '
      + '"gpt2" architecture, with the model\'s vocabulary (or GPT-2\'s when the folder has none). The output head stays '
      + 'tied to the token embeddings; layer norms, biases and position embeddings are always float32. A model trained on chat '
      + 'logs also gets its chat format as the file\'s chat template (what llama.cpp\'s server, LM Studio and node-llama-cpp '
      + 'prompt with), its chat data\'s audiences (so that dixie serves the file as a chat model, as it did the checkpoint) and, beside the file, an ollama Modelfile (<out>.Modelfile) that prompts and stops as dixie does. '
      + 'A LoRA adapter (a PEFT folder, or a run trained with --lora_rank) becomes llama.cpp\'s adapter file, loaded over the base\'s GGUF.')
    .positional('model', { type: 'string', describe: 'model name or folder' })
    .positional('out', { type: 'string', describe: 'the .gguf file to write' })
    .option('type', {
      type: 'string', default: 'f16',
      describe: `what the weight matrices and token embeddings are written in: ${GGUF_WEIGHT_TYPES.join(', ')} (any case). `
        + 'q8_0 is llama.cpp\'s 8-bit blocks; the others are llama-quantize\'s file types, with the very bytes and the mix of '
        + 'types per matrix that llama-quantize writes (q4_K_M: most matrices q4_K, the embeddings and some layers q6_K)',
      coerce: (given: string): GgufWeightType => {
        const type = GGUF_WEIGHT_TYPES.find((t) => t.toLowerCase() === given.toLowerCase());
        if (!type) throw new Error(`--type ${given}: the types are ${GGUF_WEIGHT_TYPES.join(', ')}`);
        return type;
      },
    })
    .option('force', { type: 'boolean', default: false, describe: 'replace a file at <out> that is not a GGUF, or a Modelfile beside it that differs from the one this export writes (one edited by hand); without it nothing is written' })
    .option('audience', { type: 'string', describe: 'who the chat template has the model answer as (default: the audience its chat data talks to most), and dixie serving the file too: it goes first in the file\'s audiences; given for a model not trained here on chat logs, it writes the chat template too' })
    .example('$0 mom mom-f16.gguf', 'the fine-tuned model models/mom, matrices in float16')
    .example('$0 models/124M gpt2.gguf --type f32', 'full precision')
    .example('$0 models/1558M gpt2-xl-q8_0.gguf --type q8_0', '8-bit matrices: half the size of f16')
    .example('$0 mom mom-q4_K_M.gguf --type q4_K_M', 'llama-quantize\'s q4_K_M, the type most models on ollama and LM Studio come in')
    .example('$0 checkpoint/chat mom.gguf && ollama create mom -f mom.Modelfile', 'the quick start\'s chat model, for ollama')
    .example('$0 checkpoint/family family-lora.gguf', 'the adapter a --lora_rank run trained, for llama-server --lora')
    .demandCommand(2, 'give the model and the file to write')
    .check((a) => {
      if (a.audience !== undefined && !isAudience(a.audience)) throw new Error(`--audience must be ${AUDIENCE_RULE}, got ${quoted(a.audience)}`);
      return true;
    })
    .strict()
    .help()
    .parseAsync();
  const [name, out] = argv._.map(String);
  const adapterDir = checkpointFolder(modelDir(name));
  if (fs.existsSync(path.join(adapterDir, ADAPTER_CONFIG_FILE))) {
    refuseToReplace(out, [['the adapter\'s config', path.join(adapterDir, ADAPTER_CONFIG_FILE)], ['the adapter\'s weights', path.join(adapterDir, ADAPTER_WEIGHTS_FILE)]], argv.force);
    await exportAdapter(name, adapterDir, out, argv.type);
    return;
  }
  const folder = resolveModel(name);
  refuseToReplace(out, [['the model\'s weights', folder.weights], ['the model\'s config', folder.configFile ?? folder.weights]], argv.force);
  const vocabulary = modelTokenizer(folder).vocab;
  const trained = readChatRecord(folder.dir).audiences;
  const untrained = argv.audience === undefined ? null : untrainedAudience(argv.audience, trained.map((a) => a.audience));
  if (untrained !== null) process.stderr.write(`export-gguf: warning: --audience ${argv.audience}: ${untrained}\n`);
  // The audience the template answers as goes first in the file's record too, so that dixie answers as it.
  const chat = argv.audience === undefined ? undefined : chatRecordOf(trained, argv.audience);
  const audience = argv.audience ?? trained[0]?.audience;
  const modelfile = audience === undefined ? null : ollamaModelfile(out, audience, (folder.config as GPT2Config).nCtx);
  // Told before the export, not after it: a Modelfile edited by hand (a temperature, a system prompt) is the user's.
  const held = modelfile !== null && fs.existsSync(modelfilePath(out)) ? fs.readFileSync(modelfilePath(out), 'utf8') : null;
  if (held !== null && held !== modelfile && !argv.force) {
    throw new Error(`${modelfilePath(out)} exists and differs from the Modelfile this export writes (edited by hand?): nothing was written; move it away, or give --force to replace it`);
  }
  const model = await Model.load(folder, { trainable: false, device: 'cpu' });
  try {
    await writeGguf(out, model, vocabulary, {
      weightType: argv.type,
      name: path.basename(folder.dir),
      ...(chat !== undefined && { chat }),
      onProgress: progressCallback(path.basename(out)),
    });
  } finally {
    model.dispose();
  }
  const c = model.config;
  // The checkpoint exported (a run folder stands for its latest), named as the user named the model: relative to here
  // if they gave it so.
  const exported = path.isAbsolute(name) ? folder.dir : path.relative(process.cwd(), folder.dir);
  process.stderr.write(`${exported} -> ${out}: ${argv.type} (${c.nLayer} layers, ${c.nHead} heads, ${c.nEmbd} channels, context ${c.nCtx}, vocabulary ${c.vocabSize})\n`);
  if (audience === undefined) return;
  if (modelfile === null) {
    process.stderr.write(`chat template: answering as ${audience}; no ollama Modelfile: its audience holds a quote, backslash or brace, which a Modelfile cannot quote\n`);
    return;
  }
  await writeTextAtomic(modelfilePath(out), modelfile);
  process.stderr.write(`chat template: answering as ${audience}; for ollama: ollama create ${path.basename(out).replace(/\.gguf$/i, '')} -f ${modelfilePath(out)}\n`);
}

// The file written must not be one read: a GGUF model exported again in fewer bits over itself would lose its weights.
// Nor a file of another kind (a mistyped <out>), unless --force says so; a GGUF there is replaced, as exporting again
// is the common case.
function refuseToReplace(out: string, read: readonly [string, string][], force: boolean): void {
  const source = read.find(([, file]) => isWithin(file, out));
  if (source !== undefined) throw new Error(`${out} is ${source[0]}, which the export reads: write the GGUF to another file`);
  if (!fs.existsSync(out)) return;
  if (fs.statSync(out).isDirectory()) throw new Error(`${out} is a folder: give the GGUF file's name, such as ${path.join(out, 'model.gguf')}`);
  if (!force && !isGgufFile(out)) throw new Error(`${out} exists and is not a GGUF file: nothing was written; write elsewhere, or give --force to replace it`);
}

function isGgufFile(file: string): boolean {
  const head = Buffer.alloc(4);
  const fd = fs.openSync(file, 'r');
  try {
    return fs.readSync(fd, head, 0, 4, 0) === 4 && head.toString('latin1') === 'GGUF';
  } finally {
    fs.closeSync(fd);
  }
}

// A LoRA adapter as llama.cpp's adapter file, to load over the base's GGUF.
async function exportAdapter(name: string, dir: string, out: string, type: GgufWeightType): Promise<void> {
  const adapter = readPeftAdapter(dir);
  await writeGgufAdapter(out, adapter, { weightType: type, name: path.basename(dir), onProgress: progressCallback(path.basename(out)) });
  const ranks = [...new Set(adapter.modules.map((m) => m.rank))].join('/');
  const exported = path.isAbsolute(name) ? dir : path.relative(process.cwd(), dir);
  process.stderr.write(`${exported} -> ${out}: LoRA adapter, ${type} (${adapter.modules.length} matrices, rank ${ranks})\n`
    + `over its base's GGUF (bin/export-gguf of the base${adapter.config.baseModel ? `, ${adapter.config.baseModel}` : ''}): llama-server -m base.gguf --lora ${out}; for ollama, a Modelfile of FROM ./base.gguf and ADAPTER ./${path.basename(out)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`export-gguf: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
