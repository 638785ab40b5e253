// Parsed JSON is checked to be an object before its fields are read: typeof says 'object' for null and arrays too.
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
