// The TensorFlow checkpoint reader: crc32c and snappy against published vectors, a real checkpoint written by
// TensorFlow (every variable listed, every crc32c verified), bundles from our own writer (several blocks,
// restart points, shards, snappy), and corrupt or truncated files (a clear error, never a crash).
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { crc32c, unmaskCrc } from '../../lib/formats/crc32c';
import { f32ToF16 } from '../../lib/formats/safetensors';
import { snappyUncompress } from '../../lib/formats/snappy';
import { openTFCheckpoint, type TFTensorEntry } from '../../lib/formats/tf_checkpoint';
import { type BundleTensor, maskCrc, snappyCompress, writeTFBundle } from '../helpers/tf_bundle';

const T2T = path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'tf-checkpoint-t2t');

function copyT2T(dir: string): string {
  for (const f of fs.readdirSync(T2T)) fs.copyFileSync(path.join(T2T, f), path.join(dir, f));
  return path.join(dir, 'model.ckpt-1');
}

t.test('crc32c: the RFC 3720 vectors, incremental, masking', async (t) => {
  t.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  t.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  t.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  t.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  t.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
  const data = Uint8Array.from({ length: 1001 }, (_, i) => (i * 7919) & 0xff);
  t.equal(crc32c(data.subarray(13), crc32c(data.subarray(0, 13))), crc32c(data), 'continues over pieces');
  for (const v of [0, 1, 0xe3069283, 0xffffffff]) t.equal(unmaskCrc(maskCrc(v)), v);
  t.not(maskCrc(0xe3069283), 0xe3069283);
});

t.test('snappy: a hand-made block, round trips, corrupt input', async (t) => {
  // "a" then a copy of 9 bytes at offset 1: ten a's.
  t.equal(Buffer.from(snappyUncompress(Uint8Array.of(10, 0x00, 0x61, 0x15, 0x01))).toString(), 'aaaaaaaaaa');
  const text = Buffer.from('model/h0/attn/c_attn/w model/h0/attn/c_attn/b model/h1/attn/c_attn/w '.repeat(40));
  const noise = Uint8Array.from({ length: 5000 }, (_, i) => (i * 2654435761) >>> 24);
  for (const input of [new Uint8Array(0), text, noise, new Uint8Array(70000).fill(3)]) {
    const packed = snappyCompress(input);
    t.same(Buffer.from(snappyUncompress(packed)), Buffer.from(input), `${input.length} bytes through ${packed.length}`);
  }
  t.ok(snappyCompress(text).length < text.length / 4, 'repetitive text compresses');
  const bad: [number[], RegExp][] = [
    [[10, 0x00, 0x61, 0x15, 0x02], /copy offset 2 outside the 1 bytes written/],
    [[10, 0x00, 0x61, 0x15, 0x00], /copy offset 0/],
    [[11, 0x00, 0x61, 0x15, 0x01], /10 bytes decoded, 11 declared/],
    [[5, 0x00, 0x61, 0x15, 0x01], /copy runs past the declared length/],
    [[10, 0x08, 0x61], /literal runs past the end of the input/],
    [[0x80], /bad length prefix/],
    [[10, 0x02, 0x01], /truncated copy/],
  ];
  for (const [bytes, message] of bad) t.throws(() => snappyUncompress(Uint8Array.from(bytes)), message);
});

