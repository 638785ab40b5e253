// The Alexa skill endpoint: what the server needs to mount it.
export { createAlexaRouter, CHAT_INTENT, UTTERANCE_SLOT } from './router';
export type { AlexaDeps } from './router';
export { validateAlexaConfig, ALEXA_DEFAULTS } from './config';
export type { AlexaOptions } from './config';
export { AlexaRejection } from './errors';
