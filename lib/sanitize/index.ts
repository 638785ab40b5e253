// Sanitizers by name: a model's config names a built-in ("sanitizers.chatbot", as server_config.json files spell
// it, or "chatbot"; "none") or a module path (resolved from the config file's folder) that exports
// `createSanitizer(options): Sanitizer` or `sanitize(text): string`.
import path from 'node:path';
import { AUDIENCE_RULE, isAudience } from '../data/chat_format';
import { CHATBOT_DEFAULTS, createChatbotSanitizer, type ChatbotSanitizerOptions } from './chatbot';
import type { Sanitizer } from './types';
import { isJsonObject } from '../util/json_object';
import { fail } from '../util/setting_error';

export type { ReplyProgress, ReplyStream, Sanitizer } from './types';
export { createChatbotSanitizer, CHATBOT_DEFAULTS, type ChatbotSanitizerOptions } from './chatbot';

// A sanitizer from a function of the whole text (and, if it has one, a test of completeness), as a module may
// export them: each piece sanitizes the whole text again. Such a function says nothing of which part of its
// reply later text may change, so all of it counts as settled (a stream that has shown more keeps it).
function wholeText(sanitize: (text: string) => string, isComplete: (text: string) => boolean = () => false): Sanitizer {
  return {
    sanitize,
    stream() {
      let text = '';
      return {
        push(piece) {
          text += piece;
          const reply = sanitize(text);
          return { text: reply, settled: reply, complete: isComplete(text) };
        },
      };
    },
  };
}

export const IDENTITY: Sanitizer = {
  sanitize: (text) => text,
  stream() {
    let text = '';
    return {
      push(piece) {
        text += piece;
        return { text, settled: text, complete: false };
      },
    };
  },
};

// The chatbot sanitizer's names: as server_config.json files spell it (docs/compatibility.md), and short.
export const CHATBOT_SANITIZERS: readonly string[] = ['sanitizers.chatbot', 'chatbot'];
const BUILT_IN_SANITIZERS = [...CHATBOT_SANITIZERS, 'none'];

// The chatbot sanitizer's settings as a config spells them (snake_case), checked field by field.
export function chatbotOptions(raw: Record<string, unknown>, where: string): ChatbotSanitizerOptions {
  const known = ['max_messages', 'keep_other_side', 'names', 'acronyms'];
  for (const key of Object.keys(raw)) if (!known.includes(key)) throw new Error(`${where}.${key}: unknown setting (known: ${known.join(', ')})`);
  const o: ChatbotSanitizerOptions = { ...CHATBOT_DEFAULTS };
  if (raw.max_messages !== undefined) {
    const v = raw.max_messages;
    o.maxMessages = Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 100 ? (v as number) : fail(`${where}.max_messages`, 'an integer from 1 to 100', v);
  }
  if (raw.keep_other_side !== undefined) {
    o.keepOtherSide = typeof raw.keep_other_side === 'boolean' ? raw.keep_other_side : fail(`${where}.keep_other_side`, 'true or false', raw.keep_other_side);
  }
  if (raw.names !== undefined) {
    const v = raw.names;
    if (!Array.isArray(v)) fail(`${where}.names`, 'an array of names', v);
    o.names = v.map((n: unknown, i) => (typeof n === 'string' && isAudience(n) ? n : fail(`${where}.names[${i}]`, `a name of ${AUDIENCE_RULE}`, n)));
  }
  if (raw.acronyms !== undefined) {
    const v = raw.acronyms;
    if (!isJsonObject(v)) fail(`${where}.acronyms`, 'an object such as {"COE": "C. O. E."}', v);
    for (const [k, s] of Object.entries(v)) {
      if (k.trim() === '') fail(`${where}.acronyms`, 'keyed by non-empty words', k);
      if (typeof s !== 'string') fail(`${where}.acronyms.${k}`, 'a string', s);
    }
    o.acronyms = { ...(v as Record<string, string>) };
  }
  return o;
}

// `spec` as the config gives it; `options` the model's sanitizer_options; `baseDir` the config file's folder.
export function loadSanitizer(spec: string, options: Record<string, unknown>, baseDir: string, where: string): Sanitizer {
  if (CHATBOT_SANITIZERS.includes(spec)) return createChatbotSanitizer(chatbotOptions(options, `${where}_options`));
  if (spec === 'none') return IDENTITY;
  if (!spec.includes('/') && !spec.endsWith('.js')) {
    throw new Error(`${where}: unknown sanitizer "${spec}" (built-in: ${BUILT_IN_SANITIZERS.join(', ')}; or a path to a module such as "./my_sanitizer.js")`);
  }
  const file = path.resolve(baseDir, spec);
  let mod: { createSanitizer?: unknown; sanitize?: unknown };
  try {
    mod = require(file) as typeof mod;
  } catch (err) {
    throw new Error(`${where}: cannot load sanitizer module ${file}: ${(err as Error).message}`);
  }
  if (typeof mod.createSanitizer === 'function') {
    const made = (mod.createSanitizer as (o: Record<string, unknown>) => unknown)(options) as { sanitize?: unknown; isComplete?: unknown } | null;
    if (!made || typeof made.sanitize !== 'function') throw new Error(`${where}: ${file}: createSanitizer() must return an object with sanitize(text) (and optionally isComplete(text))`);
    const isComplete = typeof made.isComplete === 'function' ? (made.isComplete as (text: string) => boolean).bind(made) : undefined;
    return wholeText((made.sanitize as (text: string) => string).bind(made), isComplete);
  }
  if (typeof mod.sanitize === 'function') {
    const fn = mod.sanitize as (text: string) => unknown;
    return wholeText((text) => {
      const out = fn(text);
      if (typeof out !== 'string') throw new Error(`sanitizer ${file} returned ${typeof out}, not a string`);
      return out;
    });
  }
  throw new Error(`${where}: ${file} exports neither createSanitizer(options) nor sanitize(text)`);
}
