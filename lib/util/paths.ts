// Where two paths meet, as the file system sees them: a command that writes must not replace what it reads.
import fs from 'node:fs';
import path from 'node:path';

// `p` absolute, through links: the longest part of it that exists resolved by the file system, the rest as written.
export function realPath(p: string): string {
  const missing: string[] = [];
  let head = path.resolve(p);
  while (!fs.existsSync(head)) {
    const up = path.dirname(head);
    if (up === head) break;
    missing.unshift(path.basename(head));
    head = up;
  }
  return path.join(fs.realpathSync(head), ...missing);
}

// Whether `inner` is `outer` or lies inside it, so that replacing `outer` replaces or deletes `inner`.
export function isWithin(inner: string, outer: string): boolean {
  const relative = path.relative(realPath(outer), realPath(inner));
  return relative === '' || (relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative));
}
