import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { DEFAULT_HOST, DEFAULT_PORT, ORIGINAL_SAMPLING, loadServerConfig, validateServerConfig } from '../../lib/server/config';
import { NoModelsError, discoverModels, serveConfig } from '../../lib/server/discover';
import { Model } from '../../lib/engine/model';
import { writePeftAdapter } from '../../lib/formats/peft';
import { createServer } from '../../lib/server/app';
import { TINY, request, tempDir } from './helpers';

// server_config.json as the TensorFlow tools' README describes it, byte for byte (docs/compatibility.md).
const ORIGINAL = '{"host": "0.0.0.0", "port": 12345, "debug": 1, "models": [{"key": "chatbot", "model_name": "355M", "restore_from": "checkpoint/run1/", "sanitizer": "sanitizers.chatbot"}]}';

t.test('a config written for the TensorFlow tools loads unchanged', async (t) => {
  const dir = tempDir('config');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'server_config.json');
  fs.writeFileSync(file, ORIGINAL);
  const c = loadServerConfig(file);
  t.equal(c.host, '0.0.0.0');
  t.equal(c.port, 12345);
  t.equal(c.debug, true);
  t.equal(c.models.length, 1);
  const m = c.models[0];
  t.equal(m.key, 'chatbot');
  t.equal(m.modelName, '355M');
  t.equal(m.restoreFrom, path.join(dir, 'checkpoint/run1'), 'restore_from is relative to the config file');
  t.equal(m.sanitizer, 'sanitizers.chatbot');
  t.equal(m.promptFormat, 'chat', 'a chatbot model takes the user message in the chat format');
  t.same(m.sampling, ORIGINAL_SAMPLING);
  t.same(ORIGINAL_SAMPLING, { length: 120, temperature: 0.3, topK: 40, topP: 0.9, minP: 0, penalize: 0.85 });
  t.equal(c.alexa, null);
});

t.test('defaults: 127.0.0.1:12345, no keys, original sampling; per-model overrides', async (t) => {
  const c = validateServerConfig({ models: [{ key: 'g', model_name: '124M', sampling: { temperature: 0, length: 7 } }] }, 'cfg', '/base');
  t.equal(c.host, DEFAULT_HOST);
  t.equal(c.host, '127.0.0.1');
  t.equal(c.port, DEFAULT_PORT);
  t.equal(c.port, 12345);
  t.same(c.apiKeys, []);
  t.equal(c.insecure, false);
  t.equal(c.metricsPublic, false, '/metrics needs the API key when there are keys');
  t.equal(c.trustProxy, false, 'X-Forwarded-For believed from no one');
  t.equal(c.allowedHosts, null, 'Host names by the address bound');
  t.equal(c.debug, false);
  t.same(c.models[0].sampling, { ...ORIGINAL_SAMPLING, temperature: 0, length: 7 });
  t.equal(c.models[0].promptFormat, 'raw');
  t.equal(c.models[0].sanitizer, 'none');
  t.equal(c.models[0].device, null, "the server's --device");
  t.equal(c.models[0].precision, null, "the server's --precision");
  t.ok(c.memoryBudgetBytes > 0);
  const d = validateServerConfig({
    models: [{ key: 'g', restore_from: 'x', sanitizer: './s.js', device: 'cpu', precision: 'bf16' }],
    memory_budget_mb: 100, idle_unload_s: 2, api_keys: ['0123456789abcdef'], request_timeout_s: 5, max_queue: 3, batch_slots: 2, body_limit_kb: 8, shutdown_grace_s: 1,
  }, 'cfg', '/base');
  t.equal(d.memoryBudgetBytes, 100 * 1024 * 1024);
  t.equal(d.idleUnloadMs, 2000);
  t.equal(d.requestTimeoutMs, 5000);
  t.equal(d.bodyLimitBytes, 8192);
  t.equal(d.models[0].sanitizer, '/base/s.js', 'a sanitizer module path is relative to the config file');
  t.equal(d.models[0].device, 'cpu');
  t.equal(d.models[0].precision, 'bf16');
  const exposed = validateServerConfig({
    models: [{ key: 'g', model_name: '124M' }], insecure: true, metrics_public: true, trust_proxy: 'loopback, 10.0.0.0/8', allowed_hosts: ['Chat.Example.com', '*.internal', '[::1]'],
  }, 'cfg', '/base');
  t.equal(exposed.insecure, true);
  t.equal(exposed.metricsPublic, true);
  t.same(exposed.trustProxy, ['loopback', '10.0.0.0/8']);
  t.same(exposed.allowedHosts, ['chat.example.com', '*.internal', '[::1]']);
  t.equal(validateServerConfig({ models: [{ key: 'g', model_name: '124M' }], trust_proxy: 2 }, 'cfg', '/base').trustProxy, 2, 'a hop count');
  t.same(validateServerConfig({ models: [{ key: 'g', model_name: '124M' }], trust_proxy: ['192.168.0.7', '10.0.0.0/255.0.0.0', 'fd00::/8'] }, 'cfg', '/base').trustProxy, ['192.168.0.7', '10.0.0.0/255.0.0.0', 'fd00::/8']);
  const defaults = validateServerConfig({ models: [{ key: 'g', model_name: '124M' }] }, 'cfg', '/base');
  t.same([defaults.corsOrigins, defaults.prefixReuse], [[], true], 'no CORS; prefix reuse on');
  const web = validateServerConfig({ models: [{ key: 'g', model_name: '124M' }], cors_origins: ['https://app.example.com', 'http://localhost:3000'], prefix_reuse: false }, 'cfg', '/base');
  t.same([web.corsOrigins, web.prefixReuse], [['https://app.example.com', 'http://localhost:3000'], false]);
  t.equal(validateServerConfig({ models: [{ key: 'g', model_name: '124M' }], cors_origins: '*' }, 'cfg', '/base').corsOrigins, '*');
});

