// dixie as a library: `require('dixie')`. The same modules the commands in bin/ are built from, grouped by
// concern; README.md ("The library") shows them in use.

// The engine: a GPT-2 in native memory (forward, backward, optimizer steps, parameters by Hugging Face name).
export { Model, WEIGHTS_FILE, CONFIG_FILE, hfConfigJson } from './engine/model';
export type { GPT2Config, ModelOptions } from './engine/model';
export { loadAddon } from './engine/native';
export type {
  DeviceRequest,
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
export { writeGguf, GGUF_WEIGHT_TYPES } from './formats/gguf';
export type { GgufExportOptions, GgufWeightType } from './formats/gguf';
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
export { listCheckpoints, latestCheckpoint, readTrainState, trainedAudiences } from './train/checkpoint';
export type { TrainState } from './train/checkpoint';
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
