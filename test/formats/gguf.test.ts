// bin/export-gguf and lib/formats/gguf: a small model written as GGUF in each weight type, read back by an
// independent reader written from the GGUF specification below, and compared with the model tensor by tensor (q8_0
// against an independent quantizer written from llama.cpp's reference); every type loaded back as a model folder
// with the same logits; a file written by an independent writer below, in the shape llama.cpp's converter gives,
// loaded; and broken files refused with errors that name what is wrong. (That llama.cpp itself loads these files and
// predicts what dixie predicts is checked by the decode bench when node-llama-cpp is installed: bench/llama_cpp.ts,
// figures in bench/NOTES.md.)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { inspectModelFolder } from '../../lib/formats/model_folder';
import { resolveModel } from '../../lib/formats/resolve_model';
import { f16ToF32, f32ToBf16, f32ToF16 } from '../../lib/formats/safetensors';
import { loadTokenizer } from '../../lib/tokenizer';
import { decode, maxAbsDiff, randomTokens } from '../engine/helpers';
import { Template } from '@huggingface/jinja';
import { fitConversation } from '../../lib/data/chat_format';
import { validateServerConfig } from '../../lib/server/config';
import { trainedAudienceCounts } from '../../lib/formats/chat_record';
import { asBytes, llamaCppName, transpose, writeGgufFile, TINY_VOCAB, type RawTensor } from './gguf_writer';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CONFIG = { nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 64, vocabSize: 457 };

type Value = number | bigint | string | boolean | Value[];
interface TensorInfo { name: string; dims: number[]; type: number; offset: number; at: number }  // at: where its type field is
interface Gguf { version: number; metadata: Map<string, Value>; tensors: TensorInfo[]; dataStart: number; bytes: Buffer }

function readGguf(file: string): Gguf {
  const bytes = fs.readFileSync(file);
  let at = 0;
  const u32 = (): number => { at += 4; return bytes.readUInt32LE(at - 4); };
  const u64 = (): number => { at += 8; return Number(bytes.readBigUInt64LE(at - 8)); };
  const str = (): string => { const n = u64(); at += n; return bytes.toString('utf8', at - n, at); };
  const value = (type: number): Value => {
    switch (type) {
      case 0: at += 1; return bytes.readUInt8(at - 1);
      case 4: return u32();
      case 5: at += 4; return bytes.readInt32LE(at - 4);
      case 6: at += 4; return bytes.readFloatLE(at - 4);
      case 7: at += 1; return bytes.readUInt8(at - 1) !== 0;
      case 8: return str();
      case 9: { const elem = u32(); const n = u64(); return Array.from({ length: n }, () => value(elem)); }
      case 10: at += 8; return bytes.readBigUInt64LE(at - 8);
      default: throw new Error(`value type ${type} not expected at byte ${at}`);
    }
  };
  if (bytes.toString('latin1', 0, 4) !== 'GGUF') throw new Error('no GGUF magic');
  at = 4;
  const version = u32();
  const nTensors = u64();
  const nMeta = u64();
  const metadata = new Map<string, Value>();
  for (let i = 0; i < nMeta; i++) { const key = str(); metadata.set(key, value(u32())); }
  const tensors: TensorInfo[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const dims = Array.from({ length: u32() }, () => u64());
    const typeAt = at;
    tensors.push({ name, dims, type: u32(), offset: u64(), at: typeAt });
  }
  const alignment = Number(metadata.get('general.alignment') ?? 32);
  return { version, metadata, tensors, dataStart: Math.ceil(at / alignment) * alignment, bytes };
}

// Bytes of n values of a ggml type: f32, f16/bf16, or q8_0 blocks of 32 values in 34 bytes.
function dataBytes(type: number, n: number): number {
  return type === 0 ? 4 * n : type === 8 ? (n / 32) * 34 : 2 * n;
}

// llama.cpp's reference Q8_0 quantizer (ggml-quants.c, quantize_row_q8_0_ref), step by step in float32.
function quantizeQ8(w: Float32Array): Buffer {
  const out = Buffer.alloc((w.length / 32) * 34);
  for (let b = 0; b < w.length / 32; b++) {
    const block = w.subarray(b * 32, b * 32 + 32);
    const amax = block.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    out.writeUInt16LE(f32ToF16(Float32Array.of(d))[0], b * 34);
    block.forEach((x, i) => out.writeInt8(Math.sign(Math.fround(x * id)) * Math.round(Math.abs(Math.fround(x * id))), b * 34 + 2 + i));
  }
  return out;
}

