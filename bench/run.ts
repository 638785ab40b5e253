// `npm run bench`: runs every benchmark module (bench/*.bench.ts) in turn, or those named on the command line
// (`npm run bench -- engine tokenizer`). Each module prints its own table.
import fs from 'node:fs';
import path from 'node:path';

interface BenchModule {
  run(): Promise<void>;
}

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const files = fs.readdirSync(__dirname).filter((f) => f.endsWith('.bench.js')).sort();
  for (const file of files) {
    const name = file.replace(/\.bench\.js$/, '');
    if (only.length > 0 && !only.includes(name)) continue;
    console.log(`\n## ${name}\n`);
    const mod = require(path.join(__dirname, file)) as BenchModule;
    await mod.run();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
