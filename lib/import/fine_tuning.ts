// Chat fine-tuning data prepared for other tools, a conversation a line (JSONL):
//   OpenAI's   {"messages": [{"role": "system", "content": "audience: mom"}, {"role": "user", "content": "Hi"},
//               {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}], "weight": 1}]}
//   ShareGPT's {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}
// ShareGPT's also come as a JSON list of such objects, and either as one object. The roles say who is who: the user's
// messages ("user", "human") are the user's side, the assistant's ("assistant", "gpt") the side the bot learns to
// answer as, so no --me. The audience is "assistant", or the name a system message gives as "audience: <name>" (as
// the server's OpenAI-style endpoints take it); other system messages are dropped, the chat format having no system
// role. There are no times: conversations keep the file's order.
//
// Function calling is kept, as the server reads a conversation that called tools: an assistant's calls (OpenAI's
// tool_calls or older function_call, ShareGPT's "function_call" messages) are the assistant's words, each call the
// JSON {"name", "arguments"} (toolCallsText), and a tool's output (OpenAI's "tool" or "function" messages,
// ShareGPT's "observation") is the user's side. A model fine-tuned so makes the calls the server answers as
// tool_calls. The tools' definitions have no place in the chat format and are not written.
//
// bin/import-chat --out FILE.jsonl writes OpenAI's format (fineTuningLine), which this reads back as it was written.
import path from 'node:path';
import { SIDE, type ChatMessage, type ToolCall, audienceNamedBy, toolCallsText } from '../data/chat_format';
import { ChatImportError, DropReason, ExportedChat, ExportedMessage, NO_IDS, jsonLines, jsonObject } from './chat_export';
import { quoted } from '../util/quoted';

export type FineTuningFormat = 'openai' | 'sharegpt';

// Who wrote a message, by its role (OpenAI's "role", ShareGPT's "from"): "call" is ShareGPT's function_call, an
// assistant's message whose text is the JSON of a call.
type Speaker = 'user' | 'assistant' | 'system' | 'tool' | 'call';

interface Layout {
  messages: string;   // the conversation's field that lists its messages
  role: string;       // a message's field that names its role
  text: string;       // a message's field that holds its text
  roles: Readonly<Record<string, Speaker>>;
}

const LAYOUTS: Readonly<Record<FineTuningFormat, Layout>> = {
  openai: { messages: 'messages', role: 'role', text: 'content', roles: { user: 'user', assistant: 'assistant', system: 'system', developer: 'system', tool: 'tool', function: 'tool' } },
  sharegpt: { messages: 'conversations', role: 'from', text: 'value', roles: { human: 'user', user: 'user', gpt: 'assistant', assistant: 'assistant', system: 'system', function_call: 'call', observation: 'tool' } },
};

// The audience when no system message names one; --audience-map assistant=mom renames it.
const ASSISTANT = 'assistant';

// A conversation of the chat format as a line of OpenAI's fine-tuning JSONL, read back by parseFineTuning as the same
// lines: the system message that names the audience, then a message a line, the user's side as "user" and the
// audience's as "assistant".
export function fineTuningLine(audience: string, messages: readonly Omit<ChatMessage, 'audience'>[]): string {
  const named = { role: 'system', content: `audience: ${audience}` };
  const said = messages.map(({ side, text }) => ({ role: side === SIDE.you ? 'user' : 'assistant', content: text }));
  return JSON.stringify({ messages: [named, ...said] });
}

// The format a conversation object is in, by the field that lists its messages (OpenAI's messages each with a
// "role", not Discord's or Messenger's "messages"); null for anything else.
export function fineTuningFormat(value: unknown): FineTuningFormat | null {
  const object = jsonObject(value);
  if (object === null) return null;
  for (const format of ['openai', 'sharegpt'] as const) {
    const { messages, role } = LAYOUTS[format];
    const list = object[messages];
    if (Array.isArray(list) && list.some((m) => typeof jsonObject(m)?.[role] === 'string')) return format;
  }
  return null;
}

