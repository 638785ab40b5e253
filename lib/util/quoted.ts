// A value as an error message quotes it: its JSON, cut short. A request's value may be nested deeper than
// JSON.stringify's stack allows (a 16 KB body holds 8000 levels of arrays) or be kilobytes long, and the message about
// it must neither fail nor repeat it whole. Numbers are written as they are: JSON writes 1e999 (Infinity) as null.
const MAX_CHARS = 80;
const MAX_ITEMS = 8;
const MAX_DEPTH = 4;

export function quoted(value: unknown): string {
  const text = preview(value, 0);
  return text.length > MAX_CHARS ? `${text.slice(0, MAX_CHARS)}...` : text;
}

function preview(value: unknown, depth: number): string {
  if (typeof value === 'string') return JSON.stringify(value.slice(0, MAX_CHARS + 1));
  if (typeof value !== 'object' || value === null) return String(value);
  const list = Array.isArray(value);
  if (depth === MAX_DEPTH) return list ? '[...]' : '{...}';
  const entries = list ? (value as unknown[]).map((v) => ['', v] as const) : Object.entries(value);
  const items = entries.slice(0, MAX_ITEMS).map(([k, v]) => `${list ? '' : `${JSON.stringify(k)}:`}${preview(v, depth + 1)}`);
  if (entries.length > MAX_ITEMS) items.push('...');
  return list ? `[${items.join(',')}]` : `{${items.join(',')}}`;
}
