// The worker thread of importChatsOffThread (thread.ts): one import, its summary or its error posted back.
import { parentPort, workerData } from 'node:worker_threads';
import { importChats } from './index';
import { replyFromThread, type ImportJob } from './thread';

const port = parentPort;
if (port === null) throw new Error('lib/import/worker.js runs only as the worker thread of importChatsOffThread');
const job = workerData as ImportJob;
replyFromThread(port, importChats(job.inputs, job.options));
