// A terminal chat with a model fine-tuned on chat logs (lib/data/chat_format.ts has the format and its roles):
// the person at the terminal writes as "you" (`1|<audience>|<text> <EOM>`) and the model answers as the
// audience, continuing `0|<audience>|` up to its <EOM> or the end of the line.
import { checkAudience, fitConversation, REPLY_STOPS, type Conversation, type FittedPrompt, type Turn } from '../data/chat_format';
import { createChatbotSanitizer, Sanitizer } from '../sanitize';
import { Generator, GenerateOptions } from './generate';
import { refusal, type FinishReason, type GenerateResult } from './sequence';
import { quoted } from '../util/quoted';

export interface ChatOptions extends Omit<GenerateOptions, 'stop' | 'onText'> {
  audience: string;
}

// A chatbot's reply: the sanitized text, and why it ended.
export interface ChatReply {
  text: string;
  finishReason: FinishReason;
}

// A chat prompt that, with a reply of maxTokens, fits a model's context.
export interface FittedChat extends FittedPrompt {
  maxTokens: number;  // the reply's length at most: as asked, or what the newest message leaves
}

// The newest message of a chat is longer than a model's context holds with a reply of at least one token.
export class MessageTooLongError extends RangeError {
  constructor(readonly messageTokens: number, readonly nCtx: number) {
    super(`the message takes ${messageTokens} tokens in the chat format, and the model reads at most ${nCtx}, its reply included: shorten it`);
    this.name = 'MessageTooLongError';
  }
}

// The prompt for a model of nCtx tokens' reply to `conversation`, and that reply's length. The oldest messages go
// first, to leave the reply the maxTokens it asks, half the prompt's room at a time (as llama.cpp's context shift
// discards half), so that the next turns begin where this one does and reuse its cache (fitConversation's step);
// when the newest message alone leaves less, the reply gets what is left, since what the user said last is what
// the model must read. maxChars bounds the prompt's length in characters too (the Alexa skill's budget); only that
// may cut the newest message, from its start.
export function fitChat(conversation: Conversation, o: { nCtx: number; maxTokens: number; encode: (text: string) => ArrayLike<number>; maxChars?: number }): FittedChat {
  const maxChars = o.maxChars ?? Infinity;
  const fitsChars = (prompt: string): boolean => prompt.length <= maxChars;
  const newest = fitConversation({ audience: conversation.audience, turns: conversation.turns.slice(-1) }, fitsChars).prompt;
  const newestTokens = o.encode(newest).length;
  const maxTokens = Math.min(o.maxTokens, o.nCtx - newestTokens);
  if (maxTokens < 1) throw new MessageTooLongError(newestTokens, o.nCtx);
  const room = o.nCtx - maxTokens;
  const step = { size: Math.max(1, Math.floor(room / 2)), measure: (line: string) => o.encode(line).length };
  return { ...fitConversation(conversation, (prompt) => fitsChars(prompt) && o.encode(prompt).length <= room, step), maxTokens };
}

export class ChatSession {
  private readonly turns: Turn[] = [];
  private readonly sanitizer: Sanitizer;

  constructor(private readonly generator: Generator, private readonly options: ChatOptions) {
    if (typeof options !== 'object' || options === null || typeof options.audience !== 'string') {
      throw new TypeError(`ChatSession: options.audience must name whom the model answers as, such as { audience: "Alice" }, got ${quoted(options)}`);
    }
    checkAudience(options.audience);
    // fitChat sizes the prompt by it before generate would refuse it.
    if (options.maxTokens !== undefined && !(Number.isInteger(options.maxTokens) && options.maxTokens >= 1)) {
      throw new RangeError(`ChatSession: ${refusal('options.maxTokens', 'an integer >= 1', options.maxTokens)}`);
    }
    this.sanitizer = createChatbotSanitizer({ maxMessages: 1, names: [options.audience] });
  }

  // The prompt for the model's next reply to `text`: the conversation so far, its oldest messages dropped while
  // the prompt and a full reply would not fit the model's context.
  prompt(text: string): string {
    return this.fit(text).prompt;
  }

  // The prompt and the reply's length (fitChat).
  private fit(text: string): FittedChat {
    const { nCtx } = this.generator.model.config;
    const turns = [...this.turns, { from: 'user' as const, text }];
    const maxTokens = this.options.maxTokens ?? Math.floor(nCtx / 2);
    return fitChat({ audience: this.options.audience, turns }, { nCtx, maxTokens, encode: (prompt) => this.generator.encode(prompt) });
  }

  // Sends `text`, streams the sanitized reply through onText as it grows, and adds both to the conversation.
  // seed (default: the session's) makes the reply reproducible.
  async send(text: string, how: { onText?: (piece: string) => void; signal?: AbortSignal; seed?: number | bigint } = {}): Promise<ChatReply & { result: GenerateResult }> {
    const { onText, signal, seed } = how;
    const { audience, ...generateOptions } = this.options;
    let shown = '';
    const sanitizing = this.sanitizer.stream();
    const { prompt, maxTokens } = this.fit(text);
    const result = await this.generator.generate(prompt, {
      ...generateOptions,
      maxTokens,
      signal,
      seed: seed ?? generateOptions.seed,
      stop: [...REPLY_STOPS],
      reply: {
        push: (piece) => {
          const r = sanitizing.push(piece);
          // What is settled is never taken back (a word that turns out to start the next message is not shown).
          if (r.settled.length > shown.length) {
            onText?.(r.settled.slice(shown.length));
            shown = r.settled;
          }
          return r;
        },
      },
    });
    const reply = result.reply as string;
    if (reply.length > shown.length) onText?.(reply.slice(shown.length));
    this.turns.push({ from: 'user', text }, { from: 'bot', text: result.text });
    return { text: reply, finishReason: result.finishReason, result };
  }

  reset(): void {
    this.turns.length = 0;
  }
}
