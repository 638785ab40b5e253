// Which addon a process loads (native/prebuilds.js): DIXIE_ADDON, else the source build, else the best prebuilt
// variant the CPU can run; and the variant table itself, checked against what the compiler may emit for each.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';

type Prebuilds = typeof import('../../native/prebuilds');

const ROOT = path.join(__dirname, '..', '..', '..');
const prebuilds = require(path.join(ROOT, 'native', 'prebuilds.js')) as Prebuilds;
const { VARIANTS, bestVariant, chooseAddon, parseCpuFlags, platformKey, prebuiltFile, locateAddon } = prebuilds;

const X64 = 'linux-x64';
const ALL_X64 = VARIANTS[X64].map((v) => v.name);
// /proc/cpuinfo "flags" of three real CPUs, trimmed to what matters here.
const V3 = 'fpu sse sse2 pni ssse3 sse4_1 sse4_2 cx16 lahf_lm popcnt avx avx2 bmi1 bmi2 f16c fma abm movbe xsave';
const ZEN3 = new Set(`${V3} sha_ni vaes`.split(' '));
const SKYLAKE_SP = new Set(`${V3} avx512f avx512bw avx512cd avx512dq avx512vl`.split(' '));
const SAPPHIRE_RAPIDS = new Set(`${V3} avx512f avx512bw avx512cd avx512dq avx512vl avx512_vnni avx_vnni amx_tile`.split(' '));

t.test('the CPU flags are read from /proc/cpuinfo as x86 and Arm write it', async (t) => {
  const x86 = 'processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 fma\nbugs\t\t: sysret_ss_attrs\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx2 fma\n';
  t.same([...parseCpuFlags(x86)], ['fpu', 'sse2', 'avx2', 'fma']);
  t.same([...parseCpuFlags('processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes\nCPU implementer\t: 0x41\n')], ['fp', 'asimd', 'evtstrm', 'aes']);
  t.same([...parseCpuFlags('')], []);
});

t.test('the best prebuilt variant the CPU can run is chosen', async (t) => {
  t.equal(bestVariant(X64, SAPPHIRE_RAPIDS, ALL_X64)?.name, 'avx512');
  t.equal(bestVariant(X64, SKYLAKE_SP, ALL_X64)?.name, 'avx2', 'AVX-512 without VNNI runs the AVX2 build');
  t.equal(bestVariant(X64, ZEN3, ALL_X64)?.name, 'avx2');
  t.equal(bestVariant(X64, new Set(), ALL_X64)?.name, 'sse2', 'no flags known: the build that needs none');
  t.equal(bestVariant(X64, SAPPHIRE_RAPIDS, ['sse2'])?.name, 'sse2', 'only what is present');
  t.equal(bestVariant(X64, ZEN3, ['avx512']), null, 'nothing this CPU can run');
  t.equal(bestVariant('linux-arm64', new Set(['fp', 'asimd']), ['armv8'])?.name, 'armv8');
  t.equal(bestVariant('linux-x64-musl', ZEN3, ALL_X64), null, 'nothing is prebuilt for musl');
  t.equal(bestVariant('darwin-arm64', new Set(), ['armv8']), null);
});

t.test('a CPU whose kernel lists no LZCNT flag but has AVX2 and BMI1 still gets its level', async (t) => {
  // The flags line of an AVX-512 Firecracker guest, which names neither 'abm' nor 'lzcnt'.
  const firecracker = `flags\t\t: fpu sse sse2 pni ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt xsave avx f16c lahf_lm bmi1 avx2 bmi2 ${
    'avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni'}\n`;
  t.equal(bestVariant(X64, parseCpuFlags(firecracker), ALL_X64)?.name, 'avx512');
  t.notOk(parseCpuFlags('flags\t: fpu sse2 ssse3 avx\n').has('abm'), 'not implied without AVX2 and BMI1');
});

t.test('each variant needs all that the next one needs: the table is best first', async (t) => {
  for (const [platform, variants] of Object.entries(VARIANTS)) {
    for (let i = 1; i < variants.length; i++) {
      const missing = variants[i].needs.filter((f) => !variants[i - 1].needs.includes(f));
      t.same(missing, [], `${platform}: ${variants[i - 1].name} needs what ${variants[i].name} needs`);
    }
  }
});

t.test('the platform key: a Linux without glibc has none of the prebuilds', async (t) => {
  t.equal(platformKey('linux', 'x64', true), 'linux-x64');
  t.equal(platformKey('linux', 'arm64', true), 'linux-arm64');
  t.equal(platformKey('linux', 'x64', false), 'linux-x64-musl');
  t.equal(platformKey('darwin', 'arm64'), 'darwin-arm64');
  t.equal(platformKey(), `${process.platform}-${process.arch}`, 'this machine (glibc)');
});

