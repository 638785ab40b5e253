// The chat page: sends each message to POST /v1/chat/completions with "stream": true, as any OpenAI client
// would, and shows the reply as it is generated (Server-Sent Events read from the fetch body). The
// conversation lives here, in the page: the server keeps none, so each request carries the history of a
// chat-format model.
'use strict';
const $ = (id) => document.getElementById(id);
const log = $('log');
const models = new Map();
let history = [];

function headers() {
  const h = { 'Content-Type': 'application/json', Accept: 'text/event-stream' };
  const key = $('apikey').value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

// The line under the chat: progress and timings, or why the models cannot be listed.
function status(text, isError = false) {
  $('status').textContent = text;
  $('status').dataset.error = isError ? 'yes' : '';
}

function bubble(kind, text) {
  const div = document.createElement('div');
  div.className = `msg ${kind}`;
  div.textContent = text;
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

async function loadModels() {
  const res = await fetch('models/list', { headers: headers() });
  if (!res.ok) {
    status(res.status === 401 ? 'This server needs an API key: enter it above.' : `Could not list models (${res.status}).`, true);
    return;
  }
  const body = await res.json();
  const select = $('model');
  const chosen = select.value;
  select.textContent = '';
  for (const m of body.models) {
    models.set(m.model_key, m);
    const option = document.createElement('option');
    option.value = m.model_key;
    option.textContent = `${m.model_key}${m.loaded ? '' : ' (not loaded)'}`;
    select.appendChild(option);
  }
  if (chosen && models.has(chosen)) select.value = chosen;
  if ($('status').dataset.error) status('');
}

// Yields the data of each Server-Sent Event in the response body.
async function* events(res) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      yield block.split('\n').filter((line) => line.startsWith('data: ')).map((line) => line.slice(6)).join('');
    }
  }
}

// The conversation as OpenAI's messages: the whole history for a chat model, which the server keeps none of;
// a raw model continues the message alone.
function messages(text, chat) {
  const earlier = chat ? history.map((m) => ({ role: m.from === 'user' ? 'user' : 'assistant', content: m.text })) : [];
  return [...earlier, { role: 'user', content: text }];
}

async function send(text) {
  const key = $('model').value;
  const chat = models.get(key)?.prompt_format === 'chat';
  bubble('user', text);
  const reply = bubble('bot pending', '');
  $('send').disabled = true;
  status(`${key} is thinking...`);
  const started = performance.now();
  try {
    const body = { model: key, messages: messages(text, chat), stream: true, stream_options: { include_usage: true } };
    const res = await fetch('v1/chat/completions', { method: 'POST', headers: headers(), body: JSON.stringify(body) });
    if (!res.ok) {
      const err = await res.json().catch(() => ({ error: { message: res.statusText } }));
      throw new Error(`${res.status}: ${err.error.message}`);
    }
    let finish = null;
    for await (const data of events(res)) {
      if (data === '[DONE]') break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      for (const choice of chunk.choices) {
        reply.textContent += choice.delta.content ?? '';
        finish = choice.finish_reason ?? finish;
      }
      if (chunk.usage) status(`${chunk.usage.completion_tokens} tokens in ${Math.round(performance.now() - started)} ms (${finish})`);
      log.scrollTop = log.scrollHeight;
    }
    if (chat) history.push({ from: 'user', text }, { from: 'bot', text: reply.textContent });
  } catch (err) {
    reply.remove();
    bubble('error', String(err.message || err));
    status('');
  } finally {
    reply.classList.remove('pending');
    $('send').disabled = false;
    loadModels();
  }
}

$('ask').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('text').value.trim();
  if (!text || $('send').disabled) return;
  $('text').value = '';
  send(text);
});
$('text').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    $('ask').requestSubmit();
  }
});
$('clear').addEventListener('click', () => {
  history = [];
  log.textContent = '';
});
$('model').addEventListener('change', () => {
  history = [];
});
$('apikey').addEventListener('change', loadModels);
loadModels();
