// The Alexa skill endpoint: what the server needs to mount it.
export { createAlexaRouter } from './router';
