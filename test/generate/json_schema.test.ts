// JSON Schema -> grammar: seeded random walks through each schema's grammar over GPT-2's tokens end in JSON that ajv
// finds valid against the schema; texts that break a schema are refused where they break it; keywords that are not
// supported are refused by their path, annotations ignored.
import t, { type Test } from 'tap';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { Grammar, GrammarError, GrammarMatcher } from '../../lib/generate/grammar';
import { Rng } from '../../lib/util/rng';
import { accepts, encode, expectAccepts, expectRejects, feed, randomWalk, tokenizer, vocab } from './grammar_helpers';

const WALKS = 24;
const MAX_STEPS = 300;

// A schema may leave "type": "object" to an allOf entry, and a tuple open-ended, as JSON Schema allows.
const ajv = new Ajv2020({ allErrors: true, strictTypes: false, strictTuples: false });
addFormats(ajv);

// Walks the schema's grammar at random; every walk that ends must be valid JSON that the schema accepts.
function walksAreValid(t: Test, schema: object | boolean, seed: number, check: (value: unknown) => boolean = () => true): void {
  const grammar = Grammar.fromJsonSchema(schema);
  const validate = ajv.compile(schema);
  const rng = new Rng(seed);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let ended = 0;
  const failures: string[] = [];
  for (let i = 0; i < WALKS; i++) {
    const walk = randomWalk(grammar, rng, MAX_STEPS);
    if (!walk.ended) continue;
    ended++;
    let text = '';
    try {
      text = utf8.decode(walk.bytes);
      const value: unknown = JSON.parse(text);
      if (!validate(value)) failures.push(`${text}: ${ajv.errorsText(validate.errors)}`);
      else if (!check(value)) failures.push(`${text}: not what the test expects`);
    } catch (err) {
      failures.push(`${JSON.stringify(text)}: ${(err as Error).message}`);
    }
  }
  t.same(failures, [], 'every walk that ended is valid');
  t.ok(ended >= WALKS * 0.75, `most walks end (${ended} of ${WALKS})`);
}

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 12 },
    age: { type: 'integer', minimum: 0, maximum: 150 },
    email: { type: 'string' },
    active: { type: 'boolean' },
    score: { type: 'number' },
  },
  required: ['name', 'active'],
  additionalProperties: false,
};

