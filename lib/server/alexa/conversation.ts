// The conversation, carried between turns in the Alexa session attributes (so the server keeps no state and any
// replica can answer): checked when it comes back, and bounded. The server turns it into the chat-format prompt
// (lib/data/chat_format.ts: the user's words `1|<audience>|...` lines, the bot's replies `0|<audience>|...`).
import type { Turn } from '../../data/chat_format';
import { AlexaRejection } from './errors';

// Alexa refuses a response over 24 KB, session attributes included, so no conversation it carries is bigger.
export const MAX_RESPONSE_BYTES = 24 * 1024;
// Session attributes come back from Alexa as we sent them; these bounds only stop a forged or corrupted session
// from making us build an enormous prompt. No message we store is longer than the response that carried it.
const MAX_STORED_MESSAGES = 200;
const MAX_TURN_CHARS = MAX_RESPONSE_BYTES;

// The last `maxTurns` turns (a turn is an utterance and the bot's reply) of the conversation.
export function keepRecent(history: readonly Turn[], maxTurns: number): Turn[] {
  return history.slice(Math.max(0, history.length - 2 * maxTurns));
}

// The history stored under `attributes.history`, checked; a new session has none.
export function historyFrom(attributes: Record<string, unknown>): Turn[] {
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
