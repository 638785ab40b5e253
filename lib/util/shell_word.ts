// A value as a command to copy and paste writes it: as it is where the shell leaves it alone, else in single quotes.
export function shellWord(value: string): string {
  return /^[\w./-]+$/.test(value) ? value : `'${value.replace(/'/g, "'\\''")}'`;
}
