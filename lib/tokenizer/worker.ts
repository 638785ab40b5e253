// A worker of EncoderPool: one tokenizer, encoding the jobs the pool posts. The ids go back as copies:
// transferring them would detach ArrayBuffers, and V8 answers the first detach in a thread by
// deoptimizing all typed-array code in it (see parallel.ts).
import { parentPort, workerData } from 'node:worker_threads';
import type { EncodeJob, EncodeReply, WorkerSetup } from './parallel';
import { loadTokenizer } from './tokenizer';

const setup = workerData as WorkerSetup;
const tokenizer = loadTokenizer(setup.vocabDir);
const port = parentPort;
if (port === null) throw new Error('lib/tokenizer/worker.js runs only as a worker thread of EncoderPool');

port.on('message', (job: EncodeJob) => {
  let reply: EncodeReply;
  try {
    reply = { id: job.id, tokens: job.texts.map((text) => tokenizer.encode(text, { allowSpecial: job.allowSpecial })) };
  } catch (err) {
    reply = { id: job.id, error: (err as Error).message };
  }
  port.postMessage(reply);
});
