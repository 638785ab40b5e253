// bin/import-chat: the chat exports of messaging apps (WhatsApp, LINE, KakaoTalk, Telegram, Messenger and Instagram,
// Discord via DiscordChatExporter, Google Chat, Element (Matrix), Slack, Snapchat, Signal via signal-export, Skype, X, SMS Backup & Restore, macOS
// Messages' chat.db), and chat fine-tuning JSONL (OpenAI's, ShareGPT's) made training data in the chat format (lib/import/).
import fs from 'node:fs';
import { DATE_ORDERS, DateOrder, EXPORT_FORMATS, ExportFormat, ChatImportProgress, REDACT_KINDS, RedactKind, formatImportSummary, importChats } from '../../lib/import';
import { readJsonFile } from '../../lib/util/json_file';
import { commandLine } from './command_line';
import { isJsonObject } from '../../lib/util/json_object';
import { formatBytes } from '../../lib/util/format';
import { shellWord } from '../../lib/util/shell_word';

// Files this large get a line of their own even when stderr is not a terminal.
const LARGE_FILE_BYTES = 10_000_000;
// Data bin/train takes a tenth of for validation: a chunk of --combine's 50,000 characters of chat (12,000 to 20,000
// tokens) is the least whose tenth holds a window of 124M's context, 1,025 tokens (a twentieth may not).
const HOLD_OUT_BYTES = 50_000;

async function main(): Promise<void> {
  const argv = await commandLine('import-chat', '-')
    .usage(
      '$0 <exports...> --me "<your name>" [--out data/]\n\n' +
        'Turns chat exports into training data: one message a line, 1|<audience>|<text> <EOM> for your messages and ' +
        '0|<audience>|<text> <EOM> for the others\', each conversation in time order. Reads WhatsApp "Export chat" .txt ' +
        '(Android and iOS, any locale), LINE\'s exported chat history (.txt), KakaoTalk\'s exported chat (.txt, a phone\'s or a computer\'s), Telegram Desktop\'s HTML (a chat\'s messages.html, messages2.html...) or JSON (result.json, one chat or the whole account), Facebook ' +
        'Messenger and Instagram JSON (message_1.json...), DiscordChatExporter JSON, Google Chat from Google Takeout, Element\'s JSON export of a Matrix room, Slack\'s workspace export, Snapchat\'s chat_history.json, signal-export\'s Signal chats (a chat\'s data.json), Skype\'s export (its .tar or messages.json), an X archive\'s direct messages, ' +
        'SMS Backup & Restore XML, the ' +
        'Messages database of a Mac (chat.db: iMessage and SMS), and chat fine-tuning data in OpenAI\'s or ShareGPT\'s JSONL (the user\'s side yours, the assistant the audience, its tool calls kept as the server reads them); the format is detected from each file. Folders are ' +
        'searched for .txt, .json, .jsonl, .xml and .db files (and an X archive\'s direct-messages.js, Telegram\'s messages.html); zips (an iPhone\'s WhatsApp export, Facebook\'s and Instagram\'s ' +
        'downloads, Google Takeout, Element\'s export with attachments, Slack\'s export, Snapchat\'s My Data, X\'s archive) and Skype\'s .tar are read without unzipping. The audience is the ' +
        'other person, or the group. The apps\' notices, bots\' posts, media, deleted messages and calls are dropped, and the summary ' +
        'says how many and why. With --out FILE.jsonl the conversations go to OpenAI\'s chat fine-tuning format instead (your messages "user", ' +
        'the audience\'s "assistant"), for OpenAI\'s fine-tuning, tools that take it (Axolotl, TRL, unsloth) or bin/serve --fine_tuning. ' +
        'Nothing is written unless every export was read.',
    )
    .positional('exports', { type: 'string', describe: 'export files, zips or folders' })
    .option('me', { type: 'string', array: true, default: [] as string[], describe: 'your name (or account id) as the apps show it; repeat for several. Not needed for SMS, Snapchat, Signal, Skype, an X archive, a Mac\'s chat.db, a Telegram account export, Google Chat from Takeout, Element\'s JSON, nor fine-tuning JSONL. Run without it to list the senders found' })
    .option('out', { type: 'string', default: 'data', describe: 'a folder, for a .train file per audience; a file ending in .train for one combined file; or a file ending in .jsonl for OpenAI\'s chat fine-tuning format, a conversation a line (one longer than an example may be split at its longest pauses; one the audience wrote nothing in left out)' })
    .option('format', { choices: ['auto', ...EXPORT_FORMATS], default: 'auto', describe: 'the app the exports come from, when it is not detected' })
    .option('contacts', { type: 'string', array: true, default: [] as string[], describe: 'an address book exported as vCards (.vcf; repeat for several): people the exports know only by number or e-mail address get their names from it' })
    .option('audience-map', { type: 'string', array: true, default: [] as string[], describe: '"Name in the app=audience" (repeat), or a JSON file {"Name in the app": "audience"}: renames audiences' })
    .option('groups', { type: 'boolean', default: true, describe: 'import group chats (the audience is the group); --no-groups leaves them out' })
    .option('redact', { type: 'string', describe: `replace ${REDACT_KINDS.join(', ')} with [link], [email], [phone]; alone: all three, or a comma list` })
    .option('date-order', { choices: ['auto', ...DATE_ORDERS], default: 'auto', describe: "WhatsApp's dates: day-month-year, month-day-year or year-month-day (auto: guessed from the file)" })
    .option('force', { type: 'boolean', default: false, describe: 'replace files in the way that no import wrote, or that were changed since (your own .train files, say); without it the import writes nothing and names them' })
    .option('encoding', { type: 'string', describe: 'the exports\' text encoding when not UTF-8 (windows-1252, iso-8859-1, utf-16le...)' })
    .example('$0 "WhatsApp Chat with Mom.txt" --me "Jane Doe"', 'one WhatsApp chat into data/mom.train')
    .example('$0 exports/ --me "Jane Doe" --me jane_d --out data/', 'every export in a folder, Jane being "jane_d" on Discord')
    .example('$0 "WhatsApp Chat - Mom.zip" facebook-*.zip --me "Jane Doe"', 'an iPhone\'s WhatsApp export and every part of a Facebook download, zipped as they come')
    .example('$0 telegram/result.json --no-groups --redact --out data/all.train', 'a Telegram account export, without groups, into one file')
    .example('$0 exports/ --me "Jane Doe" --out chats.jsonl', 'every export in a folder into one JSONL file for OpenAI\'s fine-tuning, Axolotl, TRL or unsloth')
    .example('$0 ~/Library/Messages/chat.db --contacts contacts.vcf', 'iMessage and SMS on a Mac (quit Messages first), people named from the Contacts app\'s export')
    .example('$0 "WhatsApp Chat with Mom.txt"', 'without --me: lists the senders found')
    .demandCommand(1, 'give the export files or folders')
    .wrap(Math.min(120, process.stdout.columns || 100))
    .strict()
    .help()
    .parseAsync();
  const summary = await importChats(argv._.map(String), {
    out: argv.out,
    me: argv.me,
    format: argv.format === 'auto' ? undefined : (argv.format as ExportFormat),
    encoding: argv.encoding,
    dateOrder: argv['date-order'] === 'auto' ? undefined : (argv['date-order'] as DateOrder),
    audienceMap: audienceMap(argv['audience-map']),
    contacts: argv.contacts,
    groups: argv.groups,
    redact: redactKinds(argv.redact),
    force: argv.force,
    onProgress: progressPrinter(),
  });
  console.log(formatImportSummary(summary));
  // The way on, as lib/import/README.md gives it.
  const data = shellWord(argv.out);
  if (summary.output === 'jsonl') {
    console.log(
      `next: fine-tune on ${data} with OpenAI (upload it with purpose "fine-tune"), a tool that takes OpenAI's chat format (Axolotl, TRL, unsloth), ` +
        'or bin/serve --fine_tuning <folder>, whose POST /v1/files takes it; for bin/train, which takes the chat format, import with --out data/ instead',
    );
    return;
  }
  // Held-out data makes the run keep its best checkpoint, where the data can spare it (heldOutFlags).
  console.log(
    `next: bin/train --dataset ${data} --check; then fine-tune GPT-2 on it: bin/download-model 124M, and ` +
      `bin/train --dataset ${data} --model_name 124M${heldOutFlags(summary.bytes)}`,
  );
}

