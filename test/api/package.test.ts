// The package as its users see it: `require('dixie')` resolves to the typed API, installed or in a clone, what
// `npm pack` ships and what its types need, and the README's library example (examples/library/train_and_generate.js,
// quoted verbatim in README.md) runs as it says and does what it says.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';

const root = path.resolve(__dirname, '../../..');
const example = path.join(root, 'examples/library/train_and_generate.js');

// A folder whose node_modules/dixie is this checkout, as after `npm install dixie`.
function installedPackage(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-pkg-'));
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(root, path.join(dir, 'node_modules', 'dixie'), 'dir');
  return dir;
}

t.test('require("dixie") gives the documented API', async (t) => {
  const dir = installedPackage();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const script = `const d = require('dixie'); console.log(JSON.stringify(Object.fromEntries(Object.entries(d).map(([k, v]) => [k, typeof v]))));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], { cwd: dir });
  const api = JSON.parse(stdout) as Record<string, string>;
  for (const name of ['Model', 'Generator', 'Batcher', 'ChatSession', 'Tokenizer', 'StreamDecoder', 'EncoderPool', 'MessageTooLongError']) t.equal(api[name], 'function', name);
  for (const name of ['loadTokenizer', 'train', 'loadDataset', 'encodeDataset', 'importTFCheckpoint', 'writeGguf', 'writeGgufAdapter', 'downloadModel', 'createServer', 'loadServerConfig', 'createChatbotSanitizer', 'openSafetensors', 'writeSafetensors', 'fitChat']) {
    t.equal(api[name], 'function', name);
  }
});

t.test('the packed package has the license and the library example its README names', async (t) => {
  const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root });
  const files = new Set((JSON.parse(stdout) as { files: { path: string }[] }[])[0].files.map((f) => f.path));
  for (const file of ['LICENSE', 'README.md', path.relative(root, example)]) t.ok(files.has(file), file);
});

t.test('the published types import only packages that installing dixie installs', async (t) => {
  const { dependencies } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  const declarations = fs.readdirSync(path.join(root, 'dist/lib'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.d.ts'));
  const imported = new Set<string>();
  for (const file of declarations) {
    const text = fs.readFileSync(path.join(root, 'dist/lib', file), 'utf8');
    for (const [, name] of text.matchAll(/(?:from |import\()['"]([^'"./][^'"]*)['"]/g)) imported.add(name.startsWith('@') ? name.split('/').slice(0, 2).join('/') : name.split('/')[0]);
  }
  // Node's own modules are typed by the user's @types/node.
  for (const name of [...imported].filter((n) => !n.startsWith('node:'))) {
    const definitelyTyped = name.startsWith('@') ? `@types/${name.slice(1).replace('/', '__')}` : `@types/${name}`;
    const typedBy = fs.existsSync(path.join(root, 'node_modules', definitelyTyped)) ? definitelyTyped : name;
    t.ok(dependencies[typedBy] !== undefined, `${name}: typed by ${typedBy}, a dependency`);
  }
});

t.test('the README quotes the library example verbatim', async (t) => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const code = fs.readFileSync(example, 'utf8');
  t.ok(readme.includes('```js\n' + code + '```'), 'README.md holds examples/library/train_and_generate.js in a js block');
});

t.test('the library example, run from a clone by the line it gives, trains, saves, reloads, embeds and continues the sentence it learned', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dixie-example-'));
  const out = path.join(dir, 'model');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // "Run: node examples/library/train_and_generate.js [out-folder]", as written, in the clone: `require('dixie')`
  // finds the package itself through its exports map, without an install.
  const line = /Run: (node \S+) \[out-folder\]/.exec(fs.readFileSync(example, 'utf8'))?.[1];
  t.equal(line, 'node examples/library/train_and_generate.js', 'the example says how to run it');
  const [, script] = (line as string).split(' ');
  const env = { ...process.env };
  delete env.NODE_PATH;
  const { stdout } = await promisify(execFile)(process.execPath, [script, out], { cwd: root, env });
  const losses = [...stdout.matchAll(/step (\d+): loss ([\d.]+)/g)].map((m) => Number(m[2]));
  t.equal(losses.length, 3, stdout);
  t.ok(losses[0] > losses[2] && losses[2] < 2, `loss falls to below 2: ${losses.join(' -> ')}`);
  t.match(stdout, /h\.0\.attn\.c_attn\.weight shape 64x192/);
  t.match(stdout, /embedding of 64 numbers, length 1\.000/, 'a text embedded: n_embd numbers of length 1');
  t.ok(fs.statSync(path.join(out, 'model.safetensors')).size > 4 * 3216448, 'weights written');
  t.same(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).n_layer, 2);
  const text = JSON.parse(stdout.trim().split('\n').pop() as string) as string;
  t.match(text, /^ fox jumps over/, 'greedy decoding continues the memorised sentence');
});
