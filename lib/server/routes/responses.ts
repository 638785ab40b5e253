// OpenAI's Responses API, the one its newer clients speak (the openai libraries' `responses.create`, the Agents
// SDK), over the same models, queue, batching and sanitizers as chat completions:
//   POST /v1/responses   `input` (a text, or messages) and `instructions` made into the model's prompt as chat
//                        completions' messages are (chatPrompt), one reply, whole or streamed as Responses' events
//   GET, DELETE /v1/responses/<id>, GET .../input_items   404: no response is kept
// Its sampling fields (`max_output_tokens`, `temperature`, `top_p`, and dixie's `top_k`, `min_p` and `penalize`), and the log-
// probabilities of the reply's tokens (`include: ["message.output_text.logprobs"]`, `top_logprobs`); a reply in
// JSON, or to a JSON schema, with `text.format` (response_format.ts); function tools, calls answered as function_call
// items (tool_calls.ts). dixie keeps no responses, so that a conversation comes whole in `input` (its calls and their
// outputs as function_call and function_call_output items), never by `previous_response_id`.
import crypto from 'node:crypto';
import express, { type Request, type Response } from 'express';
import type { TokenLogprob } from '../../generate/logprobs';
import { MAX_TOP_LOGPROBS } from '../../generate/logprobs';
import type { ModelConfig, SamplingDefaults } from '../config';
import { HttpError } from '../errors';
import type { ChatService, Completion } from '../service';
import { toolCallsText } from '../../data/chat_format';
import { quoted } from '../../util/quoted';
import {
  bad, callArguments, chatPrompt, checkKeys, checkNeutral, checkOpenAITemperature, clientGone, cutShort, eventSender, generateStreamed, isBool, isInt, messageText,
  objectBody, optional, readModel, readSampling, readStreamOptions, sentByBatch, sentCall, tokenLogprobs, type Body, type InputMessage,
} from './api_common';
import { readTextFormat } from './response_format';
import { readToolChoice, replyCalls, replyKind } from './tool_calls';
import type { Grammar } from '../../generate/grammar';
import { isJsonObject } from '../../util/json_object';

const KEYS = [
  'model', 'input', 'instructions', 'max_output_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'penalize', 'stream', 'stream_options',
  'include', 'top_logprobs', 'text', 'tools', 'tool_choice', 'parallel_tool_calls', 'reasoning', 'truncation', 'store', 'background',
  'previous_response_id', 'conversation', 'prompt', 'service_tier', 'user', 'safety_identifier', 'prompt_cache_key', 'prompt_cache_retention', 'metadata',
];
const SAMPLING_NAMES: Readonly<Record<string, string>> = { max_output_tokens: 'length', temperature: 'temperature', top_p: 'top_p', top_k: 'top_k', min_p: 'min_p', penalize: 'penalize' };
const LOGPROBS = 'message.output_text.logprobs';

interface ResponsesRequest {
  model: ModelConfig;
  body: Body;
  sampling: SamplingDefaults;
  lengthGiven: boolean;
  stream: boolean;
  top: number | undefined;  // the alternatives each token's log-probability comes with; undefined: no log-probabilities
  grammar: Grammar | undefined;  // the tools' (tool_calls.ts), or text.format's
  calls: boolean;                // whether the reply may be calls
  textBesideCalls: boolean;      // the tools' grammar lets the reply be text too (tool_choice "auto")
  textFormat: Body;              // text.format, as the response reports it
  truncation: Truncation;
}

type Truncation = 'auto' | 'disabled';