function tensorBytes(g: Gguf, name: string): Buffer {
  const info = g.tensors.find((x) => x.name === name);
  if (!info) throw new Error(`no tensor ${name}`);
  const begin = g.dataStart + info.offset;
  return g.bytes.subarray(begin, begin + dataBytes(info.type, info.dims.reduce((n, d) => n * d, 1)));
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-gguf-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
const modelDir = path.join(work, 'tiny');
let model: Model;

t.before(async () => {
  model = Model.create(CONFIG, { seed: 11, device: 'cpu' });
  await model.save(modelDir);
  for (const f of ['encoder.json', 'vocab.bpe']) fs.copyFileSync(path.join(TINY_VOCAB, f), path.join(modelDir, f));
});
t.teardown(() => model.dispose());

function exportGguf(...args: string[]): ReturnType<typeof spawnSync> {
  return spawnSync(process.execPath, [path.join(ROOT, 'bin', 'export-gguf'), ...args], { encoding: 'utf8' });
}

for (const [type, ggmlType, fileType] of [['f32', 0, 0], ['f16', 1, 1], ['bf16', 30, 32], ['q8_0', 8, 7]] as const) {
  t.test(`${type}: the header, the vocabulary and every tensor`, async (t) => {
    const out = path.join(work, `tiny-${type}.gguf`);
    const run = exportGguf(modelDir, out, '--type', type);
    t.equal(run.status, 0, String(run.stderr));
    t.match(String(run.stderr), new RegExp(`tiny -> .*tiny-${type}\\.gguf: ${type} \\(2 layers, 4 heads, 64 channels, context 64, vocabulary 457\\)`));
    t.same(fs.readdirSync(work).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left behind');
    const g = readGguf(out);
    t.equal(g.version, 3);
    const meta = Object.fromEntries(g.metadata);
    t.match(meta, {
      'general.architecture': 'gpt2', 'general.name': 'tiny', 'general.file_type': fileType, 'general.alignment': 32,
      'gpt2.context_length': 64, 'gpt2.embedding_length': 64, 'gpt2.feed_forward_length': 256, 'gpt2.block_count': 2,
      'gpt2.attention.head_count': 4, 'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.pre': 'gpt-2',
      'tokenizer.ggml.bos_token_id': 456, 'tokenizer.ggml.eos_token_id': 456,
    });
    t.ok(Math.abs(Number(meta['gpt2.attention.layer_norm_epsilon']) - 1e-5) < 1e-12);
    const encoder = JSON.parse(fs.readFileSync(path.join(TINY_VOCAB, 'encoder.json'), 'utf8')) as Record<string, number>;
    const tokens = meta['tokenizer.ggml.tokens'] as string[];
    t.equal(tokens.length, 457);
    t.ok(Object.entries(encoder).every(([tok, id]) => tokens[id] === tok), 'tokens in id order, as encoder.json spells them');
    const types = meta['tokenizer.ggml.token_type'] as number[];
    t.same([types[456], types[0], new Set(types).size], [3, 1, 2], '<|endoftext|> is the one control token');
    const mergeLines = fs.readFileSync(path.join(TINY_VOCAB, 'vocab.bpe'), 'utf8').split('\n').slice(1).filter(Boolean);
    t.same(meta['tokenizer.ggml.merges'], mergeLines);

    t.equal(g.tensors.length, 2 + 12 * 2 + 2, 'token and position embeddings, 12 per layer, the final norm; no output.weight (tied)');
    t.ok(g.tensors.every((x) => x.offset % 32 === 0), 'every tensor aligned');
    const last = g.tensors[g.tensors.length - 1];
    t.equal(g.bytes.length, g.dataStart + Math.ceil((last.offset + dataBytes(last.type, last.dims.reduce((n, d) => n * d, 1))) / 32) * 32);
    const matrix = (w: Float32Array): Buffer => (type === 'q8_0' ? quantizeQ8(w) : asBytes(type === 'f32' ? w : type === 'f16' ? f32ToF16(w) : f32ToBf16(w)));
    const C = 64;
    // The token embeddings in the file's type, q8_0 too, as llama.cpp's converter writes them.
    t.match(g.tensors.find((x) => x.name === 'token_embd.weight'), { name: 'token_embd.weight', dims: [C, 457], type: ggmlType, offset: 0 });
    t.ok(tensorBytes(g, 'token_embd.weight').equals(matrix(model.getParam('wte.weight'))), 'token_embd = wte');
    t.ok(tensorBytes(g, 'position_embd.weight').equals(asBytes(model.getParam('wpe.weight'))), 'position_embd = wpe, float32');
    const conv1d: [string, string, number, number][] = [
      ['attn_qkv', 'attn.c_attn', C, 3 * C], ['attn_output', 'attn.c_proj', C, C],
      ['ffn_up', 'mlp.c_fc', C, 4 * C], ['ffn_down', 'mlp.c_proj', 4 * C, C],
    ];
    for (const l of [0, 1]) {
      for (const [gg, hf, inputs, outputs] of conv1d) {
        const info = g.tensors.find((x) => x.name === `blk.${l}.${gg}.weight`);
        t.same(info && [info.dims, info.type], [[inputs, outputs], ggmlType], `blk.${l}.${gg}.weight: dims and type`);
        const w = transpose(model.getParam(`h.${l}.${hf}.weight`), inputs, outputs);
        t.ok(tensorBytes(g, `blk.${l}.${gg}.weight`).equals(matrix(w)), `blk.${l}.${gg}.weight = h.${l}.${hf}.weight transposed to [out][in]`);
        t.ok(tensorBytes(g, `blk.${l}.${gg}.bias`).equals(asBytes(model.getParam(`h.${l}.${hf}.bias`))), `blk.${l}.${gg}.bias`);
      }
      for (const [gg, hf] of [['attn_norm', 'ln_1'], ['ffn_norm', 'ln_2']]) {
        for (const p of ['weight', 'bias']) {
          t.ok(tensorBytes(g, `blk.${l}.${gg}.${p}`).equals(asBytes(model.getParam(`h.${l}.${hf}.${p}`))), `blk.${l}.${gg}.${p}`);
        }
      }
    }
    t.ok(tensorBytes(g, 'output_norm.bias').equals(asBytes(model.getParam('ln_f.bias'))), 'output_norm = ln_f');
  });
}

t.test('a model trained on chat logs gets its chat format as the chat template, and an ollama Modelfile beside the file', async (t) => {
  const chat = path.join(work, 'chat-model');
  fs.cpSync(modelDir, chat, { recursive: true });
  fs.writeFileSync(path.join(chat, 'state.json'), JSON.stringify({ audiences: [{ audience: 'mom', sent: 5, received: 4 }, { audience: 'dad', sent: 1, received: 1 }] }));
  const out = path.join(work, 'mom.gguf');
  const run = exportGguf(chat, out);
  t.equal(run.status, 0, String(run.stderr));
  t.match(String(run.stderr), /chat template: answering as mom; for ollama: ollama create mom -f .*mom\.Modelfile/);
  const template = readGguf(out).metadata.get('tokenizer.chat_template') as string;
  const turns = [
    { from: 'user', text: 'Hi  there\nMom' }, { from: 'bot', text: 'Hello <EOM> dear | <|endoftext|> x' }, { from: 'user', text: 'How was your day?' },
  ] as const;
  const messages = [{ role: 'system', content: 'You are a helpful assistant.' }, ...turns.map((m) => ({ role: m.from === 'user' ? 'user' : 'assistant', content: m.text }))];
  t.equal(new Template(template).render({ messages, add_generation_prompt: true }), fitConversation({ audience: 'mom', turns }).prompt,
    "rendered by Hugging Face's Jinja: the prompt dixie makes of the conversation, the system message left out, the texts cleaned");
  t.equal(new Template(template).render({ messages: messages.slice(0, 2), add_generation_prompt: false }), '1|mom|Hi there Mom <EOM>\n', 'no reply prefix unless asked for');
  t.equal(fs.readFileSync(path.join(work, 'mom.Modelfile'), 'utf8'), [
    '# ollama create <name> -f mom.Modelfile, then ollama run <name>: the chat format, answering as mom.',
    'FROM ./mom.gguf',
    'TEMPLATE """{{- range .Messages }}{{ if eq .Role "user" }}1|mom|{{ .Content }} <EOM>\n{{ else if eq .Role "assistant" }}0|mom|{{ .Content }} <EOM>\n{{ end }}{{ end }}0|mom|"""',
    'PARAMETER stop "<EOM>"',
    'PARAMETER stop "1|mom|"',
    'PARAMETER num_ctx 64',
    '',
  ].join('\n'), 'the Modelfile: the model beside it, the chat format as a Go template, its stops, its context');
  // The file keeps the training record's audiences, so that a folder holding it is served as the chat model it was.
  const served = path.join(work, 'served-gguf');
  fs.mkdirSync(served);
  fs.copyFileSync(out, path.join(served, 'model.gguf'));
  t.same(trainedAudienceCounts(served), [{ audience: 'mom', sent: 5, received: 4 }, { audience: 'dad', sent: 1, received: 1 }], 'the audiences, as the checkpoint counted them');
  const entry = validateServerConfig({ models: [{ key: 'mom', restore_from: served }] }, 'config.json', work).models[0];
  t.match(entry, { promptFormat: 'chat', audience: 'mom', audiences: ['mom', 'dad'] }, 'served in the chat format, answering as mom');
  // Only the file a model is read from speaks for it, and a broken one is left to the model's load to name.
  const beside = path.join(work, 'gguf-beside-safetensors');
  fs.cpSync(modelDir, beside, { recursive: true });
  fs.copyFileSync(out, path.join(beside, 'model.gguf'));
  t.same(trainedAudienceCounts(beside), [], 'a GGUF file beside the safetensors the model is read from');
  fs.writeFileSync(path.join(served, 'model.gguf'), fs.readFileSync(out).subarray(0, 100));
  t.same(trainedAudienceCounts(served), [], 'a truncated one');
  // Exported again, its own Modelfile is written again; one edited by hand is kept, and nothing written, unless --force.
  const written = fs.readFileSync(path.join(work, 'mom.Modelfile'), 'utf8');
  t.equal(exportGguf(chat, out, '--type', 'q8_0').status, 0);
  fs.appendFileSync(path.join(work, 'mom.Modelfile'), 'PARAMETER temperature 0.5\n');
  const ggufBefore = fs.readFileSync(out);
  const edited = exportGguf(chat, out);
  t.match([edited.status, String(edited.stderr)], [1, `export-gguf: ${path.join(work, 'mom.Modelfile')} exists and differs from the Modelfile this export writes (edited by hand?): nothing was written; move it away, or give --force to replace it\n`]);
  t.ok(fs.readFileSync(out).equals(ggufBefore) && fs.readFileSync(path.join(work, 'mom.Modelfile'), 'utf8') === `${written}PARAMETER temperature 0.5\n`, 'both as they were');
  t.equal(exportGguf(chat, out, '--force').status, 0);
  t.equal(fs.readFileSync(path.join(work, 'mom.Modelfile'), 'utf8'), written, '--force replaces it');
  const dad = exportGguf(chat, path.join(work, 'dad.gguf'), '--audience', 'dad');
  t.equal(dad.status, 0, String(dad.stderr));
  const dadTemplate = new Template(readGguf(path.join(work, 'dad.gguf')).metadata.get('tokenizer.chat_template') as string);
  t.equal(dadTemplate.render({ messages: messages.slice(1, 2), add_generation_prompt: true }), '1|dad|Hi there Mom <EOM>\n0|dad|', '--audience picks another');
  // dixie serving the file answers as the template does: the audience named goes first in the file's record.
  t.equal(readGguf(path.join(work, 'dad.gguf')).metadata.get('dixie.chat.audiences'), JSON.stringify([{ audience: 'dad', sent: 1, received: 1 }, { audience: 'mom', sent: 5, received: 4 }]), 'dad first, the counts as they were');
  fs.copyFileSync(path.join(work, 'dad.gguf'), path.join(served, 'model.gguf'));
  t.match(validateServerConfig({ models: [{ key: 'dad', restore_from: served }] }, 'config.json', work).models[0], { promptFormat: 'chat', audience: 'dad', audiences: ['dad', 'mom'] }, 'served answering as dad');
  const untrained = exportGguf(chat, path.join(work, 'Dad.gguf'), '--audience', 'Dad');
  t.equal(untrained.status, 0, String(untrained.stderr));
  t.match(String(untrained.stderr), 'export-gguf: warning: --audience Dad: its chat data never talks to "Dad", but to "dad" (audiences are told apart by case)\n', 'an audience the data never talks to is warned of, as bin/chat warns');
  t.equal(readGguf(path.join(work, 'Dad.gguf')).metadata.get('dixie.chat.audiences'), JSON.stringify([{ audience: 'Dad', sent: 0, received: 0 }, ...JSON.parse(fs.readFileSync(path.join(chat, 'state.json'), 'utf8')).audiences]), 'and goes first, no message counted');
  // As the server takes them: a system message naming an audience answers as it, and a tool's output is on the user's side.
  const named = [{ role: 'system', content: ' Audience : Aunt May ' }, ...messages.slice(1, 3), { role: 'tool', content: '{"temp": 21}' }];
  t.equal(dadTemplate.render({ messages: named, add_generation_prompt: true }),
    fitConversation({ audience: 'Aunt May', turns: [...turns.slice(0, 2), { from: 'user', text: '{"temp": 21}' }] }).prompt, 'a system message names whom it answers as');
  t.equal(dadTemplate.render({ messages: [{ role: 'system', content: 'audience: mom\nbe nice' }, messages[1]], add_generation_prompt: true }), '1|dad|Hi there Mom <EOM>\n0|dad|',
    'one that says more than a name is left out, as the server leaves it');
  const plain = exportGguf(modelDir, path.join(work, 'plain.gguf'));
  t.equal(plain.status, 0, String(plain.stderr));
  t.notOk(['tokenizer.chat_template', 'dixie.chat.audiences'].some((key) => readGguf(path.join(work, 'plain.gguf')).metadata.has(key)), 'a model not trained on chat logs gets neither template nor audiences');
  t.notOk(fs.existsSync(path.join(work, 'plain.Modelfile')), 'nor a Modelfile');
  // A file at <out> that is no GGUF (a mistyped name) is the user's: kept unless --force; a GGUF there is replaced.
  const notes = path.join(work, 'notes.txt');
  fs.writeFileSync(notes, 'my notes\n');
  const mistyped = exportGguf(modelDir, notes);
  t.match([mistyped.status, String(mistyped.stderr)], [1, `export-gguf: ${notes} exists and is not a GGUF file: nothing was written; write elsewhere, or give --force to replace it\n`]);
  t.equal(fs.readFileSync(notes, 'utf8'), 'my notes\n', 'and it is left as it was');
  t.equal(exportGguf(modelDir, notes, '--force').status, 0);
  t.equal(readGguf(notes).metadata.get('general.architecture'), 'gpt2', '--force replaces it');
  const folder = fs.mkdirSync(path.join(work, 'exports'), { recursive: true }) ?? path.join(work, 'exports');
  const folderOut = exportGguf(modelDir, folder);
  t.match([folderOut.status, String(folderOut.stderr)], [1, `export-gguf: ${folder} is a folder: give the GGUF file's name, such as ${path.join(folder, 'model.gguf')}\n`]);
  const bad = exportGguf(chat, path.join(work, 'bad.gguf'), '--audience', 'a|b');
  t.match([bad.status, String(bad.stderr)], [1, /--audience must be 1 to 64 characters/]);
});

t.test("a fine-tune's end of text, added tokens and sampling defaults go into llama.cpp's keys, and load back from them", async (t) => {
  const dir = path.join(work, 'chatml');
  const chatml = Model.create({ ...CONFIG, vocabSize: 460 }, { seed: 3, device: 'cpu' });
  await chatml.save(dir);
  chatml.dispose();
  fs.copyFileSync(path.join(TINY_VOCAB, 'encoder.json'), path.join(dir, 'vocab.json'));
  fs.copyFileSync(path.join(TINY_VOCAB, 'vocab.bpe'), path.join(dir, 'merges.txt'));
  fs.writeFileSync(path.join(dir, 'added_tokens.json'), JSON.stringify({ '<|im_start|>': 457, '<|im_end|>': 458, '<pad>': 459 }));
  fs.writeFileSync(path.join(dir, 'special_tokens_map.json'), JSON.stringify({ eos_token: '<|im_end|>', additional_special_tokens: ['<|im_start|>', '<|im_end|>'] }));
  fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ do_sample: true, temperature: 0.7, top_k: 40, top_p: 0.9, min_p: 0.05, repetition_penalty: 1.25 }));
  const out = path.join(work, 'chatml-gguf', 'model.gguf');
  fs.mkdirSync(path.dirname(out));
  const run = exportGguf(dir, out);
  t.equal(run.status, 0, String(run.stderr));
  const meta = Object.fromEntries(readGguf(out).metadata);
  t.match(meta, { 'tokenizer.ggml.bos_token_id': 456, 'tokenizer.ggml.eos_token_id': 458, 'tokenizer.ggml.add_bos_token': false, 'general.sampling.top_k': 40 });
  const f32 = (key: string): number => Number(meta[key]);
  t.same([f32('general.sampling.temp'), f32('general.sampling.top_p'), f32('general.sampling.min_p'), f32('general.sampling.penalty_repeat')], [0.7, 0.9, 0.05, 1.25].map(Math.fround), 'as float32');
  const types = meta['tokenizer.ggml.token_type'] as number[];
  t.same([types[0], types[456], types[457], types[458], types[459]], [1, 3, 3, 3, 4], 'special tokens control tokens, <pad> user-defined');

  const source = loadTokenizer(dir);
  const back = loadTokenizer(path.dirname(out));
  t.equal(back.eosToken, 458, 'the end of text, from tokenizer.ggml.eos_token_id');
  t.same(back.vocab.addedTokens.map((a) => [a.id, a.text, a.special]), [[456, '<|endoftext|>', true], [457, '<|im_start|>', true], [458, '<|im_end|>', true], [459, '<pad>', false]]);
  const prompt = '<|im_start|>user hi<|im_end|> <pad>';
  for (const allowSpecial of [true, false]) t.same(back.encode(prompt, { allowSpecial }), source.encode(prompt, { allowSpecial }), `a prompt encodes as from the folder (allowSpecial ${allowSpecial})`);
  const loaded = await Model.load(path.dirname(out), { trainable: false, device: 'cpu' });
  t.same(loaded.generationConfig?.json, { temperature: Math.fround(0.7), top_k: 40, top_p: Math.fround(0.9), min_p: Math.fround(0.05), repetition_penalty: Math.fround(1.25) }, 'the sampling defaults, as generation_config.json names them');
  t.same(loaded.generationConfig?.defaults, { temperature: Math.fround(0.7), topK: 40, topP: Math.fround(0.9), minP: Math.fround(0.05), penalize: 1 / Math.fround(1.25) });
  loaded.dispose();

  // llama.cpp loads a file whatever its sampling keys hold (top_k -1: off); dixie must load it too.
  const odd = path.join(work, 'chatml-odd-sampling');
  fs.mkdirSync(odd);
  const bytes = fs.readFileSync(out);
  const valueOf = (key: string): number => bytes.indexOf(Buffer.from(key)) + key.length + 4;
  bytes.writeInt32LE(-1, valueOf('general.sampling.top_k'));
  bytes.writeFloatLE(1.5, valueOf('general.sampling.min_p'));
  fs.writeFileSync(path.join(odd, 'model.gguf'), bytes);
  const oddModel = await Model.load(odd, { trainable: false, device: 'cpu' });
  t.same(oddModel.generationConfig?.defaults, { temperature: Math.fround(0.7), topK: 0, topP: Math.fround(0.9), penalize: 1 / Math.fround(1.25) }, 'top_k -1 is off, as in llama.cpp');
  t.match(oddModel.generationConfig?.ignored, [/metadata "general\.sampling\.min_p" is 1\.5, which dixie does not honour/]);
  oddModel.dispose();

  // An end of text past the tokens, which llama.cpp passes over with a warning: <|endoftext|> ends the text.
  const badEos = path.join(work, 'chatml-bad-eos');
  fs.mkdirSync(badEos);
  bytes.writeUInt32LE(100000, valueOf('tokenizer.ggml.eos_token_id'));
  fs.writeFileSync(path.join(badEos, 'model.gguf'), bytes);
  t.equal(loadTokenizer(badEos).eosToken, 456);
});

