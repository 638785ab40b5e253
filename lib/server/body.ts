// Request bodies, read at the edge within bounds, their failures made into HttpErrors with the right status:
//   - a body declared (Content-Length) larger than the limit is refused before a byte of it is read, since
//     body-parser would read the whole of it and throw it away before answering;
//   - a body still arriving after `timeoutMs` is given up with 408, so a client sending a byte a second
//     cannot hold a connection for long;
//   - a Content-Encoding that is unknown (415) or does not decode (400) is the client's mistake, not a 500;
//   - a JSON body nested deeper than any API's fields go is refused with 400: the code that reads it (a schema's
//     converter, JSON.stringify) recurses, and would overflow the stack.
// The error handler closes the connection of a request whose body was not read to its end.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { HttpError } from './errors';

function bodyTooLarge(limitBytes: number): HttpError {
  return new HttpError(413, `the body is larger than the limit of ${limitBytes} bytes`);
}

// body-parser's errors are http-errors with a `type`, except those of the decompression stream, which have none.
function bodyError(err: unknown, req: Request, limitBytes: number): unknown {
  const e = err as { status?: unknown; expose?: unknown; type?: string; message: string };
  if (typeof err !== 'object' || err === null || e.expose !== true || typeof e.status !== 'number') return err;
  const encoding = req.get('content-encoding');
  if (e.type === 'entity.too.large') return bodyTooLarge(limitBytes);
  if (e.type === 'entity.parse.failed') return new HttpError(400, `body: not valid JSON: ${e.message}`, { field: 'body' });
  if (e.type === undefined && encoding !== undefined) return new HttpError(400, `body: not valid ${encoding} data (Content-Encoding): ${e.message}`, { field: 'body' });
  return new HttpError(e.status, e.message);
}

// The deepest a request's JSON may nest: a JSON schema of objects in arrays in objects, some levels each, is far
// shallower.
const MAX_BODY_DEPTH = 64;

// Why a field nests too deep, after its name.
export const TOO_DEEP = `nests arrays and objects more than ${MAX_BODY_DEPTH} deep`;

// The field of `body` that nests deeper than MAX_BODY_DEPTH levels of arrays and objects ("body" for the body itself, an
// array), looked for without recursing; null where none does.
export function nestedTooDeep(body: unknown): string | null {
  if (typeof body !== 'object' || body === null || ArrayBuffer.isView(body)) return null;  // a raw body's bytes are no JSON
  const fields: [string, unknown][] = Array.isArray(body) ? [['body', body]] : Object.entries(body);
  for (const [field, value] of fields) {
    const pending: [unknown, number][] = [[value, 1]];
    for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
      const [v, depth] = next;
      if (typeof v !== 'object' || v === null) continue;
      if (depth === MAX_BODY_DEPTH) return field;
      for (const child of Object.values(v)) pending.push([child, depth + 1]);
    }
  }
  return null;
}

// `parser` (an express.json() or express.raw() with the same limit) within the bounds above.
export function boundedBody(parser: RequestHandler, limitBytes: number, timeoutMs: number): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    if (Number(req.get('content-length')) > limitBytes) {
      next(bodyTooLarge(limitBytes));
      return;
    }
    let settled = false;
    const settle = (err?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const deep = err === undefined ? nestedTooDeep(req.body) : null;
      if (deep !== null) next(new HttpError(400, `${deep}: ${TOO_DEEP}`, { field: deep }));
      else next(err === undefined ? undefined : bodyError(err, req, limitBytes));
    };
    const timer = setTimeout(() => settle(new HttpError(408, `the body did not arrive within ${timeoutMs / 1000} s`)), timeoutMs);
    parser(req, res, settle);
  };
}
