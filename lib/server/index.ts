// The chatbot server: what bin/serve runs, for embedding it or mounting routers into it.
export { createServer } from './app';
export type { DixieServer, ServerOptions } from './app';
export { loadServerConfig, validateServerConfig, ORIGINAL_SAMPLING, DEFAULT_HOST, DEFAULT_PORT } from './config';
export type { ServerConfig, ModelConfig, SamplingDefaults, PromptFormat } from './config';
export { serveConfig, discoverModels, NoModelsError, CONFIG_FILE } from './discover';
export { ModelRegistry, ModelUnavailableError } from './model_registry';
export type { ModelLoader, Lease, ModelStatus } from './model_registry';
export type { ChatFn, Completion, ConversationOptions, GenerationRequest } from './service';
