// The chat format the models are fine-tuned on, and how a live chat is written in it. One message a line:
//   1|mom|How are you doing, Mom? <EOM>
// the side, the audience (who the conversation is with), the text, then <EOM>:
//   side 1  sent by "you", the person whose chat logs trained the model;
//   side 0  sent by the audience (mom, a friend, the team...).
// The text may itself contain '|' (only the first two separate fields); lines may end in \r\n; blank lines may
// separate conversations.
//
// A live chat (bin/chat, a server model with prompt_format "chat", the Alexa skill) keeps the training data's
// roles: the person talking to the model writes as "you", side 1, and the model answers as the audience, side 0.
// The prompt is the conversation so far, the newest message a `1|<audience>|<text> <EOM>` line, then
// `0|<audience>|` for the model to continue; its reply ends at <EOM> or at the end of the line.
import { isJsonObject } from '../util/json_object';
import { quoted } from '../util/quoted';
export const END_OF_MESSAGE = '<EOM>';

export type Side = '0' | '1';
export type Speaker = 'user' | 'bot';

// The sides of the format: "you" and the audience.
export const SIDE = { you: '1', audience: '0' } as const satisfies Record<string, Side>;
// In a live chat the person talking to the model writes as "you", and the model answers as the audience.
export const SPEAKER_SIDE: Readonly<Record<Speaker, Side>> = { user: SIDE.you, bot: SIDE.audience };

// Where the model's reply ends: its message's <EOM>, or the line break that starts the next message.
export const REPLY_STOPS: readonly string[] = [END_OF_MESSAGE, '\n'];

// Who the bot answers as when neither a setting nor the model's training record says.
export const DEFAULT_AUDIENCE = 'user';

export const MAX_AUDIENCE_CHARS = 64;

export interface ChatMessage {
  side: Side;
  audience: string;
  text: string;
}

// A message of a live chat, as clients carry the conversation (the Alexa session, /invocations "history").
export interface Turn {
  from: Speaker;
  text: string;
}

// A live chat: its turns, oldest first, the last one the message to answer.
export interface Conversation {
  audience: string;
  turns: readonly Turn[];
}

function isSide(s: string): s is Side {
  return s === '0' || s === '1';
}

// What an audience must be, as errors say it.
export const AUDIENCE_RULE = `1 to ${MAX_AUDIENCE_CHARS} characters, not all blank, without "|", line breaks or other control characters`;

// A control character (NUL, escape, a line break...): in an audience it would reach prompts, logs and terminals
// as it is.
const CONTROL_CHARACTER = /\p{Cc}/u;

// An audience a live chat can be written with (AUDIENCE_RULE).
export function isAudience(name: string): boolean {
  return name.length >= 1 && name.length <= MAX_AUDIENCE_CHARS && !name.includes('|') && !CONTROL_CHARACTER.test(name) && name.trim() !== '';
}

const MARKERS = new RegExp(`<\\|endoftext\\|>|${END_OF_MESSAGE}`, 'gi');
// A marker in a message's text (what messageText takes out of a live one).
const MARKER = new RegExp(MARKERS.source, 'i');
// What messageText changes: a marker's '<', a '|', whitespace other than single spaces between words.
const NEEDS_CLEANING = /[<|]|[^\S ]|  |^ | $/;

// A text as one message's line holds it: no <EOM> or <|endoftext|>, no line break, no '|' (so that no part of
// it reads as a message of its own, in the bot's voice or anyone's), whitespace collapsed.
export function messageText(text: string): string {
  // Most texts are clean already (and every text cleaned once is): found so by one scan instead of four passes.
  if (!NEEDS_CLEANING.test(text)) return text;
  return text.replace(MARKERS, ' ').replace(/\|/g, ' ').replace(/\s+/g, ' ').trim();
}

// A tool call as a message holds it, the JSON {"name", "arguments"}: how bin/import-chat writes fine-tuning data's
// calls, how the server reads back the calls of a conversation and holds a reply that calls a tool, so that a model
// fine-tuned on calls makes them as the server reads them.
export interface ToolCall {
  name: string;
  arguments: unknown;
}

