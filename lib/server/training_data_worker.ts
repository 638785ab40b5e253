// The worker thread of checkTrainingDataOffThread (training_data.ts): one upload checked, its error posted back.
import { parentPort, workerData } from 'node:worker_threads';
import { replyFromThread } from '../import/thread';
import { checkTrainingData, type TrainingDataCheck } from './training_data';

const port = parentPort;
if (port === null) throw new Error('lib/server/training_data_worker.js runs only as the worker thread of checkTrainingDataOffThread');
const job = workerData as TrainingDataCheck;
replyFromThread(port, checkTrainingData(job.file, job.filename));
