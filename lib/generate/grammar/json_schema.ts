// JSON Schema -> GBNF, in the manner of llama.cpp's json-schema-to-grammar and within OpenAI's structured-outputs
// subset. The grammar admits only JSON that the schema accepts (sometimes less: see the choices below), written
// compactly: at most one bounded run of whitespace between tokens, none before or after the root value, so that a
// small model cannot wander off into whitespace. A keyword this does not implement is refused, naming its path,
// rather than ignored: a grammar that silently dropped `uniqueItems` would let through JSON the caller rejects.
import { MAX_REPETITION } from './grammar';
import {
  type CodepointRanges,
  GrammarError,
  MAX_CODEPOINT,
  complementRanges,
  gbnfClass,
  gbnfLiteral,
  intersectRanges,
  normalizeRanges,
} from './syntax';
import { isJsonObject } from '../../util/json_object';

type TypeName = 'string' | 'number' | 'integer' | 'boolean' | 'null' | 'object' | 'array';
type Schema = Record<string, unknown>;

// Keywords that say nothing about which values are valid.
const ANNOTATIONS = new Set(['title', 'description', 'default', 'examples', '$schema', '$id', '$comment', 'deprecated', 'readOnly', 'writeOnly', 'strict']);
// They hold schemas for $ref to name, and constrain nothing where they stand.
const DEFINITIONS = new Set(['$defs', 'definitions']);

const KEYWORDS_OF_TYPE: Record<TypeName, readonly string[]> = {
  string: ['minLength', 'maxLength', 'pattern', 'format'],
  integer: ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'],
  number: [],
  boolean: [],
  null: [],
  object: ['properties', 'required', 'additionalProperties'],
  array: ['items', 'prefixItems', 'minItems', 'maxItems'],
};
const TYPES = Object.keys(KEYWORDS_OF_TYPE) as TypeName[];

// Integers with an open side are written with at most this many digits (as llama.cpp's), which is past the
// integers that a double holds exactly.
const MAX_DIGITS = 16;
const LARGEST_INTEGER = 10n ** BigInt(MAX_DIGITS) - 1n;

// The rules the converted grammars build on, added to a grammar as it uses them. A string's characters are whole
// codepoints, so that minLength and maxLength count what JSON Schema counts: an escape may not name half a
// surrogate pair, and a raw DEL, a control character, is refused like the others.
const PRIMITIVES: Record<string, { body: string; uses: readonly string[] }> = {
  ws: { body: '"" | " " | "\\n" [ \\t]{0,20}', uses: [] },
  char: {
    body: '[^"\\\\\\x00-\\x1F\\x7F] | "\\\\" (["\\\\/bfnrt] | "u" ([0-9a-cA-CefEF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}))',
    uses: [],
  },
  string: { body: '"\\"" char* "\\""', uses: ['char'] },
  integer: { body: '"-"? ("0" | [1-9] [0-9]{0,15})', uses: [] },
  // A bounded exponent keeps every number finite (JSON.parse reads 1e999 as Infinity).
  number: { body: 'integer ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?', uses: ['integer'] },
  boolean: { body: '"true" | "false"', uses: [] },
  null: { body: '"null"', uses: [] },
  value: { body: 'object | array | string | number | boolean | null', uses: ['object', 'array', 'string', 'number', 'boolean', 'null'] },
  object: { body: '"{" ws (string ws ":" ws value ws ("," ws string ws ":" ws value ws)*)? "}"', uses: ['ws', 'string', 'value'] },
  array: { body: '"[" ws (value ws ("," ws value ws)*)? "]"', uses: ['ws', 'value'] },
  // Dates as RFC 3339 (and ajv-formats) take them: each month's length, 29 February in leap years only.
  date: {
    body:
      'date-year "-" (("0" [13578] | "1" [02]) "-" date-day31 | ("0" [469] | "11") "-" date-day30 | "02-" date-day28) | ' +
      'date-leap-year "-02-29"',
    uses: ['date-year', 'date-leap-year', 'date-day28', 'date-day30', 'date-day31'],
  },
  'date-year': { body: '[0-9]{4}', uses: [] },
  'date-leap-year': { body: '[0-9] [0-9] ("0" [48] | [2468] [048] | [13579] [26]) | ([02468] [048] | [13579] [26]) "00"', uses: [] },
  'date-day28': { body: '"0" [1-9] | "1" [0-9] | "2" [0-8]', uses: [] },
  'date-day30': { body: 'date-day28 | "29" | "30"', uses: ['date-day28'] },
  'date-day31': { body: 'date-day30 | "31"', uses: ['date-day30'] },
  time: {
    body: '([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])',
    uses: [],
  },
  'date-time': { body: 'date "T" time', uses: ['date', 'time'] },
  uuid: { body: '[0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12}', uses: [] },
};
const FORMATS = ['date', 'time', 'date-time', 'uuid'];

// The characters a JSON string holds unescaped (the `char` rule's first alternative).
const UNESCAPED: CodepointRanges = complementRanges(normalizeRanges([0x00, 0x1f, 0x22, 0x22, 0x5c, 0x5c, 0x7f, 0x7f]));

