// POST <alexa.path>: the Alexa skill endpoint. Verifies that each request comes from Alexa for this skill,
// asks the configured model to answer the conversation carried in the session, and answers within the deadline.
import express, { type NextFunction, type Request, type Response } from 'express';
import type { AlexaOptions } from './config';
import { boundedBody } from '../body';
import { messageText, type Conversation, type Turn } from '../../data/chat_format';
import type { ChatReply } from '../../generate/chat';
import type { ChatFn } from '../service';
import { historyFrom, keepRecent, MAX_RESPONSE_BYTES } from './conversation';
import { createLog, type Log } from '../log';
import { AlexaRejection } from './errors';
import { BusyError } from '../errors';
import { lastCompleteSentence, speakable, ssml } from './speech';
import { parseEnvelope, type AlexaEnvelope, type AlexaResponseEnvelope } from './types';
import { AlexaSignatureVerifier, checkTimestamp, type SignatureVerifierOptions } from './verify';

// The names shared with alexa/interaction-model.json.
export const CHAT_INTENT = 'ChatIntent';
export const UTTERANCE_SLOT = 'utterance';


export interface AlexaDeps extends SignatureVerifierOptions {
  log?: Log; // default: JSON lines on stdout, as the server logs
}

// Generation is asked to stop STOP_MARGIN_MS before the deadline, which leaves time to finish the token in
// flight, sanitize and send; if it has not returned ABANDON_MARGIN_MS before the deadline, the skill answers
// without it (and aborts it) rather than let Alexa time out.
const STOP_MARGIN_MS = 300;
const ABANDON_MARGIN_MS = 150;
// Alexa requests are a few kilobytes; the session history is bounded by max_history_turns.
const BODY_LIMIT_BYTES = 256 * 1024;

function speak(text: string, attributes: Record<string, unknown> | undefined, reprompt: string | null): AlexaResponseEnvelope {
  return {
    version: '1.0',
    ...(attributes ? { sessionAttributes: attributes } : {}),
    response: {
      outputSpeech: ssml(text),
      ...(reprompt !== null ? { reprompt: { outputSpeech: ssml(reprompt) } } : {}),
      shouldEndSession: reprompt === null,
    },
  };
}

