// A terminal chat with a model fine-tuned on chat logs (lib/data/chat_format.ts has the format and its roles):
// the person at the terminal writes as "you" (`1|<audience>|<text> <EOM>`) and the model answers as the
// audience, continuing `0|<audience>|` up to its <EOM> or the end of the line.
import { checkAudience, fitConversation, REPLY_STOPS, type Turn } from '../data/chat_format';
import { createChatbotSanitizer, Sanitizer } from '../sanitize';
import { Generator, GenerateOptions } from './generate';
import type { FinishReason, GenerateResult } from './sequence';

export interface ChatOptions extends Omit<GenerateOptions, 'stop' | 'onText'> {
  audience: string;
}

// A chatbot's reply: the sanitized text, and why it ended.
export interface ChatReply {
  text: string;
  finishReason: FinishReason;
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
    return fitConversation({ audience: this.options.audience, turns }, (prompt) => this.generator.encode(prompt).length <= room).prompt;
  }

  // Sends `text`, streams the sanitized reply through onText as it grows, and adds both to the conversation.
  // seed (default: the session's) makes the reply reproducible.
  async send(text: string, how: { onText?: (piece: string) => void; signal?: AbortSignal; seed?: number } = {}): Promise<ChatReply & { result: GenerateResult }> {
    const { onText, signal, seed } = how;
    const { audience, ...generateOptions } = this.options;
    let shown = '';
    const sanitizing = this.sanitizer.stream();
    const result = await this.generator.generate(this.prompt(text), {
      ...generateOptions,
      signal,
      seed: seed ?? generateOptions.seed,
      stop: [...REPLY_STOPS],
      reply: {
        push: (piece) => {
          const r = sanitizing.push(piece);
          // The sanitized text of a growing reply almost always grows too; when it does not, what is shown
          // waits for the text to catch up.
          if (r.text.startsWith(shown) && r.text.length > shown.length) {
            onText?.(r.text.slice(shown.length));
            shown = r.text;
          }
          return r;
        },
      },
    });
    this.turns.push({ from: 'user', text }, { from: 'bot', text: result.text });
    return { text: result.reply as string, finishReason: result.finishReason, result };
  }

  reset(): void {
    this.turns.length = 0;
  }
}