// `rootName` names the rule of the schema's texts (and stems its helper rules), for a grammar that uses it as a part
// beside rules of its own, whose names are `reserved`.
export function jsonSchemaToGbnf(schema: unknown, where: string, rootName = 'root', reserved: readonly string[] = []): string {
  return new SchemaConverter(schema, where, rootName, new Set(reserved)).convert();
}

class SchemaConverter {
  // Rule name -> body, root first.
  private readonly rules = new Map<string, string>();
  // $ref pointer -> its rule, and the path of what it points at.
  private readonly refRules = new Map<string, string>();
  private readonly refPaths = new Map<string, string>();
  // A $ref's rule reaching another $ref before reading any text: a cycle of these is left recursion.
  private readonly leftRefs = new Map<string, Set<string>>();
  // The $ref whose rule is being written while nothing has been read yet in it, if any.
  private leftOwner: string | null = '#';

  constructor(
    private readonly root: unknown,
    private readonly where: string,
    private readonly rootName: string,
    private readonly reserved: ReadonlySet<string>,
  ) {
    this.refRules.set('#', rootName);
    this.refPaths.set('#', where);
  }

  convert(): string {
    this.rules.set(this.rootName, '');
    this.rules.set(this.rootName, this.visit(this.root, this.where, this.rootName));
    this.checkRefCycles();
    return [...this.rules].map(([name, body]) => `${name} ::= ${body}`).join('\n');
  }

  // A GBNF expression for the JSON texts `schema` accepts; `name` is the stem of the helper rules it adds.
  private visit(schema: unknown, path: string, name: string): string {
    if (schema === true) return this.primitive('value');
    if (schema === false) fail(path, 'false accepts no value');
    if (!isJsonObject(schema)) fail(path, 'must be a schema (an object or a boolean)');
    if ('$ref' in schema) {
      this.only(schema, path, ['$ref'], '$ref');
      return this.ref(schema.$ref, `${path}.$ref`);
    }
    const choice = 'anyOf' in schema ? 'anyOf' : 'oneOf' in schema ? 'oneOf' : null;
    if (choice !== null) {
      // oneOf's "exactly one" cannot be checked while generating: it is read as anyOf, as llama.cpp reads it.
      this.only(schema, path, [choice], choice);
      const alternatives = schemaList(schema[choice], member(path, choice));
      return `(${alternatives.map((alternative, i) => this.visit(alternative, `${member(path, choice)}[${i}]`, `${name}-${i}`)).join(' | ')})`;
    }
    // Everything else reads some text before anything it contains: a $ref inside is not at the left edge.
    const owner = this.leftOwner;
    this.leftOwner = null;
    try {
      if ('allOf' in schema) return this.allOf(schema, path, name);
      if ('enum' in schema || 'const' in schema) return this.literals(schema, path);
      const types = this.types(schema, path);
      if (types === null) return this.primitive('value');
      const alternatives = types.map((type) => this.typed(schema, type, path, name));
      return alternatives.length === 1 ? alternatives[0] : `(${alternatives.join(' | ')})`;
    } finally {
      this.leftOwner = owner;
    }
  }

  // The types the schema allows, from `type` or else from its keywords; null: any value. Every other keyword must
  // belong to one of them.
  private types(schema: Schema, path: string): TypeName[] | null {
    let types: TypeName[];
    if ('type' in schema) {
      const list = Array.isArray(schema.type) ? schema.type : [schema.type];
      if (list.length === 0) fail(member(path, 'type'), 'must name at least one type');
      types = list.map((type, i) => {
        const at = Array.isArray(schema.type) ? `${member(path, 'type')}[${i}]` : member(path, 'type');
        if (!TYPES.includes(type as TypeName)) fail(at, `must be one of ${TYPES.join(', ')}, not ${JSON.stringify(type)}`);
        if (list.indexOf(type) !== i) fail(at, `names ${JSON.stringify(type)} twice`);
        return type as TypeName;
      });
    } else {
      // As llama.cpp does, keywords of one type stand for that type: the values of other types the schema would
      // also allow are left out, which no valid output needs.
      types = TYPES.filter((type) => KEYWORDS_OF_TYPE[type].some((keyword) => keyword in schema));
      if (types.length > 1) fail(path, `needs a "type": its keywords belong to ${types.join(' and ')}`);
    }
    const allowed = new Set(['type', ...types.flatMap((type) => KEYWORDS_OF_TYPE[type])]);
    for (const keyword of Object.keys(schema)) {
      if (types.includes('number') && KEYWORDS_OF_TYPE.integer.includes(keyword)) fail(member(path, keyword), 'is supported for integers only');
      if (allowed.has(keyword) || ANNOTATIONS.has(keyword) || DEFINITIONS.has(keyword)) continue;
      const owners = TYPES.filter((type) => KEYWORDS_OF_TYPE[type].includes(keyword));
      if (owners.length > 0) fail(member(path, keyword), `does not apply to type ${types.join(' or ')}`);
      fail(member(path, keyword), 'is not supported');
    }
    return types.length === 0 ? null : types;
  }

  private typed(schema: Schema, type: TypeName, path: string, name: string): string {
    switch (type) {
      case 'string':
        return this.string(schema, path);
      case 'integer':
        return this.integer(schema, path);
      case 'object':
        return this.object(schema, path, name);
      case 'array':
        return this.array(schema, path, name);
      default:
        return this.primitive(type);
    }
  }

