// The worker thread of importChatsOffThread (thread.ts): one import, its summary or its error posted back.
import { parentPort, workerData } from 'node:worker_threads';
import { importChats } from './index';
import { toWire, type ImportJob, type ImportReply } from './thread';

const port = parentPort;
if (port === null) throw new Error('lib/import/worker.js runs only as the worker thread of importChatsOffThread');
const job = workerData as ImportJob;
importChats(job.inputs, job.options).then(
  (summary) => port.postMessage({ summary } satisfies ImportReply),
  (err: unknown) => port.postMessage({ error: toWire(err) } satisfies ImportReply),
);