const SCHEMAS: Record<string, object | boolean> = {
  'required and optional properties': PERSON,
  'all properties optional': { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'null' }, c: { type: 'string', maxLength: 3 } } },
  'enum and const': {
    type: 'object',
    properties: {
      color: { enum: ['red', 'green', 'blue'] },
      kind: { const: 'fixed "quoted" \\ value' },
      mixed: { enum: [1, 2.5, null, true, 'a"b', { x: [1, 'y'] }, ['é']] },
    },
    required: ['color', 'kind', 'mixed'],
  },
  'nested arrays with minItems and maxItems': {
    type: 'array',
    items: { type: 'array', items: { type: 'integer', minimum: -9, maximum: 9 }, minItems: 2, maxItems: 3 },
    minItems: 1,
    maxItems: 4,
  },
  'anyOf and type lists': {
    type: 'object',
    properties: {
      value: { anyOf: [{ type: 'string', maxLength: 3 }, { type: 'integer' }, { type: 'array', items: { type: 'boolean' }, maxItems: 2 }] },
      maybe: { type: ['number', 'null'] },
      choice: { oneOf: [{ type: 'object', properties: { a: { type: 'string' } }, required: ['a'] }, { type: 'null' }] },
    },
    required: ['value', 'maybe', 'choice'],
  },
  'a recursive tree through $defs': {
    $defs: {
      node: {
        type: 'object',
        properties: { value: { type: 'integer' }, children: { type: 'array', items: { $ref: '#/$defs/node' }, maxItems: 2 } },
        required: ['value', 'children'],
      },
    },
    $ref: '#/$defs/node',
  },
  'recursion through definitions and the root': {
    definitions: { list: { type: ['array', 'null'], items: { $ref: '#' }, maxItems: 2 } },
    type: 'object',
    properties: { next: { $ref: '#/definitions/list' }, n: { type: 'integer' } },
    required: ['next'],
  },
  'integer ranges': {
    type: 'object',
    properties: {
      small: { type: 'integer', minimum: -50, maximum: 50 },
      open: { type: 'integer', exclusiveMinimum: 7, exclusiveMaximum: 1000 },
      low: { type: 'integer', minimum: -1234 },
      high: { type: 'integer', maximum: -20 },
      one: { type: 'integer', minimum: 100, maximum: 100 },
      fractional: { type: 'integer', minimum: 2.5, maximum: 19.5 },
      odd: { type: 'integer', minimum: 987, maximum: 12345 },
    },
    required: ['small', 'open', 'low', 'high', 'one', 'fractional', 'odd'],
  },
  formats: {
    type: 'object',
    properties: {
      date: { type: 'string', format: 'date' },
      time: { type: 'string', format: 'time' },
      when: { type: 'string', format: 'date-time' },
      id: { type: 'string', format: 'uuid' },
    },
    required: ['date', 'time', 'when', 'id'],
  },
  patterns: {
    type: 'object',
    properties: {
      code: { type: 'string', pattern: '^[A-Z]{2}-\\d{3,5}$' },
      words: { type: 'string', pattern: '^(foo|ba[rz])+$' },
      open: { type: 'string', pattern: '^x\\d+' },
      escaped: { type: 'string', pattern: '^["\\\\\\n\\t]{1,3}x?$' },
      alternatives: { type: 'string', pattern: '^a.c$|^[^a-z]{2}$' },
    },
    required: ['code', 'words', 'open', 'escaped', 'alternatives'],
  },
  'additionalProperties as a schema, and true': {
    type: 'object',
    properties: {
      fixed: { type: 'string', maxLength: 2 },
      counts: { type: 'object', additionalProperties: { type: 'integer' } },
      open: { type: 'object', properties: { a: { type: 'null' } }, additionalProperties: true },
    },
    additionalProperties: { type: 'boolean' },
  },
  'allOf merged': {
    $defs: { base: { type: 'object', properties: { id: { type: 'integer' } }, required: ['id'] } },
    allOf: [{ $ref: '#/$defs/base' }, { properties: { label: { type: 'string', maxLength: 4 } } }],
    required: ['label'],
  },
  'prefixItems tuples': {
    type: 'object',
    properties: {
      pair: { type: 'array', prefixItems: [{ type: 'string', maxLength: 2 }, { type: 'integer' }] },
      more: { type: 'array', prefixItems: [{ type: 'boolean' }], items: { type: 'null' }, minItems: 2, maxItems: 3 },
    },
    required: ['pair', 'more'],
  },
  'strings by length, in any script': { type: 'array', items: { type: 'string', minLength: 2, maxLength: 5 }, maxItems: 3 },
  'any value': {},
  'any value (true)': true,
};

t.test('random walks give JSON that the schema accepts', async (t) => {
  let seed = 1;
  for (const [name, schema] of Object.entries(SCHEMAS)) t.test(name, async (t) => walksAreValid(t, schema, seed++));
});

t.test("OpenAI's json_object: any JSON object, one grammar shared", async (t) => {
  t.equal(Grammar.anyJsonObject(), Grammar.anyJsonObject());
  walksAreValid(t, { type: 'object' }, 99, (value) => typeof value === 'object' && value !== null && !Array.isArray(value));
  expectAccepts(t, Grammar.anyJsonObject(), ['{}', '{"a": [1, {"b": null}], "c": "d"}', '{\n  "x": true\n}']);
  expectRejects(t, Grammar.anyJsonObject(), ['[]', '"a"', '1', '{"a": 1', '{a: 1}', '{"a": 1} ', ' {}', '{"a": NaN}', '{"a": 1e999}']);
});