t.test('fine_tuning: off unless given; its folder relative to the config, the rest defaulted', async (t) => {
  const model = { key: 'g', model_name: '124M' };
  t.equal(validateServerConfig({ models: [model] }, 'cfg', '/base').fineTuning, null, 'off by default');
  t.same(validateServerConfig({ models: [model], fine_tuning: { dir: 'ft' } }, 'cfg', '/base').fineTuning, { dir: '/base/ft', maxFileBytes: 512 * 1024 * 1024, learningRate: 1e-4, loraRank: 0, loraLearningRate: 2e-3, threads: 0 });
  t.same(validateServerConfig({ models: [model], fine_tuning: { dir: '/data/ft', max_file_mb: 0.5, learning_rate: 3e-5, lora_rank: 8, lora_learning_rate: 1e-3, threads: 4 } }, 'cfg', '/base').fineTuning, { dir: '/data/ft', maxFileBytes: 512 * 1024, learningRate: 3e-5, loraRank: 8, loraLearningRate: 1e-3, threads: 4 });
  const bad: [unknown, RegExp][] = [
    ['ft', /^cfg: fine_tuning: must be an object such as \{"dir": "fine-tuning"\} \(got "ft"\)/],
    [{}, /^cfg: fine_tuning\.dir: required/],
    [{ dir: '' }, /^cfg: fine_tuning\.dir: must be a non-empty string/],
    [{ dir: 3 }, /^cfg: fine_tuning\.dir: must be a non-empty string/],
    [{ dir: 'ft', max_file_mb: 0 }, /^cfg: fine_tuning\.max_file_mb: must be a number from 0\.001/],
    [{ dir: 'ft', max_file_mb: '512' }, /^cfg: fine_tuning\.max_file_mb: /],
    [{ dir: 'ft', learning_rate: 0 }, /^cfg: fine_tuning\.learning_rate: must be a number above 0, at most 1 \(got 0\)/],
    [{ dir: 'ft', learning_rate: 2 }, /^cfg: fine_tuning\.learning_rate: /],
    [{ dir: 'ft', threads: 1.5 }, /^cfg: fine_tuning\.threads: must be an integer from 0 to 1024/],
    [{ dir: 'ft', lora_rank: 257 }, /^cfg: fine_tuning\.lora_rank: must be an integer from 0 to 256/],
    [{ dir: 'ft', lora_learning_rate: -1 }, /^cfg: fine_tuning\.lora_learning_rate: must be a number above 0, at most 1/],
    [{ dir: 'ft', epochs: 3 }, /^cfg: fine_tuning\.epochs: unknown setting \(known: dir, max_file_mb, learning_rate, lora_rank, lora_learning_rate, threads\)/],
  ];
  for (const [fineTuning, message] of bad) t.throws(() => validateServerConfig({ models: [model], fine_tuning: fineTuning }, 'cfg', '/base'), message, JSON.stringify(fineTuning));
});

