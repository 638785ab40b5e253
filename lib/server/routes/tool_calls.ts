// OpenAI's function calling on chat completions, the Responses API and Ollama's /api/chat, in the chat format's way
// of writing a call: the JSON {"name": ..., "arguments": {...}} (lib/data/chat_format.ts toolCallsText), which is
// also how bin/import-chat writes fine-tuning data's calls, so a model fine-tuned on them calls as it learned to.
// A reply that calls is held, through a grammar as response_format's are, to calls of the request's tools, each
// call's arguments to its tool's `parameters`, and answered as OpenAI answers calls: chat completions'
// message.tool_calls and finish_reason "tool_calls" (message.function_call and "function_call" for the older
// `functions`), the Responses API's function_call items.
//   "required", or a named function  the reply is calls; libraries that extract data through a forced call
//                                    (Instructor, LangChain's with_structured_output) work so
//   "auto" (the default with tools)  the model chooses: a reply that begins with "{" is held to calls, any other is
//                                    text, sanitized as usual (Ollama's tools are always "auto"); held to
//                                    response_format instead where one is given
//   "none"                           text
//   "allowed_tools"                  "auto" or "required" (its mode), over the tools it names
// A reply makes one call. parallel_tool_calls true lets it make several, a space apart, as a conversation's calls
// are written, the model ending them with its end of message (a raw model, its line); OpenAI's default is true, but
// a model never taught to call goes on calling where it may, so here it is asked for.
import crypto from 'node:crypto';
import { END_OF_MESSAGE, toolCallsOf } from '../../data/chat_format';
import { Grammar } from '../../generate/grammar';
import type { ModelConfig } from '../config';
import { HttpError } from '../errors';
import type { Completion } from '../service';
import { bad, cutShort, isBool, optional, type Body } from './api_common';
import { grammarOf, isOpenAIName, schemaGrammar } from './response_format';
import { isJsonObject } from '../../util/json_object';

interface Tool {
  name: string;
  parameters: unknown;
  where: string;  // the request's field of its parameters, for errors
}

// How a request writes its tools: chat completions' `tools`, {"type": "function", "function": {"name",
// "description"?, "parameters"?, "strict"?}}, and `tool_choice`; the Responses API's, "flat", {"type": "function",
// "name", ...}; or chat completions' older `functions`, {"name", "description"?, "parameters"?}, and
// `function_call` ("none", "auto" or {"name"}), one call a reply.
export type ToolsLayout = 'chat' | 'flat' | 'functions';

const SHAPES: Readonly<Record<ToolsLayout, { tool: string; named: string }>> = {
  chat: { tool: '{"type": "function", "function": {"name", "parameters"}}', named: '{"type": "function", "function": {"name"}}' },
  flat: { tool: '{"type": "function", "name", "parameters"}', named: '{"type": "function", "name"}' },
  functions: { tool: '{"name", "parameters"}', named: '{"name"}' },
};

// A tool that gives no parameters (or null, as the Responses API's may) takes none, as OpenAI documents it.
const NO_PARAMETERS = { type: 'object', properties: {}, additionalProperties: false };

// OpenAI's bound on a request's tools. A bound here too: the grammar of their calls takes about a millisecond a tool
// to build (on the worker thread that builds grammars), and its first tokens' masks as long to work out.
const MAX_TOOLS = 128;

// The request's tools (its `tools`, or its `functions`), written as `layout` says. Their parameters are read as
// schemas by readToolChoice.
function readTools(value: unknown, layout: ToolsLayout = 'chat'): Tool[] {
  const field = layout === 'functions' ? 'functions' : 'tools';
  const shape = SHAPES[layout].tool;
  if (!Array.isArray(value)) bad(field, `must be an array of ${shape}`);
  if (value.length > MAX_TOOLS) bad(field, `has ${value.length} entries, more than the ${MAX_TOOLS} supported`);
  const fnField = (i: number): string => (layout === 'chat' ? `${field}[${i}].function` : `${field}[${i}]`);
  const tools = value.map((entry: unknown, i): Tool => {
    const fn = layout === 'chat' ? (isJsonObject(entry) ? entry.function : undefined) : entry;
    if (!isJsonObject(entry) || (layout !== 'functions' && entry.type !== 'function') || !isJsonObject(fn)) bad(`${field}[${i}]`, `must be ${shape}`);
    const known = [...(layout === 'flat' ? ['type'] : []), 'name', 'description', 'parameters', ...(layout === 'functions' ? [] : ['strict'])];
    for (const key of Object.keys(fn)) if (!known.includes(key)) bad(`${fnField(i)}.${key}`, `unsupported field (supported: ${known.join(', ')})`);
    if (!isOpenAIName(fn.name)) bad(`${fnField(i)}.name`, 'is required: 1 to 64 letters, digits, _ or -');
    return { name: fn.name, parameters: fn.parameters ?? NO_PARAMETERS, where: `${fnField(i)}.parameters` };
  });
  tools.forEach((tool, i) => {
    if (tools.findIndex((t) => t.name === tool.name) < i) bad(`${fnField(i)}.name`, `"${tool.name}" is the name of an earlier tool`);
  });
  return tools;
}

