// dixie as a library: a small GPT-2 learns one sentence, is saved in Hugging Face's format, loads back, embeds a
// text and continues a prompt. Run: node examples/library/train_and_generate.js [out-folder]
const os = require('node:os');
const path = require('node:path');
const { Model, Generator, loadTokenizer } = require('dixie');

async function main() {
  const out = process.argv[2] ?? path.join(os.tmpdir(), 'dixie-example-model');
  const tokenizer = loadTokenizer(); // GPT-2's vocabulary, bundled with the package
  const ids = tokenizer.encode('The quick brown fox jumps over the lazy dog.', { allowSpecial: false });
  const T = ids.length - 1;
  const inputs = ids.subarray(0, T);
  const targets = ids.subarray(1);

  const config = { nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 64, vocabSize: tokenizer.vocabSize };
  const model = Model.create(config, { seed: 1, maxBatch: 1, maxSeq: T });
  for (let step = 1; step <= 30; step++) {
    const loss = await model.forward(inputs, targets, 1, T); // promises: the work runs off the event loop
    await model.backward();
    await model.step({ optimizer: 'adamw', lr: 3e-3 });
    if (step % 10 === 0) console.log(`step ${step}: loss ${loss.toFixed(3)}`);
  }
  console.log('wte', model.getParam('wte.weight').length, 'floats; h.0.attn.c_attn.weight shape',
    model.tensors.find((t) => t.name === 'h.0.attn.c_attn.weight').shape.join('x'));
  await model.save(out, { tokenizer }); // config.json + model.safetensors + the vocabulary, written atomically
  model.dispose();

  const generator = await Generator.load(out); // inference only; the same API serves 124M and up
  const { embedding } = await generator.embed('The quick brown fox'); // the mean of its tokens' final states
  console.log('embedding of', embedding.length, 'numbers, length', Math.hypot(...embedding).toFixed(3));
  const result = await generator.generate('The quick brown', { maxTokens: 8, temperature: 0 });
  console.log(JSON.stringify(result.text));
  await generator.close();
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