t.test('bin/serve --fine_tuning: on with the defaults without a config file, the folder in place of a config file\'s', async (t) => {
  const dir = tempDir('config-fine-tuning');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(path.join(dir, 'model'));
  const defaults = { maxFileBytes: 512 * 1024 * 1024, learningRate: 1e-4, loraRank: 0, loraLearningRate: 2e-3, threads: 0 };
  t.equal(serveConfig({ cwd: dir, model: 'model' }).fineTuning, null, 'off without it');
  t.same(serveConfig({ cwd: dir, model: 'model', fineTuning: 'ft' }).fineTuning, { dir: path.join(dir, 'ft'), ...defaults }, '--model');
  const file = path.join(dir, 'prod.json');
  fs.writeFileSync(file, JSON.stringify({ models: [{ key: 'g', restore_from: 'model' }], fine_tuning: { dir: 'kept', max_file_mb: 1, threads: 2 } }));
  t.same(serveConfig({ cwd: dir, config: 'prod.json' }).fineTuning, { ...defaults, dir: path.join(dir, 'kept'), maxFileBytes: 1024 * 1024, threads: 2 }, 'the file\'s');
  t.same(serveConfig({ cwd: dir, config: 'prod.json', fineTuning: 'other' }).fineTuning, { ...defaults, dir: path.join(dir, 'other'), maxFileBytes: 1024 * 1024, threads: 2 }, 'the folder given, the file\'s other settings');
  fs.writeFileSync(file, JSON.stringify({ models: [{ key: 'g', restore_from: 'model' }] }));
  t.same(serveConfig({ cwd: dir, config: 'prod.json', fineTuning: '/abs/ft' }).fineTuning, { dir: '/abs/ft', ...defaults }, 'turned on over a file without it');
  fs.renameSync(file, path.join(dir, 'server_config.json'));
  t.same(serveConfig({ cwd: dir, fineTuning: 'ft' }).fineTuning, { dir: path.join(dir, 'ft'), ...defaults }, 'over ./server_config.json');
});

t.test('plain entries that load the same weights share them: the same folder or model, weight type, device and precision', async (t) => {
  const entries = [
    { key: 'mom', model_name: '124M', audience: 'mom' },
    { key: 'dad', model_name: 'gpt2', audience: 'dad' },
    { key: 'half', model_name: '124M', weight_dtype: 'f16' },
    { key: 'medium', model_name: '355M' },
  ];
  const c = validateServerConfig({ models: entries }, 'cfg', '/base');
  t.same(c.models.map((m) => [m.key, m.sharesWeights]), [['mom', true], ['dad', true], ['half', false], ['medium', false]], '"gpt2" is 124M; another weight type is other weights');
  t.notOk(validateServerConfig({ models: [entries[0]] }, 'cfg', '/base').models[0].sharesWeights, 'an entry alone');
});

