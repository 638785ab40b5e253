// A worker of EncoderPool: a tokenizer for each vocabulary its jobs name, encoding the jobs the pool posts. The ids
// go back as copies: transferring them would detach ArrayBuffers, and V8 answers the first detach in a thread by
// deoptimizing all typed-array code in it (see parallel.ts).
import { parentPort, workerData } from 'node:worker_threads';
import type { EncodeJob, EncodeReply, PoolVocabulary, WorkerSetup } from './parallel';
import { loadTokenizer, type Tokenizer } from './tokenizer';

const setup = workerData as WorkerSetup;
// The pool's own vocabulary, read at the first job that names none: a server's pool names each model's.
let defaultTokenizer: Tokenizer | undefined;
// By fingerprint: a folder's files may change while the pool lives.
const tokenizers = new Map<string, Tokenizer>();
function tokenizerOf(vocabulary: PoolVocabulary | undefined): Tokenizer {
  if (vocabulary === undefined) return (defaultTokenizer ??= loadTokenizer(setup.vocabDir));
  let tokenizer = tokenizers.get(vocabulary.fingerprint);
  if (tokenizer === undefined) {
    tokenizer = loadTokenizer(vocabulary.dir);
    if (tokenizer.vocab.fingerprint !== vocabulary.fingerprint) throw new Error(`${vocabulary.dir}: its vocabulary changed since the model was loaded`);
    tokenizers.set(vocabulary.fingerprint, tokenizer);
  }
  return tokenizer;
}
const port = parentPort;
if (port === null) throw new Error('lib/tokenizer/worker.js runs only as a worker thread of EncoderPool');

port.on('message', (job: EncodeJob) => {
  let reply: EncodeReply;
  try {
    const tokenizer = tokenizerOf(job.vocabulary);
    reply = { id: job.id, tokens: job.texts.map((text) => tokenizer.encode(text, { allowSpecial: job.allowSpecial })) };
  } catch (err) {
    reply = { id: job.id, error: (err as Error).message };
  }
  port.postMessage(reply);
});
