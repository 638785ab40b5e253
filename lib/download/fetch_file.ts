// Downloads one file over HTTP(S) the way large model files need it: into <dest>.partial (never under the
// final name until complete and checked), resuming with an HTTP Range request after a dropped connection
// (in this run, or the next), following redirects to a separate file host, and checking the size and the
// hash the server announces (Hugging Face: X-Linked-Size and X-Linked-Etag = sha256 on the redirect of a
// large file; ETag = git blob sha1 of a small one).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ProgressBar, type ProgressSink } from './progress';
import { namingFile, renameAtomic, writeAllSync } from '../util/atomic_file';

export interface FetchFileOptions {
  headers?: Record<string, string>;  // sent to the first host only (an Authorization token stays there)
  retries?: number;                  // further attempts after a dropped connection (default 5)
  retryDelayMs?: number;             // before the first retry, doubled each time (default 1000)
  idleTimeoutMs?: number;            // abort when no byte arrives for this long (default 60 s)
  progress?: ProgressSink | null;    // where the progress bar goes (default stderr; null: none)
  label?: string;
}

export class HttpNotFoundError extends Error {}
// Errors that another attempt cannot fix: a bad checksum, a refused request, a broken protocol exchange.
class FatalError extends Error {}
// The first host could not be reached at all (no network, wrong mirror): said at once, not retried.
export class ConnectError extends Error {}

interface Expected {
  size: number | null;
  sha256: string | null;
  gitSha1: string | null;
  tag: string | null;  // identifies the content, so a partial is only resumed against the same file
}

const MAX_REDIRECTS = 10;

function unquoteEtag(value: string | null): string | null {
  if (value === null) return null;
  return value.replace(/^W\//, '').replace(/^"|"$/g, '');
}

function contentTag(res: Response, linked: Expected): Expected {
  const etag = unquoteEtag(res.headers.get('etag'));
  const length = res.status === 200 ? Number(res.headers.get('content-length') ?? NaN) : NaN;
  const total = /\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
  const size = linked.size ?? (total ? Number(total[1]) : Number.isSafeInteger(length) ? length : null);
  const hex = (s: string | null, n: number): string | null => (s !== null && new RegExp(`^[0-9a-f]{${n}}$`).test(s) ? s : null);
  return {
    size,
    sha256: linked.sha256 ?? hex(etag, 64),
    gitSha1: linked.sha256 === null && linked.tag === null ? hex(etag, 40) : null,
    tag: linked.tag ?? etag,
  };
}

// undici reports network failures as "fetch failed" / "terminated" with the real reason in `cause`.
function networkDetail(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}

// The partial's sidecar: which content it holds, so a changed file upstream starts over instead of splicing.
function readTag(metaFile: string): string | null {
  try {
    return (JSON.parse(fs.readFileSync(metaFile, 'utf8')) as { tag?: string }).tag ?? null;
  } catch {
    return null;
  }
}

async function hashFile(file: string, algorithm: string, prefix?: Buffer): Promise<string> {
  const hash = crypto.createHash(algorithm);
  if (prefix) hash.update(prefix);
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

// Runs one operation on a download's own files. What fails there (a full disk, a file size limit, a folder not
// writable) is said as the file's, not as the connection's, and not retried: another attempt would fetch the same
// bytes to meet the same disk.
function onDisk<T>(file: string, operation: () => T): T {
  try {
    return operation();
  } catch (err) {
    throw new FatalError(`${(namingFile(file, err) as Error).message} (what was downloaded is kept: run again to resume once there is room)`);
  }
}

// One attempt: request (following redirects by hand, to read the hub's headers on the way), then append the
// body to the partial file from where it stands.
async function attempt(url: string, partial: string, options: FetchFileOptions): Promise<{ expected: Expected; complete: boolean }> {
  const have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
  const linked: Expected = { size: null, sha256: null, gitSha1: null, tag: null };
  const firstOrigin = new URL(url).origin;
  let current = url;
  let res: Response;
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const idle = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => controller.abort(new Error(`no data for ${(options.idleTimeoutMs ?? 60_000) / 1000} s`)), options.idleTimeoutMs ?? 60_000);
  };
  try {
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': 'dixie-download-model' };
      if (new URL(current).origin === firstOrigin) Object.assign(headers, options.headers);
      if (have > 0) headers.range = `bytes=${have}-`;
      idle();
      try {
        res = await fetch(current, { redirect: 'manual', headers, signal: controller.signal });
      } catch (err) {
        const message = `cannot reach ${new URL(current).origin} (${networkDetail(err)})`;
        throw hop === 0 ? new ConnectError(message) : new Error(message);
      }
      const linkedSize = res.headers.get('x-linked-size');
      const linkedEtag = unquoteEtag(res.headers.get('x-linked-etag'));
      if (linkedSize !== null && /^\d+$/.test(linkedSize)) linked.size = Number(linkedSize);
      if (linkedEtag !== null) {
        linked.tag = linkedEtag;
        if (/^[0-9a-f]{64}$/.test(linkedEtag)) linked.sha256 = linkedEtag;
      }
      if (res.status < 300 || res.status >= 400) break;
      const location = res.headers.get('location');
      await res.body?.cancel();
      if (location === null) throw new FatalError(`${current}: redirect ${res.status} without a Location`);
      if (hop >= MAX_REDIRECTS) throw new FatalError(`${url}: more than ${MAX_REDIRECTS} redirects`);
      current = new URL(location, current).toString();
    }
    if (res.status === 404) {
      await res.body?.cancel();
      throw new HttpNotFoundError(`${url}: not found (HTTP 404)`);
    }
    const expected = contentTag(res, linked);
    const metaFile = `${partial}.json`;
    if (have > 0 && (res.status === 416 || res.status === 206)) {
      const storedTag = readTag(metaFile);
      if (storedTag !== null && expected.tag !== null && storedTag !== expected.tag) {
        // The file changed upstream since the partial was started: start over.
        await res.body?.cancel();
        fs.rmSync(partial, { force: true });
        throw new Error(`${url}: changed upstream since the partial download; starting over`);
      }
    }
    if (res.status === 416) {
      await res.body?.cancel();
      if (expected.size !== null && have === expected.size) return { expected, complete: true };
      fs.rmSync(partial, { force: true });
      throw new Error(`${url}: the server refused to resume at byte ${have}; starting over`);
    }
    if (res.status !== 200 && res.status !== 206) {
      await res.body?.cancel();
      const message = `${current}: HTTP ${res.status} ${res.statusText}`;
      throw res.status >= 500 || res.status === 429 ? new Error(message) : new FatalError(message);
    }
    let offset = have;
    if (res.status === 200) {
      offset = 0;  // the server sent the whole file (no range support): overwrite
    } else {
      const range = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
      if (!range || Number(range[1]) !== have) throw new FatalError(`${current}: asked for bytes from ${have}, got "${res.headers.get('content-range')}"`);
    }
    onDisk(metaFile, () => fs.writeFileSync(metaFile, JSON.stringify({ url, tag: expected.tag, size: expected.size })));
    const fd = onDisk(partial, () => fs.openSync(partial, offset === 0 ? 'w' : 'a'));
    const bar = options.progress === null ? null : new ProgressBar(options.label ?? path.basename(partial), expected.size, offset, options.progress);
    try {
      if (res.body) {
        for await (const chunk of res.body) {
          idle();
          const bytes = chunk as Uint8Array;
          onDisk(partial, () => writeAllSync(fd, bytes));
          offset += bytes.length;
          bar?.update(offset);
        }
      }
      onDisk(partial, () => fs.fsyncSync(fd));
    } catch (err) {
      if (err instanceof FatalError) throw err;
      throw new Error(`${new URL(current).origin}: the connection broke at byte ${offset}${expected.size !== null ? ` of ${expected.size}` : ''} (${networkDetail(err)})`);
    } finally {
      fs.closeSync(fd);
    }
    bar?.finish();
    return { expected, complete: expected.size === null || offset >= expected.size };
  } finally {
    clearTimeout(timer);
  }
}

