// An error that becomes an HTTP answer: its status and message go to the client as JSON ({error, ...extra}).
export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly extra: Record<string, unknown> = {}, readonly headers: Record<string, string> = {}) {
    super(message);
    this.name = 'HttpError';
  }
}

// A 503 of a model too busy to take a request now (its room full, its load not done in time), which goes through if
// tried again later: unlike a model that failed to load, nothing is broken.
export class BusyError extends HttpError {}

// Absolute paths of two segments or more (POSIX or Windows), not the path part of a URL.
const ABSOLUTE_PATH = /(?<![\w.~:/\\-])(?:\/[^\s/\\"'`:;,()<>]+){2,}\/?|\b[A-Za-z]:(?:\\[^\s\\"'`:;,()<>]+)+\\?/g;

// A message for a client: where the server keeps its files tells an attacker how the machine is laid out, so
// each absolute path becomes its last part (the log keeps the whole message).
export function withoutPaths(message: string): string {
  return message.replace(ABSOLUTE_PATH, (p) => p.split(/[/\\]/).filter((part) => part !== '').pop() ?? '');
}