async function readRequest(service: ChatService, body: Body): Promise<ResponsesRequest> {
  checkKeys(body, KEYS);
  const model = readModel(service, body);
  checkNeutral(body);
  checkOpenAITemperature(body);
  // OpenAI's stored prompt templates; completions' `prompt` is another field, so it is not among NEUTRAL_ONLY's.
  if (body.prompt !== undefined && body.prompt !== null) bad('prompt', 'is not supported: dixie keeps no prompt templates; send the text in input');
  readStreamOptions(body, []);
  // "disabled" refuses a conversation that does not fit the context (OpenAI's default; here, as before it was
  // offered, "auto" is, which drops the oldest messages).
  const truncation = optional<Truncation>(body, 'truncation', (v) => v === 'auto' || v === 'disabled', '"auto" or "disabled"') ?? 'auto';
  const include = optional<unknown[]>(body, 'include', Array.isArray, `an array, such as ["${LOGPROBS}"]`) ?? [];
  include.forEach((item, i) => {
    if (item !== LOGPROBS) bad(`include[${i}]`, `only "${LOGPROBS}" is supported`);
  });
  const top = optional<number>(body, 'top_logprobs', isInt(0, MAX_TOP_LOGPROBS), `an integer from 0 to ${MAX_TOP_LOGPROBS}`);
  if (top !== undefined && include.length === 0) bad('top_logprobs', `needs "include": ["${LOGPROBS}"]`);
  const { grammar, format } = await readTextFormat(body);
  const tools = await readToolChoice(body, model, grammar, 'flat');
  return {
    model,
    body,
    ...readSampling(body, model, SAMPLING_NAMES),
    stream: optional<boolean>(body, 'stream', isBool, 'true or false') ?? false,
    top: include.length > 0 ? (top ?? 0) : undefined,
    grammar: tools?.grammar ?? grammar,
    calls: tools !== undefined,
    textBesideCalls: tools?.optional ?? false,
    textFormat: format,
    truncation,
  };
}

// `instructions`, then `input`: a text (one user message) or items: messages, the content of each a text or text
// parts, and the function calls of earlier replies with their outputs (read as chat completions' are: the call the
// bot's words, its output the user's side), each output after its call. Other items (reasoning, images, files) are
// refused, naming the item. With each message, what the request calls it: "instructions", or its input item's index.
function inputMessages(body: Body): { messages: InputMessage[]; names: (number | 'instructions')[] } {
  const messages: InputMessage[] = [];
  const names: (number | 'instructions')[] = [];
  const instructions = optional<string>(body, 'instructions', (v) => typeof v === 'string', 'a string');
  if (instructions !== undefined) {
    messages.push({ role: 'developer', text: instructions, roleField: 'instructions', textField: 'instructions' });
    names.push('instructions');
  }
  const input = body.input;
  if (typeof input === 'string') return { messages: [...messages, { role: 'user', text: input, roleField: 'input', textField: 'input' }], names: [...names, 0] };
  if (!Array.isArray(input) || input.length === 0) bad('input', 'must be a text or a non-empty array of messages {"role", "content"}');
  const called = new Set<string>();
  input.forEach((item: unknown, i) => {
    const where = `input[${i}]`;
    const add = (m: InputMessage): void => {
      messages.push(m);
      names.push(i);
    };
    if (!isJsonObject(item)) bad(where, 'must be a message {"role", "content"}');
    if (item.type === 'function_call') {
      if (typeof item.call_id !== 'string') bad(`${where}.call_id`, 'must be the id of the call, a string');
      called.add(item.call_id);
      const call = sentCall(item.name, callArguments(item.arguments, `${where}.arguments`), `${where}.name`);
      // A reply's items are one message: its text and calls, as chat completions' message holds them.
      const last = messages.at(-1);
      if (last?.role === 'assistant' && last.roleField !== 'instructions') messages[messages.length - 1] = { ...last, text: toolCallsText(last.text, [call]) };
      else add({ role: 'assistant', text: toolCallsText('', [call]), roleField: `${where}.type`, textField: `${where}.arguments` });
    } else if (item.type === 'function_call_output') {
      if (typeof item.call_id !== 'string' || !called.has(item.call_id)) bad(`${where}.call_id`, 'must be the call_id of an earlier function_call item');
      add({ role: 'tool', text: messageText(item.output, `${where}.output`, ['input_text', 'output_text']), roleField: `${where}.type`, textField: `${where}.output` });
    } else if (item.type === undefined || item.type === 'message') {
      if (item.role === 'tool') bad(`${where}.role`, 'must be "system", "developer", "user" or "assistant": a tool\'s output is a function_call_output item');
      add({ role: item.role, text: messageText(item.content, `${where}.content`, ['input_text', 'output_text']), roleField: `${where}.role`, textField: `${where}.content` });
    } else {
      bad(`${where}.type`, `only messages, function calls and their outputs are supported: GPT-2 reads no images or files (this is ${quoted(item.type)})`);
    }
  });
  return { messages, names };
}

