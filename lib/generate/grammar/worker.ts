// The worker thread of buildOffThread (thread.ts): grammars built one after another, their rules or their errors
// posted back.
import { parentPort } from 'node:worker_threads';
import { GrammarError } from './syntax';
import { buildGrammar, startToWire, toWire, type BuildReply, type BuildRequest } from './thread';

const port = parentPort;
if (port === null) throw new Error('lib/generate/grammar/worker.js runs only as the worker thread of buildOffThread');
port.on('message', ({ id, source }: BuildRequest) => {
  let reply: BuildReply;
  try {
    const grammar = buildGrammar(source);
    reply = { id, rules: toWire(grammar.rules), start: startToWire(grammar) };
  } catch (err) {
    reply = { id, error: { grammar: err instanceof GrammarError, message: err instanceof Error ? err.message : String(err) } };
  }
  port.postMessage(reply);
});
