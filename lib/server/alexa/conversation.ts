// The conversation, carried between turns in the Alexa session attributes (so the server keeps no state and any
// replica can answer), and the chat-format prompt made from it.
//
// The chat format is the original tools' training format: one message per line, `<side>|<audience>|<text> <EOM>`,
// where side 1 is a message sent by the person whose chat logs trained the model, i.e. the bot's own voice, and
// side 0 a message from the other party. The person talking to Alexa is that other party, so their words are
// `0|<audience>|...` lines, the bot's replies `1|<audience>|...` lines, and the prompt ends with `1|<audience>|`
// for the model to continue in the bot's voice.
import { AlexaRejection } from './errors';

export type Speaker = 'user' | 'bot';

// A turn of the conversation is two messages: the user's and the bot's reply.
export interface Message {
  from: Speaker;
  text: string;
}

const SIDE: Record<Speaker, '0' | '1'> = { user: '0', bot: '1' };
// Session attributes come back from Alexa as we sent them; these bounds only stop a forged or corrupted session
// from making us build an enormous prompt.
const MAX_STORED_MESSAGES = 200;
const MAX_TURN_CHARS = 4000;

// Text inside one chat line: none of the model's control markers, no line breaks and no pipes (either could
// forge a `1|<audience>|` message in the bot's voice). Speech recognition never produces a pipe.
export function chatText(text: string): string {
  return text
    .replace(/<\|endoftext\|>|<EOM>/gi, ' ')
    .replace(/\|/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

export function chatLine(from: Speaker, audience: string, text: string): string {
  return `${SIDE[from]}|${audience}|${chatText(text)} <EOM>\n`;
}

// The prompt for the bot's reply to `utterance`: as much of `history` as fits in `maxChars`, dropping the oldest
// messages first, then the utterance, then the bot's line prefix. The utterance itself is always kept (cut from
// the left if it alone is too long), so the model answers what was just said.
export function buildPrompt(history: readonly Message[], utterance: string, audience: string, maxChars: number): string {
  const reply = `${SIDE.bot}|${audience}|`;
  const askFrame = chatLine('user', audience, '').length;
  const said = chatText(utterance);
  const room = Math.max(0, maxChars - reply.length - askFrame);
  const ask = chatLine('user', audience, said.length > room ? said.slice(said.length - room) : said);
  const lines: string[] = [];
  let used = ask.length + reply.length;
  for (let i = history.length - 1; i >= 0; i--) {
    const line = chatLine(history[i].from, audience, history[i].text);
    if (used + line.length > maxChars) break;
    lines.unshift(line);
    used += line.length;
  }
  return lines.join('') + ask + reply;
}

// The last `maxTurns` turns (a turn is an utterance and the bot's reply) of the conversation.
export function keepRecent(history: readonly Message[], maxTurns: number): Message[] {
  return history.slice(Math.max(0, history.length - 2 * maxTurns));
}

// The history stored under `attributes.history`, checked; a new session has none.
export function historyFrom(attributes: Record<string, unknown>): Message[] {
  const raw = attributes.history;
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw new AlexaRejection(400, 'session.attributes.history: must be an array');
  if (raw.length > MAX_STORED_MESSAGES) throw new AlexaRejection(400, `session.attributes.history: more than ${MAX_STORED_MESSAGES} messages`);
  return raw.map((message: unknown, i) => {
    const where = `session.attributes.history[${i}]`;
    if (typeof message !== 'object' || message === null) throw new AlexaRejection(400, `${where}: must be an object`);
    const { from, text } = message as Record<string, unknown>;
    if (from !== 'user' && from !== 'bot') throw new AlexaRejection(400, `${where}.from: must be "user" or "bot"`);
    if (typeof text !== 'string' || text.length > MAX_TURN_CHARS) {
      throw new AlexaRejection(400, `${where}.text: must be a string of at most ${MAX_TURN_CHARS} characters`);
    }
    return { from, text };
  });
}
