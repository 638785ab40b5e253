// A sanitizer turns a model's raw continuation into the reply a client gets.
export interface Sanitizer {
  sanitize(text: string): string;
  // True when no text generated after `text` can change sanitize()'s answer, so generation may stop early
  // (the chatbot sanitizer: enough messages, or the user's side has started talking).
  isComplete(text: string): boolean;
}