// A message's text, then each call it makes, a space apart.
export function toolCallsText(text: string, calls: readonly ToolCall[]): string {
  return [text, ...calls.map((call) => JSON.stringify({ name: call.name, arguments: call.arguments }))].filter((t) => t !== '').join(' ');
}

// The calls of a reply that is nothing but calls, as toolCallsText writes them (an <EOM> may end it); null for a
// reply with any other text, or a call not whole.
export function toolCallsOf(reply: string): ToolCall[] | null {
  const trimmed = reply.trimEnd();
  const text = trimmed.endsWith(END_OF_MESSAGE) ? trimmed.slice(0, -END_OF_MESSAGE.length) : trimmed;
  const calls: ToolCall[] = [];
  let depth = 0;
  let start = 0;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === '{' || c === '[') {
      if (depth === 0) {
        if (c === '[') return null;
        start = i;
      }
      depth++;
    } else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) {
        const call = parsedCall(text.slice(start, i + 1));
        if (call === null) return null;
        calls.push(call);
      }
    } else if (depth === 0 && !/\s/.test(c)) {
      return null;
    }
  }
  return depth === 0 && calls.length > 0 ? calls : null;
}

function parsedCall(json: string): ToolCall | null {
  try {
    const value: unknown = JSON.parse(json);
    if (!isJsonObject(value)) return null;
    const { name, arguments: args } = value;
    return typeof name === 'string' && args !== undefined ? { name, arguments: args } : null;
  } catch {
    return null;
  }
}

// The audience a system message names, "audience: <name>" (how a client of the server's OpenAI-style endpoints says
// who the bot answers as, and how chat fine-tuning data says it to bin/import-chat); null for any other text.
export function audienceNamedBy(text: string): string | null {
  // Trimmed first: a lazy match between two runs of spaces backtracks in the square of the text's length.
  const trimmed = text.trim();
  if (trimmed.length > 'audience:'.length + 2 * MAX_AUDIENCE_CHARS) return null;
  const named = /^audience\s*:\s*(.+)$/i.exec(trimmed)?.[1];
  return named !== undefined && isAudience(named) ? named : null;
}

// `name`, if it is an audience a live chat can be written with; a RangeError saying why if not.
export function checkAudience(name: string): string {
  if (!isAudience(name)) throw new RangeError(`audience must be ${AUDIENCE_RULE}, got ${quoted(name)}`);
  return name;
}

// Any display name (a contact, a group, a channel) made an audience: control characters made spaces, cleaned as a
// message's text is, and cut to MAX_AUDIENCE_CHARS without splitting a character in two; '' when nothing is left.
export function toAudience(name: string): string {
  const cleaned = messageText(name.replace(/\p{Cc}/gu, ' '));
  if (cleaned.length <= MAX_AUDIENCE_CHARS) return cleaned;
  const cut = cleaned.slice(0, MAX_AUDIENCE_CHARS);
  return (/[\ud800-\udbff]$/.test(cut) ? cut.slice(0, -1) : cut).trimEnd();
}

// One message's line, without its line break.
export function formatMessage(message: ChatMessage): string {
  checkAudience(message.audience);
  return `${message.side}|${message.audience}|${messageText(message.text)} ${END_OF_MESSAGE}`;
}

// What the prompt ends with for the model to answer as `audience`.
export function replyPrefix(audience: string): string {
  return `${SPEAKER_SIDE.bot}|${audience}|`;
}

export interface ParsedMessage {
  message: ChatMessage | null;  // null when the line is malformed
  reasons: string[];            // why it is malformed; empty when it is well formed
}

