// OpenAI's cursor pages, for its lists of files, jobs, events and checkpoints: {object: "list", data, first_id,
// last_id, has_more}, the items after the one `after` names, `limit` of them at most. The SDKs page through
// with `after` set to the last id of the page before.
import type { Request } from 'express';
import { bad } from './api_common';

export interface CursorPage<T> {
  object: 'list';
  data: T[];
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

export function cursorPage<T extends { id: string }>(items: readonly T[], query: Request['query'], defaultLimit: number, maxLimit = 100): CursorPage<T> {
  const given = query.limit;
  let limit = defaultLimit;
  if (given !== undefined) {
    limit = typeof given === 'string' && /^\d+$/.test(given) ? Number(given) : NaN;
    if (!(limit >= 1 && limit <= maxLimit)) bad('limit', `must be an integer from 1 to ${maxLimit} (got ${JSON.stringify(given)})`);
  }
  let start = 0;
  if (query.after !== undefined) {
    const after = query.after;
    const at = typeof after === 'string' ? items.findIndex((item) => item.id === after) : -1;
    if (at < 0) bad('after', `no item with id ${JSON.stringify(after)} in this list: give the last id of the page before (its "last_id")`);
    start = at + 1;
  }
  const data = items.slice(start, start + limit);
  return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: start + limit < items.length };
}
