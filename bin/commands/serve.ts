// bin/serve: the multi-model chatbot server (lib/server). SIGTERM or SIGINT finishes the requests in flight and
// exits; a second one exits at once. SIGHUP reads the config (or the model folders) again and serves its models.
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { AUDIENCE_RULE, isAudience } from '../../lib/data/chat_format';
import { createServer, type DixieServer } from '../../lib/server/app';
import { API_KEYS_ENV, SYSTEM_MESSAGES } from '../../lib/server/config';
import { CONFIG_FILE, NoModelsError, pinnedSource, serveConfig, type ServeSource } from '../../lib/server/discover';
import { createLog, type Log } from '../../lib/server/log';
import { COMPUTE_FLAGS, applyComputeFlags } from './compute_flags';
import { commandLine } from './command_line';
import { quoted } from '../../lib/util/quoted';

async function main(): Promise<void> {
  // Signals are handled from the first moment: SIGHUP's default action would end the process (a `systemctl reload`
  // just after a start), and SIGTERM's would skip the shutdown's care (a fine-tuning job resumed at start). One that
  // comes while the server starts is acted on once it is up.
  let server: DixieServer | null = null;  // once listening
  let log: Log = createLog({ debug: false });
  let stopping = false;
  let reloadWhenUp = false;
  const shutDown = (up: DixieServer) => {
    up.shutdown().then(
      () => process.exit(0),
      (err: Error) => {
        log('error', 'shutdown failed', { error: err.message });
        process.exit(1);
      },
    );
  };
  const stop = (signal: string) => {
    if (stopping) {
      log('warn', `second ${signal}: exiting now`);
      process.exit(1);
    }
    stopping = true;
    log('info', server === null ? `${signal} received while starting: stopping once the server is up` : `${signal} received`);
    if (server !== null) shutDown(server);
  };
  const reload = () => {
    if (server === null) {
      reloadWhenUp = true;
      log('info', 'SIGHUP received while starting: reading the config again once the server is up');
      return;
    }
    log('info', 'SIGHUP received: reading the config again');
    try {
      server.reload(readConfig());
    } catch (err) {
      log('error', 'config not reloaded: the models stay as they were', { error: err instanceof Error ? err.message : String(err) });
    }
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', reload);

  const argv = await commandLine('serve')
    .usage(`$0 [options]\n\nServes GPT-2 models over HTTP: a chat page at /, POST /invocations, OpenAI's API under /v1 (completions, chat `
      + 'completions, responses, embeddings; files, fine-tuning and batches with --fine_tuning), Ollama\'s under /api, llama.cpp server\'s (POST /completion, /embedding, /tokenize...), '
      + 'GET /ping, POST /prime, GET /models/list, GET /metrics. '
      + `Without --config or --model it reads ./${CONFIG_FILE}, or else serves every model found in models/ and checkpoint/.`)
    .option('config', { type: 'string', describe: `server config file (default ./${CONFIG_FILE})` })
    .option('model', { alias: 'restore_from', type: 'string', describe: 'serve this one model without a config file: a model folder, a training run folder (its latest checkpoint), or a name under models/ (124M)' })
    .option('key', { type: 'string', default: 'chatbot', describe: 'model_key of the --model model' })
    .option('sanitizer', { type: 'string', describe: 'sanitizer of the --model model ("sanitizers.chatbot", "none", or a module path; default: the chatbot\'s for a model trained on chat logs, else none)' })
    .option('audience', { type: 'string', describe: "who the --model model (or every model found) answers as; default: the audience its chat data talks to most" })
    .option('system_messages', {
      choices: SYSTEM_MESSAGES,
      describe: 'what a chat model does with an OpenAI system message that names no audience (as the config\'s "system_messages"): refuse it (400, the default) or ignore it, for chat apps that always send one',
    })
    .option('fine_tuning', {
      type: 'string',
      describe: 'turn on OpenAI\'s Files, fine-tuning and Batch APIs (/v1/files, /v1/fine_tuning/jobs, /v1/batches), keeping uploads, jobs and batches in this folder (as the config\'s "fine_tuning": {"dir": ...}; over a config file, its folder in place of the file\'s)',
    })
    .option('host', { type: 'string', describe: 'address to listen on (overrides the config; default 127.0.0.1)' })
    .option('port', { type: 'number', describe: 'port to listen on (overrides the config; default 12345; 0: any free port)' })
    .option('api_key_file', {
      type: 'string',
      describe: `API keys clients must send ("Authorization: Bearer <key>"), one a line, blank lines and lines beginning with "#" skipped; with the keys of $${API_KEYS_ENV} (comma-separated), in place of the config's api_keys. Read again at a reload (SIGHUP): rewrite it and reload to rotate keys`,
    })
    // llama.cpp's server takes --api-key KEY: here a key is refused on the command line, where every user of the
    // machine sees it (ps), and the message says where to give it.
    .option('api_key', { type: 'string', hidden: true })
    .option('insecure', {
      type: 'boolean',
      default: false,
      describe: 'listen on an address other than loopback without api_keys (as "insecure": true); without it the server refuses to start on such an address',
    })
    .option('threads', { type: 'number', describe: 'CPU threads of each model (as the config\'s "threads", over it; default 0: one per core)' })
    .option('batch_slots', { type: 'number', describe: 'requests of one model decoded together (as the config\'s "batch_slots", over it; default 8)' })
    .option('memory_budget_mb', { type: 'number', describe: 'memory for the loaded models and fine-tuning\'s training (as the config\'s "memory_budget_mb", over it; default half the machine\'s)' })
    .options(COMPUTE_FLAGS)
    .conflicts('config', ['model', 'audience', 'sanitizer', 'system_messages'])
    .example('$0', `serve ./${CONFIG_FILE}, or the models in models/ and checkpoint/`)
    .example('$0 --model checkpoint/chat --audience mom', 'the quick start\'s chat model, answering as mom')
    .example('$0 --model models/124M --port 8080', 'one model')
    .example('$0 --model models/124M --threads 2', 'on a shared machine: two of its cores')
    .example('$0 --model models/124M --host 0.0.0.0 --api_key_file keys.txt', 'on the network, clients sending one of the keys in keys.txt')
    .example('$0 --model models/124M --fine_tuning fine-tuning', 'with OpenAI\'s fine-tuning API: uploads and jobs in fine-tuning/')
    .example(`curl -d '{"model_key":"chatbot","raw_text":"How big is the earth?\\n"}' -H 'Content-Type: application/json' http://127.0.0.1:12345/invocations`, 'ask it')
    .check((a) => {
      if (a.port !== undefined && !(Number.isInteger(a.port) && a.port >= 0 && a.port <= 65535)) throw new Error(`--port must be an integer from 0 to 65535, got ${a.port}`);
      if (a.fine_tuning !== undefined && a.fine_tuning.trim() === '') throw new Error('--fine_tuning must name a folder (where uploads and jobs are kept)');
      if (a.api_key_file !== undefined && a.api_key_file.trim() === '') throw new Error('--api_key_file must name a file (of API keys, one a line)');
      if (a.api_key !== undefined) throw new Error(`--api_key is not taken: a key on the command line is seen by every user of this machine (ps). Put the keys in a file, one a line, and give --api_key_file FILE, or set ${API_KEYS_ENV} (comma-separated)`);
      if (a.audience !== undefined && !isAudience(a.audience)) throw new Error(`--audience must be ${AUDIENCE_RULE}, got ${quoted(a.audience)}`);
      return true;
    })
    .wrap(Math.min(120, process.stdout.columns || 100))
    .strict()
    .help()
    .parseAsync();

  applyComputeFlags(argv, (message) => log('info', message));
  let source: ServeSource = {
    config: argv.config, model: argv.model, key: argv.key, sanitizer: argv.sanitizer, audience: argv.audience, systemMessages: argv.system_messages, fineTuning: argv.fine_tuning,
    flags: {
      threads: argv.threads, batch_slots: argv.batch_slots, memory_budget_mb: argv.memory_budget_mb,
      api_key_file: argv.api_key_file === undefined ? undefined : path.resolve(argv.api_key_file), api_keys_env: process.env[API_KEYS_ENV],
    },
    cwd: process.cwd(),
  };
  function readConfig() {
    const config = serveConfig(source);
    source = pinnedSource(source, config);
    return { ...config, insecure: config.insecure || argv.insecure };
  }
  const config = readConfig();
  const starting = createServer(config);
  log = starting.log;
  const address = await starting.listen(argv.port ?? config.port, argv.host ?? config.host);
  server = starting;
  if (process.stderr.isTTY) process.stderr.write(whereToConnect(address, config.models.map((m) => m.key), config.apiKeys.length > 0, config.fineTuning?.dir ?? null));
  if (stopping) shutDown(server);
  else if (reloadWhenUp) reload();
}

// For a person at a terminal (the JSON log on stdout is for collectors): where to point a browser and the clients,
// and whether the chat page can fine-tune (off by default, it is otherwise never seen).
function whereToConnect(address: AddressInfo, models: readonly string[], keyed: boolean, fineTuningDir: string | null): string {
  const everywhere = address.address === '0.0.0.0' || address.address === '::';
  const host = everywhere ? 'localhost' : address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  const others = models.length > 1 ? ` and ${models.length - 1} more (GET ${url}/models/list)` : '';
  return [
    `Serving ${models[0]}${others} at ${url}${everywhere ? ', on every address of this machine' : ''}`,
    `  chat page       ${url}/`,
    `  OpenAI clients  base URL ${url}/v1`,
    `  Ollama clients  host ${url}`,
    fineTuningDir === null
      ? '  fine-tuning     off: --fine_tuning DIR lets the chat page teach a new bot from a chat app\'s export'
      : `  fine-tuning     on the chat page, or OpenAI's clients; jobs and files in ${path.relative(process.cwd(), fineTuningDir) || '.'}`,
    ...(keyed ? ['  every client sends "Authorization: Bearer <one of the API keys>"'] : []),
    'Ctrl+C stops it, letting the requests in flight finish.',
    `kill -HUP ${process.pid} reloads the models (the config's changes, a run's newer checkpoint, models found since) without a stop.`,
    '',
  ].join('\n');
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  // In the log too, where a collector reading stdout finds why the server is not there.
  createLog({ debug: false })('error', 'not started', { error: message });
  process.stderr.write(err instanceof NoModelsError ? `${message}\n` : `serve: ${message}\n`);
  process.exitCode = 1;
});
