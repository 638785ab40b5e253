// What `--dataset` names: a file, a folder (every file below it, recursively) or a glob pattern
// (`*`, `?`, `[abc]`, and `**` for any number of folders), as load_dataset takes it (docs/compatibility.md).
// Files come back sorted, so a dataset's chunks (and so its batches under a seed) never depend on the
// order the file system lists them in.
import fs from 'node:fs';
import path from 'node:path';

const MAGIC = /[*?[]/;

// A directory entry as what it leads to, through symbolic links: a link to a folder is followed as a folder
// (datasets are often assembled from links), one that leads nowhere is said in `warnings` and skipped, as are
// sockets, devices and the like.
function entryKind(full: string, entry: fs.Dirent, warnings: string[]): 'file' | 'folder' | null {
  if (!entry.isSymbolicLink()) return entry.isDirectory() ? 'folder' : entry.isFile() ? 'file' : null;
  let target: fs.Stats;
  try {
    target = fs.statSync(full);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'which does not exist' : code === 'ELOOP' ? 'which leads round in a loop of links' : `which cannot be read (${code})`;
    warnings.push(`${full}: a symbolic link to ${JSON.stringify(fs.readlinkSync(full))}, ${why}; skipped`);
    return null;
  }
  return target.isDirectory() ? 'folder' : target.isFile() ? 'file' : null;
}

// Runs `visit` on `dir` unless the folder is already being read further up (a link to a folder above it, which
// would never end), said in `warnings`. `above` holds the real paths of the folders being read.
function descend(dir: string, above: Set<string>, warnings: string[], visit: () => void): void {
  let real: string;
  try {
    real = fs.realpathSync(dir);
  } catch {
    return;
  }
  if (above.has(real)) {
    warnings.push(`${dir}: a link to a folder it lies in (${real}); not followed again`);
    return;
  }
  above.add(real);
  try {
    visit();
  } finally {
    above.delete(real);
  }
}

// Every regular file under dir, recursively, through links, skipping hidden entries (.git, editor backups).
function walk(dir: string, out: string[], warnings: string[], above = new Set<string>()): void {
  descend(dir, above, warnings, () => {
    for (const entry of readDirOrEmpty(dir)) {
      if (entry.name.startsWith('.')) continue;
      const full = path.join(dir, entry.name);
      const kind = entryKind(full, entry, warnings);
      if (kind === 'folder') walk(full, out, warnings, above);
      else if (kind === 'file') out.push(full);
    }
  });
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
function matchGlob(dir: string, segments: readonly string[], index: number, out: Set<string>, warnings: string[], above: Set<string>): void {
  if (index === segments.length) {
    if (fs.existsSync(dir) && fs.statSync(dir).isFile()) out.add(dir);
    return;
  }
  const segment = segments[index];
  if (segment === '**') {
    // A trailing ** is every file below, as bash's globstar and Python's glob(recursive=True) have it.
    if (index === segments.length - 1) {
      const files: string[] = [];
      walk(dir, files, warnings, above);
      for (const file of files) out.add(file);
      return;
    }
    descend(dir, above, warnings, () => {
      matchGlob(dir, segments, index + 1, out, warnings, above);
      for (const entry of readDirOrEmpty(dir)) {
        const full = path.join(dir, entry.name);
        if (!entry.name.startsWith('.') && entryKind(full, entry, warnings) === 'folder') matchGlob(full, segments, index, out, warnings, above);
      }
    });
    return;
  }
  if (!MAGIC.test(segment)) {
    matchGlob(path.join(dir, segment), segments, index + 1, out, warnings, above);
    return;
  }
  const re = segmentRegExp(segment);
  for (const entry of readDirOrEmpty(dir)) {
    // As in a shell, wildcards do not match a leading dot.
    if (entry.name.startsWith('.') && !segment.startsWith('.')) continue;
    if (!re.test(entry.name)) continue;
    const full = path.join(dir, entry.name);
    if (index < segments.length - 1) matchGlob(full, segments, index + 1, out, warnings, above);
    // The last segment names files: a link among them that leads nowhere is said, not dropped unseen.
    else if (entryKind(full, entry, warnings) === 'file') out.add(full);
  }
}

function readDirOrEmpty(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

// The files a dataset argument names, sorted; an error saying what was looked for when there are none. What was
// skipped (a link that leads nowhere) goes to `warnings`.
export function datasetFiles(spec: string, warnings: string[] = []): string[] {
  if (fs.existsSync(spec)) {
    const stat = fs.statSync(spec);
    if (stat.isFile()) return [spec];
    if (stat.isDirectory()) {
      const files: string[] = [];
      walk(spec, files, warnings);
      if (files.length === 0) throw new Error(`dataset ${spec}: the folder holds no files`);
      return files.sort();
    }
  }
  if (!MAGIC.test(spec)) throw new Error(`dataset ${spec}: no such file or folder`);
  const absolute = path.isAbsolute(spec);
  const segments = spec.split('/').filter((s, i) => s !== '' || i === 0);
  const start = absolute ? '/' : '.';
  const found = new Set<string>();
  matchGlob(start, absolute ? segments.slice(1) : segments, 0, found, warnings, new Set());
  if (found.size === 0) throw new Error(`dataset ${spec}: the pattern matches no files`);
  return [...found].map((f) => (absolute ? f : path.normalize(f))).sort();
}