t.test('a vocabulary that does not fit the model is refused, and nothing is written', async (t) => {
  const out = path.join(work, 'refused.gguf');
  const fixture = path.join(ROOT, 'test', 'fixtures', 'gpt2-tiny');  // vocabulary 256, no vocabulary files
  const run = exportGguf(fixture, out);
  t.equal(run.status, 1);
  t.match(String(run.stderr), /^export-gguf: .*gpt2-tiny has no vocabulary \(encoder\.json \+ vocab\.bpe, vocab\.json \+ merges\.txt, or tokenizer\.json\), and its vocab_size is 256, not GPT-2's 50257: copy in the vocabulary it was trained with\n$/);
  t.notOk(fs.existsSync(out));
  // With GPT-2's vocabulary copied in: more tokens than the model has ids, refused as the vocabulary loads.
  const copy = path.join(work, 'gpt2-tiny-vocab');
  fs.cpSync(fixture, copy, { recursive: true });
  for (const f of ['encoder.json', 'vocab.bpe']) fs.copyFileSync(path.join(ROOT, 'lib', 'tokenizer', 'gpt2', f), path.join(copy, f));
  const mismatched = exportGguf(copy, out);
  t.equal(mismatched.status, 1);
  t.match(String(mismatched.stderr), /^export-gguf: .*gpt2-tiny-vocab\/encoder\.json: 50257 tokens, more than the model's vocabulary of 256: not the vocabulary the model was trained with\n$/);
  t.notOk(fs.existsSync(out));
  const missing = exportGguf(path.join(work, 'no-such-model'), out);
  t.equal(missing.status, 1);
  t.match(String(missing.stderr), /^export-gguf: .*no-such-model/);
  const badType = exportGguf(modelDir, out, '--type', 'q4');
  t.not(badType.status, 0);
  t.match(String(badType.stderr), /--type q4: the types are f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K_S, q4_K_M, q5_K_S, q5_K_M, q6_K\n\nexport-gguf --help lists the options\n$/);
});

// The logits of each of `sequences`' last token, decoded a token at a time.
async function lastLogits(model: Model, sequences: Int32Array[]): Promise<Float32Array[]> {
  const rows = await decode(model, sequences, () => 1);
  return sequences.map((seq, s) => rows.get(`${s}:${seq.length - 1}`) as Float32Array);
}

const SEQUENCES = [randomTokens(20, 457, 1), randomTokens(9, 457, 2)];

for (const type of ['f32', 'f16', 'bf16', 'q8_0'] as const) {
  t.test(`${type}: a model folder of the GGUF alone loads back with the model's logits and its vocabulary`, async (t) => {
    const dir = path.join(work, `folder-${type}`);
    fs.mkdirSync(dir);
    const run = exportGguf(modelDir, path.join(dir, 'model.gguf'), '--type', type);
    t.equal(run.status, 0, String(run.stderr));
    const source = await Model.load(modelDir, { trainable: false, weightDtype: type });
    const loaded = await Model.load(dir, { trainable: false, weightDtype: type });
    t.same(loaded.config, CONFIG, 'the config, from the metadata');
    const [a, b] = [await lastLogits(source, SEQUENCES), await lastLogits(loaded, SEQUENCES)];
    t.equal(Math.max(maxAbsDiff(a[0], b[0]), maxAbsDiff(a[1], b[1])), 0, 'the same logits, bit for bit');
    const text = 'Hello there, how are you?';
    t.same(loadTokenizer(dir).encode(text, { allowSpecial: false }), loadTokenizer(TINY_VOCAB).encode(text, { allowSpecial: false }), 'the vocabulary, from the metadata');
    source.dispose();
    loaded.dispose();
  });
}

// llama.cpp's reference Q4_0 quantizer (quantize_row_q4_0_ref): d = -max / 8 of the value largest in magnitude,
// q = min(15, trunc(x / d + 8.5)), two to a byte (the block's first 16 values in the low halves).
function quantizeQ4(w: Float32Array): Buffer {
  const out = Buffer.alloc((w.length / 32) * 18);
  for (let b = 0; b < w.length / 32; b++) {
    const block = w.subarray(b * 32, b * 32 + 32);
    const max = block.reduce((m, x) => (Math.abs(x) > Math.abs(m) ? x : m), 0);
    const d = Math.fround(max / -8);
    const id = d ? Math.fround(1 / d) : 0;
    out.writeUInt16LE(f32ToF16(Float32Array.of(d))[0], b * 18);
    const q = Array.from(block, (x) => Math.min(15, Math.trunc(Math.fround(Math.fround(x * id) + 8.5))));
    for (let j = 0; j < 16; j++) out[b * 18 + 2 + j] = q[j] | (q[j + 16] << 4);
  }
  return out;
}

// The token embeddings q8_0 and repeated as output.weight, as llama.cpp's older converter writes them.
function q8TiedHead(w: Float32Array, dims: number[]): RawTensor[] {
  const q = quantizeQ8(w);
  return [{ name: 'token_embd.weight', dims, type: 8, data: q }, { name: 'output.weight', dims, type: 8, data: q }];
}

// A q8_0 GPT-2 as llama.cpp's converter lays it out (convert_hf_to_gguf.py --outtype q8_0): the token embeddings
// as `embeddings` gives them (with an output.weight or not), the position embeddings f32.
function writeLikeLlamaCpp(file: string, m: Model, embeddings: (w: Float32Array, dims: number[]) => RawTensor[] = q8TiedHead): void {
  const tensors: RawTensor[] = [];
  for (const info of m.tensors) {
    const w = m.getParam(info.name);
    const name = llamaCppName(info.name);
    if (info.shape.length === 1) tensors.push({ name, dims: info.shape, type: 0, data: asBytes(w) });
    else if (name === 'position_embd.weight') tensors.push({ name, dims: [info.shape[1], info.shape[0]], type: 0, data: asBytes(w) });
    else if (name === 'token_embd.weight') tensors.push(...embeddings(w, [info.shape[1], info.shape[0]]));
    else tensors.push({ name, dims: info.shape, type: 8, data: quantizeQ8(transpose(w, info.shape[0], info.shape[1])) });
  }
  writeGgufFile(file, CONFIG, 7, tensors);
}

t.test('a q8_0 GGUF laid out as llama.cpp\'s converter writes it loads: its weights, expanded exactly, decode as float32', async (t) => {
  const dir = path.join(work, 'llama-cpp-like');
  fs.mkdirSync(dir);
  writeLikeLlamaCpp(path.join(dir, 'model.gguf'), model);
  const loaded = await Model.load(dir, { trainable: false });
  // The same weights as dixie expands them: d * q, with d from f16 and q from the quantizer above.
  const expected = Model.create(CONFIG, { trainable: false });
  for (const info of model.tensors) {
    const w = model.getParam(info.name);
    if (info.shape.length === 1 || info.name === 'wpe.weight') {
      expected.setParam(info.name, w);
      continue;
    }
    const conv1d = info.name !== 'wte.weight';
    const q = quantizeQ8(conv1d ? transpose(w, info.shape[0], info.shape[1]) : w);
    const d = f16ToF32(Uint16Array.from({ length: w.length / 32 }, (_, b) => q.readUInt16LE(b * 34)));
    const values = Float32Array.from({ length: w.length }, (_, i) => d[Math.floor(i / 32)] * q.readInt8(Math.floor(i / 32) * 34 + 2 + (i % 32)));
    expected.setParam(info.name, conv1d ? transpose(values, info.shape[1], info.shape[0]) : values);
  }
  for (const info of model.tensors) t.same(loaded.getParam(info.name), expected.getParam(info.name), info.name);
  const [a, b] = [await lastLogits(expected, SEQUENCES), await lastLogits(loaded, SEQUENCES)];
  t.equal(Math.max(maxAbsDiff(a[0], b[0]), maxAbsDiff(a[1], b[1])), 0, 'the same logits');
  await t.rejects(Model.load(dir), /model\.gguf: tensor "token_embd\.weight" is q8_0: quantized weights are for inference, or the frozen base of a LoRA adapter, and dixie does not fine-tune them whole/,
    'fine-tuning every weight refuses q8_0 weights');
  const adapted = await Model.load(dir, { device: 'cpu', weightDtype: 'q8_0', lora: { rank: 2, alpha: 4, targets: ['attn.c_attn'] } });
  t.equal(adapted.memory().grads, adapted.tensors.filter((x) => x.name.includes('.lora_')).reduce((n, x) => n + x.numel, 0) * 4, 'an adapter trains over them, its factors alone');
  adapted.dispose();
  loaded.dispose();
  expected.dispose();
});

t.test('a folder of one GGUF file of another name, as llama.cpp\'s converter and the hub name theirs, loads as its model.gguf would', async (t) => {
  const named = path.join(work, 'named-gguf');
  const canonical = path.join(work, 'canonical-gguf');
  fs.mkdirSync(named);
  fs.mkdirSync(canonical);
  const file = path.join(named, 'Tiny-124M-Q8_0.gguf');
  writeLikeLlamaCpp(file, model);
  fs.copyFileSync(file, path.join(canonical, 'model.gguf'));
  t.match(inspectModelFolder(named), { kind: 'gguf', weights: file, configFile: file, vocab: { encoder: file, merges: file } });
  const [a, b] = [await Model.load(canonical, { trainable: false }), await Model.load(named, { trainable: false })];
  const [x, y] = [await lastLogits(a, SEQUENCES), await lastLogits(b, SEQUENCES)];
  t.equal(Math.max(maxAbsDiff(x[0], y[0]), maxAbsDiff(x[1], y[1])), 0, 'the same logits, bit for bit');
  a.dispose();
  b.dispose();
  const text = 'Hello there, how are you?';
  t.same(loadTokenizer(named).encode(text, { allowSpecial: false }), loadTokenizer(TINY_VOCAB).encode(text, { allowSpecial: false }), 'the vocabulary, from its metadata');
  t.throws(() => resolveModel(file), { message: `${file}: not a folder: give the folder that holds it (its model.gguf, or its one .gguf file, is read)` });

  fs.copyFileSync(file, path.join(named, 'Tiny-124M-F16.gguf'));
  t.throws(() => inspectModelFolder(named), { message: `${named}: several GGUF files (Tiny-124M-F16.gguf, Tiny-124M-Q8_0.gguf) and no model.gguf: name the one to load model.gguf, or move the others out` });
  fs.renameSync(file, path.join(named, 'model.gguf'));
  t.match(inspectModelFolder(named), { kind: 'gguf', weights: path.join(named, 'model.gguf') }, 'model.gguf is read before any other');
});

t.test('an output.weight that llama-quantize gave another type than token_embd.weight (q8_0, q4_0) loads as the tied head, from the more precise of the two', async (t) => {
  const load = async (name: string, embeddings: (w: Float32Array, dims: number[]) => RawTensor[]): Promise<Model> => {
    const dir = path.join(work, name);
    fs.mkdirSync(dir);
    writeLikeLlamaCpp(path.join(dir, 'model.gguf'), model, embeddings);
    return Model.load(dir, { trainable: false, device: 'cpu' });
  };
  const quantized = await load('head-q8-embd-q4', (w, dims) => [
    { name: 'token_embd.weight', dims, type: 2, data: quantizeQ4(w) }, { name: 'output.weight', dims, type: 8, data: quantizeQ8(w) },
  ]);
  const headAlone = await load('head-q8-alone', (w, dims) => [{ name: 'token_embd.weight', dims, type: 8, data: quantizeQ8(w) }]);
  const [a, b] = [await lastLogits(quantized, SEQUENCES), await lastLogits(headAlone, SEQUENCES)];
  t.equal(Math.max(maxAbsDiff(a[0], b[0]), maxAbsDiff(a[1], b[1])), 0, 'the logits of the q8_0 head as the tied matrix, bit for bit');
  quantized.dispose();
  headAlone.dispose();

  // A head of its own: another model's embeddings, or these with fine-tuning's changes well past q4_0's error.
  const other = Model.create(CONFIG, { seed: 12, device: 'cpu' });
  const untied = other.getParam('wte.weight');
  other.dispose();
  const changed = Float32Array.from(model.getParam('wte.weight'), (x, i) => x + 0.5 * untied[i]);
  for (const [name, head] of [['untied-other', untied], ['untied-changed', changed]] as const) {
    await t.rejects(load(name, (w, dims) => [{ name: 'token_embd.weight', dims, type: 2, data: quantizeQ4(w) }, { name: 'output.weight', dims, type: 8, data: quantizeQ8(head) }]),
      new RegExp(`${name}/model\\.gguf: tensor "output\\.weight" \\(q8_0\\) differs from token_embd\\.weight \\(q4_0\\) by [\\d.]+ of its RMS, more than the two types' quantization error allows \\(0\\.\\d+\\); dixie ties the output head to the token embeddings and cannot load an untied head`), name);
  }
});

t.test('a broken GGUF is refused with an error that names the file and what is wrong', async (t) => {
  const good = path.join(work, 'folder-q8_0', 'model.gguf');
  const broken = (name: string, edit: (b: Buffer, g: Gguf) => Buffer): string => {
    const dir = path.join(work, `broken-${name}`);
    fs.mkdirSync(dir);
    const file = path.join(dir, 'model.gguf');
    fs.writeFileSync(file, edit(fs.readFileSync(good), readGguf(good)));
    return dir;
  };
  const qkv = (g: Gguf): TensorInfo => g.tensors.find((x) => x.name === 'blk.0.attn_qkv.weight') as TensorInfo;
  const cases: [string, (b: Buffer, g: Gguf) => Buffer, RegExp][] = [
    ['magic', (b) => Buffer.concat([Buffer.from('GGML'), b.subarray(4)]), /broken-magic\/model\.gguf: not a GGUF file \(it does not begin with "GGUF"\)/],
    ['truncated-header', (b) => b.subarray(0, 2000), /broken-truncated-header\/model\.gguf: metadata "tokenizer\.ggml\.tokens": a count of 457 at byte \d+ reaches past the end of the file \(2000 bytes\): truncated or corrupt/],
    ['truncated-data', (b) => b.subarray(0, b.length - 100), /broken-truncated-data\/model\.gguf: tensor "output_norm\.bias" \(f32 \[64\], 256 bytes at data offset \d+\) lies past the end of the file \(\d+ bytes\): truncated or corrupt/],
    ['offset', (b, g) => { const c = Buffer.from(b); c.writeBigUInt64LE(1n << 40n, qkv(g).at + 4); return c; },
      /broken-offset\/model\.gguf: tensor "blk\.0\.attn_qkv\.weight" \(q8_0 \[64, 192\], 13056 bytes at data offset 1099511627776\) lies past the end of the file/],
    ['type', (b, g) => { const c = Buffer.from(b); c.writeUInt32LE(16, qkv(g).at); return c; },
      /broken-type\/model\.gguf: tensor "blk\.0\.attn_qkv\.weight" is of ggml type iq2_xxs, which dixie does not read \(it reads f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl, iq4_xs; requantize with llama\.cpp's llama-quantize to one of them/],
    ['version', (b) => { const c = Buffer.from(b); c.writeUInt32LE(1, 4); return c; }, /broken-version\/model\.gguf: GGUF version 1; dixie reads versions 2 and 3/],
  ];
  for (const [name, edit, error] of cases) {
    await t.rejects(Model.load(broken(name, edit), { trainable: false }), error, name);
  }
});
