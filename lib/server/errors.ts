// An error that becomes an HTTP answer: its status and message go to the client as JSON ({error, ...extra}).
export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly extra: Record<string, unknown> = {}, readonly headers: Record<string, string> = {}) {
    super(message);
    this.name = 'HttpError';
  }
}
