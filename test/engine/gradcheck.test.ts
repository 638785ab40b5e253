// Gradients against finite differences: on gpt2-tiny through the engine itself (central differences of the loss,
// recomputed in float64 from the returned logits), and on a model whose sizes are not powers of two (n_embd 48,
// 3 heads, T 24, vocabulary 300) against an independent float64 forward pass written in TypeScript.
import t from 'tap';
import { GPT2Config, Model } from '../../lib/engine/model';
import { FIXTURE_DIR, lcg, loadExpected, lossFromLogits, maxAbs, maxAbsDiff, randomTokens, referenceForward, sampleCoordinates } from './helpers';

t.test('gpt2-tiny: gradients match central differences of the loss', async (t) => {
  const ex = loadExpected();
  const V = 256;
  const model = await Model.load(FIXTURE_DIR, { maxBatch: ex.B, maxSeq: ex.T, threads: 2 });
  await model.forward(ex.inputs, ex.targets, ex.B, ex.T);
  await model.backward();
  const logits = new Float32Array(ex.B * ex.T * V);
  const loss = async (): Promise<number> => {
    await model.forward(ex.inputs, null, ex.B, ex.T, logits);
    return lossFromLogits(logits, ex.targets, V);
  };
  // eps 3e-3 balances float32 rounding in the forward (~1e-7 / eps) against truncation (~eps^2).
  const eps = 3e-3;
  for (const [k, tensor] of model.tensors.entries()) {
    const g = model.getGrad(tensor.name);
    const p = model.getParam(tensor.name);
    const tol = 5e-3 * maxAbs(g);
    let worst = 0;
    for (const i of sampleCoordinates(g, 3, 3, k + 1)) {
      const q = p.slice();
      q[i] = p[i] + eps;
      model.setParam(tensor.name, q);
      const plus = await loss();
      q[i] = p[i] - eps;
      model.setParam(tensor.name, q);
      const minus = await loss();
      model.setParam(tensor.name, p);
      worst = Math.max(worst, Math.abs((plus - minus) / (2 * eps) - g[i]));
    }
    t.ok(worst <= tol, `${tensor.name}: |fd - g| ${worst.toExponential(2)} <= ${tol.toExponential(2)}`);
  }
  model.dispose();
});

// n_embd 48 / 3 heads / vocabulary 300 (sizes that are not powers of two); n_embd 30 / 5 heads (head size 6) / vocabulary 37 takes
// every kernel down its scalar tail paths (sizes that are not multiples of the 8-float vectors); head size 72 and
// T 45 cover attention's several key tiles (32) and query blocks (16) and its 64- and 8-wide column paths.
const oddModels: [GPT2Config, number, number][] = [
  [{ nLayer: 2, nHead: 3, nEmbd: 48, nCtx: 32, vocabSize: 300 }, 2, 24],
  [{ nLayer: 2, nHead: 5, nEmbd: 30, nCtx: 16, vocabSize: 37 }, 3, 11],
  [{ nLayer: 1, nHead: 2, nEmbd: 144, nCtx: 48, vocabSize: 50 }, 1, 45],
];
for (const [config, B, T] of oddModels) t.test(`n_embd ${config.nEmbd}, ${config.nHead} heads, T ${T}, vocabulary ${config.vocabSize}: forward and gradients against a float64 reference`, async (t) => {
  const V = config.vocabSize;
  const model = Model.create(config, { seed: 7, maxBatch: B, maxSeq: T, threads: 2 });
  // Random biases and LayerNorm parameters too, so that every term of the gradient is exercised.
  const next = lcg(99);
  for (const tensor of model.tensors) {
    if (tensor.isMatrix) continue;
    const base = tensor.name.endsWith('.weight') ? 1 : 0;
    model.setParam(tensor.name, Float32Array.from({ length: tensor.numel }, () => base + 0.1 * (next() - 0.5)));
  }
  const inputs = randomTokens(B * T, V, 1);
  const targets = randomTokens(B * T, V, 2);
  const params = new Map(model.tensors.map((x) => [x.name, Float64Array.from(model.getParam(x.name))]));
  const p64 = (name: string): Float64Array => params.get(name) as Float64Array;

  const ref = referenceForward(config, p64, inputs, targets, B, T);
  const logits = new Float32Array(B * T * V);
  const loss = await model.forward(inputs, targets, B, T, logits);
  t.ok(maxAbsDiff(logits, ref.logits) <= 1e-5, `logits within 1e-5 of float64 (max diff ${maxAbsDiff(logits, ref.logits).toExponential(2)})`);
  t.ok(Math.abs(loss - ref.loss) <= 1e-5, `loss ${loss} vs float64 ${ref.loss}`);

  await model.backward();
  const eps = 1e-5;  // float64 central differences: truncation ~1e-10, rounding ~1e-11
  for (const [k, tensor] of model.tensors.entries()) {
    const g = model.getGrad(tensor.name);
    const p = p64(tensor.name);
    const tol = 1e-4 * maxAbs(g);
    let worst = 0;
    for (const i of sampleCoordinates(g, 2, 2, 100 + k)) {
      const orig = p[i];
      p[i] = orig + eps;
      const plus = referenceForward(config, p64, inputs, targets, B, T).loss;
      p[i] = orig - eps;
      const minus = referenceForward(config, p64, inputs, targets, B, T).loss;
      p[i] = orig;
      worst = Math.max(worst, Math.abs((plus - minus) / (2 * eps) - g[i]));
    }
    t.ok(worst <= tol, `${tensor.name}: |fd64 - g| ${worst.toExponential(2)} <= ${tol.toExponential(2)}`);
  }
  model.dispose();
});
