// The parts of the Alexa Skills Kit request and response JSON this skill reads and writes
// (developer.amazon.com: "Request and Response JSON Reference"), checked at the edge.
import { AlexaRejection } from './errors';
import { isJsonObject } from '../../util/json_object';

interface AlexaSlot {
  name: string;
  value?: string;
}

type AlexaRequest =
  | { type: 'LaunchRequest'; requestId: string; timestamp: string }
  | { type: 'IntentRequest'; requestId: string; timestamp: string; intent: { name: string; slots: Record<string, AlexaSlot> } }
  | { type: 'SessionEndedRequest'; requestId: string; timestamp: string; reason: string; error?: AlexaError }
  // Other types (CanFulfillIntentRequest, System.ExceptionEncountered, ...) are verified and acknowledged.
  | { type: 'Other'; originalType: string; requestId: string; timestamp: string; error?: AlexaError };

// What Alexa says went wrong when it ends a session with reason ERROR or sends System.ExceptionEncountered:
// most often that it could not use the skill's last response.
interface AlexaError {
  type: string;
  message: string;
}

export interface AlexaEnvelope {
  version: string;
  applicationIds: string[]; // every application id the envelope names (context.System and session); all must match
  sessionAttributes: Record<string, unknown>;
  // Who asked, as Alexa names them: the person it recognized by voice (context.System.person.personId), else the
  // account that enabled the skill (context.System.user.userId, or session.user.userId); absent where none is named.
  user: string | undefined;
  request: AlexaRequest;
}

interface OutputSpeech {
  type: 'SSML';
  ssml: string;
}

export interface AlexaResponseEnvelope {
  version: '1.0';
  sessionAttributes?: Record<string, unknown>;
  response: {
    outputSpeech?: OutputSpeech;
    reprompt?: { outputSpeech: OutputSpeech };
    shouldEndSession?: boolean;
    canFulfillIntent?: { canFulfill: 'YES' | 'NO' | 'MAYBE' };
  };
}

function field(parent: unknown, path: string): unknown {
  let value: unknown = parent;
  for (const key of path.split('.')) {
    if (!isJsonObject(value)) return undefined;
    value = value[key];
  }
  return value;
}

function requireString(body: unknown, path: string): string {
  const value = field(body, path);
  if (typeof value !== 'string' || value === '') throw new AlexaRejection(400, `${path}: must be a non-empty string`);
  return value;
}

function optionalString(body: unknown, path: string): string | undefined {
  return field(body, path) === undefined ? undefined : requireString(body, path);
}

function optionalObject(body: unknown, path: string): Record<string, unknown> | undefined {
  const value = field(body, path);
  if (value === undefined || value === null) return undefined;
  if (!isJsonObject(value)) throw new AlexaRejection(400, `${path}: must be an object`);
  return value;
}

function parseSlots(body: unknown): Record<string, AlexaSlot> {
  const slots = optionalObject(body, 'request.intent.slots') ?? {};
  const parsed: Record<string, AlexaSlot> = {};
  for (const [key, slot] of Object.entries(slots)) {
    const path = `request.intent.slots.${key}`;
    if (!isJsonObject(slot)) throw new AlexaRejection(400, `${path}: must be an object`);
    const value = slot.value;
    if (value !== undefined && typeof value !== 'string') throw new AlexaRejection(400, `${path}.value: must be a string`);
    parsed[key] = { name: key, value };
  }
  return parsed;
}

function parseError(body: unknown): AlexaError | undefined {
  const error = field(body, 'request.error');
  if (!isJsonObject(error)) return undefined;
  const text = (value: unknown): string => (typeof value === 'string' ? value : 'unknown');
  return { type: text(error.type), message: text(error.message) };
}

function parseRequest(body: unknown): AlexaRequest {
  const type = requireString(body, 'request.type');
  const requestId = requireString(body, 'request.requestId');
  const timestamp = requireString(body, 'request.timestamp');
  switch (type) {
    case 'LaunchRequest':
      return { type, requestId, timestamp };
    case 'IntentRequest':
      return { type, requestId, timestamp, intent: { name: requireString(body, 'request.intent.name'), slots: parseSlots(body) } };
    case 'SessionEndedRequest': {
      const reason = field(body, 'request.reason');
      return { type, requestId, timestamp, reason: typeof reason === 'string' ? reason : 'UNKNOWN', error: parseError(body) };
    }
    default:
      return { type: 'Other', originalType: type, requestId, timestamp, error: parseError(body) };
  }
}

// `raw` is the request body exactly as received (the signature covers these bytes, not a re-serialisation).
export function parseEnvelope(raw: Buffer): AlexaEnvelope {
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new AlexaRejection(400, `body is not JSON: ${(err as Error).message}`);
  }
  if (!isJsonObject(body)) throw new AlexaRejection(400, 'body: must be a JSON object');
  const applicationIds: string[] = [];
  if (field(body, 'context.System.application') !== undefined) applicationIds.push(requireString(body, 'context.System.application.applicationId'));
  if (field(body, 'session.application') !== undefined) applicationIds.push(requireString(body, 'session.application.applicationId'));
  if (applicationIds.length === 0) throw new AlexaRejection(400, 'context.System.application.applicationId: missing');
  return {
    version: requireString(body, 'version'),
    applicationIds,
    sessionAttributes: optionalObject(body, 'session.attributes') ?? {},
    user: optionalString(body, 'context.System.person.personId') ?? optionalString(body, 'context.System.user.userId') ?? optionalString(body, 'session.user.userId'),
    request: parseRequest(body),
  };
}
