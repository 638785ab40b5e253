// OpenAI's GPT-2 weights as the Hugging Face hub serves them (openai-community/gpt2, -medium, -large, -xl),
// fetched into models/<release>/ in the layout every dixie command reads.
import fs from 'node:fs';
import path from 'node:path';
import { inspectModelFolder, type ModelFolder } from '../formats/model_folder';
import { HUB_REPOS, RELEASE_NAMES, modelsDir, releaseName } from '../formats/resolve_model';
import { openSafetensors } from '../formats/safetensors';
import { ConnectError, fetchFile, HttpNotFoundError, type FetchFileOptions } from './fetch_file';

export const DEFAULT_HUB = 'https://huggingface.co';
const REQUIRED_FILES = ['config.json', 'vocab.json', 'merges.txt', 'model.safetensors'] as const;
const OPTIONAL_FILES = ['tokenizer.json', 'generation_config.json'] as const;

export interface DownloadOptions extends Omit<FetchFileOptions, 'label' | 'headers'> {
  mirror?: string;   // hub base URL; default DIXIE_MIRROR, then HF_ENDPOINT, then huggingface.co
  dir?: string;      // target folder; default <models>/<release>
  force?: boolean;   // fetch files again even if present, discarding partial downloads
}

// The hub to fetch from: --mirror, then DIXIE_MIRROR, then HF_ENDPOINT (Hugging Face's own variable).
export function hubBase(mirror?: string): string {
  const base = mirror || process.env.DIXIE_MIRROR || process.env.HF_ENDPOINT || DEFAULT_HUB;
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new Error(`mirror "${base}" is not a URL (e.g. https://huggingface.co)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`mirror "${base}" must be an http(s) URL`);
  return base.replace(/\/+$/, '');
}

function hubFileUrl(base: string, repo: string, file: string): string {
  return `${base}/openai-community/${repo}/resolve/main/${file}`;
}

// The folders that do not exist yet from `dir` up to the first one that does, deepest first.
function foldersToCreate(dir: string): string[] {
  const missing: string[] = [];
  for (let folder = path.resolve(dir); !fs.existsSync(folder); folder = path.dirname(folder)) missing.push(folder);
  return missing;
}

export async function downloadModel(name: string, options: DownloadOptions = {}): Promise<ModelFolder> {
  const release = releaseName(name);
  if (release === null) {
    const known = RELEASE_NAMES.map((r) => `${r} (${HUB_REPOS[r]})`).join(', ');
    throw new Error(`unknown model "${name}": the GPT-2 releases are ${known}`);
  }
  const base = hubBase(options.mirror);
  const repo = HUB_REPOS[release];
  const dir = options.dir ?? path.join(modelsDir(), release);
  // A token for a private hub or mirror; sent to the hub only, never to the file host it redirects to.
  const headers: Record<string, string> = process.env.HF_TOKEN ? { authorization: `Bearer ${process.env.HF_TOKEN}` } : {};
  const fetchOptions = (file: string): FetchFileOptions => ({ ...options, headers, label: `${release}/${file}` });
  const created = foldersToCreate(dir);

  try {
    for (const file of [...REQUIRED_FILES, ...OPTIONAL_FILES]) {
      const dest = path.join(dir, file);
      if (!options.force && fs.existsSync(dest)) continue;
      if (options.force) fs.rmSync(`${dest}.partial`, { force: true });
      try {
        await fetchFile(hubFileUrl(base, repo, file), dest, fetchOptions(file));
      } catch (err) {
        const optional = (OPTIONAL_FILES as readonly string[]).includes(file);
        if (err instanceof HttpNotFoundError && optional) continue;
        if (err instanceof HttpNotFoundError) throw new Error(`${err.message}: is ${base} a Hugging Face hub or a mirror of one?`);
        if (err instanceof ConnectError) throw new Error(`${err.message}: no network? Use --mirror URL, or set DIXIE_MIRROR or HF_ENDPOINT, to fetch from a reachable mirror`);
        throw err;
      }
    }
  } catch (err) {
    // Leave no empty models/<name>/ (nor models/) behind: it would hide the "download it" advice of resolveModel.
    // A folder that holds a partial download stays, for the next run to resume.
    for (const folder of created) {
      if (fs.existsSync(folder) && fs.readdirSync(folder).length === 0) fs.rmdirSync(folder);
    }
    throw err;
  }
  const folder = inspectModelFolder(dir);
  openSafetensors(folder.weights).close();  // the header parses and every tensor lies inside the file
  return folder;
}
