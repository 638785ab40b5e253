// What Alexa says: text made safe for SSML and for a speech engine. The model's own sanitizer (lib/sanitize,
// applied by the server's chat function) has already cut the reply to the bot's messages and removed chat
// prefixes, URLs and markup; this module only guarantees the transport: valid XML, no characters Alexa rejects,
// a bounded length, and whole sentences when generation was cut short.
import { escapeXml } from '../../util/xml';

// Alexa refuses outputSpeech over 8000 characters, counted in the SSML it receives: tags and entities included.
// The bound is on the escaped text, since an entity is up to six characters for one (a reply of apostrophes
// grows sixfold), and leaves room for <speak></speak>.
export const MAX_SPEECH_CHARS = 6000;

// Characters XML 1.0 forbids (C0 controls but tab/newline/return, lone surrogates, U+FFFE/U+FFFF), which make
// Alexa reject the whole response.
const XML_FORBIDDEN = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

// Emoji, whole (with their skin tones, joiners, presentation selectors and keycaps), and modifiers or flags' letters
// left alone: chat logs are full of them, and a speech engine reads each out by its name ("face with tears of joy")
// or not at all, neither of which is what the writer meant. Signs that are emoji only when asked to be (©, ™) stay,
// as does a joiner that builds a letter of another script (Sinhala's). A RegExp of its own: the `v` flag's
// RGI_Emoji is newer than the language level the compiler checks literals against.
const PICTOGRAPHS = new RegExp('\\p{RGI_Emoji}|\\p{Emoji_Modifier}|\\p{Regional_Indicator}', 'gv');

// Plain text for speech: forbidden characters and pictographs dropped, whitespace collapsed, and cut at a word
// boundary so that its SSML escape is at most MAX_SPEECH_CHARS long.
export function speakable(text: string): string {
  const clean = text.replace(XML_FORBIDDEN, '').replace(PICTOGRAPHS, '').replace(/\s+/g, ' ').trim();
  let escaped = 0;
  let end = 0;
  for (const c of clean) {
    escaped += escapeXml(c).length;
    if (escaped > MAX_SPEECH_CHARS) {
      const cut = clean.lastIndexOf(' ', end);
      return clean.slice(0, cut > 0 ? cut : end);
    }
    end += c.length;
  }
  return clean;
}

// A sentence ends at . ! ? or an ellipsis, optionally followed by closing quotes or brackets, then a space or
// the end of the text.
const SENTENCE_END = /[.!?\u2026]+["'\u2019\u201D)\]]*(?=\s|$)/g;

// The text up to the end of its last complete sentence; text with no complete sentence is kept whole, since a
// fragment is better heard than silence.
export function lastCompleteSentence(text: string): string {
  let end = -1;
  for (const match of text.matchAll(SENTENCE_END)) end = (match.index ?? 0) + match[0].length;
  return end > 0 ? text.slice(0, end).trim() : text.trim();
}

export function ssml(text: string): { type: 'SSML'; ssml: string } {
  return { type: 'SSML', ssml: `<speak>${escapeXml(speakable(text))}</speak>` };
}