  private string(schema: Schema, path: string): string {
    if ('format' in schema) {
      this.without(schema, path, 'format', ['minLength', 'maxLength', 'pattern']);
      const format = schema.format;
      if (typeof format !== 'string' || !FORMATS.includes(format)) {
        fail(member(path, 'format'), `${JSON.stringify(format)} is not supported (supported: ${FORMATS.join(', ')})`);
      }
      return `"\\"" ${this.primitive(format)} "\\""`;
    }
    if ('pattern' in schema) {
      this.without(schema, path, 'pattern', ['minLength', 'maxLength']);
      if (typeof schema.pattern !== 'string') fail(member(path, 'pattern'), 'must be a string');
      return `"\\"" ${new PatternConverter(schema.pattern, member(path, 'pattern'), () => this.primitive('char')).convert()} "\\""`;
    }
    const [min, max] = this.bounds(schema, path, 'minLength', 'maxLength');
    return `"\\"" ${repeat(this.primitive('char'), min, max)} "\\""`;
  }

  private integer(schema: Schema, path: string): string {
    const bound = (keyword: string, round: (x: number) => number): bigint | null => {
      if (!(keyword in schema)) return null;
      const value = schema[keyword];
      if (typeof value !== 'number' || !Number.isFinite(value)) fail(member(path, keyword), `must be a number, not ${JSON.stringify(value)}`);
      return BigInt(round(value));
    };
    const lows = [bound('minimum', Math.ceil), bound('exclusiveMinimum', (x) => Math.floor(x) + 1)].filter((b) => b !== null);
    const highs = [bound('maximum', Math.floor), bound('exclusiveMaximum', (x) => Math.ceil(x) - 1)].filter((b) => b !== null);
    if (lows.length === 0 && highs.length === 0) return this.primitive('integer');
    const lo = lows.reduce((a, b) => (b > a ? b : a), -LARGEST_INTEGER);
    const hi = highs.reduce((a, b) => (b < a ? b : a), LARGEST_INTEGER);
    if (lo > hi) fail(path, `no integer of at most ${MAX_DIGITS} digits lies within its bounds`);
    const alternatives: string[] = [];
    if (lo < 0n) alternatives.push(`"-" ${naturalRange(hi < 0n ? -hi : 1n, -lo)}`);
    if (lo <= 0n && hi >= 0n) alternatives.push('"0"');
    if (hi > 0n) alternatives.push(naturalRange(lo > 1n ? lo : 1n, hi));
    return `(${alternatives.join(' | ')})`;
  }

  private object(schema: Schema, path: string, name: string): string {
    const properties = schema.properties ?? {};
    if (!isJsonObject(properties)) fail(member(path, 'properties'), 'must be an object');
    const additional = schema.additionalProperties;
    if (additional !== undefined && typeof additional !== 'boolean' && !isJsonObject(additional)) {
      fail(member(path, 'additionalProperties'), 'must be a boolean or a schema');
    }
    if (!('properties' in schema) && (additional === undefined || additional === true)) {
      if ('required' in schema) fail(member(path, 'required'), 'needs "properties" that define what it names');
      return this.primitive('object');
    }
    const members = Object.entries(properties).map(([key, value]) => ({ key, schema: value, path: member(member(path, 'properties'), key) }));
    return this.members(members, this.required(schema, path, Object.keys(properties)), additional, path, name);
  }

  private required(schema: Schema, path: string, keys: readonly string[]): Set<string> {
    const required = requiredNames(schema, path);
    for (const { key, path: at } of required) if (!keys.includes(key)) fail(at, `${JSON.stringify(key)} is not among the properties`);
    return new Set(required.map((r) => r.key));
  }

  // The object's members in the order given, each optional one free to be left out, then (additionalProperties
  // true or a schema) any further string-keyed members. Absent additionalProperties allows none where properties
  // are listed: llama.cpp's choice, and what a model asked for an object of given properties should write.
  private members(
    members: readonly { key: string; schema: unknown; path: string }[],
    required: ReadonlySet<string>,
    additional: unknown,
    path: string,
    name: string,
  ): string {
    const kvs = members.map((m) =>
      this.addRule(`${name}-${m.key}-kv`, `${gbnfLiteral(JSON.stringify(m.key))} ws ":" ws ${this.visit(m.schema, m.path, `${name}-${m.key}`)}`),
    );
    this.primitive('ws');
    let extra: string | null = null;
    if (additional === true || isJsonObject(additional)) {
      const value = additional === true ? this.primitive('value') : this.visit(additional, member(path, 'additionalProperties'), `${name}-additional`);
      const key = this.keyOtherThan(members.map((m) => m.key), `${name}-additional-key`);
      extra = this.addRule(`${name}-additional-kv`, `${key} ws ":" ws ${value}`);
    }
    const isRequired = members.map((m) => required.has(m.key));
    const firstRequired = isRequired.indexOf(true);
    // rest[i]: the members from i on, once some member has been written (so each comes after a comma). Named rules
    // where the first member may be any of several, so that each optional member is written out once.
    const shared = firstRequired !== 0 && members.length > 0;
    const rest: string[] = [];
    rest[members.length] = extra === null ? '' : `("," ws ${extra} ws)*`;
    for (let i = members.length - 1; i >= 1; i--) {
      const one = `"," ws ${kvs[i]} ws`;
      const body = `${isRequired[i] ? one : `(${one})?`} ${rest[i + 1]}`.trim();
      rest[i] = shared ? this.addRule(`${name}-rest-${i}`, body) : body;
    }
    const first: string[] = [];
    const last = firstRequired >= 0 ? firstRequired : members.length - 1;
    for (let i = 0; i <= last; i++) first.push(`${kvs[i]} ws ${rest[i + 1]}`.trim());
    if (firstRequired < 0) {
      if (extra !== null) first.push(`${extra} ws ${rest[members.length]}`);
      first.push('""');
    }
    const body = first.length === 1 ? first[0] : `(${first.join(' | ')})`;
    return `"{" ws ${body} "}"`;
  }

