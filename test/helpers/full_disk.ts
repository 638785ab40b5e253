// A write that meets a full disk partway through a set of files, in this process: opening a temporary file whose
// target is named `target` fails with ENOSPC, as it does when the files written before it took the last room.
import fs from 'node:fs';
import path from 'node:path';

export async function withFullDiskAt<T>(target: string, run: () => Promise<T>): Promise<T> {
  const temporary = new RegExp(`^\\.${target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.\\d+\\.[0-9a-f]{12}\\.tmp$`);
  const { openSync } = fs;
  fs.openSync = ((file: fs.PathLike, ...rest: unknown[]) => {
    if (temporary.test(path.basename(String(file)))) throw Object.assign(new Error(`ENOSPC: no space left on device, open '${String(file)}'`), { code: 'ENOSPC', syscall: 'open', path: String(file) });
    return (openSync as (...args: unknown[]) => number)(file, ...rest);
  }) as typeof fs.openSync;
  try {
    return await run();
  } finally {
    fs.openSync = openSync;
  }
}
