// The CPU image (docker/Dockerfile), built and run where a container engine answers (docker, else podman): it
// serves a model from the /models volume as a user other than root, its health check passes through /ping, and
// `docker stop` (SIGTERM, through tini) drains the server, which exits 0. Where no engine answers the test is
// skipped, saying why. The image is built with the SSE2 addon alone, which is the quickest to compile and runs on
// any x86-64 CPU; it is left in place (dixie-test:cpu), so that the next run's build is mostly cached.
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { makeModels, tempDir } from '../server/helpers';

const ROOT = path.join(__dirname, '..', '..', '..');
const IMAGE = 'dixie-test:cpu';
const PROMPT = 'How big is the earth?';

// The first engine whose daemon answers, or why none does.
function findEngine(): { engine: string } | { reason: string } {
  const reasons: string[] = [];
  for (const engine of ['docker', 'podman']) {
    const info = spawnSync(engine, ['info'], { encoding: 'utf8', timeout: 30_000 });
    if (info.status === 0) return { engine };
    const why = info.error ? (info.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not installed' : info.error.message : info.stderr.trim().split('\n').at(-1);
    reasons.push(`${engine} info: ${why}`);
  }
  return { reason: `no container engine answers (${reasons.join('; ')}): docker/Dockerfile was not built` };
}

const found = findEngine();
const engine = 'engine' in found ? found.engine : '';

async function run(args: string[], timeoutMs = 60_000): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)(engine, args, { cwd: ROOT, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
    return stdout.trim();
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`${engine} ${args.join(' ')} failed: ${e.message}\n${(e.stderr ?? '').slice(-4000)}`);
  }
}

async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// What needs no container engine: the entrypoint's arguments (given `echo` as the server, it shows what the server
// would be started with) and what nginx passes on.
t.test('the images listen on 0.0.0.0:12345, where the health check asks: an address or port after the image name is refused', async (t) => {
  const entrypoint = (args: string[]) => spawnSync('sh', [path.join(ROOT, 'docker', 'entrypoint.sh'), 'echo', ...args], { encoding: 'utf8' });
  const started = entrypoint(['--model', '/models/chatbot', '--insecure']);
  t.equal(started.status, 0);
  t.equal(started.stdout, '--host 0.0.0.0 --port 12345 --model /models/chatbot --insecure\n');
  for (const args of [['--port', '8080'], ['--insecure', '--host', '127.0.0.1'], ['--port=8080']]) {
    const refused = entrypoint(args);
    t.equal(refused.status, 2, args.join(' '));
    t.equal(refused.stdout, '', 'the server is not started');
    t.match(refused.stderr, /is not taken here\. The server listens on 0\.0\.0\.0:12345 inside the container, where its health check asks; publish it on another address or port with docker run -p/);
  }
  t.match(fs.readFileSync(path.join(ROOT, 'docker', 'Dockerfile'), 'utf8'), /^ENTRYPOINT \["tini", "--", "dixie-entrypoint", "dixie-serve"\]$/m);
  t.match(fs.readFileSync(path.join(ROOT, 'docker', 'Dockerfile.cuda'), 'utf8'), /^ENTRYPOINT \["tini", "--", "dixie-entrypoint", "\/app\/bin\/serve"\]$/m);
});

t.test("nginx passes the Host the browser sent, port included, which the chat page's requests are checked against", async (t) => {
  t.match(fs.readFileSync(path.join(ROOT, 'docker', 'nginx.conf'), 'utf8'), /^\s*proxy_set_header Host \$http_host;$/m);
});

t.test('the CPU image serves a model from /models, healthy, as a user other than root, and stops cleanly on SIGTERM', { skip: 'reason' in found && found.reason }, async (t) => {
  // podman builds OCI images unless told otherwise, and OCI images have no HEALTHCHECK.
  const format = engine === 'podman' ? ['--format', 'docker'] : [];
  await run(['build', ...format, '-f', 'docker/Dockerfile', '--build-arg', 'DIXIE_PREBUILDS=sse2', '-t', IMAGE, '.'], 480_000);

  const models = tempDir('image');
  t.teardown(() => fs.rmSync(models, { recursive: true, force: true }));
  const greedy = await makeModels(models, { chatbot: 1 }, PROMPT, 8);
  // The server in the container runs as another user, who must be able to read the models.
  for (const dir of [models, path.join(models, 'chatbot')]) fs.chmodSync(dir, 0o755);

  const name = `dixie-test-${process.pid}`;
  t.teardown(() => spawnSync(engine, ['rm', '--force', name]));
  await run(['run', '--detach', '--name', name, '--publish', '127.0.0.1::12345', '--volume', `${models}:/models:ro`,
    '--health-interval', '1s', IMAGE, '--model', '/models/chatbot', '--insecure']);
  const address = (await run(['port', name, '12345'])).split('\n')[0];
  const url = `http://${address}`;

  await until('the container is healthy', 60_000, async () => {
    if (engine === 'podman') return spawnSync(engine, ['healthcheck', 'run', name]).status === 0;
    return (await run(['inspect', '--format', '{{.State.Health.Status}}', name])) === 'healthy';
  });
  t.equal((await fetch(`${url}/ping`)).status, 200, 'GET /ping');
  t.not(await run(['exec', name, 'id', '-u']), '0', 'the server does not run as root');

  const res = await fetch(`${url}/invocations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ model_key: 'chatbot', raw_text: PROMPT, length: 8, temperature: 0, penalize: 0 }),
  });
  t.equal(res.status, 200);
  t.equal(((await res.json()) as { text: string }).text, greedy.chatbot, 'the greedy reply of the model in /models');

  await run(['stop', '-t', '30', name], 60_000);
  t.equal(await run(['inspect', '--format', '{{.State.ExitCode}}', name]), '0', 'exit status 0 after docker stop: SIGTERM reached the server');
  t.match(await run(['logs', name]), /"msg":"SIGTERM received"/, 'the server logged the signal');
});