const newId = (prefix: string): string => `${prefix}${crypto.randomBytes(24).toString('hex')}`;

// A response as OpenAI's API gives it: `status` "in_progress" while streamed, then "completed"; "incomplete" when
// the reply was cut at its length (or by the deadline, which dixie_finish_reason tells apart); "failed" with `error`.
interface ResponseState {
  status: 'in_progress' | 'completed' | 'incomplete' | 'failed';
  output: Record<string, unknown>[];
  completion?: Completion;
  error?: { code: string; message: string };
}

function responseObject(id: string, createdAt: number, request: ResponsesRequest, state: ResponseState): Record<string, unknown> {
  const { body, sampling, model, top, textFormat, truncation } = request;
  const c = state.completion;
  return {
    id,
    object: 'response',
    created_at: createdAt,
    status: state.status,
    completed_at: state.status === 'completed' ? Math.floor(Date.now() / 1000) : null,
    error: state.error ?? null,
    incomplete_details: state.status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
    ...(c && { dixie_finish_reason: c.finishReason }),
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    model: model.key,
    output: state.output,
    parallel_tool_calls: body.parallel_tool_calls === true,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    store: false,
    temperature: sampling.temperature,
    text: { format: textFormat, verbosity: 'medium' },
    tool_choice: body.tool_choice ?? 'auto',
    tools: body.tools ?? [],
    top_logprobs: top ?? 0,
    top_p: sampling.topP,
    truncation,
    usage: c
      ? {
          input_tokens: c.promptIds.length,
          input_tokens_details: { cached_tokens: c.timings.cachedPromptTokens },
          output_tokens: c.tokens.length,
          output_tokens_details: { reasoning_tokens: 0 },
          total_tokens: c.promptIds.length + c.tokens.length,
        }
      : null,
    ...(typeof body.user === 'string' && { user: body.user }),
    metadata: body.metadata ?? {},
  };
}

const finalStatus = (c: Completion): 'completed' | 'incomplete' => (cutShort(c) ? 'incomplete' : 'completed');

function outputText(text: string, logprobs: Record<string, unknown>[]): Record<string, unknown> {
  return { type: 'output_text', text, annotations: [], logprobs };
}

function message(id: string, status: string, content: Record<string, unknown>[]): Record<string, unknown> {
  return { id, type: 'message', status, role: 'assistant', content };
}

// The reply's items: its calls, each a function_call item, or its text (a call cut short is text too).
function outputItems(request: ResponsesRequest, c: Completion, message: () => Record<string, unknown>): Record<string, unknown>[] {
  const calls = request.calls ? replyCalls(c) : null;
  if (calls === null) return [message()];
  return calls.map((call) => ({ id: newId('fc_'), type: 'function_call', status: 'completed', call_id: call.id, name: call.name, arguments: call.arguments }));
}

