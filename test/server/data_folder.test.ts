// The fine-tuning folder's state, in this process: a start that fails after the server took the folder's lock leaves
// the folder free for the next start.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import * as atomicFile from '../../lib/util/atomic_file';
import { createServer } from '../../lib/server/app';
import { validateServerConfig } from '../../lib/server/config';
import { makeModels, startServer, tempDir } from './helpers';

let dir: string;
const raw = { models: [{ key: 'general', restore_from: 'alpha' }], fine_tuning: { dir: 'ft' } };

t.before(async () => {
  dir = tempDir('data-folder');
  await makeModels(dir, { alpha: 1 }, 'Hi', 4);
});
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

t.test('a start that fails after taking the folder\'s lock releases it: this process starts a server there again', async (t) => {
  // A journal of renames that is none: the start's sweep of the job's folder refuses it.
  const jobDir = path.join(dir, 'ft', 'jobs', 'ftjob-old');
  fs.mkdirSync(jobDir, { recursive: true });
  fs.writeFileSync(path.join(jobDir, 'job.json'), JSON.stringify({ job: { id: 'ftjob-old', status: 'cancelled', created_at: 1 }, plan: null }));
  fs.writeFileSync(path.join(jobDir, atomicFile.RENAMES_FILE), '{}');
  const config = validateServerConfig(raw, 'test config', dir);
  t.throws(() => createServer(config, { log: () => undefined }), /not a list of renames/);
  t.notOk(fs.existsSync(path.join(dir, 'ft', '.dixie.lock')), 'the lock released');

  fs.rmSync(path.join(jobDir, atomicFile.RENAMES_FILE));
  const srv = await startServer(raw, dir);
  t.equal((await (await fetch(`${srv.url}/v1/fine_tuning/jobs/ftjob-old`)).json() as { status: string }).status, 'cancelled');
  await srv.close();
  fs.rmSync(jobDir, { recursive: true });
});