  // A JSON string that is none of `keys`. It is written without escapes, so that no listed key can come back
  // spelled with one (`\u0061` for `a`); listed keys that need an escape are then excluded already.
  private keyOtherThan(keys: readonly string[], name: string): string {
    const plain = keys.filter((key) => [...key].every((ch) => isUnescaped(ch.codePointAt(0) as number)));
    const anyRest = this.addRule(`${name}-rest`, `${gbnfClass(UNESCAPED)}* "\\""`);
    // A trie of the keys, one rule per node: a child's character leads on to the child, any other character to
    // the rest of an unlisted key, and the closing quote is allowed unless the path so far is a listed key.
    const node = (prefix: string): string => {
      const here = plain.filter((key) => key.startsWith(prefix));
      const next = [...new Set(here.filter((key) => key.length > prefix.length).map((key) => String.fromCodePoint(key.slice(prefix.length).codePointAt(0) as number)))];
      const rule = this.addRule(name, '');
      const alternatives = next.map((ch) => `${gbnfLiteral(ch)} ${node(prefix + ch)}`);
      const others = intersectRanges(UNESCAPED, complementRanges(normalizeRanges(next.flatMap((ch) => [ch.codePointAt(0) as number, ch.codePointAt(0) as number]))));
      if (others.length > 0) alternatives.push(`${gbnfClass(others)} ${anyRest}`);
      if (!here.includes(prefix)) alternatives.push('"\\""');
      this.rules.set(rule, alternatives.join(' | '));
      return rule;
    };
    return `"\\"" ${node('')}`;
  }

  private array(schema: Schema, path: string, name: string): string {
    const prefix = 'prefixItems' in schema ? schemaList(schema.prefixItems, member(path, 'prefixItems')) : [];
    const prefixItems = prefix.map((item, i) => this.visit(item, `${member(path, 'prefixItems')}[${i}]`, `${name}-${i}`));
    const items = schema.items;
    // Without `items`, a tuple (prefixItems) is taken to be the whole array, as llama.cpp does.
    let rest: string | null = null;
    if (items === undefined ? prefix.length === 0 : items !== false) {
      rest = this.addRule(`${name}-item`, items === undefined ? this.primitive('value') : this.visit(items, member(path, 'items'), `${name}-item`));
    }
    const [min, max] = this.bounds(schema, path, 'minItems', 'maxItems');
    if (max < prefix.length) fail(member(path, 'maxItems'), `is less than the ${prefix.length} prefixItems, which are all written`);
    const restMax = rest === null ? 0 : max - prefix.length;
    const restMin = Math.max(0, min - prefix.length);
    if (restMin > restMax) fail(member(path, 'minItems'), `is more than the ${prefix.length} items the array may hold`);
    this.primitive('ws');
    const parts = ['"[" ws'];
    if (prefix.length > 0) {
      parts.push(`${prefixItems[0]} ws`, ...prefixItems.slice(1).map((item) => `"," ws ${item} ws`));
      if (rest !== null) parts.push(repeat(`"," ws ${rest} ws`, restMin, restMax));
    } else if (rest !== null && restMax > 0) {
      const more = repeat(`"," ws ${rest} ws`, Math.max(0, restMin - 1), restMax - 1);
      parts.push(restMin > 0 ? `${rest} ws ${more}` : `(${rest} ws ${more})?`);
    }
    parts.push('"]"');
    return parts.filter((part) => part !== '').join(' ');
  }

  // Every allOf entry (and the schema's own members) must describe an object: their properties are merged into
  // one object, in order. No extra members are allowed, as for any object with listed properties.
  private allOf(schema: Schema, path: string, name: string): string {
    const parts: { schema: Schema; path: string }[] = [{ schema, path }];
    schemaList(schema.allOf, member(path, 'allOf')).forEach((entry, i) => parts.push(this.resolved(entry, `${member(path, 'allOf')}[${i}]`)));
    const members: { key: string; schema: unknown; path: string }[] = [];
    const required: { key: string; path: string }[] = [];
    for (const part of parts) {
      for (const keyword of Object.keys(part.schema)) {
        if (keyword === 'allOf' && part.schema === schema) continue;
        if (ANNOTATIONS.has(keyword) || DEFINITIONS.has(keyword) || keyword === 'properties' || keyword === 'required') continue;
        if (keyword === 'type' && part.schema.type === 'object') continue;
        fail(member(part.path, keyword), keyword === 'type' ? 'allOf is supported for objects only' : 'cannot be combined with allOf (only properties and required can)');
      }
      const properties = part.schema.properties ?? {};
      if (!isJsonObject(properties)) fail(member(part.path, 'properties'), 'must be an object');
      for (const [key, value] of Object.entries(properties)) {
        const at = member(member(part.path, 'properties'), key);
        const earlier = members.find((m) => m.key === key);
        if (earlier !== undefined) fail(at, `is defined also at ${earlier.path}`);
        members.push({ key, schema: value, path: at });
      }
      required.push(...requiredNames(part.schema, part.path));
    }
    for (const { key, path: at } of required) {
      if (!members.some((m) => m.key === key)) fail(at, `${JSON.stringify(key)} is not among the properties`);
    }
    return this.members(members, new Set(required.map((r) => r.key)), false, path, name);
  }