// How a reply may call tools: held to `grammar`, which, where the calls are `optional` ("auto"), also lets the reply
// be text that does not begin with "{".
export interface ToolChoice {
  grammar: Grammar;
  optional: boolean;
  named: boolean;  // the choice names the function to call
}

// The request's tools and its choice of them, written as `layout` says, or undefined when the reply is text ("none",
// no tools, or "auto" beside a grammar for text: response_format's, `textGrammar`).
export async function readToolChoice(body: Body, model: ModelConfig, textGrammar: Grammar | undefined, layout: ToolsLayout = 'chat'): Promise<ToolChoice | undefined> {
  const legacy = layout === 'functions';
  const toolsField = legacy ? 'functions' : 'tools';
  const choiceField = legacy ? 'function_call' : 'tool_choice';
  const given = body[toolsField];
  const tools = given === undefined || given === null ? [] : readTools(given, layout);
  const parallel = legacy ? false : (optional<boolean>(body, 'parallel_tool_calls', isBool, 'true or false') ?? false);
  let choice = body[choiceField] ?? (tools.length > 0 ? 'auto' : 'none');
  let offered = tools;
  if (!legacy && isJsonObject(choice) && choice.type === 'allowed_tools') ({ mode: choice, tools: offered } = allowedTools(choice, tools, layout as 'chat' | 'flat'));
  if (choice === 'none' || (choice === 'auto' && (offered.length === 0 || textGrammar !== undefined))) return undefined;
  let called: Tool[];
  if ((choice === 'required' && !legacy) || choice === 'auto') {
    called = offered;
  } else {
    const named = layout === 'chat' ? (isJsonObject(choice) ? choice.function : undefined) : choice;
    const name = isJsonObject(choice) && (legacy || choice.type === 'function') && isJsonObject(named) ? named.name : undefined;
    const nameField = layout === 'chat' ? `${choiceField}.function.name` : `${choiceField}.name`;
    if (name === undefined) bad(choiceField, `must be "none", "auto"${legacy ? '' : `, "required", ${ALLOWED_SHAPES[layout as 'chat' | 'flat']}`} or ${SHAPES[layout].named}`);
    called = tools.filter((t) => t.name === name);
    if (called.length === 0) bad(nameField, `${JSON.stringify(name)} is not among the ${toolsField}`);
  }
  if (called.length === 0) bad(choiceField, `"required" needs at least one tool in ${toolsField}`);
  const callsOptional = choice === 'auto';
  // Each tool's parameters on their own first, so that a mistake is named under the tool's path. Clients send all
  // their tools with every request (Home Assistant through Ollama's API), so under "auto" a tool whose parameters no
  // grammar here holds is one the model cannot call, not a request refused.
  if (callsOptional) {
    const held = [];
    for (const tool of called) if (await holdable(tool)) held.push(tool);
    called = held;
  } else {
    for (const tool of called) await schemaGrammar(tool.parameters, tool.where);
  }
  if (called.length === 0) return undefined;
  const schema = callSchema(called);
  const key = `tools ${callsOptional} ${parallel} ${model.promptFormat} ${JSON.stringify(schema)}`;
  const grammar = await grammarOf(toolsField, key, { gbnf: callsGbnf(model, parallel, callsOptional), name: 'call', schema, where: toolsField });
  return { grammar, optional: callsOptional, named: choice !== 'auto' && choice !== 'required' };
}

const ALLOWED_SHAPES = {
  chat: '{"type": "allowed_tools", "allowed_tools": {"mode", "tools": [{"type": "function", "function": {"name"}}]}}',
  flat: '{"type": "allowed_tools", "mode", "tools": [{"type": "function", "name"}]}',
} as const;

// OpenAI's tool_choice "allowed_tools": "auto" or "required" (its mode) over the request's tools it names, so that
// a client keeps sending all its tools (the prompt they make is cached) and changes which may be called.
function allowedTools(choice: Body, tools: Tool[], layout: 'chat' | 'flat'): { mode: 'auto' | 'required'; tools: Tool[] } {
  const field = layout === 'chat' ? 'tool_choice.allowed_tools' : 'tool_choice';
  const allowed = layout === 'chat' ? choice.allowed_tools : choice;
  if (!isJsonObject(allowed)) bad(field, `must be {"mode", "tools"}, as in ${ALLOWED_SHAPES[layout]}`);
  if (allowed.mode !== 'auto' && allowed.mode !== 'required') bad(`${field}.mode`, 'must be "auto" or "required"');
  if (!Array.isArray(allowed.tools)) bad(`${field}.tools`, `must be an array, as in ${ALLOWED_SHAPES[layout]}`);
  const names = allowed.tools.map((entry: unknown, i) => {
    const fn = layout === 'chat' && isJsonObject(entry) ? entry.function : entry;
    const nameField = `${field}.tools[${i}]${layout === 'chat' ? '.function' : ''}.name`;
    if (!isJsonObject(entry) || entry.type !== 'function' || !isJsonObject(fn) || typeof fn.name !== 'string') bad(`${field}.tools[${i}]`, `must be ${layout === 'chat' ? '{"type": "function", "function": {"name"}}' : '{"type": "function", "name"}'}`);
    if (!tools.some((t) => t.name === fn.name)) bad(nameField, `${JSON.stringify(fn.name)} is not among the tools`);
    return fn.name;
  });
  if (allowed.mode === 'required' && names.length === 0) bad(`${field}.tools`, 'must name at least one of the tools, which "required" calls');
  return { mode: allowed.mode, tools: tools.filter((t) => names.includes(t.name)) };
}

