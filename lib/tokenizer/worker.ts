// A worker of EncoderPool: one tokenizer, encoding the jobs the pool posts. The ids go back as copies:
// transferring them would detach ArrayBuffers, and V8 answers the first detach in a thread by
// deoptimizing all typed-array code in it (see parallel.ts).
import { parentPort, workerData } from 'node:worker_threads';
import type { EncodeJob, EncodeReply, WorkerSetup } from './parallel';
import { loadTokenizer, type Tokenizer } from './tokenizer';

const setup = workerData as WorkerSetup;
const defaultTokenizer = loadTokenizer(setup.vocabDir);
const tokenizers = new Map<string, Tokenizer>();
function tokenizerOf(vocabDir: string | undefined): Tokenizer {
  if (vocabDir === undefined) return defaultTokenizer;
  let tokenizer = tokenizers.get(vocabDir);
  if (tokenizer === undefined) tokenizers.set(vocabDir, (tokenizer = loadTokenizer(vocabDir)));
  return tokenizer;
}
const port = parentPort;
if (port === null) throw new Error('lib/tokenizer/worker.js runs only as a worker thread of EncoderPool');

port.on('message', (job: EncodeJob) => {
  let reply: EncodeReply;
  try {
    const tokenizer = tokenizerOf(job.vocabDir);
    reply = { id: job.id, tokens: job.texts.map((text) => tokenizer.encode(text, { allowSpecial: job.allowSpecial })) };
  } catch (err) {
    reply = { id: job.id, error: (err as Error).message };
  }
  port.postMessage(reply);
});