  // An allOf entry with its $refs followed.
  private resolved(entry: unknown, path: string): { schema: Schema; path: string } {
    const seen = new Set<string>();
    while (isJsonObject(entry) && '$ref' in entry) {
      this.only(entry, path, ['$ref'], '$ref');
      const pointer = entry.$ref;
      if (typeof pointer !== 'string' || seen.has(pointer)) fail(`${path}.$ref`, 'refers back to itself');
      seen.add(pointer);
      ({ schema: entry, path } = this.lookUp(pointer, `${path}.$ref`));
    }
    if (!isJsonObject(entry)) fail(path, 'allOf is supported for object schemas only');
    return { schema: entry, path };
  }

  private literals(schema: Schema, path: string): string {
    if ('enum' in schema && 'const' in schema) fail(member(path, 'const'), 'cannot be combined with enum');
    const keyword = 'enum' in schema ? 'enum' : 'const';
    this.only(schema, path, [keyword, 'type'], keyword);
    const values = keyword === 'enum' ? schema.enum : [schema.const];
    if (!Array.isArray(values) || values.length === 0) fail(member(path, 'enum'), 'must be a non-empty array');
    const types = this.types({ type: schema.type ?? TYPES }, path) as TypeName[];
    values.forEach((value, i) => {
      const at = keyword === 'enum' ? `${member(path, 'enum')}[${i}]` : member(path, 'const');
      if (!types.some((type) => isOfType(value, type))) fail(at, `is not of type ${types.join(' or ')}`);
      // 1e400 reads as Infinity, which JSON writes as null: the text would not be the value.
      if (!finiteThroughout(value)) fail(at, 'holds a number too large for a double (JSON has no infinity)');
    });
    return `(${values.map((value) => gbnfLiteral(JSON.stringify(value))).join(' | ')})`;
  }

  private ref(pointer: unknown, path: string): string {
    if (typeof pointer !== 'string') fail(path, 'must be a string');
    if (this.leftOwner !== null) {
      const targets = this.leftRefs.get(this.leftOwner) ?? new Set();
      targets.add(pointer);
      this.leftRefs.set(this.leftOwner, targets);
    }
    let rule = this.refRules.get(pointer);
    if (rule === undefined) {
      const target = this.lookUp(pointer, path);
      const segments = pointer.split('/');
      rule = this.addRule(segments[segments.length - 1], '');
      this.refRules.set(pointer, rule);
      this.refPaths.set(pointer, target.path);
      const owner = this.leftOwner;
      this.leftOwner = pointer;
      this.rules.set(rule, this.visit(target.schema, target.path, rule));
      this.leftOwner = owner;
    }
    return rule;
  }

  // What a local JSON pointer (`#/$defs/item`) points at in the root schema, and its path.
  private lookUp(pointer: string, path: string): { schema: unknown; path: string } {
    if (pointer !== '#' && !pointer.startsWith('#/')) fail(path, `only references within the schema ("#/...") are supported, not ${JSON.stringify(pointer)}`);
    let schema = this.root;
    let at = this.where;
    for (const raw of pointer === '#' ? [] : pointer.slice(2).split('/')) {
      let key: string;
      try {
        key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
      } catch {
        fail(path, `${JSON.stringify(pointer)} is not a valid JSON pointer`);
      }
      const next: unknown = isJsonObject(schema) || Array.isArray(schema) ? (schema as Record<string, unknown>)[key] : undefined;
      if (next === undefined || !Object.prototype.hasOwnProperty.call(schema, key)) fail(path, `${JSON.stringify(pointer)} points at nothing`);
      schema = next;
      at = Array.isArray(schema) ? `${at}[${key}]` : member(at, key);
    }
    return { schema, path: at };
  }

  // A $ref cycle that reads no text in between would have the recognizer expand it forever.
  private checkRefCycles(): void {
    const state = new Map<string, 'open' | 'done'>();
    const trail: string[] = [];
    const visit = (pointer: string): void => {
      state.set(pointer, 'open');
      trail.push(pointer);
      for (const next of this.leftRefs.get(pointer) ?? []) {
        if (state.get(next) === 'open') {
          const cycle = [...trail.slice(trail.indexOf(next)), next].join(' -> ');
          fail(this.refPaths.get(next) as string, `refers to itself before any JSON text is read (${cycle})`);
        }
        if (!state.has(next)) visit(next);
      }
      trail.pop();
      state.set(pointer, 'done');
    };
    for (const pointer of this.refRules.keys()) if (!state.has(pointer)) visit(pointer);
  }