// The first line of a JSONL file as JSON, when it is a whole JSON object by itself; null when it is not (any other
// text, or JSON written over several lines).
export function firstJsonLine(text: string): Record<string, unknown> | null {
  const line = text.slice(Math.max(text.search(/\S/), 0)).split('\n', 1)[0];
  if (!line.startsWith('{')) return null;
  try {
    return jsonObject(JSON.parse(line));
  } catch {
    return null;
  }
}

// Whether a JSONL line is a document of a training dataset ({"text": "..."}), which bin/train takes as it is.
export function isDocumentLine(object: Record<string, unknown> | null): boolean {
  return typeof object?.text === 'string' && fineTuningFormat(object) === null;
}

export function isFineTuningFormat(format: string | null | undefined): format is FineTuningFormat {
  return format === 'openai' || format === 'sharegpt';
}

// A conversation as written, and its line (0 in a JSON value, where conversations are not placed by line).
export interface WrittenConversation {
  value: unknown;
  line: number;
}

// The conversations of a JSON value: a list of them, or one.
export function jsonConversations(value: unknown): WrittenConversation[] {
  return (Array.isArray(value) ? value : [value]).map((v) => ({ value: v, line: 0 }));
}

// The conversations of a JSONL file, a JSON object a line.
export function jsonlConversations(file: string, text: string): WrittenConversation[] {
  return jsonLines(file, text, 'a JSONL file holds a conversation a line');
}

// What the summary should know of a file: the system messages left out, the messages the data marks not to learn.
interface Notes {
  systemDropped: number;
  unweighted: number;
  toolsListed: number;
}

export function parseFineTuning(file: string, conversations: readonly WrittenConversation[], format: FineTuningFormat, warnings: string[]): ExportedChat[] {
  const notes: Notes = { systemDropped: 0, unweighted: 0, toolsListed: 0 };
  const chats = conversations.map(({ value, line }, index) => conversation(file, format, value, line, index, notes));
  if (notes.systemDropped > 0) {
    warnings.push(`${file}: ${notes.systemDropped} system message${notes.systemDropped === 1 ? '' : 's'} left out: the chat format has no system role (a system message "audience: <name>" names the audience instead)`);
  }
  if (notes.unweighted > 0) {
    warnings.push(`${file}: ${notes.unweighted} assistant message${notes.unweighted === 1 ? ' has' : 's have'} "weight": 0, but the chat format has no weights: ${notes.unweighted === 1 ? 'it is' : 'they are'} trained on like the others`);
  }
  if (notes.toolsListed > 0) {
    warnings.push(`${file}: ${notes.toolsListed} conversation${notes.toolsListed === 1 ? ' lists' : 's list'} its "tools", which the chat format has no place for: the calls and their outputs are kept, the tools' definitions are not (the server's requests name the tools a reply may call)`);
  }
  return chats;
}

function conversation(file: string, format: FineTuningFormat, value: unknown, line: number, index: number, notes: Notes): ExportedChat {
  const layout = LAYOUTS[format];
  // A JSONL conversation is placed by its line, one of a JSON list by its number.
  const where = line > 0 ? line : null;
  const within = line > 0 ? '' : `conversation ${index + 1}: `;
  const list = jsonObject(value)?.[layout.messages];
  if (!Array.isArray(list)) {
    const example = format === 'openai' ? '{"messages": [{"role": "user", "content": "..."}, ...]}' : '{"conversations": [{"from": "human", "value": "..."}, ...]}';
    throw new ChatImportError(file, where, `${within}not a conversation: ${example} expected`);
  }
  if (Array.isArray(jsonObject(value)?.tools)) notes.toolsListed++;
  const read = list.map((m, i) => readMessage(file, where, layout, m, `${within}${layout.messages}[${i}]`));
  const named = read.map((m) => (m.speaker === 'system' ? audienceNamedBy(m.text) : null));
  const audience = named.find((a) => a !== null) ?? ASSISTANT;
  // The system message that names the audience is what this import writes ahead of every conversation of
  // --out FILE.jsonl: the conversation's heading, no message read or dropped.
  const messages = read.flatMap(({ speaker, text, dropped, weight }, i): ExportedMessage[] => {
    if (named[i] !== null) return [];
    if (speaker === 'system') notes.systemDropped++;
    if (speaker === 'assistant' && weight === 0) notes.unweighted++;
    const reason: DropReason | null = speaker === 'system' ? 'system prompt' : dropped;
    // A tool's output is what the bot is told: the user's side.
    const mine = speaker === 'user' || speaker === 'tool';
    return [{ time: 0, sender: speaker === 'assistant' ? audience : speaker, senderIds: NO_IDS, mine, text, dropped: reason, line }];
  });
  return {
    format,
    file,
    // There are no times: an audience's conversations go in the order of their keys, the files' and theirs in a file.
    key: `${format}:${path.resolve(file)}:${String(index).padStart(9, '0')}`,
    title: audience,
    group: false,
    skip: null,
    myIds: NO_IDS,
    messages,
  };
}

