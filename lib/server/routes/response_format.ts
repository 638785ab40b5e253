// Structured outputs: each API's way of asking for a reply in JSON or in a grammar, read into the one Grammar the
// Batcher holds a generation to (lib/generate/grammar):
//   OpenAI     response_format: {"type": "json_object"} or {"type": "json_schema", "json_schema": {"name", "schema"}}
//              (chat completions; completions too, as vLLM's server takes it); the Responses API's text.format
//   llama.cpp  grammar (GBNF) or json_schema, on /completion
//   Ollama     format: "json" or a JSON schema
// A grammar is kept by its source, the most recent few dozen, so that a client's requests, which send the same schema
// each time, share the token masks the grammar has worked out (the first request of a schema pays for them).
import { Grammar, GrammarError } from '../../generate/grammar';
import { HttpError } from '../errors';
import { bad, checkKeys, isObject, type Body } from './api_common';

const KEPT_GRAMMARS = 64;
const kept = new Map<string, Grammar>();

// The grammar of the request's `field` built from `source` (the cache's key), a mistake in it a 400 that says where:
// the GrammarError's message begins with the field and the path within it.
function grammarOf(field: string, source: string, build: () => Grammar): Grammar {
  let grammar = kept.get(source);
  if (grammar) {
    kept.delete(source);  // most recently used last
  } else {
    try {
      grammar = build();
    } catch (err) {
      if (err instanceof GrammarError) throw new HttpError(400, err.message, { field });
      throw err;
    }
    if (kept.size >= KEPT_GRAMMARS) kept.delete(kept.keys().next().value as string);
  }
  kept.set(source, grammar);
  return grammar;
}

// A JSON schema's grammar; `field` is the request's field that holds the schema, for errors.
export function schemaGrammar(schema: unknown, field: string): Grammar {
  return grammarOf(field, `schema ${JSON.stringify(schema)}`, () => Grammar.fromJsonSchema(schema, field));
}

// A JSON schema format's name, as OpenAI bounds it.
const isFormatName = (v: unknown): boolean => typeof v === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(v);

// OpenAI's json_schema format: its `name`, `schema`, `strict` and `description` (at `field`, the object that holds them).
function jsonSchemaFormat(spec: Body, field: string): Grammar {
  checkKeys(spec, ['name', 'schema', 'strict', 'description'], field);
  if (!isFormatName(spec.name)) bad(`${field}.name`, 'is required: 1 to 64 letters, digits, _ or -');
  if (spec.strict !== undefined && spec.strict !== null && typeof spec.strict !== 'boolean') bad(`${field}.strict`, 'must be true or false');
  if (spec.description !== undefined && spec.description !== null && typeof spec.description !== 'string') bad(`${field}.description`, 'must be a string');
  // Held to its schema whether strict or not: the sampler cannot draw a token outside it.
  return schemaGrammar(spec.schema ?? {}, `${field}.schema`);
}

const OPENAI_FORMATS = '{"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "json_schema": {"name", "schema"}}';

// Chat completions' (and completions') response_format.
export function readResponseFormat(body: Body): Grammar | undefined {
  const format = body.response_format;
  if (format === undefined || format === null) return undefined;
  if (!isObject(format)) bad('response_format', `must be ${OPENAI_FORMATS}`);
  if (format.type === 'text' || format.type === 'json_object') checkKeys(format, ['type'], 'response_format');
  else if (format.type === 'json_schema') checkKeys(format, ['type', 'json_schema'], 'response_format');
  else bad('response_format.type', 'must be "text", "json_object" or "json_schema"');
  if (format.type === 'text') return undefined;
  if (format.type === 'json_object') return Grammar.anyJsonObject();
  if (!isObject(format.json_schema)) bad('response_format.json_schema', 'must be {"name", "schema", "strict"?, "description"?}');
  return jsonSchemaFormat(format.json_schema, 'response_format.json_schema');
}

// The Responses API's text: {"format": ...}, its json_schema format's fields beside its type. Returns the grammar and
// the format as the response object reports it.
export function readTextFormat(body: Body): { grammar: Grammar | undefined; format: Body } {
  const text = body.text;
  if (text === undefined || text === null) return { grammar: undefined, format: { type: 'text' } };
  if (!isObject(text)) bad('text', 'must be {"format": {...}}');
  checkKeys(text, ['format'], 'text');
  const format = text.format;
  if (format === undefined || format === null) return { grammar: undefined, format: { type: 'text' } };
  if (!isObject(format)) bad('text.format', 'must be {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "name", "schema"}');
  if (format.type === 'text' || format.type === 'json_object') {
    checkKeys(format, ['type'], 'text.format');
    return { grammar: format.type === 'text' ? undefined : Grammar.anyJsonObject(), format };
  }
  if (format.type !== 'json_schema') bad('text.format.type', 'must be "text", "json_object" or "json_schema"');
  const { type, ...spec } = format;
  return { grammar: jsonSchemaFormat(spec, 'text.format'), format: { type, ...spec } };
}

// llama.cpp's grammar (GBNF; "" is none) and json_schema, one or the other.
export function readLlamaCppGrammar(body: Body): Grammar | undefined {
  const { grammar, json_schema: schema } = body;
  const hasGrammar = grammar !== undefined && grammar !== null && grammar !== '';
  const hasSchema = schema !== undefined && schema !== null;
  if (hasGrammar && hasSchema) bad('json_schema', 'cannot come with grammar: give one or the other');
  if (hasGrammar) {
    if (typeof grammar !== 'string') bad('grammar', 'must be a grammar in GBNF, as text');
    return grammarOf('grammar', `gbnf ${grammar}`, () => Grammar.parse(grammar, 'grammar'));
  }
  if (hasSchema) return schemaGrammar(schema, 'json_schema');
  return undefined;
}

// Ollama's format: "json" (a JSON object), a JSON schema, or "" (none).
export function readOllamaFormat(body: Body): Grammar | undefined {
  const format = body.format;
  if (format === undefined || format === null || format === '') return undefined;
  if (format === 'json') return Grammar.anyJsonObject();
  if (!isObject(format)) bad('format', 'must be "json" or a JSON schema (an object)');
  return schemaGrammar(format, 'format');
}
