// The dataset checker: reports every malformed line of chat files (the format: chat_format.ts) with file:line
// and why, and sums up what a dataset holds.
import { parseLines, SIDE } from './chat_format';
import { DocumentPlace, WHOLE_FILE, fileLine } from './documents';
import { formatBytes, plural } from '../util/format';

// Under this much text a 124M model overfits (docs/compatibility.md): --check warns.
export const SMALL_DATASET_BYTES = 2_000_000;

export interface ChatIssue {
  file: string;
  line: number;      // 1-based
  reasons: string[];
  text: string;      // the line as written (without its line break)
}

export interface AudienceCount {
  audience: string;
  sent: number;      // flag 1
  received: number;  // flag 0
}

export interface ChatSummary {
  files: number;
  lines: number;      // non-blank lines
  messages: number;   // well-formed lines
  sent: number;
  received: number;
  bytes: number;      // UTF-8 bytes of text checked
  audiences: AudienceCount[];  // most messages first
  issues: ChatIssue[];
}

export class ChatChecker {
  private readonly files = new Set<string>();
  private lines = 0;
  private messages = 0;
  private sent = 0;
  private bytes = 0;
  private readonly audiences = new Map<string, AudienceCount>();
  private readonly issues: ChatIssue[] = [];

  // A chat file, or one document of a file (a CSV row, a JSONL line) `at` its place in the file.
  add(file: string, text: string, at: DocumentPlace = WHOLE_FILE): void {
    this.files.add(file);
    this.bytes += Buffer.byteLength(text, 'utf8');
    for (const { line, text: written, message, reasons } of parseLines(text)) {
      this.lines++;
      if (!message) {
        this.issues.push({ file, line: fileLine(at, line), reasons, text: written });
        continue;
      }
      this.messages++;
      let count = this.audiences.get(message.audience);
      if (!count) this.audiences.set(message.audience, (count = { audience: message.audience, sent: 0, received: 0 }));
      if (message.side === SIDE.you) {
        count.sent++;
        this.sent++;
      } else count.received++;
    }
  }

  summary(): ChatSummary {
    return {
      files: this.files.size,
      lines: this.lines,
      messages: this.messages,
      sent: this.sent,
      received: this.messages - this.sent,
      bytes: this.bytes,
      audiences: [...this.audiences.values()].sort((a, b) => b.sent + b.received - (a.sent + a.received) || (a.audience < b.audience ? -1 : 1)),
      issues: this.issues,
    };
  }
}

// Thrown where malformed chat lines stop a training run or an encoding; the report lists them.
export class MalformedChatError extends Error {
  constructor(readonly summary: ChatSummary, tokens: number | null) {
    super(`${formatChatReport(summary, tokens, 50)}\n${summary.issues.length} malformed chat line${summary.issues.length === 1 ? '' : 's'}: fix them (bin/train --check --dataset ... lists them all), or, if the files are not chat but text that looks like it, give --chat_check off`);
    this.name = 'MalformedChatError';
  }
}

// The report a person reads: every malformed line (up to maxIssues), then the summary. `tokens` is the
// dataset's token count when known. warnSmall: warn that so little chat overfits a pre-trained model (not for a
// model trained from scratch, nor for a validation set).
export function formatChatReport(s: ChatSummary, tokens: number | null, maxIssues = Infinity, warnSmall = true): string {
  const out: string[] = [];
  for (const issue of s.issues.slice(0, maxIssues)) {
    const shown = issue.text.length > 80 ? `${issue.text.slice(0, 77)}...` : issue.text;
    out.push(`${issue.file}:${issue.line}: ${issue.reasons.join('; ')}: ${JSON.stringify(shown)}`);
  }
  if (s.issues.length > maxIssues) out.push(`... and ${s.issues.length - maxIssues} more malformed lines`);
  out.push(
    `chat check: ${plural(s.files, 'file')}, ${plural(s.messages, 'message')} (${s.sent.toLocaleString('en-US')} sent, ${s.received.toLocaleString('en-US')} received)` +
      `, ${formatBytes(s.bytes)} of text${tokens === null ? '' : `, ${plural(tokens, 'token')}`}, ${plural(s.issues.length, 'malformed line')}`,
  );
  const shownAudiences = s.audiences.slice(0, 10);
  if (shownAudiences.length > 0) {
    const list = shownAudiences.map((a) => `${a.audience} ${a.sent + a.received} (${a.sent} sent)`).join(', ');
    const more = s.audiences.length > shownAudiences.length ? `, and ${s.audiences.length - shownAudiences.length} more` : '';
    out.push(`  per audience: ${list}${more}`);
  }
  if (warnSmall && s.bytes < SMALL_DATASET_BYTES) {
    out.push(`  warning: ${formatBytes(s.bytes)} of chat text is little to fine-tune on: a 124M model overfits on less than about 2 MB (a small --fresh_model suits it)`);
  }
  return out.join('\n');
}
