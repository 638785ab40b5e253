// Structured logs: one JSON object a line on stdout ({time, level, msg, ...fields}), for any log collector.
type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Log = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

// Debug lines on or off, or on with what users wrote left out: a debug line per generation holds its prompt, the
// users' chat text (lib/server/service.ts), which may be private and would then sit in every log it reaches.
export type DebugLogging = boolean | 'redacted';

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

// The log fields that hold users' text. A new field with users' text must be listed here.
const USER_TEXT_FIELDS = ['prompt'];

// Users' text replaced by its length (or by nothing, should a field ever hold it in another shape).
function redact(fields: Record<string, unknown>): Record<string, unknown> {
  const out = { ...fields };
  for (const key of USER_TEXT_FIELDS) {
    const value = out[key];
    if (value !== undefined) out[key] = typeof value === 'string' ? `[redacted: ${value.length} characters]` : '[redacted]';
  }
  return out;
}

// Characters JSON.stringify leaves as they are that a terminal or log viewer acts on: the C1 controls (U+009B starts
// an escape sequence as ESC [ does, on terminals that take 8-bit controls), line separators, and the bidirectional
// overrides that show text in another order than it is. A client can put any of them in what is logged (its
// X-Request-Id, its Host header); they are written as JSON escapes, which read back as the same text.
const UNSAFE_FOR_TERMINALS = /[\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function escapedForTerminals(json: string): string {
  return json.replace(UNSAFE_FOR_TERMINALS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// With debug true, says at once (at start, for the server) that users' text goes into the log.
export function createLog(options: { debug: DebugLogging; write?: (line: string) => void }): Log {
  const min = options.debug ? 'debug' : 'info';
  const write = options.write ?? ((line: string) => process.stdout.write(line));
  const redacting = options.debug === 'redacted';
  const log: Log = (level, msg, fields) => {
    if (RANK[level] < RANK[min]) return;
    write(`${escapedForTerminals(JSON.stringify({ time: new Date().toISOString(), level, msg, ...(redacting && fields ? redact(fields) : fields) }))}\n`);
  };
  if (options.debug === true) {
    log('warn', 'debug logging is on: every prompt is logged in full, users\' chat text included; "debug": "redacted" logs the same lines without the text');
  }
  return log;
}
