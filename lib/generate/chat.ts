// A terminal chat with a model fine-tuned on chat logs (lib/data/chat_format.ts has the format and its roles):
// the person at the terminal writes as "you" (`1|<audience>|<text> <EOM>`) and the model answers as the
// audience, continuing `0|<audience>|` up to its <EOM> or the end of the line.
import fs from 'node:fs';
import path from 'node:path';
import { buildPrompt, checkAudience, isAudience, REPLY_STOPS, type Turn } from '../data/chat_format';
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

export class ChatSession {
  private readonly turns: Turn[] = [];
  private readonly sanitizer: Sanitizer = createChatbotSanitizer({ maxMessages: 1 });

  constructor(private readonly generator: Generator, private readonly options: ChatOptions) {
    checkAudience(options.audience);
  }

  // The prompt for the model's next reply to `text`: the conversation so far, its oldest messages dropped
  // while the prompt and a full reply would not fit the model's context.
  prompt(text: string): string {
    const { nCtx } = this.generator.model.config;
    const room = nCtx - (this.options.maxTokens ?? Math.floor(nCtx / 2));
    const turns = [...this.turns, { from: 'user' as const, text }];
    return buildPrompt({ audience: this.options.audience, turns }, (prompt) => this.generator.encode(prompt).length <= room);
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
      stop: [...REPLY_STOPS],
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
    this.turns.push({ from: 'user', text }, { from: 'bot', text: result.text });
    return { text: reply, result };
  }

  reset(): void {
    this.turns.length = 0;
  }
}