t.test('every bad field is named', async (t) => {
  const model = { key: 'chatbot', model_name: '124M' };
  const bad: [unknown, RegExp][] = [
    [[], /^cfg: must be a JSON object/],
    [{}, /^cfg: models: must be a non-empty array/],
    [{ models: [] }, /^cfg: models: must be a non-empty array/],
    [{ models: [model], prot: 1 }, /^cfg: prot: unknown setting/],
    [{ models: [model], port: 70000 }, /^cfg: port: must be an integer from 0 to 65535/],
    [{ models: [model], port: '80' }, /^cfg: port: /],
    [{ models: [model], host: '' }, /^cfg: host: /],
    [{ models: [model], debug: 'yes' }, /^cfg: debug: must be true, false, 0 or 1/],
    [{ models: [model], memory_budget_mb: 0 }, /^cfg: memory_budget_mb: /],
    [{ models: [model], batch_slots: 0 }, /^cfg: batch_slots: /],
    [{ models: [model], insecure: 'yes' }, /^cfg: insecure: must be true or false/],
    [{ models: [model], metrics_public: 1 }, /^cfg: metrics_public: must be true or false/],
    [{ models: [model], trust_proxy: true }, /^cfg: trust_proxy: must be false, a number of proxies/],
    [{ models: [model], trust_proxy: 'everyone' }, /^cfg: trust_proxy: /],
    [{ models: [model], trust_proxy: ['10.0.0.0/33'] }, /^cfg: trust_proxy: /],
    [{ models: [model], trust_proxy: 0 }, /^cfg: trust_proxy: /],
    [{ models: [model], allowed_hosts: 'example.com' }, /^cfg: allowed_hosts: must be a non-empty array/],
    [{ models: [model], allowed_hosts: [] }, /^cfg: allowed_hosts: must be a non-empty array/],
    [{ models: [model], allowed_hosts: ['example.com:80'] }, /^cfg: allowed_hosts\[0\]: must be a host name without port/],
    [{ models: [model], cors_origins: ['app.example.com'] }, /^cfg: cors_origins: must be "\*" or an array of origins/],
    [{ models: [model], cors_origins: 'https://app.example.com' }, /^cfg: cors_origins: /],
    [{ models: [model], prefix_reuse: 'yes' }, /^cfg: prefix_reuse: must be true or false/],
    [{ models: [model], alexa: { model_key: 'chatbot' } }, /^cfg: alexa\.application_id: required/],
    [{ models: [model, { key: 'mom', model_name: '124M' }], alexa: { application_id: 'amzn1.ask.skill.0000', model_key: 'chatbto' } }, /^cfg: alexa\.model_key: the model the Alexa skill answers with \("chatbto"\) is not one of models: set it to one of "chatbot", "mom"$/],
    [{ models: [{ key: 'mom', model_name: '124M' }], alexa: { application_id: 'amzn1.ask.skill.0000' } }, /^cfg: alexa\.model_key: the model the Alexa skill answers with \(left out, it is "chatbot"\) is not one of models: set it to one of "mom"$/],
    [{ models: [{ model_name: '124M' }] }, /^cfg: models\[0\]\.key: must be a name/],
    [{ models: [{ key: 'a b', model_name: '124M' }] }, /^cfg: models\[0\]\.key: /],
    [{ models: [{ key: 'a' }] }, /^cfg: models\[0\]: give "restore_from"/],
    [{ models: [model, { key: 'chatbot', model_name: '355M' }] }, /^cfg: models\[1\]\.key: "chatbot" is used by an earlier model/],
    [{ models: [{ ...model, temprature: 1 }] }, /^cfg: models\[0\]\.temprature: unknown setting/],
    [{ models: [{ ...model, sampling: { temperature: -1 } }] }, /^cfg: models\[0\]\.sampling\.temperature: must be a number from 0/],
    [{ models: [{ ...model, sampling: { top_p: 0 } }] }, /^cfg: models\[0\]\.sampling\.top_p: /],
    [{ models: [{ ...model, sampling: { min_p: 1 } }] }, /^cfg: models\[0\]\.sampling\.min_p: must be a number from 0 \(off\) to below 1/],
    [{ models: [{ ...model, sampling: { top_k: 1.5 } }] }, /^cfg: models\[0\]\.sampling\.top_k: must be an integer/],
    [{ models: [{ ...model, sampling: { penalize: 2 } }] }, /^cfg: models\[0\]\.sampling\.penalize: /],
    [{ models: [{ ...model, sampling: { length: 0 } }] }, /^cfg: models\[0\]\.sampling\.length: /],
    [{ models: [{ ...model, sampling: { lenght: 5 } }] }, /^cfg: models\[0\]\.sampling\.lenght: unknown setting/],
    [{ models: [{ ...model, prompt_format: 'xml' }] }, /^cfg: models\[0\]\.prompt_format: must be "raw" or "chat"/],
    [{ models: [{ ...model, audience: 'a|b' }] }, /^cfg: models\[0\]\.audience: /],
    [{ models: [{ ...model, system_messages: 'drop' }] }, /^cfg: models\[0\]\.system_messages: must be "refuse" or "ignore" \(got "drop"\)/],
    [{ models: [{ ...model, weight_dtype: 'f8' }] }, /^cfg: models\[0\]\.weight_dtype: /],
    [{ models: [{ ...model, device: 'gpu' }] }, /^cfg: models\[0\]\.device: must be "cpu", "cuda" or "auto" \(got "gpu"\)/],
    [{ models: [{ ...model, precision: 'f16' }] }, /^cfg: models\[0\]\.precision: must be "f32" or "bf16"/],
    [{ models: [{ ...model, sanitizer_options: [] }] }, /^cfg: models\[0\]\.sanitizer_options: must be an object/],
  ];
  for (const [raw, message] of bad) t.throws(() => validateServerConfig(raw, 'cfg', '/base'), message, JSON.stringify(raw));
});

