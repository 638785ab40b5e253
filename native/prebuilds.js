'use strict';
// The compiled addons the npm package ships (prebuilds/<platform>/<variant>/dixie_native.node), how they are
// built, and which addon a process loads. The CPU kernels choose their vector code when they are compiled (by the
// compiler's __AVX2__, __FMA__, __F16C__, __AVX512VNNI__... macros), so no single build is both portable and as
// fast as -march=native: x86-64 is compiled for three levels, and the best one the CPU supports is loaded. N-API
// makes each of them independent of the Node.js version. Plain JavaScript with no dependencies, because
// `npm install` runs it (native/install.js) before the TypeScript is compiled.
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');

const ADDON_FILE = 'dixie_native.node';
// Where `npm run build:native` (cmake-js) puts the addon compiled for this machine.
const SOURCE_BUILD = path.join('build', 'Release', ADDON_FILE);
const PREBUILDS_DIR = 'prebuilds';

// The instruction sets each x86-64 level lets the compiler use, as /proc/cpuinfo names them (the psABI levels
// that GCC's and Clang's -march=x86-64-vN target). A CPU that lacks one of them must not load that build.
const X86_64_V2 = ['cx16', 'lahf_lm', 'popcnt', 'pni', 'ssse3', 'sse4_1', 'sse4_2'];
const X86_64_V3 = [...X86_64_V2, 'avx', 'avx2', 'bmi1', 'bmi2', 'f16c', 'fma', 'abm', 'movbe', 'xsave'];
const X86_64_V4 = [...X86_64_V3, 'avx512f', 'avx512bw', 'avx512cd', 'avx512dq', 'avx512vl'];

// By platform, best first. `flags` go to CMake as DIXIE_ARCH_FLAGS; `needs` are the CPU flags the code may use.
// The AVX-512 build also takes VNNI, which the 8-bit weights' dot products use: every AVX-512 CPU since Cascade
// Lake and Zen 4 has it, and the few without it (Skylake-SP) run the AVX2 build, whose kernels are the same.
const VARIANTS = {
  'linux-x64': [
    { name: 'avx512', flags: '-march=x86-64-v4 -mavx512vnni', needs: [...X86_64_V4, 'avx512_vnni'], describe: 'x86-64-v4: AVX-512 with VNNI' },
    { name: 'avx2', flags: '-march=x86-64-v3', needs: X86_64_V3, describe: 'x86-64-v3: AVX2, FMA, F16C' },
    { name: 'sse2', flags: '-march=x86-64', needs: [], describe: 'x86-64: SSE2, any 64-bit x86 CPU' },
  ],
  'linux-arm64': [{ name: 'armv8', flags: '-march=armv8-a', needs: [], describe: 'ARMv8-A: NEON, any 64-bit Arm CPU' }],
};

// "linux-x64", "linux-arm64", ...; a Linux whose C library is not glibc (Alpine's musl) gets its own key, for which
// nothing is prebuilt: a glibc build does not load there.
function platformKey(platform = process.platform, arch = process.arch, glibc = platform !== 'linux' || hasGlibc()) {
  return `${platform}-${arch}${glibc ? '' : '-musl'}`;
}

// /usr/bin/ldd is glibc's shell script or musl's loader, and reading it costs nothing; the process report, which
// knows too, takes tens of milliseconds.
function hasGlibc() {
  try {
    return !fs.readFileSync('/usr/bin/ldd', 'latin1').includes('musl');
  } catch {
    return process.report.getReport().header.glibcVersionRuntime !== undefined;
  }
}

// Flags that some kernels leave out of /proc/cpuinfo though the CPU has them, and what proves them there. LZCNT
// ('abm'): Intel brought it with AVX2 and BMI1 (Haswell), AMD had it long before, so every CPU with those has it;
// Firecracker's guests, among others, list neither 'abm' nor 'lzcnt', which would otherwise put an AVX-512 CPU on
// the scalar build.
const IMPLIED_FLAGS = [{ flag: 'abm', by: ['avx2', 'bmi1'] }];

// The CPU's feature flags from the text of /proc/cpuinfo (x86's "flags" line, Arm's "Features"), with those implied.
function parseCpuFlags(cpuinfo) {
  const line = /^(?:flags|Features)\s*:(.*)$/m.exec(cpuinfo);
  const flags = new Set(line ? line[1].trim().split(/\s+/) : []);
  for (const { flag, by } of IMPLIED_FLAGS) if (by.every((f) => flags.has(f))) flags.add(flag);
  return flags;
}

