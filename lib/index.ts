// dixie as a library: `require('dixie')`, typed by the TypeScript declarations beside it. The same modules the
// commands in bin/ are built from, grouped by concern below: `Model` (load, create, forward, backward,
// step, parameters and gradients by Hugging Face name, save), `loadTokenizer`/`Tokenizer`/`StreamDecoder`/
// `EncoderPool`, `Generator`/`Batcher`/`ChatSession`, `Grammar` (replies held to a JSON schema or GBNF), `train`, `loadDataset`/`encodeDataset`, `importTFCheckpoint`,
// `writeGguf`, `downloadModel`, `openSafetensors`/`writeSafetensors`, `createServer`/`loadServerConfig`,
// `createChatbotSanitizer`. README.md ("The library") shows them in use (examples/library/train_and_generate.js).
//
// The compute (forward, backward, step, decoding, embedding) returns promises and runs off the event loop on the
// engine's threads; the calls on one model are queued, never overlapped. Loading and saving return promises too and
// let the event loop run between pieces: loads between slabs of at most 16 MB, saves while Node's thread pool
// writes and flushes; what they still do on it is copying one whole tensor out of the engine as a save writes it
// (the largest is the token embedding, 150 MB in the 124M model: tenths of a second) and, for a file with an
// lm_head.weight, comparing it with wte.weight. Model.create fills its weights on the event loop, synchronously.
// The package's `exports` map gives this API, and lets a script inside a clone `require('dixie')` itself (after
// `npm install`), as the example does when run from the clone.

// The engine: a GPT-2 in native memory (forward, backward, optimizer steps, parameters by Hugging Face name).
// The Model API in brief (lib/engine/model.ts has the full contract):
//   Model.load(dir, options)   a model folder (config.json + model.safetensors, or model.gguf); options: threads
//                              (default one per core), maxBatch, maxSeq (training memory is planned once for
//                              maxBatch x maxSeq), recompute (memory-saving gradients), trainable: false (inference
//                              only), weightDtype ('f32', or 'f16'/'bf16'/'q8_0' for inference), device, adapter
//                              (a PEFT LoRA folder, merged into the weights as they load; model.adapter says which),
//                              lora ({rank, alpha, targets}: train an adapter over the frozen float32 base, its
//                              factors the h.N.<target>.lora_A/B.weight tensors; with adapter, that one's factors).
//   Model.create(config, options)                 fresh weights with GPT-2's initialisation, from `seed`.
//   forward(inputs, targets, B, T, logitsOut?)    mean cross-entropy over [B, T] token ids (`targets` may be null);
//                                                 logits [B, T, V] into logitsOut.
//   backward(), zeroGrad()                        gradients of the last forward, accumulated until zeroed
//                                                 (micro-batches).
//   step({optimizer: 'adamw' or 'sgd', lr, beta1, beta2, eps, weightDecay, gradScale, gradClip})
//                                                 one update; resolves to the gradient norm. setTrainable(fn) and
//                                                 setWeightDecay(fn) choose tensors by name.
//   getParam(name), setParam(name, data), getGrad(name), tensors
//                                                 by Hugging Face name (h.0.attn.c_attn.weight), shapes as Hugging
//                                                 Face has them.
//   save(dir, {tokenizer, chat}), saveOptimizer(file), loadOptimizer(file)
//                                                 atomic writes; save writes config.json + model.safetensors
//                                                 together, a chat model's audiences.json, and with a tokenizer its
//                                                 vocabulary (else loading warns and takes GPT-2's) with its chat
//                                                 template.
//   chat                                          what makes it a chat model ({audiences, template}), as its
//                                                 folder recorded it: what save writes unless given `chat`
//                                                 (chatRecordOf(audiences, answerAs) makes one).
//   generationConfig                              the folder's generation_config.json ({file, defaults, ignored}):
//                                                 the sampling defaults a Generator takes where a request sets none
//                                                 (docs/models.md), which save writes back; null without one.
//   saveAdapter(dir)                              a model with `lora`: its adapter, in PEFT's layout.
//   memory(), dispose()                           bytes by kind; free the native memory now (once the calls on
//                                                 the model have settled).
export { Model, WEIGHTS_FILE, CONFIG_FILE, hfConfigJson } from './engine/model';
export type { GPT2Config, LoraOptions, ModelAdapter, ModelLora, ModelLoadOptions, ModelOptions } from './engine/model';
export type { GenerationConfig, GenerationDefaults } from './formats/generation_config';
export { loadAddon } from './engine/native';
export type {
  DeviceRequest,
  LoraTarget,
  NativeMemory,
  NativeOptions,
  NativeSampling,
  NativeStepOptions,
  NativeTensorInfo,
  WeightDType,
} from './engine/native';

