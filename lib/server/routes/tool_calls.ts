// OpenAI's function calling on chat completions, the Responses API and Ollama's /api/chat, in the chat format's way
// of writing a call: the JSON {"name": ..., "arguments": {...}} (lib/data/chat_format.ts toolCallsText), which is
// also how bin/import-chat writes fine-tuning data's calls, so a model fine-tuned on them calls as it learned to.
// A reply that calls is held, through a grammar as response_format's are, to calls of the request's tools, each
// call's arguments to its tool's `parameters`, and answered as OpenAI answers calls: chat completions'
// message.tool_calls and finish_reason "tool_calls", the Responses API's function_call items.
//   "required", or a named function  the reply is calls; libraries that extract data through a forced call
//                                    (Instructor, LangChain's with_structured_output) work so
//   "auto" (the default with tools)  the model chooses: a reply that begins with "{" is held to calls, any other is
//                                    text, sanitized as usual (Ollama's tools are always "auto"); held to
//                                    response_format instead where one is given
//   "none"                           text
// A reply makes one call. parallel_tool_calls true lets it make several, a space apart, as a conversation's calls
// are written, the model ending them with its end of message (a raw model, its line); OpenAI's default is true, but
// a model never taught to call goes on calling where it may, so here it is asked for.
import crypto from 'node:crypto';
import { END_OF_MESSAGE, toolCallsOf } from '../../data/chat_format';
import { Grammar } from '../../generate/grammar';
import type { ModelConfig } from '../config';
import { HttpError } from '../errors';
import type { Completion } from '../service';
import { bad, cutShort, isBool, isObject, optional, type Body } from './api_common';
import { grammarOf, isOpenAIName, schemaGrammar } from './response_format';

interface Tool {
  name: string;
  parameters: unknown;
  where: string;  // the request's field of its parameters, for errors
}

// Chat completions' tools, {"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}}, or
// the Responses API's, `flat`: {"type": "function", "name", ...}. The parameters are read as a schema only for a
// call that is forced: tools a reply in text never calls may use any keyword.
export function readTools(value: unknown, flat = false): Tool[] {
  const shape = flat ? '{"type": "function", "name", "parameters"}' : '{"type": "function", "function": {"name", "parameters"}}';
  if (!Array.isArray(value)) bad('tools', `must be an array of ${shape}`);
  const tools = value.map((entry: unknown, i): Tool => {
    const where = `tools[${i}]`;
    const fnWhere = flat ? where : `${where}.function`;
    const fn = flat ? entry : isObject(entry) ? entry.function : undefined;
    if (!isObject(entry) || entry.type !== 'function' || !isObject(fn)) bad(where, `must be ${shape}`);
    const known = [...(flat ? ['type'] : []), 'name', 'description', 'parameters', 'strict'];
    for (const key of Object.keys(fn)) if (!known.includes(key)) bad(`${fnWhere}.${key}`, `unsupported field (supported: ${known.join(', ')})`);
    if (!isOpenAIName(fn.name)) bad(`${fnWhere}.name`, 'is required: 1 to 64 letters, digits, _ or -');
    return { name: fn.name, parameters: fn.parameters ?? { type: 'object' }, where: `${fnWhere}.parameters` };
  });
  tools.forEach((tool, i) => {
    if (tools.findIndex((t) => t.name === tool.name) < i) bad(`tools[${i}]${flat ? '' : '.function'}.name`, `"${tool.name}" is the name of an earlier tool`);
  });
  return tools;
}

// How a reply may call tools: held to `grammar`, which, where the calls are `optional` ("auto"), also lets the reply
// be text that does not begin with "{".
export interface ToolChoice {
  grammar: Grammar;
  optional: boolean;
}

// The request's tools and tool_choice, or undefined when the reply is text ("none", no tools, or "auto" beside a
// grammar for text: response_format's, `textGrammar`). `flat`: the Responses API's tools and named choice,
// {"type": "function", "name"}.
export function readToolChoice(body: Body, model: ModelConfig, textGrammar: Grammar | undefined, flat = false): ToolChoice | undefined {
  const tools = body.tools === undefined || body.tools === null ? [] : readTools(body.tools, flat);
  const parallel = optional<boolean>(body, 'parallel_tool_calls', isBool, 'true or false') ?? false;
  const choice = body.tool_choice ?? (tools.length > 0 ? 'auto' : 'none');
  if (choice === 'none' || (choice === 'auto' && (tools.length === 0 || textGrammar !== undefined))) return undefined;
  let called: Tool[];
  if (choice === 'required' || choice === 'auto') {
    called = tools;
  } else {
    const named = flat ? choice : isObject(choice) ? choice.function : undefined;
    const name = isObject(choice) && choice.type === 'function' && isObject(named) ? named.name : undefined;
    if (name === undefined) bad('tool_choice', `must be "none", "auto", "required" or ${flat ? '{"type": "function", "name"}' : '{"type": "function", "function": {"name"}}'}`);
    called = tools.filter((t) => t.name === name);
    if (called.length === 0) bad(`tool_choice${flat ? '' : '.function'}.name`, `${JSON.stringify(name)} is not among the tools`);
  }
  if (called.length === 0) bad('tool_choice', '"required" needs at least one tool in tools');
  const callsOptional = choice === 'auto';
  // Each tool's parameters on their own first, so that a mistake is named under the tool's path. Clients send all
  // their tools with every request (Home Assistant through Ollama's API), so under "auto" a tool whose parameters no
  // grammar here holds is one the model cannot call, not a request refused.
  if (callsOptional) called = called.filter((tool) => holdable(tool));
  else for (const tool of called) schemaGrammar(tool.parameters, tool.where);
  if (called.length === 0) return undefined;
  const schema = callSchema(called);
  const key = `tools ${callsOptional} ${parallel} ${model.promptFormat} ${JSON.stringify(schema)}`;
  return { grammar: grammarOf('tools', key, () => Grammar.withJsonSchema(callsGbnf(model, parallel, callsOptional), 'call', schema, 'tools')), optional: callsOptional };
}

function holdable(tool: Tool): boolean {
  try {
    schemaGrammar(tool.parameters, tool.where);
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
  if (!isObject(schema)) return schema;
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

// Streaming a reply that may be calls: one that begins with "{" is held until it is whole (only a whole call parses),
// any other is passed on as it comes. Returns whether the reply so far, `text`, may be sent.
export function sendable(text: string): boolean {
  return !text.startsWith('{');
}
