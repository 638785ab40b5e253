// Model files made to mislead the readers: GGUF metadata whose alignment is no integer power of two or whose arrays
// claim millions of entries, a vocabulary token named "__proto__", layer numbers spelled two ways, and FIFOs where
// the weights should be. Each is refused with an error naming the file and the key or tensor, or read as it is.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { ggufVocabulary, hfTensorOf, openGguf } from '../../lib/formats/gguf';

const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};
const u64 = (v: number | bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};
const str = (v: string): Buffer => Buffer.concat([u64(Buffer.byteLength(v)), Buffer.from(v)]);
const f32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v);
  return b;
};
const f64 = (v: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(v);
  return b;
};
const stringArray = (values: string[]): Buffer => Buffer.concat([u32(9), u32(8), u64(values.length), ...values.map(str)]);

// A GGUF file of no tensors and these metadata entries (each a key and its type and value bytes), then `tail`.
function gguf(file: string, meta: [string, Buffer][], tail = Buffer.alloc(0)): string {
  const parts = [Buffer.from('GGUF'), u32(3), u64(0), u64(meta.length), ...meta.flatMap(([key, value]) => [str(key), value]), tail];
  fs.writeFileSync(file, Buffer.concat(parts));
  return file;
}

t.test('general.alignment must be an integer power of two a u32 holds', async (t) => {
  const dir = t.testdir();
  const cases: [string, Buffer, string][] = [
    ['fraction', Buffer.concat([u32(6), f32(1.5)]), '1.5'],
    ['2^32', Buffer.concat([u32(12), f64(2 ** 32)]), '4294967296'],
    ['zero', Buffer.concat([u32(4), u32(0)]), '0'],
    ['not a power of two', Buffer.concat([u32(4), u32(48)]), '48'],
  ];
  for (const [name, value, shown] of cases) {
    const file = gguf(path.join(dir, `${name}.gguf`), [['general.alignment', value]]);
    t.throws(() => openGguf(file), { message: `${file}: metadata "general.alignment" must be a power of two from 1 to 2^31, got ${shown}` }, name);
  }
  const file = gguf(path.join(dir, 'f64-64.gguf'), [['general.alignment', Buffer.concat([u32(12), f64(64)])]]);
  const g = openGguf(file);
  t.equal(g.metadata.get('general.alignment'), 64, 'a whole power of two, whatever its number type, reads');
  g.close();
});

t.test('metadata arrays: numbers into typed arrays as compact as the file, a count past the file refused by key', async (t) => {
  const dir = t.testdir();
  const file = gguf(path.join(dir, 'arrays.gguf'), [
    ['x.bytes', Buffer.concat([u32(9), u32(0), u64(5), Buffer.from([1, 2, 3, 4, 250])])],
    ['x.ints', Buffer.concat([u32(9), u32(5), u64(2), u32(7), u32(0xffffffff)])],
    ['x.floats', Buffer.concat([u32(9), u32(12), u64(1), f64(0.25)])],
    ['x.words', stringArray(['a', 'bc'])],
  ]);
  const g = openGguf(file);
  t.same(g.metadata.get('x.bytes'), Uint8Array.of(1, 2, 3, 4, 250));
  t.same(g.metadata.get('x.ints'), Int32Array.of(7, -1));
  t.same(g.metadata.get('x.floats'), Float64Array.of(0.25));
  t.same(g.metadata.get('x.words'), ['a', 'bc']);
  t.throws(() => g.strings('x.bytes'), { message: `${file}: metadata "x.bytes" must be an array of strings, got an array of 5` });
  g.close();

  // 4 MB of bytes behind an array of u32 that claims 2 million: the count is checked against the bytes left at 4 apiece.
  const big = gguf(path.join(dir, 'big.gguf'), [['x.big', Buffer.concat([u32(9), u32(4), u64(2_000_000)])]], Buffer.alloc(4_000_000));
  t.throws(() => openGguf(big), { message: `${big}: metadata "x.big": a count of 2000000 at byte 45 reaches past the end of the file (4000053 bytes): truncated or corrupt` });
  const fits = gguf(path.join(dir, 'fits.gguf'), [['x.big', Buffer.concat([u32(9), u32(0), u64(3_000_000)])]], Buffer.alloc(3_000_000, 7));
  const h = openGguf(fits);
  const bytes = h.metadata.get('x.big') as Uint8Array;
  t.ok(bytes instanceof Uint8Array && bytes.length === 3_000_000 && bytes[2_999_999] === 7, 'millions of u8 as one Uint8Array');
  h.close();
});

t.test('a vocabulary token named "__proto__" is a token like any other', async (t) => {
  const file = gguf(path.join(t.testdir(), 'proto.gguf'), [
    ['tokenizer.ggml.model', Buffer.concat([u32(8), str('gpt2')])],
    ['tokenizer.ggml.tokens', stringArray(['__proto__', 'a', 'constructor', 'toString'])],
  ]);
  const g = openGguf(file);
  const vocabulary = ggufVocabulary(g);
  g.close();
  const encoder = JSON.parse(String(vocabulary?.encoder)) as Record<string, number>;
  t.same(Object.entries(encoder), [['__proto__', 0], ['a', 1], ['constructor', 2], ['toString', 3]]);

  const twice = gguf(path.join(t.testdir(), 'twice.gguf'), [
    ['tokenizer.ggml.model', Buffer.concat([u32(8), str('gpt2')])],
    ['tokenizer.ggml.tokens', stringArray(['__proto__', 'a', '__proto__'])],
  ]);
  const h = openGguf(twice);
  t.throws(() => ggufVocabulary(h), { message: `${twice}: metadata "tokenizer.ggml.tokens": tokens 0 and 2 are both "__proto__"` });
  h.close();
});

t.test('a GGUF layer number is llama.cpp\'s "blk.%d": "blk.00" is no parameter, so it cannot stand in for blk.0', async (t) => {
  t.same(hfTensorOf('blk.0.attn_norm.weight'), { name: 'h.0.ln_1.weight', transposed: false });
  t.same(hfTensorOf('blk.10.attn_qkv.weight'), { name: 'h.10.attn.c_attn.weight', transposed: true });
  t.equal(hfTensorOf('blk.00.attn_norm.weight'), null);
  t.equal(hfTensorOf('blk.01.attn_norm.weight'), null);
});

t.test('a FIFO where the weights should be is refused, not waited on for ever', async (t) => {
  const dir = t.testdir();
  const fifo = (file: string): string => {
    execFileSync('mkfifo', [file]);
    return file;
  };
  const hf = path.join(dir, 'hf');
  fs.mkdirSync(hf);
  fs.copyFileSync(path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'gpt2-tiny', 'config.json'), path.join(hf, 'config.json'));
  const weights = fifo(path.join(hf, 'model.safetensors'));
  await t.rejects(Model.load(hf, { device: 'cpu', trainable: false }), { message: `${weights}: not a regular file, where the weights should be one safetensors file` });
  const file = fifo(path.join(dir, 'model.gguf'));
  t.throws(() => openGguf(file), { message: `${file}: not a regular file, where a GGUF file should be` });
});