t.test('a bad API key is described, never shown: the error is logged, and the key may be a real one mistyped', async (t) => {
  const model = { key: 'chatbot', model_name: '124M' };
  const bad: [unknown, string][] = [
    ['a-real-key-but-one', 'api_keys: must be an array of keys (got a string)'],
    [{ primary: 'a-real-key-of-many-characters' }, 'api_keys: must be an array of keys (got an object)'],
    [['a-good-key-of-sixteen', 'short-secret'], 'api_keys[1]: must be a key of at least 16 characters without spaces (got 12 characters)'],
    [['my secret key of many words'], 'api_keys[0]: must be a key of at least 16 characters without spaces (got a key with a space or other blank at character 3)'],
    [['a-key-with-a-tab\tin-it'], 'api_keys[0]: must be a key of at least 16 characters without spaces (got a key with a space or other blank at character 17)'],
    [[1234567890123456], 'api_keys[0]: must be a key of at least 16 characters without spaces (got a number)'],
  ];
  for (const [keys, message] of bad) t.throws(() => validateServerConfig({ models: [model], api_keys: keys }, 'cfg', '/base'), { message: `cfg: ${message}` });
});

t.test('a config file that is not JSON is named with the parse error', async (t) => {
  const dir = tempDir('config');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'server_config.json');
  fs.writeFileSync(file, '{"models": [}');
  t.throws(() => loadServerConfig(file), new RegExp(`^${file}:\\d+:\\d+: not valid JSON`));
  t.throws(() => loadServerConfig(path.join(dir, 'nope.json')), /nope\.json: cannot read/);
});

// A temporary folder made the current one, where models/ is looked up, with DIXIE_MODELS_DIR unset: both put back,
// and the folder removed, at the end of the test.
function discoveryFolder(t: { teardown(fn: () => void): void }, prefix: string): string {
  const dir = tempDir(prefix);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const saved = process.env.DIXIE_MODELS_DIR;
  delete process.env.DIXIE_MODELS_DIR;
  t.teardown(() => {
    if (saved !== undefined) process.env.DIXIE_MODELS_DIR = saved;
  });
  const cwd = process.cwd();
  process.chdir(dir);
  t.teardown(() => process.chdir(cwd));
  return dir;
}

