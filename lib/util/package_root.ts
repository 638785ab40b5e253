// The installed package's folder (the one holding its package.json, above dist/ where the code runs) and version.
import fs from 'node:fs';
import path from 'node:path';

export function packageRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package root above ${__dirname}`);
    dir = up;
  }
  return dir;
}

export function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
