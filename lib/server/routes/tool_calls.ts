// OpenAI's function calling on chat completions and the Responses API, as far as GPT-2 can take it. With
// `tool_choice` "required" or a named function, the reply is held (through a grammar, as response_format's are) to
// one call of a tool, {"name": ..., "arguments": {...}}, its arguments kept to the tool's `parameters`, and answered
// as OpenAI answers a call: chat completions' message.tool_calls and finish_reason "tool_calls", the Responses API's
// function_call item. Libraries that extract data through a forced call (Instructor, LangChain's
// with_structured_output) work so. GPT-2 was never taught when to call a tool, so "auto" (the default with tools)
// answers in text, as a model that chose not to call one, and "none" does too; so does Ollama's /api/chat, whose
// tools are always "auto". A reply holds one call: parallel_tool_calls is moot. The calls and their outputs sent
// back in a conversation are read with its messages (api_common.ts).
import crypto from 'node:crypto';
import type { Grammar } from '../../generate/grammar';
import { bad, isObject, type Body } from './api_common';
import { isOpenAIName, schemaGrammar } from './response_format';

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

// The grammar a forced call is held to, or undefined when the reply is text ("none", "auto", or no tools). `flat`:
// the Responses API's tools and named choice, {"type": "function", "name"}.
export function readToolChoice(body: Body, flat = false): Grammar | undefined {
  const tools = body.tools === undefined || body.tools === null ? [] : readTools(body.tools, flat);
  const choice = body.tool_choice ?? (tools.length > 0 ? 'auto' : 'none');
  if (choice === 'none' || choice === 'auto') return undefined;
  let called: Tool[];
  if (choice === 'required') {
    called = tools;
  } else {
    const named = flat ? choice : isObject(choice) ? choice.function : undefined;
    const name = isObject(choice) && choice.type === 'function' && isObject(named) ? named.name : undefined;
    if (name === undefined) bad('tool_choice', `must be "none", "auto", "required" or ${flat ? '{"type": "function", "name"}' : '{"type": "function", "function": {"name"}}'}`);
    called = tools.filter((t) => t.name === name);
    if (called.length === 0) bad(`tool_choice${flat ? '' : '.function'}.name`, `${JSON.stringify(name)} is not among the tools`);
  }
  if (called.length === 0) bad('tool_choice', '"required" needs at least one tool in tools');
  // Each tool's parameters on their own first, so that a mistake is named under the tool's path.
  for (const tool of called) schemaGrammar(tool.parameters, tool.where);
  return schemaGrammar(callSchema(called), 'tools');
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

// The call a reply held to readToolChoice's grammar makes: its id, its function's name, and its arguments as the JSON
// text OpenAI's APIs give them in.
export function toolCall(text: string): { id: string; name: string; arguments: string } {
  const call = JSON.parse(text) as { name: string; arguments: unknown };
  return { id: `call_${crypto.randomBytes(12).toString('hex')}`, name: call.name, arguments: JSON.stringify(call.arguments) };
}