t.test('texts that break the schema are refused where they break it', async (t) => {
  const person = Grammar.fromJsonSchema(PERSON);
  expectAccepts(t, person, ['{"name": "Al", "active": true}', '{"name": "Al", "age": 42, "email": "a@b.c", "active": false, "score": -1.5e3}']);
  // The text of the first token of `bad` refused after `ok`.
  const refused = (grammar: Grammar, ok: string, bad: string): string => {
    const matcher = new GrammarMatcher(grammar, vocab);
    t.equal(feed(matcher, encode(ok)), -1, `${JSON.stringify(ok)} is accepted`);
    const tokens = encode(bad);
    const at = feed(matcher, tokens);
    return at < 0 ? '(none)' : tokenizer.decode([tokens[at]]);
  };
  t.equal(refused(person, '{"name": "Al"', '}'), '}', 'no "}" before the required "active"');
  t.equal(refused(person, '{', '"active": true}'), 'active', 'required "name" comes first: properties keep their order');
  t.equal(refused(person, '{"name": "', '"'), '"', 'minLength 1');
  t.equal(refused(person, '{"name": "Al", "age": 15', '1'), '1', 'maximum 150');
  t.equal(refused(person, '{"name": "Al", "active": true', ', "extra"'), 'extra', 'no extra property with additionalProperties false');
  t.equal(refused(person, '{"name": "Al", "age": ', '-'), '-', 'minimum 0');
  t.equal(refused(person, '{"name": "Al", "active": true}', ' '), ' ', 'nothing after the root value');
  t.equal(refused(person, '{"name": "Al", "active": ', 'yes'), 'yes', 'a boolean');
  expectRejects(t, person, [
    '{"name": "Al", "active": true, "age": 3}',
    '{"name": "Al", "name": "Bo", "active": true}',
    '{"name": "Thirteen char", "active": true}',
    '{"name": "A\u0001", "active": true}',
    '{"name": "A\\ud800", "active": true}',
    '{"name": "A\\q", "active": true}',
    '{"name": "Al", "active": true, }',
  ]);
  expectAccepts(t, person, ['{"name": "\\u00e9\\n\\"", "active": true}', '{\n  "name": "Al",\n\t"active": true\n}']);
  expectAccepts(t, person, [`{"name": "Al",\n${' '.repeat(20)}"active": true}`]);
  expectRejects(t, person, [`{"name": "Al",\n${' '.repeat(21)}"active": true}`, '{"name": "Al",  "active": true}', '{"name": "Al",\n\n"active": true}']);

  const arrays = Grammar.fromJsonSchema(SCHEMAS['nested arrays with minItems and maxItems']);
  expectAccepts(t, arrays, ['[[1, 2]]', '[[1,2,3],[-9,9],[0,0],[5,5,5]]']);
  expectRejects(t, arrays, ['[]', '[[1]]', '[[1, 2, 3, 4]]', '[[1,2],[1,2],[1,2],[1,2],[1,2]]', '[[10, 1]]', '[[01, 1]]']);

  const enums = Grammar.fromJsonSchema({ enum: ['red', 'green', { a: 1 }] });
  expectAccepts(t, enums, ['"red"', '"green"', '{"a":1}']);
  expectRejects(t, enums, ['"purple"', '"re"', '{"a": 1}', '"red" ']);

  const ranges = Grammar.fromJsonSchema({ type: 'integer', minimum: -15, exclusiveMaximum: 120 });
  const inRange = Array.from({ length: 400 }, (_, i) => i - 200).filter((n) => accepts(ranges, String(n)));
  t.same(inRange, Array.from({ length: 135 }, (_, i) => i - 15), 'exactly -15 .. 119');
  expectRejects(t, ranges, ['-0', '007', '+5', '1.0', '']);

  const dates = Grammar.fromJsonSchema({ type: 'string', format: 'date' });
  expectAccepts(t, dates, ['"2024-02-29"', '"2000-02-29"', '"2023-12-31"', '"1999-04-30"']);
  expectRejects(t, dates, ['"2023-02-29"', '"1900-02-29"', '"2023-04-31"', '"2023-13-01"', '"2023-00-10"', '"2023-01-00"', '"23-01-01"']);

  const code = Grammar.fromJsonSchema({ type: 'string', pattern: '^[A-Z]{2}-\\d{3}$' });
  expectAccepts(t, code, ['"AB-123"']);
  expectRejects(t, code, ['"AB-12"', '"ab-123"', '"AB-1234"', '"xAB-123"']);
  const search = Grammar.fromJsonSchema({ type: 'string', pattern: 'a"b' });
  expectAccepts(t, search, ['"a\\"b"', '"xx a\\"b yy"']);
  expectRejects(t, search, ['"ab"', '"a\\u0022b"']);
});

t.test('extra members never repeat a listed property', async (t) => {
  const g = Grammar.fromJsonSchema({ type: 'object', properties: { a: { type: 'integer' }, ab: { type: 'integer' } }, additionalProperties: { type: 'string' } });
  expectAccepts(t, g, ['{"a": 1, "x": "y"}', '{"abc": "1", "b": ""}', '{"": "empty key", "A": "B"}', '{"ab": 2, "a ": "s"}']);
  expectRejects(t, g, ['{"a": 1, "a": "y"}', '{"ab": 1, "ab": "y"}', '{"x": "y", "a": 1}', '{"\\u0061": "escaped a"}']);
});

