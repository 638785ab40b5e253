// The chat page: sends each message to POST /invocations with "stream": true and shows the reply as it is
// generated (Server-Sent Events read from the fetch body). The conversation lives here, in the page: the
// server keeps none, so each request carries the history of a chat-format model.
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

// Yields [event, data] for each Server-Sent Event in the response body.
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
      let event = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      yield [event, JSON.parse(data)];
    }
  }
}

async function send(text) {
  const key = $('model').value;
  const chat = models.get(key)?.prompt_format === 'chat';
  bubble('user', text);
  const reply = bubble('bot pending', '');
  $('send').disabled = true;
  status(`${key} is thinking...`);
  try {
    const body = { model_key: key, raw_text: text, stream: true };
    if (chat && history.length > 0) body.history = history;
    const res = await fetch('invocations', { method: 'POST', headers: headers(), body: JSON.stringify(body) });
    if (!res.ok) {
      const err = await res.json().catch(() => ({ error: res.statusText }));
      throw new Error(`${res.status}: ${err.error}`);
    }
    for await (const [event, data] of events(res)) {
      if (event === 'text') reply.textContent = data.text;
      else if (event === 'error') throw new Error(data.error);
      else if (event === 'done') {
        reply.textContent = data.text;
        const t = data.timings;
        status(`${t.generated_tokens} tokens in ${Math.round(t.total_ms)} ms (${data.finish_reason})`);
      }
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
