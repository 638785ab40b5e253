// The worker thread of buildOffThread (thread.ts): grammars built one after another, their rules or their errors
// posted back.
import { parentPort } from 'node:worker_threads';
import type { Grammar } from './grammar';
import { GrammarError } from './syntax';
import { buildGrammar, builtReply, type BuildRequest } from './thread';

const port = parentPort;
if (port === null) throw new Error('lib/generate/grammar/worker.js runs only as the worker thread of buildOffThread');
port.on('message', ({ id, source }: BuildRequest) => {
  let grammar: Grammar;
  try {
    grammar = buildGrammar(source);
  } catch (err) {
    port.postMessage({ id, error: { grammar: err instanceof GrammarError, message: err instanceof Error ? err.message : String(err) } });
    return;
  }
  const { reply, transfer } = builtReply(id, grammar);
  port.postMessage(reply, transfer);
});
