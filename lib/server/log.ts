// Structured logs: one JSON object a line on stdout ({time, level, msg, ...fields}), for any log collector.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Log = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export function createLog(options: { debug: boolean; write?: (line: string) => void }): Log {
  const min = options.debug ? 'debug' : 'info';
  const write = options.write ?? ((line: string) => process.stdout.write(line));
  return (level, msg, fields) => {
    if (RANK[level] < RANK[min]) return;
    write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
  };
}
