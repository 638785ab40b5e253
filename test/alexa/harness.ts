// The skill under test, served over real HTTP on 127.0.0.1, and what Alexa would send it.
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import { validateAlexaConfig } from '../../lib/server/alexa/config';
import { createAlexaRouter, type AlexaDeps } from '../../lib/server/alexa/router';
import type { ChatFn } from '../../lib/server/service';
import { downloadText, type CertChainFetcher } from '../../lib/server/alexa/verify';
import { HttpError } from '../../lib/server/errors';
import type { KeyPair } from './pki';

export const SKILL_ID = 'amzn1.ask.skill.11111111-2222-3333-4444-555555555555';
export const CERT_BASE = 'https://s3.amazonaws.com/echo.api/';

export interface LogLine {
  level: string;
  message: string;
  fields?: Record<string, unknown>;
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function closer(server: http.Server): () => Promise<void> {
  return () => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}

// Serves `files` (name -> PEM) under /echo.api/ on loopback. `fetcher` is what the verifier downloads with:
// it keeps the path of the (already vetted) https://s3.amazonaws.com URL and swaps in this server.
export async function startCertServer(files: Record<string, string>): Promise<{ fetcher: CertChainFetcher; downloads: string[]; close: () => Promise<void> }> {
  const downloads: string[] = [];
  const server = http.createServer((req, res) => {
    downloads.push(req.url ?? '');
    const name = (req.url ?? '').replace(/^\/echo\.api\//, '');
    const body = files[name];
    res.writeHead(body === undefined ? 404 : 200, { 'content-type': 'application/x-pem-file' }).end(body ?? 'not found');
  });
  const base = await listen(server);
  return { fetcher: (url) => downloadText(new URL(url.pathname, base)), downloads, close: closer(server) };
}

// The router mounted in a bare Express 5 app, as the server mounts it.
export async function startSkill(config: Record<string, unknown>, chat: ChatFn, deps: AlexaDeps = {}): Promise<{ url: string; logs: LogLine[]; close: () => Promise<void> }> {
  const logs: LogLine[] = [];
  const options = validateAlexaConfig({ application_id: SKILL_ID, ...config }, 'alexa');
  const app = express();
  app.use(createAlexaRouter(options, chat, { ...deps, log: (level, message, fields) => logs.push({ level, message, fields }) }));
  // As the server's one error handler answers an HttpError (lib/server/app.ts; test/alexa/server.test.ts runs the real one).
  app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (err instanceof HttpError) res.status(err.status).json({ error: err.message });
    else next(err);
  });
  const server = http.createServer(app);
  const base = await listen(server);
  return { url: `${base}${options.path}`, logs, close: closer(server) };
}

export interface EnvelopeOptions {
  applicationId?: string;
  attributes?: Record<string, unknown>;
  timestamp?: Date;
  user?: string;    // the account's userId (default amzn1.ask.account.TESTUSER)
  person?: string;  // the personId of a speaker Alexa recognized (default none)
}

export function envelope(request: Record<string, unknown>, opts: EnvelopeOptions = {}): Record<string, unknown> {
  const applicationId = opts.applicationId ?? SKILL_ID;
  const user = { userId: opts.user ?? 'amzn1.ask.account.TESTUSER' };
  const person = opts.person === undefined ? {} : { person: { personId: opts.person } };
  return {
    version: '1.0',
    session: {
      new: opts.attributes === undefined,
      sessionId: 'amzn1.echo-api.session.0000',
      application: { applicationId },
      attributes: opts.attributes ?? {},
      user,
    },
    context: { System: { application: { applicationId }, user, ...person, device: { deviceId: 'test-device' } } },
    request: { requestId: `amzn1.echo-api.request.${crypto.randomUUID()}`, timestamp: (opts.timestamp ?? new Date()).toISOString(), locale: 'en-US', ...request },
  };
}

export const launch = (opts?: EnvelopeOptions) => envelope({ type: 'LaunchRequest' }, opts);
export const intent = (name: string, slots: Record<string, string> = {}, opts?: EnvelopeOptions) =>
  envelope({
    type: 'IntentRequest',
    dialogState: 'COMPLETED',
    intent: { name, confirmationStatus: 'NONE', slots: Object.fromEntries(Object.entries(slots).map(([k, v]) => [k, { name: k, value: v, confirmationStatus: 'NONE' }])) },
  }, opts);
export const sessionEnded = (opts?: EnvelopeOptions) => envelope({ type: 'SessionEndedRequest', reason: 'USER_INITIATED' }, opts);

export function signatureHeaders(body: string, signer: KeyPair, certUrl: string): Record<string, string> {
  return { SignatureCertChainUrl: certUrl, 'Signature-256': crypto.sign('sha256', Buffer.from(body), signer.key).toString('base64') };
}

export interface Answer {
  status: number;
  body: Record<string, unknown>;
  ms: number;
}

export async function post(url: string, body: string, headers: Record<string, string> = {}): Promise<Answer> {
  const started = performance.now();
  const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json; charset=utf-8', ...headers } });
  const json = (await res.json()) as Record<string, unknown>;
  return { status: res.status, body: json, ms: performance.now() - started };
}

// The spoken SSML of an answer, and its session attributes.
export function ssmlOf(answer: Answer): string {
  return ((answer.body.response as { outputSpeech: { ssml: string } }).outputSpeech).ssml;
}
export function attributesOf(answer: Answer): Record<string, unknown> {
  return answer.body.sessionAttributes as Record<string, unknown>;
}