// Downloads url to dest. Resolves once dest holds the complete, checked file; on failure the partial stays
// (if its data was sound) so that the next run resumes it.
export async function fetchFile(url: string, dest: string, options: FetchFileOptions = {}): Promise<void> {
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  const partial = `${dest}.partial`;
  const retries = options.retries ?? 5;
  let delay = options.retryDelayMs ?? 1000;
  let result: { expected: Expected; complete: boolean } | null = null;
  for (let tries = 0; ; tries++) {
    try {
      result = await attempt(url, partial, options);
      if (result.complete) break;
      throw new Error(`${url}: the transfer ended at byte ${fs.statSync(partial).size} of ${result.expected.size}`);
    } catch (err) {
      const retryable = !(err instanceof FatalError || err instanceof HttpNotFoundError || (err instanceof ConnectError && tries === 0));
      if (!retryable || tries >= retries) throw err;
      options.progress?.write(`${(err as Error).message}; retrying\n`);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay *= 2;
    }
  }
  const { expected } = result;
  const size = fs.statSync(partial).size;
  const refuse = (what: string): never => {
    fs.rmSync(partial, { force: true });
    fs.rmSync(`${partial}.json`, { force: true });
    throw new FatalError(`${url}: ${what}; the download was discarded`);
  };
  if (expected.size !== null && size !== expected.size) refuse(`got ${size} bytes, the server announced ${expected.size}`);
  if (expected.sha256 !== null) {
    const actual = await hashFile(partial, 'sha256');
    if (actual !== expected.sha256) refuse(`sha256 ${actual} does not match the announced ${expected.sha256}`);
  } else if (expected.gitSha1 !== null) {
    const actual = await hashFile(partial, 'sha1', Buffer.from(`blob ${size}\0`));
    if (actual !== expected.gitSha1) refuse(`git blob sha1 ${actual} does not match the ETag ${expected.gitSha1}`);
  }
  renameAtomic(partial, dest);
  fs.rmSync(`${partial}.json`, { force: true });
}
