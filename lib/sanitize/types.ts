// A sanitizer turns a model's raw continuation into the reply a client gets.
export interface Sanitizer {
  sanitize(text: string): string;  // the reply a whole generated text makes
  stream(): ReplyStream;           // the same reply, as the text is generated
}

// The reply of a text that grows piece by piece. `complete` once no later text can change it (the chatbot
// sanitizer: enough messages, or the user's side has started talking): generation stops there.
export interface ReplyStream {
  push(piece: string): { text: string; complete: boolean };
}
