import { quoted } from './quoted';

// A setting that breaks its rule. `setting` is where it is ("server_config.json: models[0].sampling.top_k", or
// "body.top_k" for a request's), kept apart from the message so that callers can name it their own way.
export class SettingError extends Error {
  constructor(readonly setting: string, readonly rule: string) {
    super(`${setting}: must be ${rule}`);
    this.name = 'SettingError';
  }
}

export function fail(where: string, wanted: string, value: unknown): never {
  throw new SettingError(where, `${wanted} (got ${quoted(value)})`);
}
