// safetensors: the reader against a file written by Hugging Face's tools, the writer byte for byte against
// Hugging Face's own serialization examples, round trips of every dtype, and every kind of bad file.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import {
  bf16ToF32, DTYPE_BYTES, f16ToF32, f32ToBf16, f32ToF16, openSafetensors, writeSafetensors, type Dtype, type TensorToWrite,
} from '../../lib/formats/safetensors';

const FIXTURES = path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures');

function f32Bytes(values: number[]): Float32Array {
  return Float32Array.from(values);
}

// A safetensors file from a raw header string and data bytes.
function rawFile(dir: string, name: string, header: string | Buffer, data: Uint8Array = new Uint8Array(0), lengthOverride?: bigint): string {
  const json = typeof header === 'string' ? Buffer.from(header, 'utf8') : header;
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.concat([length, json, data]));
  return file;
}

t.test('reads a file written by Hugging Face tools (the gpt2-tiny test vectors)', async (t) => {
  const st = openSafetensors(path.join(FIXTURES, 'gpt2-tiny', 'model.safetensors'));
  t.teardown(() => st.close());
  t.same(st.metadata, { format: 'pt' });
  t.equal(st.tensors.length, 2 + 2 + 2 * 12, 'wte, wpe, ln_f x2, 12 tensors per layer');
  const wte = st.tensor('wte.weight');
  t.same([wte.dtype, wte.shape, wte.numel, wte.begin, wte.end], ['F32', [256, 64], 16384, 8 + 2296, 8 + 2296 + 65536]);
  t.same(st.tensor('h.1.attn.c_attn.weight').shape, [64, 192]);
  t.same(st.tensor('h.1.mlp.c_proj.weight').shape, [256, 64]);
  // Reference values read by Python's struct/array from the same file.
  const w = st.readF32('wte.weight');
  t.same(Array.from(w.subarray(0, 4)), Array.from(f32Bytes([2.4603066776762716e-05, 0.0059749106876552105, -0.005482756998389959, -0.017811836674809456])));
  const b = new Float32Array(64);
  st.readInto('ln_f.bias', b);
  t.same(Array.from(b.subarray(0, 4)), Array.from(f32Bytes([-0.04962953180074692, 0.011622979305684566, -0.008341003209352493, -0.009206586517393589])));
  t.throws(() => st.readInto('ln_f.bias', new Float32Array(63)), /ln_f\.bias" has 256 bytes \(F32 \[64\]\) but the buffer has 252/);
  t.throws(() => st.tensor('lm_head.weight'), /model\.safetensors: no tensor "lm_head\.weight"/);
  st.close();
  t.throws(() => st.readInto('ln_f.bias', b), /the file is closed/);
});

t.test('the writer matches Hugging Face serialization byte for byte', async (t) => {
  const dir = t.testdir();
  const one: TensorToWrite = { name: 'attn.0', dtype: 'F32', shape: [1, 2, 3], data: () => f32Bytes([0, 1, 2, 3, 4, 5]) };
  await writeSafetensors(path.join(dir, 'a.safetensors'), [one]);
  const header = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
  const expected = Buffer.concat([Buffer.from([64, 0, 0, 0, 0, 0, 0, 0]), Buffer.from(header), Buffer.from(f32Bytes([0, 1, 2, 3, 4, 5]).buffer)]);
  t.same(fs.readFileSync(path.join(dir, 'a.safetensors')), expected, 'no padding needed at 64 bytes');

  await writeSafetensors(path.join(dir, 'b.safetensors'), [{ ...one, name: 'attn0', shape: [1, 1, 2, 3] }]);
  const padded = Buffer.from('{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       ');
  t.equal(padded.length, 72);
  t.same(fs.readFileSync(path.join(dir, 'b.safetensors')).subarray(0, 80), Buffer.concat([Buffer.from([72, 0, 0, 0, 0, 0, 0, 0]), padded]), 'padded with spaces to 8 bytes');

  await writeSafetensors(path.join(dir, 'c.safetensors'), []);
  t.same([...fs.readFileSync(path.join(dir, 'c.safetensors'))], [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
  await writeSafetensors(path.join(dir, 'd.safetensors'), [], { framework: 'pt' });
  t.same(fs.readFileSync(path.join(dir, 'd.safetensors')), Buffer.concat([Buffer.from([40, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"__metadata__":{"framework":"pt"}}     ')]));
});

t.test('round trip of every dtype, in Hugging Face order, one tensor produced at a time', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'all.safetensors');
  const produced: string[] = [];
  const make = (name: string, dtype: Dtype, shape: number[], view: ArrayBufferView): TensorToWrite => ({
    name, dtype, shape, data: () => { produced.push(name); return view; },
  });
  const tensors = [
    make('z.f32', 'F32', [2, 2], f32Bytes([1.5, -2, 3.25, 1e-30])),
    make('a.f32', 'F32', [3], f32Bytes([7, 8, 9])),
    make('u8', 'U8', [3], Uint8Array.from([1, 2, 255])),
    make('bool', 'BOOL', [2], Uint8Array.from([1, 0])),
    make('f64', 'F64', [2], Float64Array.from([Math.PI, -1])),
    make('i64', 'I64', [1], BigInt64Array.from([-(2n ** 40n)])),
    make('f16', 'F16', [3], f32ToF16(f32Bytes([1, -0.5, 65504]))),
    make('bf16', 'BF16', [2], f32ToBf16(f32Bytes([1, -3]))),
    make('i32.scalar', 'I32', [], Int32Array.from([-7])),
    make('i16', 'I16', [2, 0], new Int16Array(0)),
  ];
  await writeSafetensors(file, tensors, { step: '12', format: 'pt' });
  t.same(produced, ['i64', 'f64', 'a.f32', 'z.f32', 'i32.scalar', 'bf16', 'f16', 'i16', 'u8', 'bool'], 'largest alignment first, then by name; each data() called once');
  const st = openSafetensors(file);
  t.teardown(() => st.close());
  t.same(st.metadata, { format: 'pt', step: '12' });
  t.same(st.tensors.map((e) => e.name), produced, 'file order');
  t.equal(st.dataStart % 8, 0, 'data starts 8-byte aligned');
  t.ok(st.tensors.every((e) => (e.begin - st.dataStart) % DTYPE_BYTES[e.dtype] === 0), 'every tensor aligned for its dtype');
  t.same(Array.from(st.readF32('z.f32')), Array.from(f32Bytes([1.5, -2, 3.25, 1e-30])));
  t.same(Array.from(st.readF32('f64')), Array.from(f32Bytes([Math.PI, -1])));
  t.same(Array.from(st.readF32('f16')), [1, -0.5, 65504]);
  t.same(Array.from(st.readF32('bf16')), [1, -3]);
  const i64 = new BigInt64Array(1);
  st.readInto('i64', i64);
  t.equal(i64[0], -(2n ** 40n));
  const scalar = new Int32Array(1);
  st.readInto('i32.scalar', scalar);
  t.same([st.tensor('i32.scalar').shape, st.tensor('i32.scalar').numel, scalar[0]], [[], 1, -7]);
  t.same(st.tensor('i16').numel, 0);
  t.throws(() => st.readF32('u8'), /tensor "u8" is U8, not a float tensor/);
  const last = st.tensors[st.tensors.length - 1];
  t.equal(last.end, fs.statSync(file).size, 'no trailing bytes: Hugging Face requires the data to end the file');
});

t.test('writer errors leave nothing behind', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'w.safetensors');
  fs.writeFileSync(file, 'previous contents');
  await t.rejects(writeSafetensors(file, [{ name: 'x', dtype: 'F32', shape: [4], data: () => new Float32Array(3) }]),
    /w\.safetensors: tensor "x": F32 \[4\] needs 16 bytes, data\(\) gave 12/);
  t.equal(fs.readFileSync(file, 'utf8'), 'previous contents', 'the old file is untouched');
  t.same(fs.readdirSync(dir), ['w.safetensors'], 'no temporary file left');
  const x: TensorToWrite = { name: 'x', dtype: 'F32', shape: [1], data: () => new Float32Array(1) };
  await t.rejects(writeSafetensors(file, [x, x]), /tensor "x": given twice/);
  await t.rejects(writeSafetensors(file, [{ ...x, name: '__metadata__' }]), /not a valid tensor name/);
  await t.rejects(writeSafetensors(file, [{ ...x, dtype: 'F128' as Dtype }]), /unknown dtype "F128"/);
  await t.rejects(writeSafetensors(file, [{ ...x, shape: [-1] }]), /bad shape \[-1\]/);
});

t.test('bad files give errors naming the file and the tensor or field', async (t) => {
  const dir = t.testdir();
  const four = new Uint8Array(16);
  const ok = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}';
  t.doesNotThrow(() => openSafetensors(rawFile(dir, 'ok.st', ok, four)).close(), 'the base case is valid');
  fs.writeFileSync(path.join(dir, 'short.st'), Buffer.from([1, 2, 3]));
  const cases: [string, () => string, RegExp][] = [
    ['short', () => path.join(dir, 'short.st'), /short\.st: not a safetensors file: 3 bytes/],
    ['length', () => rawFile(dir, 'len.st', ok, four, 1000n), /len\.st: header length 1000 reaches beyond the end of the file \(132 bytes\)/],
    ['huge length', () => rawFile(dir, 'huge.st', ok, four, 2n ** 63n), /huge\.st: header length 9223372036854775808 reaches beyond/],
    ['json', () => rawFile(dir, 'json.st', '{"a": [1, 2', four), /json\.st: the header is not valid UTF-8 JSON/],
    ['not object', () => rawFile(dir, 'arr.st', '[1,2]', four), /arr\.st: the header must be a JSON object/],
    ['dtype', () => rawFile(dir, 'dtype.st', ok.replace('"F32","shape":[2],"data_offsets":[8', '"F24","shape":[2],"data_offsets":[8'), four), /dtype\.st: tensor "b": unknown dtype "F24"/],
    ['span', () => rawFile(dir, 'span.st', ok.replace('"shape":[2],"data_offsets":[0,8]', '"shape":[3],"data_offsets":[0,8]'), four), /span\.st: tensor "a": shape \[3\] of F32 needs 12 bytes but data_offsets \[0, 8\] span 8/],
    ['truncated', () => rawFile(dir, 'trunc.st', ok, four.subarray(0, 12)), /trunc\.st: tensor "b": data_offsets \[8, 16\] reach byte \d+ but the file has \d+ bytes \(truncated\?\)/],
    ['overlap', () => rawFile(dir, 'over.st', ok.replace('[8,16]', '[4,12]'), four), /over\.st: tensor "b" \(bytes 4\.\.12\) overlaps tensor "a" \(bytes 0\.\.8\)/],
    ['backwards', () => rawFile(dir, 'back.st', ok.replace('[8,16]', '[16,8]'), four), /back\.st: tensor "b": data_offsets \[16, 8\] end before they begin/],
    ['offsets', () => rawFile(dir, 'offs.st', ok.replace('[8,16]', '[8]'), four), /offs\.st: tensor "b": data_offsets must be \[begin, end\]/],
    ['shape', () => rawFile(dir, 'shape.st', ok.replace('"shape":[2],"data_offsets":[8', '"shape":[-2],"data_offsets":[8'), four), /shape\.st: tensor "b": shape must be a list of non-negative integers/],
    ['field', () => rawFile(dir, 'field.st', ok.replace('"dtype":"F32","shape":[2],"data_offsets":[8', '"dtype":"F32","strides":[1],"shape":[2],"data_offsets":[8'), four), /field\.st: tensor "b": unknown field "strides"/],
    ['metadata', () => rawFile(dir, 'meta.st', '{"__metadata__":{"step":3}}'), /meta\.st: __metadata__\.step must be a string, got 3/],
    ['utf8', () => rawFile(dir, 'utf8.st', Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])), /utf8\.st: the header is not valid UTF-8 JSON/],
  ];
  for (const [what, make, message] of cases) t.throws(() => openSafetensors(make()), message, what);
});