// One non-blank line, without its \n or \r\n. Audience and text come trimmed.
export function parseMessage(line: string): ParsedMessage {
  const first = line.indexOf('|');
  const second = first < 0 ? -1 : line.indexOf('|', first + 1);
  const trimmed = line.trimEnd();
  const hasEom = trimmed.endsWith(END_OF_MESSAGE);
  if (second < 0) {
    const reasons = [`missing fields: expected flag|audience|message ${END_OF_MESSAGE} (found ${first < 0 ? 'no' : 'one'} '|')`];
    if (!hasEom) reasons.push(`no ${END_OF_MESSAGE} at the end`);
    return { message: null, reasons };
  }
  const reasons: string[] = [];
  const side = line.slice(0, first);
  const audience = line.slice(first + 1, second).trim();
  const text = line.slice(second + 1, hasEom ? trimmed.length - END_OF_MESSAGE.length : line.length).trim();
  if (!isSide(side)) reasons.push(`flag must be 0 or 1, got ${quoted(side)}`);
  if (audience === '') reasons.push('missing field: empty audience');
  const control = CONTROL_CHARACTER.exec(audience);
  if (control) reasons.push(`a control character (${codePoint(control[0])}) in the audience`);
  if (!hasEom) reasons.push(`no ${END_OF_MESSAGE} at the end`);
  if (text === '') reasons.push('empty message');
  // A line holds one message, as formatMessage writes a live one (messageText): a marker inside it would split
  // it (a second message, in the bot's voice or anyone's) or end the document mid-message (<|endoftext|>, which
  // training encodes as the special token), and a control character is one no live message holds.
  const marker = MARKER.exec(text);
  if (marker) reasons.push(`${marker[0]} inside the message: a line holds one message, and a live chat takes markers out of its text`);
  const textControl = CONTROL_CHARACTER.exec(text);
  if (textControl?.[0] === '\r') reasons.push('a carriage return (U+000D) inside the line: lines end in \\n or \\r\\n, not \\r alone');
  else if (textControl) reasons.push(`a control character (${codePoint(textControl[0])}) in the message: a live chat makes it a space`);
  return { message: reasons.length === 0 ? { side: side as Side, audience, text } : null, reasons };
}