// bin/train's flags that hold the newest tenth of the data out, for data of `bytes` that has a tenth to spare. Validating
// every 200 steps costs about an eighth of the training time (80 windows evaluated, against about three windows' work
// a step at batch size 1), and checks 2 MB of chat (500 to 700 steps an epoch) a few times an epoch.
function heldOutFlags(bytes: number): string {
  if (bytes < HOLD_OUT_BYTES) return '';
  return ' --val_split 0.1 --val_every 200 (a tenth held out, the newest messages: checkpoint/run1/best is then the checkpoint that does best on them)';
}

// "Name=audience" pairs and JSON files of such pairs, as one map.
function audienceMap(values: readonly string[]): Record<string, string> {
  const map: Record<string, string> = {};
  for (const value of values) {
    const equals = value.lastIndexOf('=');
    if (equals < 0 && fs.existsSync(value)) {
      const parsed = readJsonFile(value);
      if (!isJsonObject(parsed) || Object.values(parsed).some((v) => typeof v !== 'string')) {
        throw new Error(`--audience-map ${value}: a JSON object of names to audiences is expected ({"Mom": "mom"})`);
      }
      Object.assign(map, parsed);
    } else if (equals > 0) map[value.slice(0, equals)] = value.slice(equals + 1);
    else throw new Error(`--audience-map ${JSON.stringify(value)}: expected "Name in the app=audience" or a JSON file`);
  }
  return map;
}

function redactKinds(value: string | undefined): RedactKind[] {
  if (value === undefined) return [];
  if (value === '') return [...REDACT_KINDS];
  const kinds = value.split(',').map((k) => k.trim());
  const unknown = kinds.filter((k) => !(REDACT_KINDS as readonly string[]).includes(k));
  if (unknown.length > 0) throw new Error(`--redact: unknown ${unknown.join(', ')} (give any of ${REDACT_KINDS.join(', ')})`);
  return kinds as RedactKind[];
}

// On a terminal, one line redrawn as files are read; elsewhere a line only for large files.
function progressPrinter(): (progress: ChatImportProgress) => void {
  const terminal = process.stderr.isTTY === true;
  return ({ file, index, files, bytes }) => {
    const line = `[${index + 1}/${files}] reading ${file} (${formatBytes(bytes)})`;
    if (terminal) process.stderr.write(`\r\x1b[K${line}${index + 1 === files ? '\n' : ''}`);
    else if (bytes >= LARGE_FILE_BYTES) process.stderr.write(`${line}\n`);
  };
}

main().catch((err: unknown) => {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  process.stderr.write(`import-chat: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