  private bounds(schema: Schema, path: string, minKeyword: string, maxKeyword: string): [number, number] {
    const count = (keyword: string, otherwise: number): number => {
      if (!(keyword in schema)) return otherwise;
      const value = schema[keyword];
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) fail(member(path, keyword), 'must be a non-negative integer');
      if (value > MAX_REPETITION) fail(member(path, keyword), `is more than ${MAX_REPETITION}, the most supported`);
      return value;
    };
    const min = count(minKeyword, 0);
    const max = count(maxKeyword, Infinity);
    if (max < min) fail(member(path, maxKeyword), `is less than ${minKeyword}`);
    return [min, max];
  }

  // Refuses, naming it, any keyword but `allowed` and annotations beside `keyword`.
  private only(schema: Schema, path: string, allowed: readonly string[], keyword: string): void {
    for (const other of Object.keys(schema)) {
      if (!allowed.includes(other) && !ANNOTATIONS.has(other) && !DEFINITIONS.has(other)) fail(member(path, other), `cannot be combined with ${keyword}`);
    }
  }

  private without(schema: Schema, path: string, keyword: string, excluded: readonly string[]): void {
    for (const other of excluded) if (other in schema) fail(member(path, other), `cannot be combined with ${keyword}`);
  }

  private primitive(name: string): string {
    if (!this.rules.has(name)) {
      const { body, uses } = PRIMITIVES[name];
      this.rules.set(name, body);
      for (const used of uses) this.primitive(used);
    }
    return name;
  }

  private addRule(stem: string, body: string): string {
    const base = stem.replace(/[^a-zA-Z0-9-]+/g, '-').replace(/^-+|-+$/g, '') || 'rule';
    let name = base;
    for (let n = 2; this.rules.has(name) || name in PRIMITIVES || this.reserved.has(name); n++) name = `${base}-${n}`;
    this.rules.set(name, body);
    return name;
  }
}

// Turns a JSON Schema `pattern` (a practical subset of ECMAScript regexes: literals, classes, `.`, groups,
// alternation, quantifiers; `^` and `$` only at the ends) into a GBNF expression for the JSON string's contents.
// The pattern matches the decoded string, so each character it names is written as JSON writes it: `"`, `\` and
// control characters as escapes. An end without its anchor may hold any characters, as a regex search allows.
class PatternConverter {
  private at = 0;

  constructor(
    private readonly text: string,
    private readonly path: string,
    private readonly anyChar: () => string,
  ) {}

  convert(): string {
    const alternatives: string[] = [];
    for (let first = true; first || this.text[this.at] === '|'; first = false) {
      if (!first) this.at++;
      const anchoredStart = this.text[this.at] === '^';
      if (anchoredStart) this.at++;
      let body = this.sequence();
      const anchoredEnd = this.text[this.at] === '$';
      if (anchoredEnd) {
        this.at++;
        if (this.at < this.text.length && this.text[this.at] !== '|') this.fail('"$" is supported only at the end');
      }
      if (body === '' && !(anchoredStart && anchoredEnd)) {
        body = `${this.anyChar()}*`;
      } else {
        if (!anchoredStart) body = `${this.anyChar()}* ${body}`;
        if (!anchoredEnd) body = `${body} ${this.anyChar()}*`;
      }
      alternatives.push(body || '""');
    }
    if (this.at < this.text.length) this.fail(`unexpected ${JSON.stringify(this.text[this.at])}`);
    return `(${alternatives.join(' | ')})`;
  }

  private alternation(): string {
    const alternatives = [this.sequence()];
    while (this.text[this.at] === '|') {
      this.at++;
      alternatives.push(this.sequence());
    }
    if (this.text[this.at] === '$') this.fail('"$" is supported only at the end');
    return `(${alternatives.map((a) => a || '""').join(' | ')})`;
  }

  private sequence(): string {
    const items: string[] = [];
    while (this.at < this.text.length) {
      const c = this.text[this.at];
      if (c === '|' || c === ')' || c === '$') break;
      if (c === '^') this.fail('"^" is supported only at the start');
      items.push(this.quantified(this.atom()));
    }
    return items.join(' ');
  }

  private atom(): string {
    const c = this.text[this.at];
    if (c === '(') {
      this.at++;
      if (this.text[this.at] === '?') {
        const named = /^\?<[A-Za-z_$][A-Za-z0-9_$]*>/.exec(this.text.slice(this.at));
        if (this.text.startsWith('?:', this.at)) this.at += 2;
        else if (named !== null) this.at += named[0].length;
        else this.fail('lookarounds and group flags are not supported');
      }
      const inner = this.alternation();
      if (this.text[this.at] !== ')') this.fail('a group is not closed');
      this.at++;
      return inner;
    }
    if (c === '[') return jsonChars(this.charClass(), this.anyChar);
    if (c === '.') {
      this.at++;
      return jsonChars(complementRanges(normalizeRanges([0x0a, 0x0a, 0x0d, 0x0d, 0x2028, 0x2029])), this.anyChar);
    }
    if (c === '*' || c === '+' || c === '?' || c === '{') this.fail(`"${c}" follows nothing it could repeat`);
    if (c === ']' || c === '}') this.fail(`unexpected "${c}"`);
    return jsonChars(c === '\\' ? this.escape(false) : this.literal(), this.anyChar);
  }

