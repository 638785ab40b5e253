#!/usr/bin/env node
'use strict';
// `npm run build:prebuilds`, which `npm pack` runs before packing: compiles the CPU addon for each variant of this
// platform (native/prebuilds.js VARIANTS) into prebuilds/<platform>/<variant>/, each in its own build folder under
// build/prebuilds/ so that the next run recompiles only what changed, and runs each one this CPU can run.
// DIXIE_PREBUILDS=avx2,sse2 builds those variants alone, and the platform's folder then holds those alone.
// One CI job per platform (a linux-x64 and a linux-arm64 runner) makes the whole set; the package ships whatever
// prebuilds/ holds.
const fs = require('node:fs');
const path = require('node:path');
const prebuilds = require('./prebuilds');

async function main() {
  const root = path.join(__dirname, '..');
  const platform = prebuilds.platformKey();
  const all = prebuilds.VARIANTS[platform];
  if (!all) throw new Error(`nothing is prebuilt for ${platform} (native/prebuilds.js VARIANTS): installing there compiles from source`);
  const asked = (process.env.DIXIE_PREBUILDS ?? '').split(',').map((name) => name.trim()).filter(Boolean);
  const unknown = asked.filter((name) => !all.some((v) => v.name === name));
  if (unknown.length > 0) throw new Error(`DIXIE_PREBUILDS: no variant ${unknown.join(', ')} for ${platform} (there are ${all.map((v) => v.name).join(', ')})`);
  const variants = asked.length > 0 ? all.filter((v) => asked.includes(v.name)) : all;
  for (const stale of all.filter((v) => !variants.includes(v))) {
    fs.rmSync(path.dirname(prebuilds.prebuiltFile(root, platform, stale.name)), { recursive: true, force: true });
  }
  const cpuFlags = prebuilds.readCpuFlags();
  for (const variant of variants) {
    console.log(`\n${platform}/${variant.name}: ${variant.describe} (${variant.flags})`);
    const built = await prebuilds.compileVariant(root, variant, path.join(root, 'build', 'prebuilds', `${platform}-${variant.name}`));
    const target = prebuilds.prebuiltFile(root, platform, variant.name);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.copyFileSync(built, `${target}.tmp`);
    fs.renameSync(`${target}.tmp`, target);
    const lacking = variant.needs.filter((f) => !cpuFlags.has(f));
    const checked = lacking.length > 0 ? `not run: this CPU lacks ${lacking.join(', ')}` : `runs here, compiled for ${prebuilds.checkAddon(target).join(' ') || 'no vector extensions'}`;
    console.log(`${path.relative(root, target)}: ${(fs.statSync(target).size / 1e6).toFixed(1)} MB; ${checked}`);
  }
}

main().catch((err) => {
  console.error(`build-prebuilds: ${err.message}`);
  process.exit(1);
});
