// An ollama Modelfile for a chat model exported as GGUF (bin/export-gguf): ollama prompts a model with the Go
// template of its Modelfile, not with the GGUF's Jinja chat template, and stops where its Modelfile says. The
// template writes the chat format as lib/data/chat_format.ts does (user messages on side 1, assistant messages on
// side 0, then the reply prefix, as `audience`; system messages left out), and the reply stops at its <EOM> or where
// the next message would begin. Go templates cannot clean a message's text, so a "|" or "<EOM>" in it stays.
import path from 'node:path';
import { END_OF_MESSAGE, SIDE, SPEAKER_SIDE, checkAudience } from '../data/chat_format';

// The Modelfile written beside a GGUF file: mom.gguf -> mom.Modelfile.
export function modelfilePath(gguf: string): string {
  return `${gguf.replace(/\.gguf$/i, '')}.Modelfile`;
}

// The Modelfile's text, or null when the audience cannot be written in one: a quote or backslash would end a
// quoted string early, braces would read as template actions.
export function ollamaModelfile(gguf: string, audience: string, nCtx: number): string | null {
  checkAudience(audience);
  if (/["\\{}]/.test(audience)) return null;
  const line = (side: string): string => `${side}|${audience}|{{ .Content }} ${END_OF_MESSAGE}\n`;
  const template = `{{- range .Messages }}{{ if eq .Role "user" }}${line(SIDE.you)}{{ else if eq .Role "assistant" }}${line(SIDE.audience)}{{ end }}{{ end }}${SPEAKER_SIDE.bot}|${audience}|`;
  return [
    `# ollama create <name> -f ${path.basename(modelfilePath(gguf))}, then ollama run <name>: the chat format, answering as ${audience}.`,
    `FROM ./${path.basename(gguf)}`,
    `TEMPLATE """${template}"""`,
    `PARAMETER stop "${END_OF_MESSAGE}"`,
    `PARAMETER stop "${SIDE.you}|${audience}|"`,
    `PARAMETER num_ctx ${nCtx}`,
    '',
  ].join('\n');
}