t.test('with no arguments: server_config.json, else the models found, else how to get one', async (t) => {
  const dir = discoveryFolder(t, 'discover');
  t.throws(() => serveConfig({ cwd: dir }), NoModelsError);
  t.throws(() => serveConfig({ cwd: dir }), /bin\/download-model 124M/);
  // A Hugging Face folder in models/ and a training run with a `latest` pointer in checkpoint/.
  fs.mkdirSync(path.join(dir, 'models', '124M'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'models', '124M', 'config.json'), '{"n_layer":1,"n_head":1,"n_embd":4,"n_positions":8,"vocab_size":10}');
  fs.writeFileSync(path.join(dir, 'models', '124M', 'model.safetensors'), '');
  fs.mkdirSync(path.join(dir, 'models', 'empty'));
  fs.mkdirSync(path.join(dir, 'checkpoint', 'run1'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'checkpoint', 'run1', 'latest'), 'step-000100\n');
  // An entry that cannot be looked at is skipped, saying so, and the rest served.
  fs.symlinkSync('loop', path.join(dir, 'models', 'loop'));
  const warnings: string[] = [];
  const found = discoverModels(dir, (message) => warnings.push(message));
  t.same(found.map((m) => m.key), ['run1', '124M'], 'the training runs first');
  t.match(warnings, [new RegExp(`^${path.join(dir, 'models', 'loop').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: skipped: ELOOP: `)]);
  t.equal(warnings.length, 1);
  const c = serveConfig({ cwd: dir });
  t.same(c.models.map((m) => m.key), ['run1', '124M']);
  t.same(serveConfig({ cwd: dir, audience: 'mom' }).models.map((m) => m.audience), ['mom', 'mom'], '--audience, for every model found');
  t.same(c.models.map((m) => m.systemMessages), ['refuse', 'refuse'], 'system messages refused by default');
  t.same(serveConfig({ cwd: dir, systemMessages: 'ignore' }).models.map((m) => m.systemMessages), ['ignore', 'ignore'], '--system_messages, for every model found');
  fs.writeFileSync(path.join(dir, 'server_config.json'), ORIGINAL);
  t.equal(serveConfig({ cwd: dir }).models[0].modelName, '355M', 'server_config.json wins');
  // A run that held data out: its best checkpoint, not its latest.
  for (const step of ['model-100', 'model-200']) {
    fs.mkdirSync(path.join(dir, 'checkpoint', 'run2', step), { recursive: true });
    fs.writeFileSync(path.join(dir, 'checkpoint', 'run2', step, 'state.json'), '{}');
  }
  fs.writeFileSync(path.join(dir, 'checkpoint', 'run2', 'latest'), 'model-200\n');
  t.same(discoverModels(dir).find((m) => m.key === 'run2')?.restore_from, path.join(dir, 'checkpoint', 'run2'), 'without a best, the run (its latest)');
  fs.writeFileSync(path.join(dir, 'checkpoint', 'run2', 'best'), 'model-100\n');
  t.same(discoverModels(dir).find((m) => m.key === 'run2')?.restore_from, path.join(dir, 'checkpoint', 'run2', 'best'), 'with one, its best');
  fs.writeFileSync(path.join(dir, 'checkpoint', 'run2', 'best'), 'model-050\n');
  t.same(discoverModels(dir).find((m) => m.key === 'run2')?.restore_from, path.join(dir, 'checkpoint', 'run2'), 'a best naming no complete checkpoint is passed over');
  fs.rmSync(path.join(dir, 'checkpoint', 'run2'), { recursive: true });
  const one = serveConfig({ cwd: dir, model: 'models/124M' });
  t.same(one.models.map((m) => [m.key, m.restoreFrom]), [['chatbot', path.join(dir, 'models', '124M')]]);
});

t.test('with no arguments, a model whose generation_config.json is bad is skipped, naming the file and field; named alone, it is refused', async (t) => {
  const dir = discoveryFolder(t, 'discover-generation');
  for (const name of ['bad', 'good']) {
    fs.mkdirSync(path.join(dir, 'models', name), { recursive: true });
    fs.writeFileSync(path.join(dir, 'models', name, 'config.json'), '{"n_layer":1,"n_head":1,"n_embd":4,"n_positions":8,"vocab_size":10}');
    fs.writeFileSync(path.join(dir, 'models', name, 'model.safetensors'), '');
    fs.writeFileSync(path.join(dir, 'models', name, 'generation_config.json'), '{"temperature": 0.5}');
  }
  const bad = path.join(dir, 'models', 'bad', 'generation_config.json');
  fs.writeFileSync(bad, '{"temperature": -1}');
  const warnings: string[] = [];
  t.same(discoverModels(dir, (message) => warnings.push(message)).map((m) => m.key), ['good']);
  t.same(warnings, [`${path.join(dir, 'models', 'bad')}: skipped: ${bad}: field "temperature" must be a number >= 0, got -1`]);
  const served = serveConfig({ cwd: dir }).models;
  t.same(served.map((m) => [m.key, m.sampling.temperature]), [['good', 0.5]], 'the good one served, with its folder\'s defaults');
  t.throws(() => serveConfig({ cwd: dir, model: 'models/bad' }), { message: `${bad}: field "temperature" must be a number >= 0, got -1` }, 'named alone, refused');
});

