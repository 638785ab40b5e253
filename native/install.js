#!/usr/bin/env node
'use strict';
// `npm install`'s step for the native addon: use the prebuilt addon for this CPU when the package has one that
// loads here, and otherwise compile one from source (`npm run build:native`: CMake and a C++17 compiler).
// Compiling is chosen instead when
//   DIXIE_BUILD_FROM_SOURCE=1 (or npm's --build-from-source) asks for it: an addon tuned to this very machine;
//   unless DIXIE_BUILD_FROM_SOURCE=0, nvcc is found (the prebuilt addons are CPU only, and a compiled one has the
//   CUDA backend), or this is a git checkout (prebuilds that `npm pack` left there may be older than the sources).
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const prebuilds = require('./prebuilds');

const root = path.join(__dirname, '..');

function compile(reason) {
  console.log(`dixie: compiling the native addon (${reason})`);
  // npm_execpath is the npm (or yarn, pnpm) that runs this script; by hand, the npm on the PATH.
  const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm'];
  const result = spawnSync(npm[0], [...npm.slice(1), 'run', 'build:native'], { cwd: root, stdio: 'inherit' });
  if (result.error) throw new Error(`running ${npm.join(' ')} run build:native: ${result.error.message}`);
  process.exit(result.status ?? 1);
}

// Where CMake would find nvcc: $CUDACXX, the PATH, or the toolkit's usual home.
function findNvcc() {
  const candidates = [process.env.CUDACXX, ...(process.env.PATH ?? '').split(path.delimiter).map((dir) => dir && path.join(dir, 'nvcc')), '/usr/local/cuda/bin/nvcc'];
  return candidates.find((file) => file && fs.existsSync(file)) ?? null;
}

const fromSource = process.env.DIXIE_BUILD_FROM_SOURCE ?? (process.env.npm_config_build_from_source === 'true' ? '1' : undefined);
if (fromSource === '1') compile('DIXIE_BUILD_FROM_SOURCE=1');
if (fromSource !== '0') {
  const nvcc = findNvcc();
  if (nvcc) compile(`${nvcc} is here, and the prebuilt addons have no CUDA backend; DIXIE_BUILD_FROM_SOURCE=0 takes a prebuilt one instead`);
  if (fs.existsSync(path.join(root, '.git'))) compile('a git checkout; DIXIE_BUILD_FROM_SOURCE=0 takes a prebuilt one instead');
}

const platform = prebuilds.platformKey();
const variant = prebuilds.bestVariant(platform, prebuilds.readCpuFlags(), prebuilds.presentVariants(root, platform));
if (!variant) compile(`no prebuilt addon for ${platform} and this CPU`);
const file = prebuilds.prebuiltFile(root, platform, variant.name);
let features;
try {
  features = prebuilds.checkAddon(file);
} catch (err) {
  compile(`the prebuilt addon does not suit this system: ${err.message}`);
}
console.log(`dixie: using the prebuilt addon ${platform}/${variant.name} (${variant.describe}; compiled for ${features.join(' ') || 'no vector extensions'}); ` +
  '`npm run build:native` compiles one for this machine instead');
