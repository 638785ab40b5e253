// Structured outputs: each API's way of asking for a reply in JSON or in a grammar, read into the one Grammar the
// Batcher holds a generation to (lib/generate/grammar):
//   OpenAI     response_format: {"type": "json_object"} or {"type": "json_schema", "json_schema": {"name", "schema"}}
//              (chat completions; completions too, as vLLM's server takes it); the Responses API's text.format
//   llama.cpp  grammar (GBNF) or json_schema, on /completion
//   Ollama     format: "json" or a JSON schema
// A grammar is kept by its source, the most recent few dozen, so that a client's requests, which send the same schema
// each time, share the token masks the grammar has worked out (the first request of a schema pays for them). A new
// one is built on a worker thread (lib/generate/grammar/thread.ts), the event loop serving other clients meanwhile,
// and once for all the requests that ask for it while it is being built.
import { Grammar, GrammarError } from '../../generate/grammar';
import { buildOffThread, type GrammarSource } from '../../generate/grammar/thread';
import { HttpError } from '../errors';
import { LruMap } from '../../util/lru_map';
import { bad, checkKeys, checkNeutral, type Body } from './api_common';
import { isJsonObject } from '../../util/json_object';

const kept = new LruMap<string, Grammar>(64);
// The builds under way, by the field that names a mistake and the grammar's key: requests that come together with
// the same schema (a chat front end sends its 128 tools with every message) wait for one build, not one each. By
// field too, since a mistake's message begins with the field of the request that asked for the build.
const building = new Map<string, Promise<Grammar>>();

// The grammar of the request's `field` built from `source`, kept by `key`, a mistake in it a 400 that says where:
// the GrammarError's message begins with the field and the path within it.
export async function grammarOf(field: string, key: string, source: GrammarSource): Promise<Grammar> {
  let grammar = kept.get(key);
  if (grammar !== undefined) return grammar;
  const buildKey = `${field}\n${key}`;
  let built = building.get(buildKey);
  if (built === undefined) {
    built = buildOffThread(source).finally(() => building.delete(buildKey));
    building.set(buildKey, built);
  }
  try {
    grammar = await built;
  } catch (err) {
    if (err instanceof GrammarError) throw new HttpError(400, err.message, { field });
    throw err;
  }
  kept.set(key, grammar);
  return grammar;
}

// A JSON schema's grammar; `field` is the request's field that holds the schema, for errors.
export function schemaGrammar(schema: unknown, field: string): Promise<Grammar> {
  return grammarOf(field, `schema ${JSON.stringify(schema)}`, { schema, where: field });
}

// A name as OpenAI bounds a json_schema format's and a function's.
export const isOpenAIName = (v: unknown): v is string => typeof v === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(v);

// OpenAI's format object at `field`: {"type": "text"}, {"type": "json_object"}, or {"type": "json_schema"} with its
// name, schema, strict and description in `json_schema` (chat completions' response_format) or beside its type
// (the Responses API's text.format: `flat`).
async function openAIFormat(format: unknown, field: string, flat: boolean): Promise<Grammar | undefined> {
  const schemaFormat = flat ? '{"type": "json_schema", "name", "schema"}' : '{"type": "json_schema", "json_schema": {"name", "schema"}}';
  if (!isJsonObject(format)) bad(field, `must be {"type": "text"}, {"type": "json_object"} or ${schemaFormat}`);
  if (format.type === 'text' || format.type === 'json_object') {
    checkKeys(format, ['type'], field);
    return format.type === 'text' ? undefined : Grammar.anyJsonObject();
  }
  if (format.type !== 'json_schema') bad(`${field}.type`, 'must be "text", "json_object" or "json_schema"');
  const specField = flat ? field : `${field}.json_schema`;
  const spec = flat ? format : format.json_schema;
  if (!flat) checkKeys(format, ['type', 'json_schema'], field);
  if (!isJsonObject(spec)) bad(specField, 'must be {"name", "schema", "strict"?, "description"?}');
  checkKeys(spec, [...(flat ? ['type'] : []), 'name', 'schema', 'strict', 'description'], specField);
  if (!isOpenAIName(spec.name)) bad(`${specField}.name`, 'is required: 1 to 64 letters, digits, _ or -');
  if (spec.strict !== undefined && spec.strict !== null && typeof spec.strict !== 'boolean') bad(`${specField}.strict`, 'must be true or false');
  if (spec.description !== undefined && spec.description !== null && typeof spec.description !== 'string') bad(`${specField}.description`, 'must be a string');
  // Held to its schema whether strict or not: the sampler cannot draw a token outside it.
  return schemaGrammar(spec.schema ?? {}, `${specField}.schema`);
}

// Chat completions' (and completions') response_format.
export async function readResponseFormat(body: Body): Promise<Grammar | undefined> {
  const format = body.response_format;
  return format === undefined || format === null ? undefined : openAIFormat(format, 'response_format', false);
}

// The Responses API's text: {"format": ...}. Returns the grammar and the format as the response object reports it.
export async function readTextFormat(body: Body): Promise<{ grammar: Grammar | undefined; format: Body }> {
  const text = body.text;
  if (text === undefined || text === null) return { grammar: undefined, format: { type: 'text' } };
  if (!isJsonObject(text)) bad('text', 'must be {"format": {...}}');
  checkKeys(text, ['format', 'verbosity'], 'text');
  checkNeutral(text, 'text');
  const format = text.format;
  if (format === undefined || format === null) return { grammar: undefined, format: { type: 'text' } };
  return { grammar: await openAIFormat(format, 'text.format', true), format: format as Body };
}

// llama.cpp's grammar (GBNF; "" is none) and json_schema, one or the other.
export async function readLlamaCppGrammar(body: Body): Promise<Grammar | undefined> {
  const { grammar, json_schema: schema } = body;
  const hasGrammar = grammar !== undefined && grammar !== null && grammar !== '';
  const hasSchema = schema !== undefined && schema !== null;
  if (hasGrammar && hasSchema) bad('json_schema', 'cannot come with grammar: give one or the other');
  if (hasGrammar) {
    if (typeof grammar !== 'string') bad('grammar', 'must be a grammar in GBNF, as text');
    return grammarOf('grammar', `gbnf ${grammar}`, { gbnf: grammar, where: 'grammar' });
  }
  if (hasSchema) return schemaGrammar(schema, 'json_schema');
  return undefined;
}

// Ollama's format: "json" (a JSON object), a JSON schema, or "" (none).
export async function readOllamaFormat(body: Body): Promise<Grammar | undefined> {
  const format = body.format;
  if (format === undefined || format === null || format === '') return undefined;
  if (format === 'json') return Grammar.anyJsonObject();
  if (!isJsonObject(format)) bad('format', 'must be "json" or a JSON schema (an object)');
  return schemaGrammar(format, 'format');
}