// Byte-level BPE.
export * from './tokenizer';

// Model folders and files: safetensors, TensorFlow checkpoints, GGUF for llama.cpp, the released GPT-2 sizes.
export { inspectModelFolder, findVocabulary, readHFConfig, readHparams } from './formats/model_folder';
export type { ModelFolder, ModelFolderKind, VocabFiles } from './formats/model_folder';
export { RELEASE_NAMES, modelsDir, modelDir, resolveModel } from './formats/resolve_model';
export type { ReleaseName } from './formats/resolve_model';
export { openSafetensors, writeSafetensors } from './formats/safetensors';
export type { Dtype, TensorEntry, TensorToWrite } from './formats/safetensors';
export { openTFCheckpoint } from './formats/tf_checkpoint';
export { importTFCheckpoint } from './formats/import_tf';
export type { ImportOptions, ImportResult } from './formats/import_tf';
export { writeGguf, writeGgufAdapter, GGUF_WEIGHT_TYPES, GGUF_ADAPTER_TYPES } from './formats/gguf';
export type { GgufExportOptions, GgufWeightType } from './formats/gguf';
// LoRA adapters in Hugging Face PEFT's format (docs/lora.md): Model.load(base, { adapter }) merges one as it loads.
export { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, readPeftAdapter, writePeftAdapter } from './formats/peft';
export type { LoraConfig, LoraModule, PeftAdapter, PeftAdapterToWrite, TensorNaming } from './formats/peft';
export { downloadModel } from './download/download_model';
export type { DownloadOptions } from './download/download_model';

// Datasets: chat logs, plain text, folders, globs, pre-encoded token files.
export { loadDataset, encodeDataset, DEFAULT_COMBINE } from './data/dataset';
export type { Dataset, DatasetOptions, EncodeResult } from './data/dataset';
export { ChatChecker, MalformedChatError, formatChatReport } from './data/chat_check';
export type { ChatSummary } from './data/chat_check';

// Chat exports of messaging apps (WhatsApp, Telegram, Messenger and Instagram, Discord, SMS) made chat logs.
export { importChats, formatImportSummary, ChatImportError, ChatImportErrors, EXPORT_FORMATS, FORMAT_NAMES, REDACT_KINDS, DATE_ORDERS } from './import';
export type { ChatImportOptions, ChatImportProgress, ChatImportSummary, AudienceSummary, SkippedChat, DropReason, ExportFormat, RedactKind, DateOrder } from './import';

// Fine-tuning.
export { train, checkDataset, learningRate, DEFAULT_TRAIN_OPTIONS } from './train/train';
export type { DatasetCheck, TrainIO, TrainOptions, TrainResult } from './train/train';
export { bestCheckpoint, listCheckpoints, latestCheckpoint, readTrainState } from './train/checkpoint';
export { chatRecordOf, NO_CHAT, trainedAudiences } from './formats/chat_record';
export type { ChatRecord } from './formats/chat_record';

export type { BestValidation, TrainState } from './train/checkpoint';
export { readMetrics } from './train/metrics';
export type { MetricRecord } from './train/metrics';
export { plotMetrics } from './train/plot';

// Generation and chat.
export * from './generate';

// Sanitizers.
export { createChatbotSanitizer, loadSanitizer, CHATBOT_DEFAULTS } from './sanitize';
export type { ChatbotSanitizerOptions, Sanitizer } from './sanitize';

// The server.
export * from './server';