t.test('with no arguments, a LoRA run in checkpoint/ is served as its adapter over its base; one whose base is gone is skipped, saying so', async (t) => {
  const dir = tempDir('discover-lora');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const saved = process.env.DIXIE_MODELS_DIR;
  delete process.env.DIXIE_MODELS_DIR;
  const cwd = process.cwd();
  process.chdir(dir);  // models/ is looked up in the current folder
  const warn = console.warn;
  const warnings: string[] = [];
  console.warn = (message: string) => warnings.push(message);
  t.teardown(() => {
    console.warn = warn;
    process.chdir(cwd);
    if (saved !== undefined) process.env.DIXIE_MODELS_DIR = saved;
  });
  const base = path.join(dir, 'models', 'base');
  const model = Model.create(TINY, { seed: 1, trainable: false });
  await model.save(base);
  model.dispose();
  // Runs as bin/train --lora_rank leaves them: each checkpoint the adapter alone, its base_model_name_or_path the
  // base's folder, and the training record of a chat run.
  const loraRun = async (name: string, baseModel: string): Promise<void> => {
    const checkpoint = path.join(dir, 'checkpoint', name, 'model-20');
    const tensors = Object.fromEntries([0, 1].map((layer) => [`h.${layer}.attn.c_attn`, { a: new Float32Array(2 * TINY.nEmbd).fill(0.01), b: new Float32Array(3 * TINY.nEmbd * 2).fill(0.01) }]));
    await writePeftAdapter(checkpoint, { baseModel, r: 2, alpha: 4, targets: ['attn.c_attn'], tensors });
    fs.writeFileSync(path.join(checkpoint, 'state.json'), JSON.stringify({ audiences: [{ audience: 'mom', sent: 4, received: 3 }] }));
    fs.writeFileSync(path.join(dir, 'checkpoint', name, 'latest'), 'model-20\n');
  };
  await loraRun('family', base);
  await loraRun('orphan', path.join(dir, 'models', 'moved-away'));
  const config = serveConfig({ cwd: dir });
  t.same(config.models.map((m) => m.key), ['family', 'base'], 'the run with its base, and the base itself');
  t.match(config.models[0], { adapter: path.join(dir, 'checkpoint', 'family', 'model-20'), restoreFrom: base, promptFormat: 'chat', audience: 'mom' }, 'an adapter over its base, a chat model as its run trained it');
  t.match(warnings, [new RegExp(`^warning: ${path.join(dir, 'checkpoint', 'orphan')}: skipped: a LoRA adapter over ${path.join(dir, 'models', 'moved-away')}, which cannot be loaded: model .* not found`)]);
  t.equal(warnings.length, 1);
  const server = createServer(config, { log: () => undefined });
  t.teardown(() => server.shutdown());
  const { port } = await server.listen(0, '127.0.0.1');
  const r = await request(`http://127.0.0.1:${port}/invocations`, { body: { model_key: 'family', raw_text: 'Hi', length: 3, format: 'json' } });
  t.equal(r.status, 200, r.text);
  const listed = (await request(`http://127.0.0.1:${port}/models/list`)).json().models as Record<string, unknown>[];
  t.match(listed[0], { model_key: 'family', adapter: 'model-20', base: 'base', prompt_format: 'chat' });
});

t.test('a chat model answers as the audience its training data talks to most, unless told otherwise', async (t) => {
  const dir = tempDir('config-audience');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // A training run folder as bin/train leaves it: `latest` names the newest checkpoint, whose state.json
  // counts the messages of each audience, most first.
  const checkpoint = path.join(dir, 'checkpoint/run1/model-400');
  fs.mkdirSync(checkpoint, { recursive: true });
  fs.writeFileSync(path.join(dir, 'checkpoint/run1/latest'), 'model-400\n');
  fs.writeFileSync(path.join(checkpoint, 'state.json'), JSON.stringify({ audiences: [{ audience: 'mom', sent: 40, received: 38 }, { audience: 'sam', sent: 3, received: 2 }] }));
  const alexa = { application_id: 'amzn1.ask.skill.0000', model_key: 'chatbot' };
  const trained = validateServerConfig({ models: [{ key: 'chatbot', restore_from: 'checkpoint/run1', sanitizer: 'chatbot' }], alexa }, 'cfg', dir);
  t.equal(trained.models[0].audience, 'mom', 'from the run\'s latest checkpoint');
  t.equal(trained.alexa?.audience, 'mom', 'the skill answers as its model does');
  const told = validateServerConfig({ models: [{ key: 'chatbot', restore_from: 'checkpoint/run1', audience: 'sam' }], alexa: { ...alexa, audience: 'dad' } }, 'cfg', dir);
  t.equal(told.models[0].audience, 'sam');
  t.equal(told.alexa?.audience, 'dad');
  const base = validateServerConfig({ models: [{ key: 'chatbot', model_name: '124M' }], alexa }, 'cfg', dir);
  t.equal(base.models[0].audience, 'user', 'a model without a training record');
  t.equal(base.alexa?.audience, 'user');
});