interface ReadMessage {
  speaker: Speaker;
  text: string;
  dropped: DropReason | null;
  weight: unknown;
}

function readMessage(file: string, line: number | null, layout: Layout, value: unknown, where: string): ReadMessage {
  const message = jsonObject(value);
  const role = message?.[layout.role];
  const speaker = typeof role === 'string' && Object.hasOwn(layout.roles, role) ? layout.roles[role] : undefined;
  if (message === null || speaker === undefined) {
    const roles = Object.keys(layout.roles).map((r) => JSON.stringify(r)).join(', ');
    throw new ChatImportError(file, line, `${where}: "${layout.role}" must be one of ${roles}, got ${quoted(role ?? null)}`);
  }
  const fail = (field: string, why: string): never => {
    throw new ChatImportError(file, line, `${where}.${field}: ${why}`);
  };
  const content = message[layout.text];
  if (speaker === 'call') {
    if (typeof content !== 'string') return fail(layout.text, 'must be the JSON of a call, {"name", "arguments"}');
    const call = jsonCall(content, (why) => fail(layout.text, why));
    return { speaker: 'assistant', text: toolCallsText('', [readCall(call, layout.text, fail)]), dropped: null, weight: message.weight };
  }
  // An assistant's calls follow its text, if any: OpenAI's tool_calls, or the older function_call.
  const calls: ToolCall[] = [];
  if (speaker === 'assistant' && Array.isArray(message.tool_calls)) {
    message.tool_calls.forEach((entry, i) => calls.push(readCall(jsonObject(entry)?.function, `tool_calls[${i}].function`, fail)));
  } else if (speaker === 'assistant' && message.function_call !== undefined && message.function_call !== null) {
    calls.push(readCall(message.function_call, 'function_call', fail));
  }
  if (typeof content === 'string' || content === null || content === undefined) {
    return { speaker, text: toolCallsText(content ?? '', calls), dropped: null, weight: message.weight };
  }
  // OpenAI's content parts: the text ones are the message's text; images, audio and files are media.
  if (!Array.isArray(content)) return fail(layout.text, 'must be a text or an array of content parts');
  const texts = content.flatMap((value) => {
    const part = jsonObject(value);
    return part?.type === 'text' && typeof part.text === 'string' ? [part.text] : [];
  });
  const media = texts.length === 0 && content.length > 0 && calls.length === 0;
  return { speaker, text: toolCallsText(texts.join(''), calls), dropped: media ? 'media' : null, weight: message.weight };
}

// A call as fine-tuning data writes it, {"name", "arguments"}: the arguments an object, or OpenAI's JSON text of one.
function readCall(value: unknown, field: string, fail: (field: string, why: string) => never): ToolCall {
  const call = jsonObject(value);
  if (call === null || typeof call.name !== 'string' || call.name === '') return fail(field, 'must be a call, {"name", "arguments"}');
  const args = typeof call.arguments === 'string' ? jsonCall(call.arguments, (why) => fail(`${field}.arguments`, why)) : call.arguments ?? {};
  return { name: call.name, arguments: args };
}

function jsonCall(text: string, fail: (why: string) => never): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    return fail(`not JSON (${(err as Error).message})`);
  }
}