function refuses(t: Test, schema: unknown, expected: RegExp | string, where?: string): void {
  let message = '(nothing thrown)';
  try {
    Grammar.fromJsonSchema(schema, where);
  } catch (err) {
    t.type(err, GrammarError);
    message = (err as Error).message;
  }
  if (typeof expected === 'string') t.equal(message, expected);
  else t.match(message, expected);
}

t.test('unsupported keywords and bad values are refused by their path', async (t) => {
  refuses(t, { type: 'array', uniqueItems: true }, 'json_schema.uniqueItems: is not supported');
  refuses(t, { type: 'object', properties: { tags: { type: 'array', uniqueItems: true } } }, 'json_schema.properties.tags.uniqueItems: is not supported');
  refuses(t, { properties: { 'a.b': { type: 'array', items: { multipleOf: 2 } } } }, 'json_schema.properties["a.b"].items.multipleOf: is not supported');
  refuses(t, { type: 'object', properties: { age: { type: 'number', minimum: 0 } } }, 'json_schema.properties.age.minimum: is supported for integers only');
  refuses(t, { type: ['integer', 'number'], maximum: 3 }, 'json_schema.maximum: is supported for integers only');
  refuses(t, { type: 'integer', minimum: '3' }, 'json_schema.minimum: must be a number, not "3"');
  refuses(t, { type: 'integer', exclusiveMinimum: true }, 'json_schema.exclusiveMinimum: must be a number, not true');
  refuses(t, { type: 'integer', minimum: 5, maximum: 4 }, /^json_schema: no integer .* lies within its bounds$/);
  refuses(t, { type: 'string', minLength: -1 }, 'json_schema.minLength: must be a non-negative integer');
  refuses(t, { type: 'string', minLength: 5, maxLength: 4 }, 'json_schema.maxLength: is less than minLength');
  refuses(t, { type: 'array', maxItems: 100000 }, 'json_schema.maxItems: is more than 10000, the most supported');
  refuses(t, { type: 'string', format: 'email' }, 'json_schema.format: "email" is not supported (supported: date, time, date-time, uuid)');
  refuses(t, { type: 'string', format: 'date', maxLength: 3 }, 'json_schema.maxLength: cannot be combined with format');
  refuses(t, { type: 'string', pattern: '(?=a)b' }, /^json_schema\.pattern: lookarounds and group flags are not supported/);
  refuses(t, { type: 'string', pattern: '(a)\\1' }, /^json_schema\.pattern: "\\1" is not supported/);
  refuses(t, { type: 'string', pattern: '\\bword' }, /^json_schema\.pattern: "\\b" is not supported/);
  refuses(t, { type: 'string', pattern: 'a^b' }, /^json_schema\.pattern: "\^" is supported only at the start/);
  refuses(t, { type: 'string', pattern: '(a$)' }, /^json_schema\.pattern: "\$" is supported only at the end/);
  refuses(t, { type: 'string', pattern: 'a{2' }, /^json_schema\.pattern: "{" must start a quantifier/);
  refuses(t, { type: 'string', pattern: '[]' }, /^json_schema\.pattern: the character class matches no character/);
  refuses(t, { type: 'strin' }, 'json_schema.type: must be one of string, integer, number, boolean, null, object, array, not "strin"');
  refuses(t, { type: 'string', minimum: 1 }, 'json_schema.minimum: does not apply to type string');
  refuses(t, { minLength: 1, minItems: 1 }, 'json_schema: needs a "type": its keywords belong to string and array');
  refuses(t, { type: 'object', properties: { a: {} }, required: ['b'] }, 'json_schema.required[0]: "b" is not among the properties');
  refuses(t, { anyOf: [{ type: 'string' }], type: 'string' }, 'json_schema.type: cannot be combined with anyOf');
  refuses(t, { anyOf: [] }, 'json_schema.anyOf: must be a non-empty array of schemas');
  refuses(t, { enum: [] }, 'json_schema.enum: must be a non-empty array');
  refuses(t, { type: 'string', enum: ['a', 1] }, 'json_schema.enum[1]: is not of type string');
  refuses(t, { type: 'number', enum: [1, Infinity] }, 'json_schema.enum[1]: holds a number too large for a double (JSON has no infinity)');
  refuses(t, { const: { a: [-Infinity] } }, 'json_schema.const: holds a number too large for a double (JSON has no infinity)');
  refuses(t, { enum: ['a'], maxLength: 1 }, 'json_schema.maxLength: cannot be combined with enum');
  refuses(t, false, 'json_schema: false accepts no value');
  refuses(t, { properties: { a: false } }, 'json_schema.properties.a: false accepts no value');
  refuses(t, { properties: { a: 3 } }, 'json_schema.properties.a: must be a schema (an object or a boolean)');
  refuses(t, { $ref: 'https://example.com/schema' }, 'json_schema.$ref: only references within the schema ("#/...") are supported, not "https://example.com/schema"');
  refuses(t, { $ref: '#/$defs/missing' }, 'json_schema.$ref: "#/$defs/missing" points at nothing');
  refuses(t, { $ref: '#/$defs/a', $defs: { a: { type: 'string' } }, type: 'string' }, 'json_schema.type: cannot be combined with $ref');
  refuses(
    t,
    { $defs: { a: { $ref: '#/$defs/b' }, b: { anyOf: [{ $ref: '#/$defs/a' }, { type: 'null' }] } }, $ref: '#/$defs/a' },
    'json_schema.$defs.a: refers to itself before any JSON text is read (#/$defs/a -> #/$defs/b -> #/$defs/a)',
  );
  refuses(t, { anyOf: [{ type: 'null' }, { $ref: '#' }] }, 'json_schema: refers to itself before any JSON text is read (# -> #)');
  refuses(t, { allOf: [{ type: 'string' }] }, 'json_schema.allOf[0].type: allOf is supported for objects only');
  refuses(t, { allOf: [{ properties: { a: {} }, additionalProperties: false }] }, 'json_schema.allOf[0].additionalProperties: cannot be combined with allOf (only properties and required can)');
  refuses(t, { allOf: [{ properties: { a: {} } }, { properties: { a: {} } }] }, 'json_schema.allOf[1].properties.a: is defined also at json_schema.allOf[0].properties.a');
  refuses(t, { type: 'array', prefixItems: [{}, {}], maxItems: 1 }, 'json_schema.maxItems: is less than the 2 prefixItems, which are all written');
  refuses(t, { type: 'array', prefixItems: [{}], minItems: 2 }, 'json_schema.minItems: is more than the 1 items the array may hold');
  refuses(t, { type: 'object', nullable: true }, 'response_format.json_schema.schema.nullable: is not supported', 'response_format.json_schema.schema');
});

