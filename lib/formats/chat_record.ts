// What makes a model folder a chat model: the audiences its chat data talks to, which the server and bin/chat answer
// as, and the chat template that other tools prompt it with. Every command and Model read them here and write them
// through here, so that a chat model stays one through a save, a merge or an export:
//   state.json              a training checkpoint's record (lib/train/checkpoint.ts), with the run's audiences (or
//                           those of a model saved over the checkpoint with Model.save)
//   audiences.json          the audiences of a model folder made from a chat model (Model.save)
//   tokenizer_config.json   the chat template, beside the vocabulary (Hugging Face's chat_template)
//   model.gguf              GGUF_AUDIENCES_KEY and tokenizer.chat_template, in the GGUF file the model is read from
import fs from 'node:fs';
import path from 'node:path';
import type { AudienceCount } from '../data/chat_check';
import { chatTemplate, isAudience } from '../data/chat_format';
import { TOKENIZER_CONFIG_FILE, tokenizerConfig } from '../tokenizer/vocab';
import { type FileToWrite, textToWrite } from '../util/atomic_file';
import { readJsonObject } from '../util/json_file';
import { GGUF_AUDIENCES_KEY, GGUF_CHAT_TEMPLATE_KEY, type GgufFile, type GgufValue, ggufFileIn, openGguf } from './gguf';
import { safetensorsWeights } from './model_folder';

export const STATE_FILE = 'state.json';
// Not a state.json, which would have bin/train take the folder for a checkpoint of a run, to go on from at its step.
export const AUDIENCES_FILE = 'audiences.json';

export interface ChatRecord {
  audiences: readonly AudienceCount[];  // who its chat data talks to, the one it answers as first; [] when not a chat model
  template: string | null;              // the chat template (chat_format.ts chatTemplate, or a folder's own); null for none
}

export const NO_CHAT: ChatRecord = { audiences: [], template: null };

// The record of a model whose chat data talks to `audiences` (most messages first), answering as `answerAs` (by
// default the first). That one goes first, so that dixie answers as the template does; where the data never talks
// to it, it goes first with no messages counted (none is added to a model without audiences).
export function chatRecordOf(audiences: readonly AudienceCount[], answerAs: string | undefined = audiences[0]?.audience): ChatRecord {
  if (answerAs === undefined) return NO_CHAT;
  const named = audiences.find((a) => a.audience === answerAs) ?? (audiences.length > 0 ? { audience: answerAs, sent: 0, received: 0 } : null);
  return { audiences: named === null ? [] : [named, ...audiences.filter((a) => a !== named)], template: chatTemplate(answerAs) };
}

// A folder's record: its audiences (trainedAudienceCounts) and the chat template answering as the first, as this
// version of dixie writes it; for a model without audiences, the chat template the folder keeps, if any (one
// made elsewhere). With `adapter`, a folder of a LoRA adapter over it: the adapter's record wins where it lists
// audiences, as an adapter trained on chat logs makes its base a chat model. `gguf`: the GGUF file the folder's
// model is read from, opened already by the load, whose header is then not read again.
export function readChatRecord(dir: string, adapter?: string, gguf?: GgufFile): ChatRecord {
  const own = adapter === undefined ? NO_CHAT : readChatRecord(adapter);
  if (own.audiences.length > 0) return own;
  const metadata = ggufMetadata(dir, gguf);
  const audiences = audienceCounts(dir, metadata);
  return audiences.length > 0 ? chatRecordOf(audiences) : { audiences, template: folderTemplate(dir, metadata) };
}

// The chat template of tokenizer_config.json, or of a GGUF file the model is read from (a broken one is left to the
// model's load to name).
function folderTemplate(dir: string, metadata: GgufMetadata): string | null {
  const template = tokenizerConfig(dir)?.chat_template ?? metadata(GGUF_CHAT_TEMPLATE_KEY)?.value;
  return typeof template === 'string' ? template : null;
}

// A metadata value of the GGUF file a folder's model is read from (none where safetensors are beside it), with that
// file; undefined where the file, or the key, is not there, or the file cannot be read. The file's header is read
// once, at the first key asked for, however many are (or not at all, given `opened`).
type GgufMetadata = (key: string) => { file: string; value: GgufValue } | undefined;