async function holdable(tool: Tool): Promise<boolean> {
  try {
    await schemaGrammar(tool.parameters, tool.where);
    return true;
  } catch (err) {
    if (err instanceof HttpError) return false;
    throw err;
  }
}

// The rules over `call`, one call of a tool. Several calls end with the model's end of message: a chat model writes
// " <EOM>" there, and a grammar that let it write only " {" or nothing would push it into calls it did not mean.
function callsGbnf(model: ModelConfig, parallel: boolean, optional: boolean): string {
  const end = model.promptFormat === 'chat' ? ` ${END_OF_MESSAGE}` : '\n';
  const calls = parallel ? `call ((" " call)* ${JSON.stringify(end)})?` : 'call';
  return optional ? `root ::= ${calls} | text\ntext ::= [^{] .*` : `root ::= ${calls}`;
}

// One call of any of the tools: each tool's parameters under $defs (its references moved with it), and an object of
// its name and arguments that refers to them.
function callSchema(tools: readonly Tool[]): Body {
  const $defs: Body = {};
  const calls = tools.map((tool, i) => {
    const at = `#/$defs/tool-${i}`;
    $defs[`tool-${i}`] = movedRefs(tool.parameters, at);
    return { type: 'object', properties: { name: { const: tool.name }, arguments: { $ref: at } }, required: ['name', 'arguments'], additionalProperties: false };
  });
  return { $defs, ...(calls.length === 1 ? calls[0] : { anyOf: calls }) };
}

// Keywords whose values are JSON data, not schemas: a "$ref" there is data.
const DATA_KEYWORDS = new Set(['const', 'enum', 'default', 'examples']);

// The schema with each local reference ("#...") made relative to `at`, where the schema now sits.
function movedRefs(schema: unknown, at: string): unknown {
  if (Array.isArray(schema)) return schema.map((s) => movedRefs(s, at));
  if (!isJsonObject(schema)) return schema;
  return Object.fromEntries(Object.entries(schema).map(([key, value]) => {
    if (key === '$ref' && typeof value === 'string' && value.startsWith('#')) return [key, at + value.slice(1)];
    return [key, DATA_KEYWORDS.has(key) ? value : movedRefs(value, at)];
  }));
}

// The calls a reply makes, as OpenAI's APIs give them (the arguments as JSON text); null for a reply in text, or a
// call cut short (at its length, or by a stop sequence), which is answered as text.
export function replyCalls(c: Completion): { id: string; name: string; arguments: string }[] | null {
  const calls = cutShort(c) || !c.raw.startsWith('{') ? null : toolCallsOf(c.text);
  return calls && calls.map((call) => ({ id: `call_${crypto.randomBytes(12).toString('hex')}`, name: call.name, arguments: JSON.stringify(call.arguments) }));
}

// Streaming a reply that may be calls, its first character says which: one that begins with "{" is calls, held until
// it is whole (only a whole call parses); any other is text, passed on as it comes. Given each piece of the reply,
// the function made here answers what the reply is, null while it has no character yet.
export function replyKind(): (piece: string) => 'calls' | 'text' | null {
  let kind: 'calls' | 'text' | null = null;
  return (piece) => (kind ??= piece === '' ? null : piece.startsWith('{') ? 'calls' : 'text');
}

// Which way chat completions' request writes its tools: `functions` (OpenAI's older function calling) where it gives
// some or names one in `function_call`, else `tools`; not both. Clients send `functions: []` and `function_call:
// "auto"` beside tools, meaning none.
export function chatToolsLayout(body: Body): ToolsLayout {
  const some = (v: unknown): boolean => v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0);
  const call = body.function_call;
  if (!some(body.functions) && (call === undefined || call === null || call === 'none' || call === 'auto')) return 'chat';
  if (some(body.tools) || (body.tool_choice !== undefined && body.tool_choice !== null)) bad('functions', 'cannot come with tools or tool_choice: functions and function_call are their older names; send one or the other');
  return 'functions';
}
