// A command run as on a disk that fills up: a file size limit (ulimit -f, in KiB) with SIGXFSZ ignored makes a
// write past it come short, then fail with EFBIG, as a full disk's come short, then fail with ENOSPC.
export interface LimitedCommand {
  file: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

export function withFileSizeLimit(kib: number | 'unlimited', command: readonly string[], env: NodeJS.ProcessEnv = {}): LimitedCommand {
  return {
    file: 'bash',
    // Without the NODE_OPTIONS that tap gives every child it sees spawned: its hook writes a record of the process as
    // it exits, and past the limit that write would end the command by SIGXFSZ after it has said what it had to say.
    args: ['-c', `trap '' XFSZ; ulimit -f ${kib}; unset NODE_OPTIONS; exec "$@"`, 'bash', ...command],
    env: { ...process.env, ...env },
  };
}