function ggufMetadata(dir: string, opened?: GgufFile): GgufMetadata {
  let header: { file: string; metadata: ReadonlyMap<string, GgufValue> } | null | undefined = opened && { file: opened.path, metadata: opened.metadata };
  return (key) => {
    if (header === undefined) header = ggufHeader(dir);
    const value = header?.metadata.get(key);
    return header === null || value === undefined ? undefined : { file: header.file, value };
  };
}

function ggufHeader(dir: string): { file: string; metadata: ReadonlyMap<string, GgufValue> } | null {
  if (safetensorsWeights(dir) !== undefined) return null;
  try {
    const gguf = ggufFileIn(dir);
    if (gguf === null) return null;
    const g = openGguf(gguf);
    try {
      return { file: gguf, metadata: g.metadata };
    } finally {
      g.close();
    }
  } catch {
    return null;
  }
}

// Who a model's chat data talks to, most messages first: a checkpoint's training record (STATE_FILE), the record a
// model folder made from one keeps (AUDIENCES_FILE), or a GGUF file's (GGUF_AUDIENCES_KEY); [] for a model that
// has none (a base model, or one not trained on chat logs).
export function trainedAudienceCounts(modelDir: string): AudienceCount[] {
  return audienceCounts(modelDir, ggufMetadata(modelDir));
}

function audienceCounts(modelDir: string, metadata: GgufMetadata): AudienceCount[] {
  const list = recordedAudiences(modelDir, metadata);
  if (!Array.isArray(list)) return [];
  return list.filter((a: unknown): a is AudienceCount => {
    const audience = (a as Partial<AudienceCount> | null)?.audience;
    return typeof audience === 'string' && isAudience(audience);
  });
}

function recordedAudiences(modelDir: string, metadata: GgufMetadata): unknown {
  const file = [STATE_FILE, AUDIENCES_FILE].map((name) => path.join(modelDir, name)).find((f) => fs.existsSync(f));
  if (file !== undefined) return readJsonObject(file).audiences;
  const { file: gguf, value: record } = metadata(GGUF_AUDIENCES_KEY) ?? {};
  if (record === undefined) return undefined;
  if (typeof record !== 'string') throw new Error(`${gguf}: metadata "${GGUF_AUDIENCES_KEY}" must be a string of JSON`);
  try {
    return JSON.parse(record) as unknown;
  } catch (err) {
    throw new Error(`${gguf}: metadata "${GGUF_AUDIENCES_KEY}" is not JSON: ${(err as Error).message}`);
  }
}

export function trainedAudiences(modelDir: string): string[] {
  return trainedAudienceCounts(modelDir).map((a) => a.audience);
}

// The record's files in model folder `dir`, beside a save of a model's weights: audiences.json, written for a chat
// model and removed otherwise; and, where the save writes no vocabulary (whose tokenizer_config.json carries the
// template), the chat template of a tokenizer_config.json already there, set to the record's or taken out. Left by a
// model saved there before, either would have this one served, or prompted by other tools, as that one's chat model.
// A template other than a text (Hugging Face's list of named ones) is another tool's, and kept. In a checkpoint's
// folder, whose state.json is read first, the audiences go into state.json instead (the rest of it kept), so that
// the ones saved are the ones served.
export function chatRecordToWrite(dir: string, chat: ChatRecord, writesVocabulary: boolean): { write: FileToWrite[]; remove: string[] } {
  const write: FileToWrite[] = [];
  const config = writesVocabulary ? null : tokenizerConfig(dir);
  if (config !== null && (config.chat_template === undefined || typeof config.chat_template === 'string') && (config.chat_template ?? null) !== chat.template) {
    const { chat_template: _stale, ...rest } = config;
    write.push(textToWrite(path.join(dir, TOKENIZER_CONFIG_FILE), `${JSON.stringify(chat.template === null ? rest : { ...rest, chat_template: chat.template }, null, 2)}\n`));
  }
  const file = path.join(dir, AUDIENCES_FILE);
  const state = path.join(dir, STATE_FILE);
  if (fs.existsSync(state)) return { write: [...write, textToWrite(state, `${JSON.stringify({ ...readJsonObject(state), audiences: chat.audiences }, null, 2)}\n`)], remove: [file] };
  if (chat.audiences.length === 0) return { write, remove: [file] };
  return { write: [...write, textToWrite(file, `${JSON.stringify({ audiences: chat.audiences }, null, 2)}\n`)], remove: [] };
}