function codePoint(c: string): string {
  return `U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
}

export interface ParsedLine extends ParsedMessage {
  line: number;  // 1-based
  text: string;  // the line as written, without its line break
}

// Every non-blank line of a chat file, numbered from 1, parsed.
export function* parseLines(text: string): Generator<ParsedLine> {
  let line = 0;
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    line++;
    const written = text.slice(start, end > start && text.charCodeAt(end - 1) === 13 ? end - 1 : end);
    start = end + 1;
    if (written.trim() !== '') yield { line, text: written, ...parseMessage(written) };
  }
}

// Whether a text file is in the chat format, judged by its first lines: one that starts with a 0|/1| flag or
// ends in <EOM> marks it. Chat files are checked before training; other text is trained on as it is.
export function looksLikeChat(text: string): boolean {
  let start = 0;
  for (let seen = 0; seen < 20 && start < text.length; ) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const line = text.slice(start, end).trim();
    start = end + 1;
    if (line === '') continue;
    const bar = line.indexOf('|');
    if ((bar >= 0 && isSide(line.slice(0, bar))) || line.endsWith(END_OF_MESSAGE)) return true;
    seen++;
  }
  return false;
}

// A conversation made into a prompt, and what was left out to make it fit.
export interface FittedPrompt {
  prompt: string;
  droppedMessages: number;  // the oldest messages, left out whole
  droppedChars: number;     // characters cut from the start of the newest message
}

// Dropping the oldest messages in steps: `size` of `measure` (tokens, say) at a time.
export interface DropStep {
  size: number;
  measure: (line: string) => number;
}

// The prompt for the model's answer to `conversation`: its messages, then the reply prefix. While `fits` says
// the prompt is too long (in characters, tokens...), the oldest messages go first; the newest always stays, cut
// from its start if it alone is too long, so that the model answers what was said last. `fits` must never
// refuse a prompt and accept a longer one made of the same messages plus older ones.
// With `step`, the messages dropped measure a whole number of steps (the fewest, up to the next message): a
// conversation that grows by a turn then keeps its first message for about a step's worth of turns, so each
// turn's prompt begins with the last one's and a prefix cache keeps serving it, where dropping the fewest
// messages would move the start, and miss the cache, at every turn.
export function fitConversation(conversation: Conversation, fits: (prompt: string) => boolean = () => true, step?: DropStep): FittedPrompt {
  const { audience, turns } = conversation;
  const reply = replyPrefix(audience);
  const lines = turns.map((t) => `${formatMessage({ side: SPEAKER_SIDE[t.from], audience, text: t.text })}\n`);
  const from = (first: number): string => lines.slice(first).join('') + reply;
  if (lines.length === 0 || fits(from(0))) return { prompt: from(0), droppedMessages: 0, droppedChars: 0 };
  // The fewest oldest messages to drop, found in a logarithmic number of measures.
  let lo = 1;
  let hi = lines.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (fits(from(mid))) hi = mid;
    else lo = mid + 1;
  }
  if (lo < lines.length && fits(from(lo))) {
    const first = step ? stepStart(lines, lo, step) : lo;
    return { prompt: from(first), droppedMessages: first, droppedChars: 0 };
  }
  const newest = turns[turns.length - 1];
  const chars = Array.from(messageText(newest.text));
  const cut = (drop: number): string => `${formatMessage({ side: SPEAKER_SIDE[newest.from], audience, text: chars.slice(drop).join('') })}\n${reply}`;
  lo = 0;
  hi = chars.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (fits(cut(mid))) hi = mid;
    else lo = mid + 1;
  }
  return { prompt: cut(lo), droppedMessages: lines.length - 1, droppedChars: lo };
}

// The first message kept when at least `fewest` of `lines` must go: the fewest whose measure reaches a whole
// number of steps, that number the smallest that covers the fewest (so it depends only on the messages dropped,
// which a growing conversation leaves as they were). The newest message always stays.
function stepStart(lines: string[], fewest: number, step: DropStep): number {
  let dropped = 0;
  for (let i = 0; i < fewest; i++) dropped += step.measure(lines[i]);
  const target = Math.ceil(dropped / step.size) * step.size;
  let first = fewest;
  while (first < lines.length - 1 && dropped < target) dropped += step.measure(lines[first++]);
  return first;
}

// The chat format as a Jinja chat template (GGUF's tokenizer.chat_template, Hugging Face's chat_template), for the
// tools that render OpenAI-style messages with one (llama.cpp's server, LM Studio, node-llama-cpp, transformers),
// prompting as dixie's server does: user and tool messages on side 1, assistant messages on side 0, each cleaned as
// messageText cleans it (its markers as written here, in capitals), and with add_generation_prompt the reply prefix,
// all as `audience`, or as the one a system message names ("audience: <name>", audienceNamedBy). The format has no
// system role: other system messages are left out. Only the filters every engine has (trim, lower, join, replace)
// and a namespace, which a value set in a loop needs to outlive it.
export function chatTemplate(audience: string): string {
  checkAudience(audience);
  const clean = (v: string): string => `${v} | replace('<|endoftext|>', ' ') | replace('${END_OF_MESSAGE}', ' ') | replace('|', ' ')`;
  return [
    `{%- set ns = namespace(audience=${JSON.stringify(audience)}) -%}`,
    '{%- for message in messages -%}',
    "{%- if message['role'] == 'system' or message['role'] == 'developer' -%}",
    "{%- set parts = (message['content'] | trim).split(':') -%}",
    "{%- set named = parts[1:] | join(':') | trim -%}",
    // As audienceNamedBy takes a name (isAudience): one line, without "|", not too long.
    `{%- if parts | length > 1 and parts[0] | trim | lower == 'audience' and named != '' and named | length <= ${MAX_AUDIENCE_CHARS} and '|' not in named and '\\n' not in named and '\\r' not in named -%}{%- set ns.audience = named -%}{%- endif -%}`,
    '{%- else -%}',
    `{{- ('${SIDE.you}' if message['role'] != 'assistant' else '${SIDE.audience}') + '|' + ns.audience + '|' + (${clean("(message['content'] or '')")}).split() | join(' ') + ' ${END_OF_MESSAGE}\\n' -}}`,
    '{%- endif -%}',
    '{%- endfor -%}',
    `{%- if add_generation_prompt -%}{{- '${SPEAKER_SIDE.bot}|' + ns.audience + '|' -}}{%- endif -%}`,
  ].join('\n');
}