export function responsesRouter(service: ChatService, jsonBody: express.RequestHandler): express.Router {
  const router = express.Router();

  // A response is answered with store: false and kept nowhere, so the clients' responses.retrieve, .delete and
  // .inputItems.list find none: a 404 as OpenAI answers for a response it did not store, saying why, where "no
  // route" would have a client believe the server lacks the API.
  const notStored = (req: Request): never => {
    throw new HttpError(404, `No response with id ${quoted(req.params.id)}: dixie keeps no responses (each is answered with store: false); send the conversation in input`);
  };
  router.get(['/v1/responses/:id', '/v1/responses/:id/input_items'], notStored);
  router.delete('/v1/responses/:id', notStored);

  router.post('/v1/responses', jsonBody, async (req: Request, res: Response) => {
    const request = await readRequest(service, objectBody(req));
    const { messages, names } = inputMessages(request.body);
    const { prompt, ignored } = chatPrompt(request.model, messages, 'input');
    if (ignored.length > 0) res.setHeader('X-Dixie-Ignored-Messages', ignored.map((i) => names[i]).join(','));
    res.locals.model = request.model.key;
    const id = newId('resp_');
    const itemId = newId('msg_');
    const createdAt = Math.floor(Date.now() / 1000);
    const gone = clientGone(res);
    const tokenizer = request.top === undefined ? null : await service.tokenizer(request.model.key, gone.signal);
    const logprobsOf = (logprobs: readonly TokenLogprob[] | undefined): Record<string, unknown>[] => (tokenizer && logprobs ? tokenLogprobs(tokenizer, logprobs) : []);
    const generation = {
      prompt,
      promptField: 'input',
      sampling: request.sampling,
      lengthGiven: request.lengthGiven,
      signal: gone.signal,
      logprobs: request.top,
      grammar: request.grammar,
      textBesideCalls: request.textBesideCalls,
      keepPrompt: request.truncation === 'disabled' ? 'truncation "disabled"' : undefined,
      sentByBatch: sentByBatch(res),
      client: req.ip,
    };

    if (!request.stream) {
      const c = await service.generate(request.model.key, generation);
      const status = finalStatus(c);
      const output = outputItems(request, c, () => message(itemId, status, [outputText(c.text, logprobsOf(c.logprobs))]));
      res.json(responseObject(id, createdAt, request, { status, completion: c, output }));
      return;
    }

    // Streamed: the events of OpenAI's stream, each with its sequence number. The first ones wait for the first
    // text, so that a request that fails before any (a model that cannot load, a prompt too long) is answered with
    // an HTTP error rather than an event. A reply that begins as calls is held, and its items come whole at the end
    // (only a whole call parses).
    const { send, started } = eventSender(res);
    let sequence = 0;
    const emit = (type: string, fields: Record<string, unknown>): void => send({ type, sequence_number: sequence++, ...fields }, type);
    const at = { item_id: itemId, output_index: 0, content_index: 0 };
    let textBegun = false;
    const begin = (text: boolean): void => {
      if (!started()) {
        const inProgress = responseObject(id, createdAt, request, { status: 'in_progress', output: [] });
        emit('response.created', { response: inProgress });
        emit('response.in_progress', { response: inProgress });
      }
      if (!text || textBegun) return;
      textBegun = true;
      emit('response.output_item.added', { output_index: 0, item: message(itemId, 'in_progress', []) });
      emit('response.content_part.added', { ...at, part: outputText('', []) });
    };
    // Each delta carries the log-probabilities of the tokens drawn since the one before (generateStreamed); those
    // drawn after the last come in output_text.done with the rest.
    let c: Completion;
    const kindOf = replyKind();
    let undelivered: TokenLogprob[] = [];
    try {
      c = await generateStreamed(service, request.model.key, generation, (text, drawn, done) => {
        if (done) return;
        undelivered.push(...drawn);
        // A reply that may be calls is text once its first character says so; the log-probabilities of the tokens
        // drawn before then come with its first delta.
        const isText = !request.calls || kindOf(text) === 'text';
        begin(isText);
        if (!isText) return;
        emit('response.output_text.delta', { ...at, delta: text, logprobs: logprobsOf(undelivered) });
        undelivered = [];
      });
    } catch (err) {
      if (!started()) throw err;
      const error = { code: 'server_error', message: (err as Error).message };
      emit('response.failed', { response: responseObject(id, createdAt, request, { status: 'failed', output: [], error }) });
      res.end();
      return;
    }
    const status = finalStatus(c);
    const part = outputText(c.text, logprobsOf(c.logprobs));
    const output = outputItems(request, c, () => message(itemId, status, [part]));
    if (output[0].type === 'function_call') {
      begin(false);
      output.forEach((item, i) => {
        const call = { item_id: item.id, output_index: i };
        emit('response.output_item.added', { output_index: i, item: { ...item, status: 'in_progress', arguments: '' } });
        emit('response.function_call_arguments.delta', { ...call, delta: item.arguments });
        emit('response.function_call_arguments.done', { ...call, arguments: item.arguments });
        emit('response.output_item.done', { output_index: i, item });
      });
    } else {
      const unsent = textBegun ? '' : c.text;
      begin(true);
      if (unsent !== '') emit('response.output_text.delta', { ...at, delta: unsent, logprobs: [] });
      emit('response.output_text.done', { ...at, text: c.text, logprobs: part.logprobs });
      emit('response.content_part.done', { ...at, part });
      emit('response.output_item.done', { output_index: 0, item: output[0] });
    }
    emit(`response.${status}`, { response: responseObject(id, createdAt, request, { status, completion: c, output }) });
    res.end();
  });

  return router;
}
