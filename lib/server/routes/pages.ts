// OpenAI's cursor pages, for its lists of files, jobs, events and checkpoints: {object: "list", data, first_id,
// last_id, has_more}, the items after the one `after` names, `limit` of them at most. The SDKs page through
// with `after` set to the last id of the page before. The items are taken in order only as far as the page needs
// them, so that a list read lazily (a job's events, from the end of their log) is read no further.
import type { Request } from 'express';
import { bad } from './api_common';
import { quoted } from '../../util/quoted';

export interface CursorPage<T> {
  object: 'list';
  data: T[];
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

export function cursorPage<T extends { id: string }>(items: Iterable<T>, query: Request['query'], defaultLimit: number, maxLimit = 100): CursorPage<T> {
  const given = query.limit;
  let limit = defaultLimit;
  if (given !== undefined) {
    limit = typeof given === 'string' && /^\d+$/.test(given) ? Number(given) : NaN;
    if (!(limit >= 1 && limit <= maxLimit)) bad('limit', `must be an integer from 1 to ${maxLimit} (got ${quoted(given)})`);
  }
  const after = query.after;
  let found = after === undefined;
  const data: T[] = [];
  let hasMore = false;
  for (const item of items) {
    if (!found) {
      found = item.id === after;
    } else if (data.length === limit) {
      hasMore = true;
      break;
    } else {
      data.push(item);
    }
  }
  if (!found) bad('after', `no item with id ${JSON.stringify(after)} in this list: give the last id of the page before (its "last_id")`);
  return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: hasMore };
}
