// A conversation in the chat format the models are fine-tuned on (lib/data/chat_check.ts), one message a line:
//   1|<audience>|<text> <EOM>     a message from "you", the person whose logs trained the model
//   0|<audience>|<text> <EOM>     a message from the audience (mom, a friend...)
// In bin/chat the person at the terminal writes as "you" and the model answers as the audience: the prompt is
// the conversation so far plus `0|<audience>|`, and the reply ends at <EOM> (or a line break).
import fs from 'node:fs';
import path from 'node:path';
import { END_OF_MESSAGE } from '../data/chat_check';
import { createChatbotSanitizer, Sanitizer } from '../sanitize';
import { Generator, GenerateOptions } from './generate';
import { GenerateResult } from './sequence';

export interface ChatOptions extends Omit<GenerateOptions, 'stop' | 'onText'> {
  audience: string;
}

export interface ChatReply {
  text: string;            // the sanitized reply
  result: GenerateResult;  // the raw generation
}

// The audiences a model was trained with, most messages first, from the training record in its folder
// (state.json: "audiences" as names or { audience } objects, at the top level or under "data"); [] if none.
export function findAudiences(modelDir: string): string[] {
  const file = path.join(modelDir, 'state.json');
  if (!fs.existsSync(file)) return [];
  let record: unknown;
  try {
    record = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: cannot read the training record: ${(err as Error).message}`);
  }
  const fields = record as { audiences?: unknown; data?: { audiences?: unknown } } | null;
  const list = fields?.audiences ?? fields?.data?.audiences;
  if (!Array.isArray(list)) return [];
  return list
    .map((a: unknown) => (typeof a === 'string' ? a : (a as { audience?: unknown } | null)?.audience))
    .filter((a): a is string => typeof a === 'string' && isAudience(a));
}

export function isAudience(name: string): boolean {
  return /^[^|\r\n]{1,64}$/.test(name) && name.trim() !== '';
}

// A message's text as one chat line can hold it: one line, no <EOM>.
function oneLine(text: string): string {
  return text.split(END_OF_MESSAGE).join(' ').replace(/\s+/g, ' ').trim();
}

export class ChatSession {
  private readonly lines: string[] = [];
  private readonly sanitizer: Sanitizer = createChatbotSanitizer({ maxMessages: 1 });

  constructor(private readonly generator: Generator, private readonly options: ChatOptions) {
    if (!isAudience(options.audience)) {
      throw new RangeError(`audience must be 1 to 64 characters without "|" or line breaks, got ${JSON.stringify(options.audience)}`);
    }
  }

  // The prompt for the model's next reply to `text`: the conversation so far, its oldest messages dropped
  // while the prompt and a full reply would not fit the model's context.
  prompt(text: string): string {
    const { audience } = this.options;
    const { nCtx } = this.generator.model.config;
    const room = nCtx - (this.options.maxTokens ?? Math.floor(nCtx / 2));
    const tail = [`1|${audience}|${oneLine(text)} ${END_OF_MESSAGE}`, `0|${audience}|`];
    let first = 0;
    while (first < this.lines.length && this.generator.encode([...this.lines.slice(first), ...tail].join('\n')).length > room) first++;
    return [...this.lines.slice(first), ...tail].join('\n');
  }

  // Sends `text`, streams the sanitized reply through onText as it grows, and adds both to the conversation.
  // seed (default: the session's) makes the reply reproducible.
  async send(text: string, how: { onText?: (piece: string) => void; signal?: AbortSignal; seed?: number } = {}): Promise<ChatReply> {
    const { onText, signal, seed } = how;
    const { audience, ...generateOptions } = this.options;
    let raw = '';
    let shown = '';
    const result = await this.generator.generate(this.prompt(text), {
      ...generateOptions,
      signal,
      seed: seed ?? generateOptions.seed,
      stop: [END_OF_MESSAGE, '\n'],
      onText: (piece) => {
        raw += piece;
        // The sanitized text of a growing reply almost always grows too; when it does not, what is shown
        // waits for the text to catch up.
        const clean = this.sanitizer.sanitize(raw);
        if (clean.startsWith(shown) && clean.length > shown.length) {
          onText?.(clean.slice(shown.length));
          shown = clean;
        }
      },
    });
    const reply = this.sanitizer.sanitize(result.text);
    if (reply.startsWith(shown) && reply.length > shown.length) onText?.(reply.slice(shown.length));
    this.lines.push(`1|${audience}|${oneLine(text)} ${END_OF_MESSAGE}`, `0|${audience}|${oneLine(result.text)} ${END_OF_MESSAGE}`);
    return { text: reply, result };
  }

  reset(): void {
    this.lines.length = 0;
  }
}