t.test('16-bit floats match the native conversions (round to nearest even)', async (t) => {
  const f16 = (x: number): number => f32ToF16(Float32Array.of(x))[0];
  t.same([f16(1), f16(-2), f16(65504), f16(65519), f16(65520), f16(-Infinity), f16(0), f16(-0)],
    [0x3c00, 0xc000, 0x7bff, 0x7bff, 0x7c00, 0xfc00, 0x0000, 0x8000]);
  t.same([f16(2 ** -24), f16(2 ** -25), f16(2 ** -25 * 1.0001), f16(2 ** -14), f16(3 * 2 ** -25)], [0x0001, 0x0000, 0x0001, 0x0400, 0x0002],
    'subnormals: ties to even at the bottom');
  t.same([f16(1 + 2 ** -11), f16(1 + 3 * 2 ** -11), f16(1 + 2 ** -10)], [0x3c00, 0x3c02, 0x3c01], 'ties to even');
  t.equal(f16(NaN), 0x7e00);
  // Every half value survives f16 -> f32 -> f16 (NaNs stay NaN).
  const all = new Uint16Array(65536).map((_, i) => i);
  const back = f32ToF16(f16ToF32(all));
  const wide = f16ToF32(all);
  let mismatches = 0;
  for (let i = 0; i < 65536; i++) {
    const isNaN = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
    if (isNaN ? !Number.isNaN(wide[i]) || (back[i] & 0x7fff) !== 0x7e00 : back[i] !== i) mismatches++;
  }
  t.equal(mismatches, 0);
  t.same(Array.from(f16ToF32(Uint16Array.of(0x0001, 0x03ff, 0x3555, 0xfbff))), [2 ** -24, 1023 * 2 ** -24, 0.333251953125, -65504]);

  const bf = (x: number): number => f32ToBf16(Float32Array.of(x))[0];
  t.same([bf(1), bf(-3), bf(1 + 2 ** -8), bf(1 + 3 * 2 ** -8), bf(1 + 2 ** -8 + 2 ** -20), bf(3.4028234663852886e38)],
    [0x3f80, 0xc040, 0x3f80, 0x3f82, 0x3f81, 0x7f80]);
  t.equal(bf(NaN) & 0x7fc0, 0x7fc0);
  t.same(Array.from(bf16ToF32(Uint16Array.of(0x3f80, 0xc040, 0x0001, 0x7f80))), [1, -3, 2 ** -133, Infinity]);
});

t.test('names JavaScript objects treat specially keep their place', async (t) => {
  const file = path.join(t.testdir(), 'names.safetensors');
  const tensor = (name: string, v: number): TensorToWrite => ({ name, dtype: 'F32', shape: [1], data: () => Float32Array.of(v) });
  await writeSafetensors(file, [tensor('b', 1), tensor('10', 2), tensor('__proto__', 3), tensor('2', 4)]);
  const header = fs.readFileSync(file).subarray(8, 8 + 200).toString();
  t.match(header, /^\{"10":\{[^}]*"data_offsets":\[0,4\]\},"2":\{[^}]*\[4,8\]\},"__proto__":\{[^}]*\[8,12\]\},"b":/, 'byte order of names, offsets in the same order');
  const st = openSafetensors(file);
  t.same(st.tensors.map((e) => [e.name, st.readF32(e)[0]]), [['10', 2], ['2', 4], ['__proto__', 3], ['b', 1]]);
  st.close();
});
