// A sanitizer turns a model's raw continuation into the reply a client gets.
export interface Sanitizer {
  sanitize(text: string): string;  // the reply a whole generated text makes
  stream(): ReplyStream;           // the same reply, as the text is generated
}

// The reply of a text so far. `text` is the reply were the text to end here; it may still change as text comes
// (a word can turn out to start the next message). `settled` is the start of it that no later text changes:
// what a stream can show for good. `complete` once no later text can change the reply (the chatbot sanitizer:
// enough messages, or the user's side has started talking): generation stops there, and `settled` is `text`.
export interface ReplyProgress {
  text: string;
  settled: string;
  complete: boolean;
}

// The reply of a text that grows piece by piece.
export interface ReplyStream {
  push(piece: string): ReplyProgress;
}