export function createAlexaRouter(options: AlexaOptions, chat: ChatFn, deps: AlexaDeps = {}): express.Router {
  const log = deps.log ?? createLog({ debug: false });
  const now = deps.now ?? Date.now;
  const verifier = options.verifySignatures ? new AlexaSignatureVerifier(deps) : null;
  if (!verifier) {
    log('warn', `alexa.verify_signatures is false: ${options.path} accepts unsigned requests from anyone. Use this only for local testing.`);
  }

  // An answer that keeps the session open, with as much of the conversation as fits in a response Alexa accepts:
  // the oldest messages go first.
  function ask(text: string, envelope: AlexaEnvelope, history: readonly Turn[]): AlexaResponseEnvelope {
    for (let kept = keepRecent(history, options.maxHistoryTurns); ; kept = kept.slice(1)) {
      const answer = speak(text, { ...envelope.sessionAttributes, history: kept }, options.reprompt);
      if (kept.length === 0 || Buffer.byteLength(JSON.stringify(answer)) <= MAX_RESPONSE_BYTES) return answer;
    }
  }

  // `utterance` is already one message's text (messageText); `client` who asked, for the turns at the model's slots.
  async function answerChat(envelope: AlexaEnvelope, utterance: string, arrived: number, client: string | undefined): Promise<AlexaResponseEnvelope> {
    const history = historyFrom(envelope.sessionAttributes);
    const conversation: Conversation = { audience: options.audience, turns: [...history, { from: 'user', text: utterance }] };
    const left = options.deadlineMs - (now() - arrived);
    if (left - STOP_MARGIN_MS <= 0) return ask(options.tooSlow, envelope, history);

    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const tooLate = new Promise<null>((resolve) => {
      timer = setTimeout(() => {
        resolve(null); // first, so that whatever the aborted chat returns loses the race
        abort.abort();
      }, left - ABANDON_MARGIN_MS);
    });
    let reply: ChatReply | null;
    try {
      reply = await Promise.race([
        chat(options.modelKey, conversation, { deadlineMs: left - STOP_MARGIN_MS, maxTokens: options.maxTokens, maxPromptChars: options.maxPromptChars, signal: abort.signal, client }),
        tooLate,
      ]);
    } catch (err) {
      // A model too busy to take the request now (its queue full, its load slow) is not a broken one (a 503 of a load
      // that failed is): the user hears it is slow, and the log has no error for each request a flood turns away.
      if (err instanceof BusyError) {
        log('warn', 'chat refused: the model is busy', { requestId: envelope.request.requestId, error: err.message });
        return ask(options.tooSlow, envelope, history);
      }
      log('error', 'chat failed', { requestId: envelope.request.requestId, error: (err as Error).message });
      return ask(options.failed, envelope, history);
    } finally {
      clearTimeout(timer);
    }
    if (reply === null) {
      log('warn', 'chat missed the deadline', { requestId: envelope.request.requestId, deadlineMs: options.deadlineMs });
      return ask(options.tooSlow, envelope, history);
    }
    const said = speakable(reply.finishReason === 'stop' ? reply.text : lastCompleteSentence(reply.text));
    // Punctuation alone is silence to a speech engine. What the user said stays in the history either way: it was
    // heard, and the next reply may answer it.
    const silent = !/[\p{L}\p{N}]/u.test(said);
    const next: readonly Turn[] = silent ? conversation.turns : [...conversation.turns, { from: 'bot', text: said }];
    return ask(silent ? options.nothingToSay : said, envelope, next);
  }

  async function answer(envelope: AlexaEnvelope, arrived: number, client: string | undefined): Promise<AlexaResponseEnvelope> {
    const request = envelope.request;
    switch (request.type) {
      case 'LaunchRequest':
        return speak(options.greeting, { history: [] }, options.reprompt);
      case 'IntentRequest':
        switch (request.intent.name) {
          case CHAT_INTENT: {
            const utterance = messageText(request.intent.slots[UTTERANCE_SLOT]?.value ?? '');
            return utterance === '' ? ask(options.notHeard, envelope, historyFrom(envelope.sessionAttributes)) : answerChat(envelope, utterance, arrived, client);
          }
          case 'AMAZON.HelpIntent':
            return ask(options.help, envelope, historyFrom(envelope.sessionAttributes));
          case 'AMAZON.StopIntent':
          case 'AMAZON.CancelIntent':
          case 'AMAZON.NavigateHomeIntent': // "go home" on a device with a screen leaves the skill
            return speak(options.goodbye, undefined, null);
          default: // AMAZON.FallbackIntent, and any intent added to the model later
            return ask(`${options.notHeard} ${options.help}`, envelope, historyFrom(envelope.sessionAttributes));
        }
      case 'SessionEndedRequest':
        // Alexa ignores the answer; the history goes with the session.
        // An error here is Alexa refusing something the skill sent, which nothing else reports.
        if (request.error) log('warn', 'session ended', { requestId: request.requestId, reason: request.reason, error: request.error });
        else log('info', 'session ended', { requestId: request.requestId, reason: request.reason });
        return { version: '1.0', response: {} };
      case 'Other':
        // Alexa asks this when it looks for a skill to take a request made without naming one. A chat bot could
        // answer anything, and so would take requests meant for other skills: it declines them all.
        if (request.originalType === 'CanFulfillIntentRequest') return { version: '1.0', response: { canFulfillIntent: { canFulfill: 'NO' } } };
        if (request.error) log('warn', request.originalType, { requestId: request.requestId, error: request.error });
        // Alexa keeps only the session attributes a response carries: one sent within a session (a touch on a
        // screen) hands the conversation back, or the next turn would begin without it.
        return { version: '1.0', ...(Object.keys(envelope.sessionAttributes).length > 0 ? { sessionAttributes: envelope.sessionAttributes } : {}), response: {} };
    }
  }

  const router = express.Router();
  router.post(
    options.path,
    (_req: Request, res: Response, next: NextFunction) => {
      res.locals.alexaArrived = now();
      next();
    },
    // The signature covers the exact bytes sent, so the body is read raw whatever its content type says; it
    // must arrive before the answer is due.
    boundedBody(express.raw({ type: () => true, limit: BODY_LIMIT_BYTES }), BODY_LIMIT_BYTES, options.deadlineMs),
    async (req: Request, res: Response) => {
      const raw: unknown = req.body;
      if (!Buffer.isBuffer(raw)) throw new Error(`the Alexa router must be mounted before any body parser that consumes ${options.path}`);
      // The checks that cost nothing come before the signature's, whose certificate chain may have to be
      // downloaded: a forged request fails them without making the server fetch anything.
      const envelope = parseEnvelope(raw);
      if (verifier) checkTimestamp(envelope.request.timestamp, now());
      const wrongId = envelope.applicationIds.find((id) => id !== options.applicationId);
      if (wrongId !== undefined) throw new AlexaRejection(403, `request is for application ${wrongId}, not this skill`);
      if (verifier) await verifier.verify(req.get('SignatureCertChainUrl'), req.get('Signature-256'), raw, req.ip);
      if (envelope.request.type === 'IntentRequest' && envelope.request.intent.name === CHAT_INTENT) res.locals.model = options.modelKey;
      // Every user's requests come from Amazon's addresses: the users take turns at the model's slots as the user
      // the request names, once its signature shows that Alexa sent it. Unsigned, a body could name anyone (a new
      // user for each request, each with a newcomer's turn): the address is all that tells its sender.
      const client = verifier && envelope.user !== undefined ? `alexa:${envelope.user}` : req.ip;
      res.json(await answer(envelope, res.locals.alexaArrived as number, client));
    },
  );
  // Why a request was refused matters to whoever watches for forged requests; the server's handler answers it.
  router.use(options.path, (err: unknown, req: Request, _res: Response, next: NextFunction) => {
    if (err instanceof AlexaRejection) log('warn', 'alexa request refused', { status: err.status, reason: err.message, ip: req.ip });
    next(err);
  });
  return router;
}
