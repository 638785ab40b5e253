// The memory a server budgets for a model (planDecodeMemory, native code that plans what the CPU backend and its
// decoder allocate) is what a model so made allocates, byte for byte, in every weight type.
import t from 'tap';
import { Model } from '../../lib/engine/model';
import { loadAddon, type WeightDType } from '../../lib/engine/native';

const CONFIG = { nLayer: 2, nHead: 4, nEmbd: 64, nCtx: 96, vocabSize: 300 };
const THREADS = 2;

for (const dtype of ['f32', 'f16', 'bf16', 'q8_0'] as WeightDType[]) {
  t.test(`${dtype}: the plan is the allocation`, async (t) => {
    for (const slots of [1, 5, 300]) {
      const model = Model.create(CONFIG, { seed: 1, trainable: false, threads: THREADS, weightDtype: dtype });
      await model.run((native) => native.kvReserve(slots));
      const used = model.memory();
      model.dispose();
      const plan = loadAddon().planDecodeMemory(CONFIG, dtype, slots, THREADS);
      t.equal(plan.params + plan.kvCache + plan.activations, used.params + used.kvCache + used.activations,
        `${slots} slots: ${plan.params + plan.kvCache + plan.activations} bytes planned (weights ${plan.params}, cache ${plan.kvCache})`);
      t.equal(used.grads, 0, 'no gradients for an inference model');
    }
  });
}
