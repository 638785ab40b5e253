import { HttpError } from '../errors';

// A request the skill endpoint refuses, with the HTTP status that says why:
//   400: the request is malformed or stale (bad JSON, missing fields, timestamp outside the tolerance);
//   401: it could not be shown to come from Alexa (certificate URL, certificate chain, signature);
//   403: it comes from Alexa but for another skill (application id).
// The server's error handler answers it as JSON like any HttpError.
export class AlexaRejection extends HttpError {
  constructor(readonly status: 400 | 401 | 403, message: string) {
    super(status, message);
    this.name = 'AlexaRejection';
  }
}
