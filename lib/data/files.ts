// What `--dataset` names: a file, a folder (every file below it, recursively) or a glob pattern
// (`*`, `?`, `[abc]`, and `**` for any number of folders), as load_dataset takes it (docs/compatibility.md).
// Files come back sorted, so a dataset's chunks (and so its batches under a seed) never depend on the
// order the file system lists them in.
import fs from 'node:fs';
import path from 'node:path';

const MAGIC = /[*?[]/;

// Every regular file under dir, recursively, skipping hidden entries (.git, editor backups).
function walk(dir: string, out: string[]): void {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(full, out);
    else if (entry.isFile() || (entry.isSymbolicLink() && fs.statSync(full).isFile())) out.push(full);
  }
}

// One path segment of a glob as a regular expression.
function segmentRegExp(segment: string): RegExp {
  let source = '';
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i];
    if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else if (c === '[') {
      const close = segment.indexOf(']', i + 2);
      if (close < 0) {
        source += '\\[';
        continue;
      }
      let set = segment.slice(i + 1, close).replace(/\\/g, '\\\\');
      if (set.startsWith('!')) set = `^${set.slice(1)}`;
      source += `[${set}]`;
      i = close;
    } else source += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

// Matches the glob's segments from `index` on against what lies below `dir`.
function matchGlob(dir: string, segments: readonly string[], index: number, out: Set<string>): void {
  if (index === segments.length) {
    if (fs.existsSync(dir) && fs.statSync(dir).isFile()) out.add(dir);
    return;
  }
  const segment = segments[index];
  if (segment === '**') {
    matchGlob(dir, segments, index + 1, out);
    for (const entry of readDirOrEmpty(dir)) {
      if (entry.isDirectory() && !entry.name.startsWith('.')) matchGlob(path.join(dir, entry.name), segments, index, out);
    }
    return;
  }
  if (!MAGIC.test(segment)) {
    matchGlob(path.join(dir, segment), segments, index + 1, out);
    return;
  }
  const re = segmentRegExp(segment);
  for (const entry of readDirOrEmpty(dir)) {
    // As in a shell, wildcards do not match a leading dot.
    if (entry.name.startsWith('.') && !segment.startsWith('.')) continue;
    if (re.test(entry.name)) matchGlob(path.join(dir, entry.name), segments, index + 1, out);
  }
}

function readDirOrEmpty(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

// The files a dataset argument names, sorted; an error saying what was looked for when there are none.
export function datasetFiles(spec: string): string[] {
  if (fs.existsSync(spec)) {
    const stat = fs.statSync(spec);
    if (stat.isFile()) return [spec];
    if (stat.isDirectory()) {
      const files: string[] = [];
      walk(spec, files);
      if (files.length === 0) throw new Error(`dataset ${spec}: the folder holds no files`);
      return files.sort();
    }
  }
  if (!MAGIC.test(spec)) throw new Error(`dataset ${spec}: no such file or folder`);
  const absolute = path.isAbsolute(spec);
  const segments = spec.split('/').filter((s, i) => s !== '' || i === 0);
  const start = absolute ? '/' : '.';
  const found = new Set<string>();
  matchGlob(start, absolute ? segments.slice(1) : segments, 0, found);
  if (found.size === 0) throw new Error(`dataset ${spec}: the pattern matches no files`);
  return [...found].map((f) => (absolute ? f : path.normalize(f))).sort();
}
