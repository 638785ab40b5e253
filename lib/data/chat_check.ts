// The chat format the models are trained on, one message a line:
//   1|mom|How are you doing, Mom? <EOM>
// the flag (1: sent by "you", 0: received), the audience (who the conversation is with), the message, then
// <EOM>. The message may itself contain '|' (only the first two separate fields); lines may end in \r\n;
// blank lines are allowed between conversations. The checker reports every malformed line with file:line
// and why, and sums up what a dataset holds.
export const END_OF_MESSAGE = '<EOM>';

// Under this much text a 124M model overfits (the original tools' advice).
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

// Why a non-blank line is malformed; empty when it is well formed. The line comes without \n or \r\n.
export function lineProblems(line: string): { reasons: string[]; flag?: string; audience?: string } {
  const first = line.indexOf('|');
  const second = first < 0 ? -1 : line.indexOf('|', first + 1);
  const trimmed = line.trimEnd();
  const hasEom = trimmed.endsWith(END_OF_MESSAGE);
  if (second < 0) {
    const reasons = [`missing fields: expected flag|audience|message ${END_OF_MESSAGE} (found ${first < 0 ? 'no' : 'one'} '|')`];
    if (!hasEom) reasons.push(`no ${END_OF_MESSAGE} at the end`);
    return { reasons };
  }
  const reasons: string[] = [];
  const flag = line.slice(0, first);
  const audience = line.slice(first + 1, second);
  if (flag !== '0' && flag !== '1') reasons.push(`flag must be 0 or 1, got ${JSON.stringify(flag)}`);
  if (audience.trim() === '') reasons.push('missing field: empty audience');
  if (!hasEom) reasons.push(`no ${END_OF_MESSAGE} at the end`);
  const message = line.slice(second + 1, hasEom ? trimmed.length - END_OF_MESSAGE.length : line.length);
  if (message.trim() === '') reasons.push('empty message');
  return { reasons, flag, audience };
}

// Whether a text file is in the chat format, judged by its first lines: one that starts with a 0|/1| flag or
// ends in <EOM> marks it. Chat files are checked before training; other text is trained on as it is.
export function looksLikeChat(text: string): boolean {
  let start = 0;
  for (let seen = 0; seen < 20 && start < text.length; ) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const line = text.slice(start, end).trim();
    start = end + 1;
    if (line === '') continue;
    if (/^[01]\|/.test(line) || line.endsWith(END_OF_MESSAGE)) return true;
    seen++;
  }
  return false;
}

export class ChatChecker {
  private files = 0;
  private lines = 0;
  private messages = 0;
  private sent = 0;
  private bytes = 0;
  private readonly audiences = new Map<string, AudienceCount>();
  private readonly issues: ChatIssue[] = [];

  add(file: string, text: string): void {
    this.files++;
    this.bytes += Buffer.byteLength(text, 'utf8');
    let lineNumber = 0;
    for (let start = 0; start < text.length; ) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      lineNumber++;
      const line = text.slice(start, end > start && text.charCodeAt(end - 1) === 13 ? end - 1 : end);
      start = end + 1;
      if (line.trim() === '') continue;
      this.lines++;
      const { reasons, flag, audience } = lineProblems(line);
      if (reasons.length > 0) {
        this.issues.push({ file, line: lineNumber, reasons, text: line });
        continue;
      }
      this.messages++;
      const name = (audience as string).trim();
      let count = this.audiences.get(name);
      if (!count) this.audiences.set(name, (count = { audience: name, sent: 0, received: 0 }));
      if (flag === '1') {
        count.sent++;
        this.sent++;
      } else count.received++;
    }
  }

  summary(): ChatSummary {
    return {
      files: this.files,
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
    super(`${formatChatReport(summary, tokens, 50)}\n${summary.issues.length} malformed chat line${summary.issues.length === 1 ? '' : 's'}: fix them (bin/train --check --dataset ... lists them all)`);
    this.name = 'MalformedChatError';
  }
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(bytes < 1e5 ? 3 : 2)} MB`;
}

// The report a person reads: every malformed line (up to maxIssues), then the summary. `tokens` is the
// dataset's token count when known.
export function formatChatReport(s: ChatSummary, tokens: number | null, maxIssues = Infinity): string {
  const out: string[] = [];
  for (const issue of s.issues.slice(0, maxIssues)) {
    const shown = issue.text.length > 80 ? `${issue.text.slice(0, 77)}...` : issue.text;
    out.push(`${issue.file}:${issue.line}: ${issue.reasons.join('; ')}: ${JSON.stringify(shown)}`);
  }
  if (s.issues.length > maxIssues) out.push(`... and ${s.issues.length - maxIssues} more malformed lines`);
  const plural = (n: number, word: string): string => `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`;
  out.push(
    `chat check: ${plural(s.files, 'file')}, ${plural(s.messages, 'message')} (${s.sent.toLocaleString('en-US')} sent, ${s.received.toLocaleString('en-US')} received)` +
      `, ${megabytes(s.bytes)} of text${tokens === null ? '' : `, ${plural(tokens, 'token')}`}, ${plural(s.issues.length, 'malformed line')}`,
  );
  const shownAudiences = s.audiences.slice(0, 10);
  if (shownAudiences.length > 0) {
    const list = shownAudiences.map((a) => `${a.audience} ${a.sent + a.received} (${a.sent} sent)`).join(', ');
    const more = s.audiences.length > shownAudiences.length ? `, and ${s.audiences.length - shownAudiences.length} more` : '';
    out.push(`  per audience: ${list}${more}`);
  }
  if (s.bytes < SMALL_DATASET_BYTES) {
    out.push(`  warning: ${megabytes(s.bytes)} of chat text is little; a 124M model overfits on less than about 2 MB`);
  }
  return out.join('\n');
}