  private quantified(atom: string): string {
    const c = this.text[this.at];
    let suffix: string;
    if (c === '*' || c === '+' || c === '?') {
      this.at++;
      suffix = c;
    } else if (c === '{') {
      const bounds = /^\{(\d+)(,(\d*))?\}/.exec(this.text.slice(this.at));
      if (bounds === null) this.fail('"{" must start a quantifier {m}, {m,} or {m,n}');
      this.at += bounds[0].length;
      const min = Number(bounds[1]);
      const max = bounds[2] === undefined ? min : bounds[3] === '' ? Infinity : Number(bounds[3]);
      if (max < min) this.fail(`the quantifier's maximum ${max} is less than its minimum ${min}`);
      if (Math.max(min, max === Infinity ? 0 : max) > MAX_REPETITION) this.fail(`a quantifier may count up to ${MAX_REPETITION}`);
      suffix = max === Infinity ? `{${min},}` : `{${min},${max}}`;
    } else {
      return atom;
    }
    // A lazy quantifier matches the same strings.
    if (this.text[this.at] === '?') this.at++;
    if (this.at < this.text.length && '*+?{'.includes(this.text[this.at])) this.fail('a quantifier follows a quantifier');
    return `(${atom})${suffix}`;
  }

  private literal(): CodepointRanges {
    const cp = this.text.codePointAt(this.at) as number;
    this.at += cp > 0xffff ? 2 : 1;
    return [cp, cp];
  }

  private charClass(): CodepointRanges {
    this.at++;
    const negated = this.text[this.at] === '^';
    if (negated) this.at++;
    const pairs: number[] = [];
    while (this.text[this.at] !== ']') {
      if (this.at >= this.text.length) this.fail('a character class is not closed');
      const first = this.text[this.at] === '\\' ? this.escape(true) : this.literal();
      if (this.text[this.at] === '-' && this.text[this.at + 1] !== ']' && this.at + 1 < this.text.length) {
        this.at++;
        const last = this.text[this.at] === '\\' ? this.escape(true) : this.literal();
        if (first.length !== 2 || last.length !== 2 || first[0] !== first[1] || last[0] !== last[1]) this.fail('a range needs a character at each end');
        if (last[0] < first[0]) this.fail('a range ends before it starts');
        pairs.push(first[0], last[0]);
      } else {
        pairs.push(...first);
      }
    }
    this.at++;
    const set = normalizeRanges(pairs);
    const chars = negated ? complementRanges(set) : set;
    if (chars.length === 0) this.fail('the character class matches no character');
    return chars;
  }

  // The characters an escape stands for (`\d`: a set).
  private escape(inClass: boolean): CodepointRanges {
    const e = this.text[this.at + 1];
    this.at += 2;
    const digit: CodepointRanges = [0x30, 0x39];
    const word = normalizeRanges([0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a]);
    const space = normalizeRanges([0x09, 0x0d, 0x20, 0x20, 0xa0, 0xa0, 0x1680, 0x1680, 0x2000, 0x200a, 0x2028, 0x2029, 0x202f, 0x202f, 0x205f, 0x205f, 0x3000, 0x3000, 0xfeff, 0xfeff]);
    const sets: Record<string, CodepointRanges> = { d: digit, D: complementRanges(digit), w: word, W: complementRanges(word), s: space, S: complementRanges(space) };
    if (e in sets) return sets[e];
    const controls: Record<string, number> = { t: 0x09, n: 0x0a, r: 0x0d, f: 0x0c, v: 0x0b };
    if (e in controls) return [controls[e], controls[e]];
    if (e === 'b' && inClass) return [0x08, 0x08];
    if (e === '0' && !/[0-9]/.test(this.text[this.at] ?? '')) return [0, 0];
    const hex = e === 'x' ? /^[0-9a-fA-F]{2}/ : e === 'u' ? /^(\{[0-9a-fA-F]{1,6}\}|[0-9a-fA-F]{4})/ : null;
    if (hex !== null) {
      const digits = hex.exec(this.text.slice(this.at));
      if (digits === null) this.fail(`"\\${e}" needs hex digits`);
      this.at += digits[0].length;
      const cp = parseInt(digits[0].replace(/[{}]/g, ''), 16);
      if (cp > MAX_CODEPOINT) this.fail(`"\\${e}${digits[0]}" is past the last codepoint`);
      return [cp, cp];
    }
    if (e !== undefined && '^$\\.*+?()[]{}|/-'.includes(e)) return [e.charCodeAt(0), e.charCodeAt(0)];
    return this.fail(`"\\${e ?? ''}" is not supported (word boundaries, backreferences, Unicode properties and the like are not)`);
  }

  private fail(message: string): never {
    return fail(this.path, `${message} (at character ${this.at + 1} of the pattern)`);
  }
}

