// The "alexa" section of server_config.json, validated at start with errors that name the field.
import { AUDIENCE_RULE, DEFAULT_AUDIENCE, isAudience } from '../../data/chat_format';
import { isJsonObject } from '../../util/json_object';
import { fail } from '../../util/setting_error';

export interface AlexaOptions {
  path: string; // where the router is mounted
  modelKey: string; // which configured model answers
  applicationId: string; // the skill's id from the Alexa developer console (amzn1.ask.skill....)
  verifySignatures: boolean; // false only for local testing: skips the signature and timestamp checks
  deadlineMs: number; // answer within this long after the request arrives (Alexa gives up after 8 s)
  maxTokens: number; // the longest reply, in tokens
  audience: string; // who the bot answers as: the audience in the chat-format prompt (`0|<audience>|...`)
  maxHistoryTurns: number; // turns (an utterance and its reply) kept in the session
  maxPromptChars: number; // the prompt's budget; the oldest messages are dropped first to fit
  // What the skill says, in the skill's language: Alexa reads any text with the voice of the request's locale.
  greeting: string;
  help: string;
  reprompt: string;
  goodbye: string;
  notHeard: string; // the slot came empty; before the help text for an utterance that matched no intent
  nothingToSay: string; // the reply had nothing to speak
  tooSlow: string; // the reply did not come within the deadline
  failed: string; // the model failed
}

export const ALEXA_DEFAULTS: Omit<AlexaOptions, 'applicationId'> = {
  path: '/alexa',
  modelKey: 'chatbot',
  verifySignatures: true,
  deadlineMs: 6500,
  maxTokens: 60,
  audience: DEFAULT_AUDIENCE,
  maxHistoryTurns: 8,
  // GPT-2 averages about 4 characters a token on English chat, so 2400 characters stay well inside its
  // 1024-token context with room for the reply; the server still trims any prompt that would overflow.
  maxPromptChars: 2400,
  greeting: "Hi, it's Dixie. What's on your mind?",
  help: 'Just talk to me, starting with something like "I say", and I will answer. Say stop when you are done.',
  reprompt: 'Are you still there?',
  goodbye: 'Bye for now.',
  notHeard: "Sorry, I didn't catch that.",
  nothingToSay: 'Hmm. I have nothing to say to that.',
  tooSlow: "Sorry, I'm thinking too slowly right now. Ask me again in a moment.",
  failed: 'Sorry, something went wrong on my side. Ask me again in a moment.',
};

// Alexa waits at most 8 seconds for an answer.
const ALEXA_TIMEOUT_MS = 8000;

type Reader<T> = (value: unknown, where: string) => T;

const text: Reader<string> = (value, where) => (typeof value === 'string' && value.trim() !== '' ? value : fail(where, 'a non-empty string', value));
const flag: Reader<boolean> = (value, where) => (typeof value === 'boolean' ? value : fail(where, 'true or false', value));
const integer = (min: number, max: number): Reader<number> => (value, where) =>
  Number.isInteger(value) && (value as number) >= min && (value as number) <= max ? (value as number) : fail(where, `an integer from ${min} to ${max}`, value);

const KEYS = {
  path: ['path', (v: unknown, w: string) => (typeof v === 'string' && /^\/[A-Za-z0-9._~\-/]*$/.test(v) ? v : fail(w, 'a URL path starting with /', v))],
  model_key: ['modelKey', text],
  application_id: ['applicationId', (v: unknown, w: string) => (typeof v === 'string' && v.startsWith('amzn1.ask.skill.') ? v : fail(w, 'the skill id from the Alexa developer console, "amzn1.ask.skill.…"', v))],
  verify_signatures: ['verifySignatures', flag],
  deadline_ms: ['deadlineMs', integer(500, ALEXA_TIMEOUT_MS - 500)],
  max_tokens: ['maxTokens', integer(1, 1024)],
  audience: ['audience', (v: unknown, w: string) => (typeof v === 'string' && isAudience(v) ? v : fail(w, `a name of ${AUDIENCE_RULE}`, v))],
  max_history_turns: ['maxHistoryTurns', integer(0, 100)],
  max_prompt_chars: ['maxPromptChars', integer(200, 100_000)],
  greeting: ['greeting', text],
  help: ['help', text],
  reprompt: ['reprompt', text],
  goodbye: ['goodbye', text],
  not_heard: ['notHeard', text],
  nothing_to_say: ['nothingToSay', text],
  too_slow: ['tooSlow', text],
  failed: ['failed', text],
} as const satisfies Record<string, readonly [keyof AlexaOptions, Reader<unknown>]>;

// `raw` is the parsed "alexa" section; `fieldPrefix` names it in errors (for example "server_config.json: alexa");
// `audienceOf` gives the configured audience of a model, the default of the skill's.
export function validateAlexaConfig(raw: unknown, fieldPrefix: string, audienceOf: (modelKey: string) => string | undefined = () => undefined): AlexaOptions {
  if (!isJsonObject(raw)) fail(fieldPrefix, 'an object', raw);
  const section = raw as Record<string, unknown>;
  for (const key of Object.keys(section)) {
    // Own keys only: `in` would take "constructor" or "__proto__" for settings, being Object.prototype's.
    if (!Object.hasOwn(KEYS, key)) throw new Error(`${fieldPrefix}.${key}: unknown setting (known: ${Object.keys(KEYS).join(', ')})`);
  }
  if (section.application_id === undefined) throw new Error(`${fieldPrefix}.application_id: required (the skill id from the Alexa developer console)`);
  const options: Record<string, unknown> = { ...ALEXA_DEFAULTS };
  for (const [key, [name, read]] of Object.entries(KEYS)) {
    if (section[key] !== undefined) options[name] = read(section[key], `${fieldPrefix}.${key}`);
  }
  if (section.audience === undefined) options.audience = audienceOf(options.modelKey as string) ?? DEFAULT_AUDIENCE;
  return options as unknown as AlexaOptions;
}
