// The yargs of every command. A flag is read whichever separator it is typed with (--stop-after is --stop_after, for
// a command whose flags are written with underscores): people type both, and the original tools' users type
// underscores. A flag given twice takes its last value, as when an override is appended to a long command line; a
// flag that takes a list (--me, repeated) keeps every one. A mistake is told in a line that says what was typed, not
// under the whole help.
import path from 'node:path';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { quoted } from '../../lib/util/quoted';

// What yargs knows of the options declared, which its types leave out.
interface DeclaredOptions {
  array: string[];
  number: string[];
}

export function commandLine(name: string, separator: '_' | '-' = '_'): Argv {
  const args = spelledWith(hideBin(process.argv), separator);
  const parser = yargs(args)
    .scriptName(name)
    .parserConfiguration({ 'camel-case-expansion': false })
    .showHelpOnFail(false, `${name} --help lists the options`);
  const declared = (): DeclaredOptions => (parser as unknown as { getOptions(): DeclaredOptions }).getOptions();
  return parser.middleware((argv) => {
    const expanded = expandedPattern(args, argv._.map(String));
    if (expanded) throw new Error(expanded);
    const { array, number } = declared();
    for (const [key, value] of Object.entries(argv)) {
      if (key !== '_' && Array.isArray(value) && !array.includes(key)) argv[key] = value[value.length - 1];
      if (number.includes(key) && Number.isNaN(argv[key])) throw new Error(`--${key} must be a number, got ${quoted(typedValue(args, key))}`);
    }
  }, true);
}

// The flags that take a glob pattern, which bin/train expands itself.
const PATTERN_FLAGS = ['dataset', 'val_dataset'];

// What to say of a pattern flag followed by files that the shell spread out of an unquoted pattern
// (--dataset multi/*.train): yargs would call all but the first of them unknown arguments. null when there is none.
function expandedPattern(args: string[], positionals: string[]): string | null {
  for (const flag of PATTERN_FLAGS) {
    const at = args.lastIndexOf(`--${flag}`);
    if (at < 0) continue;
    const end = args.findIndex((arg, i) => i > at && arg.startsWith('-'));
    const files = args.slice(at + 1, end < 0 ? args.length : end);
    if (files.length < 2 || !files.slice(1).every((file) => positionals.includes(file))) continue;
    const dirs = new Set(files.map((file) => path.dirname(file)));
    const exts = new Set(files.map((file) => path.extname(file)));
    const pattern = dirs.size === 1 && exts.size === 1 ? path.join([...dirs][0], `*${[...exts][0]}`) : '<pattern>';
    const named = files.slice(0, 3).join(', ') + (files.length > 3 ? `, ... (${files.length} in all)` : '');
    return `--${flag} was given ${files.length} files (${named}): the shell expanded an unquoted pattern; quote it so that the pattern reaches the command whole, as in --${flag} '${pattern}'`;
  }
  return null;
}

// The arguments with each flag's name written with `separator` (the value in --prompt=a-b stays as it is), up to a
// bare "--", after which nothing is a flag.
function spelledWith(args: string[], separator: '_' | '-'): string[] {
  const other = separator === '_' ? /-/g : /_/g;
  const end = args.indexOf('--');
  return args.map((arg, i) => {
    if ((end >= 0 && i >= end) || !/^--[^-]/.test(arg)) return arg;
    const equals = arg.indexOf('=');
    const flag = arg.slice(2, equals < 0 ? arg.length : equals);
    // yargs' negation of a boolean, --no-<flag>, keeps its dash.
    const negation = /^no[-_]/.test(flag) ? 'no-' : '';
    return `--${negation}${flag.slice(negation.length).replace(other, separator)}${equals < 0 ? '' : arg.slice(equals)}`;
  });
}

// What was typed for --key, the last time it was given ('' when it was given no value).
function typedValue(args: string[], key: string): string {
  for (let i = args.length - 1; i >= 0; i--) {
    if (args[i].startsWith(`--${key}=`)) return args[i].slice(key.length + 3);
    if (args[i] === `--${key}`) return args[i + 1] ?? '';
  }
  return '';
}