// Empty where there is no /proc/cpuinfo: only builds that need no flags are then chosen.
function readCpuFlags() {
  try {
    return parseCpuFlags(fs.readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return new Set();
  }
}

// The best variant of `platform` that is among `present` and whose needs `cpuFlags` all has; null if none is.
function bestVariant(platform, cpuFlags, present) {
  return (VARIANTS[platform] ?? []).find((v) => present.includes(v.name) && v.needs.every((f) => cpuFlags.has(f))) ?? null;
}

function prebuiltFile(root, platform, variantName) {
  return path.join(root, PREBUILDS_DIR, platform, variantName, ADDON_FILE);
}

// The variants of `platform` whose addon is in `root`'s prebuilds folder.
function presentVariants(root, platform) {
  return (VARIANTS[platform] ?? []).filter((v) => fs.existsSync(prebuiltFile(root, platform, v.name))).map((v) => v.name);
}

// Which addon to load, first found: the file DIXIE_ADDON names, the addon compiled from source, the best prebuilt
// addon this CPU can run. Null when there is none.
function chooseAddon({ root, override, sourceBuilt, platform, cpuFlags, present }) {
  if (override) return { file: override, origin: 'DIXIE_ADDON' };
  if (sourceBuilt) return { file: path.join(root, SOURCE_BUILD), origin: 'source build' };
  const variant = bestVariant(platform, cpuFlags, present);
  return variant && { file: prebuiltFile(root, platform, variant.name), origin: `prebuilt ${platform}/${variant.name} (${variant.describe})` };
}

// chooseAddon on this machine and process; throws, saying what was looked for, when nothing fits.
function locateAddon(root, env = process.env) {
  const platform = platformKey();
  const present = presentVariants(root, platform);
  const cpuFlags = readCpuFlags();
  const choice = chooseAddon({ root, override: env.DIXIE_ADDON, sourceBuilt: fs.existsSync(path.join(root, SOURCE_BUILD)), platform, cpuFlags, present });
  if (choice) return choice;
  const unfit = (VARIANTS[platform] ?? [])
    .filter((v) => present.includes(v.name))
    .map((v) => `${v.name} needs ${v.needs.filter((f) => !cpuFlags.has(f)).join(', ')}, which this CPU lacks`);
  throw new Error(
    `no native addon for this machine: ${path.join(root, SOURCE_BUILD)} is not built, and ${path.join(root, PREBUILDS_DIR, platform)} ` +
      `has no addon this CPU can run${unfit.length > 0 ? ` (${unfit.join('; ')})` : ''}: run \`npm run build:native\` (CMake and a C++17 compiler)`,
  );
}

// Loads `file` in a child process and runs a tiny model's forward pass with it, so that an addon this system cannot
// load (built for a newer glibc) or run (a CPU flag missing from `needs`) fails there rather than in the caller.
// Returns the vector units it was compiled for, or throws why it fails.
function checkAddon(file) {
  const script = `
    const addon = require(${JSON.stringify(file)});
    const model = new addon.Model({ nLayer: 1, nHead: 1, nEmbd: 8, nCtx: 8, vocabSize: 16 }, { device: 'cpu' });
    model.forward(new Int32Array(8), null, 1, 8, new Float32Array(8 * 16)).then(() => process.stdout.write(addon.cpuFeatures().join(' ')));`;
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  if (run.status !== 0) {
    throw new Error(`${file} does not run here: ${run.signal ? `killed by ${run.signal}` : (/^\w*Error: .*$/m.exec(run.stderr)?.[0] ?? run.stderr.trim())}`);
  }
  return run.stdout.split(' ').filter(Boolean);
}

// Compiles `variant` (CPU only) with cmake-js in `buildDir`; resolves to the addon's path. `stdio` as spawn takes
// it: 'inherit' shows the compiler's output, 'pipe' keeps it for the error should the build fail.
function compileVariant(root, variant, buildDir, stdio = 'inherit') {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  const args = [
    cmakeJs, 'compile', '--directory', root, '--out', buildDir, '--target', 'dixie_native',
    '--CDCMAKE_BUILD_TYPE=Release', '--CDDIXIE_CUDA=OFF', `--CDDIXIE_ARCH_FLAGS=${variant.flags}`,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', stdio, stdio] });
    let output = '';
    child.stdout?.on('data', (d) => (output += d));
    child.stderr?.on('data', (d) => (output += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const file = path.join(buildDir, 'Release', ADDON_FILE);
      if (code === 0 && fs.existsSync(file)) resolve(file);
      else reject(new Error(`compiling the ${variant.name} addon (${variant.flags}) in ${buildDir} failed (exit code ${code})${output ? `:\n${output.slice(-4000)}` : ''}`));
    });
  });
}

module.exports = {
  SOURCE_BUILD, PREBUILDS_DIR, VARIANTS,
  platformKey, parseCpuFlags, readCpuFlags, bestVariant, prebuiltFile, presentVariants, chooseAddon, locateAddon, checkAddon, compileVariant,
};