t.test('a checkpoint written by TensorFlow: every variable listed and every crc32c verified', async (t) => {
  const ckpt = openTFCheckpoint(path.join(T2T, 'model.ckpt-1'));
  t.teardown(() => ckpt.close());
  t.equal(ckpt.numShards, 2);
  t.equal(ckpt.tensors.length, 250);
  const byName = new Map(ckpt.tensors.map((e) => [e.name, e]));
  // Read every tensor: readInto throws on a crc32c mismatch.
  for (const e of ckpt.tensors) ckpt.readInto(e, new Uint8Array(e.size));
  t.pass('all 250 crc32c match');
  // The entries tile each shard file exactly, which only holds if offsets, sizes and shapes are decoded right.
  for (const shard of [0, 1]) {
    const inShard = ckpt.tensors.filter((e) => e.shard === shard).sort((a, b) => a.offset - b.offset);
    let end = 0;
    for (const e of inShard) {
      t.equal(e.offset, end, `${e.name} follows the previous tensor`);
      end += e.size;
    }
    t.equal(end, fs.statSync(`${path.join(T2T, 'model.ckpt-1')}.data-0000${shard}-of-00002`).size, `shard ${shard} is covered exactly`);
  }
  t.same([...new Set(ckpt.tensors.map((e) => e.dtype))].sort(), ['DT_FLOAT', 'DT_INT32', 'DT_INT64']);
  // Adam's two slots have their variable's shape and dtype.
  const slots = ckpt.tensors.filter((e) => /\/Adam(_1)?$/.test(e.name));
  t.equal(slots.length, 162);
  for (const s of slots) {
    const variable = byName.get(s.name.replace(/^training\//, '').replace(/\/Adam(_1)?$/, ''));
    t.ok(variable && variable.dtype === s.dtype && variable.shape.join() === s.shape.join(), `${s.name} matches its variable`);
  }
  // The Transformer's shapes: hidden 16, filter 8, a vocabulary of 8190 split over 16 embedding shards.
  t.same(byName.get('transformer/body/decoder/layer_0/ffn/conv1/kernel')?.shape, [16, 8]);
  t.same(byName.get('transformer/body/encoder/layer_1/self_attention/multihead_attention/q/kernel')?.shape, [16, 16]);
  const embeddingRows = ckpt.tensors.filter((e) => e.name.startsWith('transformer/symbol_modality_8190_16/shared/weights_')).map((e) => e.shape[0]);
  t.same([embeddingRows.length, embeddingRows.reduce((a, b) => a + b, 0)], [16, 8190]);
  // Scalars, with values read off the shard bytes by hand: global_step 1, the losses 100, the step counter 0.
  const step = new BigInt64Array(1);
  ckpt.readInto('global_step', step);
  t.same([byName.get('global_step')?.dtype, byName.get('global_step')?.shape, step[0]], ['DT_INT64', [], 1n]);
  t.same(Array.from(ckpt.readF32('losses_avg/problem_0/total_loss')), [100]);
  const steps = new Int32Array(1);
  ckpt.readInto('train_stats/problem_0_steps', steps);
  t.equal(steps[0], 0);
  t.throws(() => ckpt.readF32('global_step'), /variable "global_step" is DT_INT64, not a float tensor/);
  t.throws(() => ckpt.tensor('model/wte'), /model\.ckpt-1\.index: no variable "model\/wte"/);
  t.throws(() => ckpt.readInto('global_step', new Uint8Array(4)), /"global_step" has 8 bytes \(DT_INT64 \[\]\) but the buffer has 4/);
});

function sampleTensors(): BundleTensor[] {
  const tensors: BundleTensor[] = [];
  for (let l = 0; l < 12; l++) {
    for (const p of ['attn/c_attn/w', 'attn/c_attn/b', 'mlp/c_fc/w', 'ln_1/g']) {
      const numel = 3 + ((l * 5) % 7);
      tensors.push({ name: `model/h${l}/${p}`, dtype: 'DT_FLOAT', shape: [1, numel], data: Float32Array.from({ length: numel }, (_, i) => l + i / 8) });
    }
  }
  tensors.push({ name: 'global_step', dtype: 'DT_INT64', shape: [], data: BigInt64Array.of(1234n) });
  tensors.push({ name: 'model/half', dtype: 'DT_HALF', shape: [2, 2], data: f32ToF16(Float32Array.of(1, -2, 0.5, 65504)) });
  tensors.push({ name: 'model/double', dtype: 'DT_DOUBLE', shape: [3], data: Float64Array.of(Math.PI, 1e-3, -7) });
  tensors.push({ name: 'model/empty', dtype: 'DT_FLOAT', shape: [0, 4], data: new Float32Array(0) });
  tensors.push({ name: 'model/ünïcode', dtype: 'DT_INT32', shape: [2], data: Int32Array.of(-1, 7) });
  return tensors;
}

function checkAgainst(t: Test, entries: readonly TFTensorEntry[], read: (e: TFTensorEntry) => Uint8Array, tensors: BundleTensor[]): void {
  t.same(entries.map((e) => e.name), tensors.map((x) => x.name).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
  for (const x of tensors) {
    const e = entries.find((entry) => entry.name === x.name) as TFTensorEntry;
    t.same([e.dtype, e.shape], [x.dtype, x.shape], x.name);
    t.same(Buffer.from(read(e)), Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength), `${x.name} bytes`);
  }
}

t.test('bundles of our own writer: many blocks, restart points, shards, snappy', async (t) => {
  const tensors = sampleTensors();
  const variants = [
    { blockSize: 4096, restartInterval: 16, numShards: 1, snappy: false },
    { blockSize: 64, restartInterval: 3, numShards: 3, snappy: false },
    { blockSize: 200, restartInterval: 1, numShards: 2, snappy: true },
  ];
  for (const options of variants) {
    const prefix = path.join(t.testdir(), 'model-7');
    const blocks = writeTFBundle(prefix, tensors, options);
    const ckpt = openTFCheckpoint(prefix);
    t.equal(ckpt.numShards, options.numShards);
    checkAgainst(t, ckpt.tensors, (e) => {
      const out = new Uint8Array(e.size);
      ckpt.readInto(e, out);
      return out;
    }, tensors);
    t.same(Array.from(ckpt.readF32('model/half')), [1, -2, 0.5, 65504]);
    t.same(Array.from(ckpt.readF32('model/double')), Array.from(Float32Array.of(Math.PI, 1e-3, -7)));
    t.ok(options.blockSize > 1000 || blocks.length > 3, `${blocks.length} data blocks`);
    ckpt.close();
  }
});

t.test('a corrupt or truncated index gives a clear error, never a crash or wrong data', async (t) => {
  const dir = t.testdir();
  const prefix = copyT2T(dir);
  const indexFile = `${prefix}.index`;
  const original = fs.readFileSync(indexFile);
  const reference = JSON.stringify(openTFCheckpoint(prefix).tensors);
  let errors = 0;
  let unchanged = 0;
  // Every 7th byte, and every byte of the last 200 (index block and footer).
  for (let i = 0; i < original.length; i++) {
    if (i % 7 !== 0 && i < original.length - 200) continue;
    const bytes = Buffer.from(original);
    bytes[i] ^= 0x10;
    fs.writeFileSync(indexFile, bytes);
    try {
      const ckpt = openTFCheckpoint(prefix);
      if (JSON.stringify(ckpt.tensors) !== reference) t.fail(`a flip at byte ${i} changed the listing without an error`);
      unchanged++;
      ckpt.close();
    } catch (err) {
      if (!(err instanceof Error) || !err.message.includes('model.ckpt-1.index')) t.fail(`flip at byte ${i}: ${String(err)}`);
      errors++;
    }
  }
  t.ok(errors > 1700, `${errors} flips refused`);
  t.ok(unchanged < 60, `${unchanged} flips in bytes nothing reads (footer padding, the unused metaindex handle)`);
  for (const length of [0, 10, 47, original.length - 1, original.length - 48, original.length - 100, Math.floor(original.length / 2)]) {
    fs.writeFileSync(indexFile, original.subarray(0, length));
    t.throws(() => openTFCheckpoint(prefix), /model\.ckpt-1\.index: .*(too short|no table magic|reaches beyond|crc32c)/, `truncated to ${length} bytes`);
  }
  fs.rmSync(indexFile);
  t.throws(() => openTFCheckpoint(prefix), /ENOENT.*model\.ckpt-1\.index/);
});

t.test('structurally corrupt blocks with valid checksums are refused cleanly', async (t) => {
  const prefix = path.join(t.testdir(), 'model-1');
  const blocks = writeTFBundle(prefix, sampleTensors(), { blockSize: 512, restartInterval: 4 });
  const original = fs.readFileSync(`${prefix}.index`);
  const [offset, size] = blocks[0];
  let refused = 0;
  for (let i = offset; i < offset + size; i++) {
    for (const flip of [0x01, 0x80]) {
      const bytes = Buffer.from(original);
      bytes[i] ^= flip;
      // Re-seal the block so that only the structure checks can catch the damage.
      bytes.writeUInt32LE(maskCrc(crc32c(bytes.subarray(offset, offset + size + 1))), offset + size + 1);
      fs.writeFileSync(`${prefix}.index`, bytes);
      try {
        const ckpt = openTFCheckpoint(prefix);
        for (const e of ckpt.tensors) {
          try {
            ckpt.readInto(e, new Uint8Array(e.size));
          } catch (err) {
            if (!(err instanceof Error) || !/crc32c|truncated|string tensor/.test(err.message)) t.fail(`flip at ${i}: ${String(err)}`);
          }
        }
        ckpt.close();
      } catch (err) {
        if (!(err instanceof Error) || !err.message.includes('model-1')) t.fail(`flip at ${i}: ${String(err)}`);
        refused++;
      }
    }
  }
  t.ok(refused > size / 2, `${refused} of ${2 * size} damaged blocks refused, the rest read as other valid tables`);
});

// The index file with its index block replaced by one whose entries (keys "a", "b", ... in order) point at `handles`.
function withIndexBlock(original: Buffer, handles: [number, number][]): Buffer {
  const varint = (v: number): number[] => (v < 0x80 ? [v] : [(v % 0x80) | 0x80, ...varint(Math.floor(v / 0x80))]);
  const u32 = (v: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return b;
  };
  const entries: number[] = [];
  const restarts: number[] = [];
  handles.forEach(([offset, size], i) => {
    restarts.push(entries.length);
    const value = [...varint(offset), ...varint(size)];
    entries.push(0, 1, value.length, 0x61 + i, ...value);
  });
  const block = Buffer.concat([Buffer.from(entries), ...restarts.map(u32), u32(restarts.length), Buffer.from([0])]);
  const body = original.subarray(0, original.length - 48);
  const footer = Buffer.alloc(48);
  Buffer.from([0, 0, ...varint(body.length), ...varint(block.length - 1)]).copy(footer);
  original.copy(footer, 40, original.length - 8);
  return Buffer.concat([body, block, u32(maskCrc(crc32c(block))), footer]);
}

t.test('an index whose entries point at one data block again and again is refused before it is read twice', async (t) => {
  const prefix = path.join(t.testdir(), 'model-1');
  const blocks = writeTFBundle(prefix, sampleTensors(), { blockSize: 512, snappy: true });
  const original = fs.readFileSync(`${prefix}.index`);
  const [first] = blocks;
  fs.writeFileSync(`${prefix}.index`, withIndexBlock(original, [first, first, first]));
  t.throws(() => openTFCheckpoint(prefix), {
    message: `${prefix}.index: index block: data block at byte ${first[0]} begins before the end of the data block before it (byte ${first[0] + first[1] + 5}): the index is corrupt`,
  });
  fs.writeFileSync(`${prefix}.index`, withIndexBlock(original, [[first[0], original.length]]));
  t.throws(() => openTFCheckpoint(prefix), { message: new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.index: index block: data block at byte ${first[0]} \\(\\d+ bytes\\) runs into the index block at byte \\d+: the index is corrupt$`) });
  fs.writeFileSync(`${prefix}.index`, withIndexBlock(original, blocks));
  const ckpt = openTFCheckpoint(prefix);
  t.equal(ckpt.tensors.length, sampleTensors().length, 'the same blocks in order, through a rebuilt index block, read');
  ckpt.close();
});

t.test('corrupt or truncated data shards', async (t) => {
  const dir = t.testdir();
  const prefix = copyT2T(dir);
  const shard = `${prefix}.data-00001-of-00002`;
  const original = fs.readFileSync(shard);
  const ckpt = openTFCheckpoint(prefix);
  const victim = ckpt.tensor('transformer/body/decoder/layer_0/ffn/conv1/kernel');
  const bytes = Buffer.from(original);
  bytes[victim.offset + 17] ^= 0x04;
  fs.writeFileSync(shard, bytes);
  t.throws(() => ckpt.readF32(victim), /data-00001-of-00002: variable "transformer\/body\/decoder\/layer_0\/ffn\/conv1\/kernel" \(bytes \d+\.\.\d+\) fails its crc32c check/);
  ckpt.close();
  t.throws(() => ckpt.readF32(victim), /the checkpoint is closed/);
  fs.writeFileSync(shard, original.subarray(0, original.length - 100));
  t.throws(() => openTFCheckpoint(prefix), /data-00001-of-00002: variable ".*" needs bytes \d+\.\.1670408 but the file has 1670308 bytes \(truncated\?\)/);
  fs.rmSync(shard);
  t.throws(() => openTFCheckpoint(prefix), /data-00001-of-00002: missing \(variable ".*" is stored there\)/);
});

t.test('crc32c: every alignment and length gives the bytewise result', async (t) => {
  const bitwise = (bytes: Uint8Array): number => {
    let crc = 0xffffffff;
    for (const b of bytes) {
      crc ^= b;
      for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
    }
    return ~crc >>> 0;
  };
  const data = Uint8Array.from({ length: 64 }, (_, i) => (i * 151 + 7) & 0xff);
  let wrong = 0;
  for (let start = 0; start < 8; start++) {
    for (let end = start; end <= data.length; end++) if (crc32c(data.subarray(start, end)) !== bitwise(data.subarray(start, end))) wrong++;
  }
  t.equal(wrong, 0);
});