// A GBNF expression for one JSON-string character among `set` (a decoded codepoint), as JSON writes it.
function jsonChars(set: CodepointRanges, anyChar: () => string): string {
  if (set.length === 2 && set[0] === 0 && set[1] === MAX_CODEPOINT) return anyChar();
  const alternatives: string[] = [];
  const plain = intersectRanges(set, UNESCAPED);
  if (plain.length === 2 && plain[0] === plain[1]) alternatives.push(gbnfLiteral(String.fromCodePoint(plain[0])));
  else if (plain.length > 0) alternatives.push(gbnfClass(plain));
  for (let i = 0; i < set.length; i += 2) {
    for (let cp = set[i]; cp <= set[i + 1] && cp <= 0x7f; cp++) {
      if (!isUnescaped(cp)) alternatives.push(gbnfLiteral(cp === 0x7f ? '\\u007f' : JSON.stringify(String.fromCodePoint(cp)).slice(1, -1)));
    }
  }
  return alternatives.length === 1 ? alternatives[0] : `(${alternatives.join(' | ')})`;
}

function isUnescaped(cp: number): boolean {
  return cp > 0x1f && cp !== 0x22 && cp !== 0x5c && cp !== 0x7f;
}

// The integers in [lo, hi] (1 <= lo <= hi) in decimal without leading zeros, as a GBNF expression: whole digit
// lengths as [1-9] [0-9]{..}, the partial ones digit by digit (llama.cpp's approach).
function naturalRange(lo: bigint, hi: bigint): string {
  const alternatives: string[] = [];
  let from = lo;
  while (from <= hi) {
    const length = from.toString().length;
    const lengthStart = 10n ** BigInt(length - 1);
    const lengthEnd = 10n ** BigInt(length) - 1n;
    if (from === lengthStart && hi >= lengthEnd) {
      let longest = length;
      while (10n ** BigInt(longest + 1) - 1n <= hi) longest++;
      alternatives.push(`[1-9]${digits(length - 1, longest - 1)}`);
      from = 10n ** BigInt(longest);
    } else {
      const to = hi < lengthEnd ? hi : lengthEnd;
      alternatives.push(sameLengthRange(from.toString(), to.toString()));
      from = to + 1n;
    }
  }
  return alternatives.length === 1 ? alternatives[0] : `(${alternatives.join(' | ')})`;
}

// ` [0-9]{min,max}`, or nothing for no digits.
function digits(min: number, max: number): string {
  if (max === 0) return '';
  if (min === max) return min === 1 ? ' [0-9]' : ` [0-9]{${min}}`;
  return ` [0-9]{${min},${max}}`;
}

// The digit strings from x to y, both of the same length.
function sameLengthRange(x: string, y: string): string {
  if (x === y) return `"${x}"`;
  let common = 0;
  while (x[common] === y[common]) common++;
  const prefix = common > 0 ? `"${x.slice(0, common)}" ` : '';
  const low = x.slice(common);
  const high = y.slice(common);
  const tail = low.length - 1;
  const alternatives: string[] = [];
  let firstDigit = Number(low[0]);
  let lastDigit = Number(high[0]);
  if (!/^0*$/.test(low.slice(1))) {
    alternatives.push(`"${low[0]}" ${sameLengthRange(low.slice(1), '9'.repeat(tail))}`);
    firstDigit++;
  }
  const highPart = /^9*$/.test(high.slice(1)) ? null : `"${high[0]}" ${sameLengthRange('0'.repeat(tail), high.slice(1))}`;
  if (highPart !== null) lastDigit--;
  if (firstDigit <= lastDigit) alternatives.push(`${firstDigit === lastDigit ? `"${firstDigit}"` : `[${firstDigit}-${lastDigit}]`}${digits(tail, tail)}`);
  if (highPart !== null) alternatives.push(highPart);
  return prefix + (alternatives.length === 1 ? alternatives[0] : `(${alternatives.join(' | ')})`);
}

// `item` repeated min to max times.
function repeat(item: string, min: number, max: number): string {
  if (max === 0) return '';
  if (min === 1 && max === 1) return item;
  const suffix = max === Infinity ? (min === 0 ? '*' : min === 1 ? '+' : `{${min},}`) : min === max ? `{${min}}` : `{${min},${max}}`;
  return /^[a-zA-Z0-9-]+$/.test(item) ? `${item}${suffix}` : `(${item})${suffix}`;
}

function finiteThroughout(value: unknown): boolean {
  if (typeof value === 'number') return Number.isFinite(value);
  return typeof value !== 'object' || value === null || Object.values(value).every(finiteThroughout);
}

function isOfType(value: unknown, type: TypeName): boolean {
  switch (type) {
    case 'null':
      return value === null;
    case 'integer':
      return Number.isInteger(value);
    case 'array':
      return Array.isArray(value);
    case 'object':
      return isJsonObject(value);
    default:
      return typeof value === type;
  }
}

// The names in `required`, each with its path.
function requiredNames(schema: Schema, path: string): { key: string; path: string }[] {
  if (!('required' in schema)) return [];
  const required = schema.required;
  if (!Array.isArray(required)) fail(member(path, 'required'), 'must be an array of property names');
  return required.map((key, i) => {
    if (typeof key !== 'string') fail(`${member(path, 'required')}[${i}]`, 'must be a property name');
    return { key, path: `${member(path, 'required')}[${i}]` };
  });
}

function schemaList(value: unknown, path: string): unknown[] {
  if (!Array.isArray(value) || value.length === 0) fail(path, 'must be a non-empty array of schemas');
  return value;
}

// `path.key`, or `path["key"]` where the key is not a plain name.
function member(path: string, key: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

function fail(path: string, message: string): never {
  throw new GrammarError(`${path}: ${message}`);
}