t.test('annotations are ignored', async (t) => {
  const annotations = {
    title: 'T',
    description: 'D',
    default: 1,
    examples: [1],
    $comment: 'c',
    deprecated: false,
    readOnly: true,
    writeOnly: false,
  };
  const plain = { type: 'object', properties: { a: { type: 'integer' }, b: { enum: ['x'] } }, required: ['a'] };
  const annotated = {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'https://example.com/s',
    strict: true,
    ...annotations,
    type: 'object',
    properties: { a: { ...annotations, type: 'integer' }, b: { ...annotations, enum: ['x'] } },
    required: ['a'],
  };
  t.equal(Grammar.fromJsonSchema(annotated).key, Grammar.fromJsonSchema(plain).key);
});

t.test('a schema as a part of a grammar: its rule named as asked, its own rules clear of the grammar\'s', async (t) => {
  // Definitions named as the grammar's own rules and as the schema's root rule would be.
  const schema = { type: 'object', properties: { a: { $ref: '#/$defs/text' }, b: { $ref: '#/$defs/root' } }, required: ['a'], additionalProperties: false, $defs: { text: { type: 'string', maxLength: 3 }, root: { type: 'integer' } } };
  const grammar = Grammar.withJsonSchema('root ::= call (" " call)* | text\ntext ::= [^{] .*', 'call', schema, 'tools');
  expectAccepts(t, grammar, ['{"a":"abc"}', '{"a":"x","b":7} {"a":"y"}', 'hello {"a": 1}', 'x']);
  expectRejects(t, grammar, ['{"a":"abcd"}', '{"a":"x","b":"7"}', '{"b":7}', '{}', '', '{"a":"x"}{"a":"y"}']);
  t.throws(() => Grammar.withJsonSchema('root ::= call', 'call', { type: 'object', uniqueItems: true }, 'tools'), { message: /^tools\.uniqueItems: / }, 'a schema\'s mistake is named under `where`');
});