t.test('a model whose checkpoint was trained on chat logs is served as a chatbot unless its entry says otherwise', async (t) => {
  const dir = tempDir('config-chat');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const checkpoint = path.join(dir, 'checkpoint/chat/model-800');
  fs.mkdirSync(checkpoint, { recursive: true });
  fs.writeFileSync(path.join(dir, 'checkpoint/chat/latest'), 'model-800\n');
  fs.writeFileSync(path.join(checkpoint, 'state.json'), JSON.stringify({ audiences: [{ audience: 'mom', sent: 40, received: 38 }, { audience: 'dad', sent: 3, received: 2 }] }));
  fs.mkdirSync(path.join(dir, 'plain'));
  const served = (entry: Record<string, unknown>) => {
    const m = validateServerConfig({ models: [{ key: 'm', ...entry }] }, 'cfg', dir).models[0];
    return { promptFormat: m.promptFormat, sanitizer: m.sanitizer, audience: m.audience, audiences: m.audiences, servedAs: m.servedAs, names: m.sanitizerOptions.names };
  };
  for (const restore of ['checkpoint/chat', 'checkpoint/chat/model-800']) {
    t.same(served({ restore_from: restore }), {
      promptFormat: 'chat',
      sanitizer: 'sanitizers.chatbot',
      audience: 'mom',
      audiences: ['mom', 'dad'],
      servedAs: 'trained on chat logs (audiences: mom, dad)',
      names: ['mom', 'dad'],
    }, `${restore}: chat, the chatbot sanitizer (which knows the audiences' names), its main audience, and why`);
  }
  t.match(served({ restore_from: 'checkpoint/chat', sanitizer: 'none' }), { promptFormat: 'raw', sanitizer: 'none', servedAs: 'trained on chat logs (audiences: mom, dad); "sanitizer": "none" in the config' }, '"sanitizer": "none" wins');
  t.match(served({ restore_from: 'checkpoint/chat', prompt_format: 'raw' }), { promptFormat: 'raw', sanitizer: 'none' }, '"prompt_format": "raw" wins');
  t.match(served({ restore_from: 'checkpoint/chat', sanitizer_options: { max_messages: 1 } }), { promptFormat: 'chat', sanitizer: 'sanitizers.chatbot', names: ['mom', 'dad'] }, 'sanitizer options alone keep the chatbot');
  t.match(served({ restore_from: 'checkpoint/chat', sanitizer_options: { names: ['x'] } }), { names: ['x'] }, 'names given are kept');
  t.match(served({ restore_from: 'plain' }), { promptFormat: 'raw', sanitizer: 'none', audiences: [], servedAs: /no chat training record/ }, 'a model with no chat history stays raw');
  t.match(served({ restore_from: 'plain', sanitizer: 'chatbot' }), { promptFormat: 'chat', sanitizer: 'chatbot', servedAs: '"sanitizer": "chatbot" in the config' });

  const byFlag = serveConfig({ cwd: dir, model: 'checkpoint/chat' }).models[0];
  t.match(byFlag, { key: 'chatbot', promptFormat: 'chat', sanitizer: 'sanitizers.chatbot', audience: 'mom' }, 'bin/serve --model');
  t.match(serveConfig({ cwd: dir, model: 'checkpoint/chat', audience: 'dad', sanitizer: 'none' }).models[0], { audience: 'dad', sanitizer: 'none', promptFormat: 'raw' }, '--audience and --sanitizer');
  t.match(serveConfig({ cwd: dir }).models[0], { key: 'chat', promptFormat: 'chat', sanitizer: 'sanitizers.chatbot', audience: 'mom' }, 'a run found in checkpoint/');
});