t.test('DIXIE_ADDON, then the source build, then the best prebuilt variant', async (t) => {
  const inputs = { root: '/pkg', override: undefined, sourceBuilt: false, platform: X64, cpuFlags: ZEN3, present: ALL_X64 };
  t.same(chooseAddon(inputs), { file: prebuiltFile('/pkg', X64, 'avx2'), origin: 'prebuilt linux-x64/avx2 (x86-64-v3: AVX2, FMA, F16C)' });
  t.same(chooseAddon({ ...inputs, sourceBuilt: true }), { file: '/pkg/build/Release/dixie_native.node', origin: 'source build' });
  t.same(chooseAddon({ ...inputs, sourceBuilt: true, override: '/x/debug.node' }), { file: '/x/debug.node', origin: 'DIXIE_ADDON' });
  t.equal(chooseAddon({ ...inputs, present: [] }), null);
  t.equal(chooseAddon({ ...inputs, present: ['avx512'] }), null);
});

t.test('with no addon to load, the error says what was looked for and what to run', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-prebuilds-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  t.throws(() => locateAddon(root, {}), new RegExp(`no native addon for this machine: ${path.join(root, 'build', 'Release', 'dixie_native.node')} is not built, .*run \`npm run build:native\``));
  t.same(locateAddon(root, { DIXIE_ADDON: '/x/debug.node' }), { file: '/x/debug.node', origin: 'DIXIE_ADDON' });
  const platform = platformKey();
  const best = VARIANTS[platform]?.[0];
  if (best && best.needs.length > 0) {
    // A prebuilt addon this CPU cannot run (where it can, the message is not reached): the error names the flags.
    const lacking = best.needs.filter((f) => !prebuilds.readCpuFlags().has(f));
    if (lacking.length > 0) {
      fs.mkdirSync(path.dirname(prebuiltFile(root, platform, best.name)), { recursive: true });
      fs.writeFileSync(prebuiltFile(root, platform, best.name), '');
      t.throws(() => locateAddon(root, {}), { message: new RegExp(`${best.name} needs ${lacking.join(', ')}, which this CPU lacks`) });
    }
  }
});

// The instruction-set macros a compiler defines, against the /proc/cpuinfo flag of that instruction set.
const MACRO_FLAGS: Record<string, string> = {
  __SSE3__: 'pni', __SSSE3__: 'ssse3', __SSE4_1__: 'sse4_1', __SSE4_2__: 'sse4_2', __POPCNT__: 'popcnt', __LAHF_SAHF__: 'lahf_lm',
  __GCC_HAVE_SYNC_COMPARE_AND_SWAP_16: 'cx16', __AVX__: 'avx', __AVX2__: 'avx2', __FMA__: 'fma', __F16C__: 'f16c', __BMI__: 'bmi1',
  __BMI2__: 'bmi2', __LZCNT__: 'abm', __MOVBE__: 'movbe', __XSAVE__: 'xsave', __AVX512F__: 'avx512f', __AVX512BW__: 'avx512bw',
  __AVX512CD__: 'avx512cd', __AVX512DQ__: 'avx512dq', __AVX512VL__: 'avx512vl', __AVX512VNNI__: 'avx512_vnni', __AVXVNNI__: 'avx_vnni',
  __AVX512BF16__: 'avx512_bf16', __AVX512FP16__: 'avx512_fp16', __AMX_TILE__: 'amx_tile', __GFNI__: 'gfni', __VAES__: 'vaes',
};

t.test('a variant needs every instruction set its flags let the compiler use', { skip: process.arch !== 'x64' && 'the x86-64 variants are checked on x86-64' }, async (t) => {
  const compiler = process.env.CXX ?? 'c++';
  for (const variant of VARIANTS[X64]) {
    const run = spawnSync(compiler, [...variant.flags.split(' '), '-dM', '-E', '-x', 'c++', '-'], { input: '', encoding: 'utf8' });
    if (run.error || run.status !== 0) {
      t.fail(`${compiler} ${variant.flags}: ${run.error?.message ?? run.stderr}`);
      continue;
    }
    const used = Object.entries(MACRO_FLAGS).filter(([macro]) => new RegExp(`^#define ${macro} `, 'm').test(run.stdout)).map(([, flag]) => flag);
    t.same(used.filter((flag) => !variant.needs.includes(flag)), [], `${variant.name} (${variant.flags}) needs ${used.join(' ') || 'nothing'}`);
  }
});
