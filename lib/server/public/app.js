// The chat page. It lists the models (GET /models/list), primes the chosen one so that it loads while the user
// writes (POST /prime), and sends each message to POST /v1/chat/completions with "stream": true, as any OpenAI
// client would, showing the reply as it is generated (Server-Sent Events read from the fetch body). The server
// keeps no conversation: the page does, and sends it with each message to a chat model, with the audience the
// model answers as in a system message ("audience: mom"). Replies come sanitized by the model's sanitizer.
// The fine-tuning panel, on a server with fine-tuning on, is tune.js's.
'use strict';
const $ = (id) => document.getElementById(id);
const log = $('log');
const models = new Map();
let history = [];        // the conversation so far, as OpenAI's messages (chat models only)
let shown = [];          // the messages the conversation shows: {role: "user"}, or {role: "assistant", name, reason}, with their content
let apiKey = '';
let busy = false;
let replying = null;     // the AbortController of the reply being written
let polling = null;      // the timer that watches a model load, or the server come back
const UNREACHABLE_RETRY_MS = 3000;

function headers() {
  return { 'Content-Type': 'application/json', Accept: 'text/event-stream, application/json', ...authorization() };
}

// The key alone, for a body that sets its own type (an upload's multipart boundary).
function authorization() {
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

function current() {
  return models.get($('model').value);
}

function isChat(model) {
  return model?.prompt_format === 'chat';
}

// Who answers: the audience picked for a chat model, else the model itself.
function speaker(model) {
  return isChat(model) ? $('audience').value || model.audience : model?.model_key ?? '';
}

function status(text, isError = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', isError);
}

function avatar(name) {
  const span = document.createElement('span');
  span.className = 'avatar';
  span.setAttribute('aria-hidden', 'true');
  span.textContent = (name.trim()[0] ?? '?').toUpperCase();
  return span;
}

function scrollDown() {
  const main = $('chat');
  main.scrollTop = main.scrollHeight;
}

// Whether the conversation is scrolled to its end (within a line): a reply growing there keeps it in view, while one
// growing under what the user scrolled up to read leaves them there.
function atEnd() {
  const main = $('chat');
  return main.scrollHeight - main.scrollTop - main.clientHeight < 32;
}

function addUser(text) {
  const li = document.createElement('li');
  li.className = 'msg user';
  const bubble = document.createElement('div');
  bubble.className = 'bubble';
  bubble.textContent = text;
  li.append(bubble);
  log.append(li);
  $('intro').hidden = true;
  scrollDown();
}

// A reply being written: its bubble shows the dots until text comes.
function addBot(name) {
  const li = document.createElement('li');
  li.className = 'msg bot pending';
  const who = document.createElement('div');
  who.className = 'who';
  who.append(avatar(name), document.createTextNode(name));
  const bubble = document.createElement('div');
  bubble.className = 'bubble';
  bubble.setAttribute('aria-busy', 'true');
  li.append(who, bubble);
  log.append(li);
  scrollDown();
  return {
    show(text) {
      const following = atEnd();
      bubble.textContent = text;
      if (following) scrollDown();
    },
    // How it ended, in words, under the bubble when it was cut.
    finish(text, reason) {
      const following = atEnd();
      li.classList.remove('pending');
      bubble.removeAttribute('aria-busy');
      if (text === '') {
        bubble.classList.add('empty');
        bubble.textContent = `${name} sent nothing back.`;
      }
      const why = reason === 'length' ? 'Cut short: the reply reached its length limit.'
        : reason === 'deadline' ? 'Cut short: the reply ran out of time.'
          : reason === 'stopped' ? 'Stopped: you ended the reply here.'
            : null;
      if (why) {
        const meta = document.createElement('div');
        meta.className = 'meta';
        meta.textContent = why;
        li.append(meta);
      }
      if (following) scrollDown();
    },
    remove() {
      li.remove();
    },
  };
}

// A notice in the conversation: an error in words, with a way to try again when that may help.
function addNotice(text, retry) {
  const li = document.createElement('li');
  li.className = 'notice';
  li.setAttribute('role', 'alert');
  li.append(document.createTextNode(text));
  if (retry) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'ghost small';
    button.textContent = 'Try again';
    button.addEventListener('click', () => {
      li.remove();
      retry();
    });
    li.append(button);
  }
  log.append(li);
  scrollDown();
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

// What an answer that is not 200 means to the person writing.
async function errorText(res) {
  const body = await res.json().catch(() => ({}));
  const message = body.error?.message ?? body.error ?? res.statusText;
  const retryAfter = Number(res.headers.get('Retry-After'));
  const soon = Number.isFinite(retryAfter) && retryAfter > 0 ? `in ${plural(Math.ceil(retryAfter), 'second')}` : 'in a moment';
  const wait = ` Try again ${soon}.`;
  if (res.status === 401) return `${keyNeeded()}, then send again.`;
  if (res.status === 503) {
    if (/shutting down/.test(message)) return `The server is restarting.${wait}`;
    const failed = /failed to load \((.*)\); it is tried again/.exec(message);
    if (failed) return `The model could not be loaded (${failed[1]}): the server's log says more. Pick another model, or try this one again ${soon}.`;
    if (/to load/.test(message)) return `The model is still loading.${wait}`;
    if (/requests in hand/.test(message)) return `The model is busy with other conversations.${wait}`;
    if (/beside the memory held by fine-tuning job/.test(message)) return `A fine-tuning job is training and holds the memory this model needs: it loads once the job ends or is paused.${wait}`;
    return `The model could not be loaded: ${message}.${wait}`;
  }
  if (res.status === 429) return `Too many messages at once.${wait}`;
  if (res.status === 413) return 'The message is too long for this server: shorten it, then send it again.';
  if (res.status === 404) return 'This model is no longer served: pick another one.';
  if (res.status === 507) return 'This model does not fit in the server\'s memory.';
  if (res.status >= 400 && res.status < 500) return `The server refused the message: ${message}`;
  return `Something went wrong on the server (${res.status}: ${message}). Try again; if it happens again, the server's log says more.`;
}

// What a 401 means: no key given yet, or one the server does not take (a typo, or a key since revoked).
function keyNeeded() {
  return apiKey ? 'The server did not accept this API key: check it and enter it above again' : 'This server needs an API key: enter it above';
}

function showKeyPanel() {
  $('key-panel').hidden = false;
  $('apikey').select();
}

// The server gone before its answer was whole: stopped, restarted, or the network between cut.
class ConnectionLost extends Error {}

// Yields the data of each Server-Sent Event in the response body.
async function* events(res) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read().catch(() => {
      throw new ConnectionLost();
    });
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

// The request's messages: for a chat model, who it answers as, the conversation so far and the new message; a
// model that continues text gets the message alone.
function messages(model, text) {
  if (!isChat(model)) return [{ role: 'user', content: text }];
  return [{ role: 'system', content: `audience: ${speaker(model)}` }, ...recentHistory(), { role: 'user', content: text }];
}

// The newest messages of the conversation within HISTORY_BYTES, for the request: the server keeps only what fits the
// model's context (a few thousand characters for GPT-2's), and a long chat sent whole would pass its body limit
// (64 KB unless body_limit_kb says otherwise) and be refused. The page still shows all of it.
const HISTORY_BYTES = 24 * 1024;
const utf8 = new TextEncoder();
function recentHistory() {
  let bytes = 0;
  let start = history.length;
  while (start > 0 && (bytes += utf8.encode(JSON.stringify(history[start - 1])).length) <= HISTORY_BYTES) start--;
  return history.slice(start);
}

// A message that could not be sent, back in the box unless something else is being written there.
function giveBack(text) {
  if ($('text').value !== '') return;
  $('text').value = text;
  grow();
}

// While a reply is written, Stop takes Send's place (and the focus, when Send had it).
function setBusy(on) {
  busy = on;
  const [showing, hiding] = on ? [$('stop'), $('send')] : [$('send'), $('stop')];
  const hadFocus = document.activeElement === hiding;
  hiding.hidden = true;
  showing.hidden = false;
  if (hadFocus) showing.focus();
  $('ask').classList.toggle('busy', on);
}

// Ends the reply being written; what came of it stays (a reply stopped), unless its conversation is gone.
function stopReply() {
  replying?.abort();
}

// Sends `text` (again: it is shown already, above the notice of what went wrong the first time).
async function send(text, again = false) {
  const model = current();
  if (!model || busy) return;
  setBusy(true);
  if (!again) {
    addUser(text);
    shown.push({ role: 'user', content: text });
    saveConversation();
  }
  const name = speaker(model);
  const reply = addBot(name);
  // The conversation the reply belongs to: a new one may have begun by the time it ends.
  const conversation = history;
  const shownThen = shown;
  let answer = '';
  const keep = (reason) => {
    if (isChat(model)) conversation.push({ role: 'user', content: text }, { role: 'assistant', content: answer });
    shownThen.push({ role: 'assistant', name, content: answer, reason });
    if (shownThen === shown) saveConversation();
  };
  const controller = new AbortController();
  replying = controller;
  status(model.state === 'loaded' ? `${speaker(model)} is writing...` : `Loading ${model.model_key} first: the first reply takes a little longer...`);
  const started = performance.now();
  try {
    const body = { model: model.model_key, messages: messages(model, text), stream: true, stream_options: { include_usage: true } };
    const res = await fetch('v1/chat/completions', { method: 'POST', headers: headers(), body: JSON.stringify(body), signal: controller.signal }).catch((err) => {
      throw controller.signal.aborted ? err : new ConnectionLost();
    });
    if (!res.ok) {
      reply.remove();
      if (res.status === 401) showKeyPanel();
      const words = await errorText(res);
      // Sent again as it is, once a key is given or the server has room; a message refused as it is goes back to the
      // box, to be changed.
      const sendable = res.status === 401 || res.status === 429 || (res.status >= 500 && res.status !== 507);
      addNotice(words, sendable ? () => send(text, true) : null);
      if (!sendable) giveBack(text);
      status('');
      return;
    }
    let reason = null;
    let usage = null;
    let whole = false;
    for await (const data of events(res)) {
      if (data === '[DONE]') {
        whole = true;
        break;
      }
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      for (const choice of chunk.choices) {
        if (choice.delta.content) reply.show((answer += choice.delta.content));
        if (choice.finish_reason) reason = choice.dixie_finish_reason ?? choice.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    // A stream ends with [DONE]; one that ends before it was cut off, its reply unfinished.
    if (!whole) throw new ConnectionLost();
    reply.finish(answer, reason);
    keep(reason);
    const ms = Math.round(performance.now() - started);
    status(usage ? `${usage.completion_tokens} tokens in ${ms} ms` : '');
    stateShown = `${model.model_key}:loaded:`;  // it answered: it is loaded, and the line keeps the figures
  } catch (err) {
    if (controller.signal.aborted) {
      // Stopped: the words so far are the reply, as a chat app keeps them.
      if (answer === '') {
        reply.remove();
      } else {
        reply.finish(answer, 'stopped');
        keep('stopped');
      }
      status('');
      return;
    }
    reply.remove();
    const words = err instanceof ConnectionLost
      ? 'The connection to the server was lost before the reply came: check that the server is still running, then try again.'
      : `The reply did not arrive: ${err.message || err}.`;
    addNotice(words, () => send(text, true));
    status('');
  } finally {
    replying = null;
    setBusy(false);
    refreshModels();
  }
}

// The picker of who a chat model answers as: the audiences it was trained on, its default first.
function fillAudiences(model) {
  const select = $('audience');
  const chosen = select.dataset.model === model?.model_key ? select.value : null;
  select.textContent = '';
  $('audience-picker').hidden = !isChat(model);
  if (!isChat(model)) return;
  const names = [model.audience, ...model.audiences.filter((a) => a !== model.audience)];
  for (const name of names) {
    const option = document.createElement('option');
    option.value = name;
    option.textContent = name;
    select.append(option);
  }
  select.value = chosen && names.includes(chosen) ? chosen : model.audience;
  select.dataset.model = model.model_key;
}

// The empty conversation says who is there and what the model does.
function describe(model) {
  if (!model) return;
  const name = speaker(model);
  $('intro-avatar').textContent = (name[0] ?? '?').toUpperCase();
  if (isChat(model)) {
    const most = name === model.audience && model.audiences[0] === name && model.audiences.length > 1 ? ', the one its chats talk to most' : '';
    $('intro-title').textContent = `Talk to ${name}`;
    $('intro-detail').textContent = `${model.model_key} answers as ${name}${most}, in the voice of your chats with them${model.sanitizer === 'none' ? ', its replies as the model writes them' : ', each reply cleaned of chat markup'}.`;
  } else {
    $('intro-title').textContent = `Write to ${model.model_key}`;
    $('intro-detail').textContent = `${model.model_key} was not trained on chats: it continues the text you write.`;
  }
  showState(model, true);
}

// The status line says when the model's state changes (the line keeps the last reply's figures otherwise).
let stateShown = null;
function showState(model, always = false) {
  const now = `${model.model_key}:${model.state}:${model.failure?.error ?? ''}`;
  if (busy || (now === stateShown && !always)) return;
  stateShown = now;
  if (model.state === 'loading') status(`Loading ${model.model_key}...`);
  else if (model.failure) status(`${model.model_key} could not be loaded (${model.failure.error}): the server's log says more. Pick another model, or send a message to try it again.`, true);
  else if (model.state === 'loaded') status(`${model.model_key} is ready.`);
  else status('');
}

function startConversation() {
  stopReply();
  history = [];
  shown = [];
  saveConversation();
  log.textContent = '';
  $('intro').hidden = false;
  describe(current());
}

// The conversation is kept in the browser, as chat apps keep theirs, so that a reload or a closed tab does not lose it;
// New chat forgets it. It is shown again, with the model and audience it was with, while that model is served.
const SAVED = 'dixie-conversation';
let restored = false;

function saveConversation() {
  try {
    localStorage.setItem(SAVED, JSON.stringify({ model: $('model').value, audience: $('audience').value, history, shown }));
  } catch {
    // Storage full or turned off: the conversation lasts as long as the page.
  }
}

function restoreConversation() {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(SAVED));
  } catch {
    return;
  }
  if (!models.has(saved?.model) || !Array.isArray(saved.history) || !Array.isArray(saved.shown)) return;
  $('model').value = saved.model;
  fillAudiences(current());
  if ([...$('audience').options].some((o) => o.value === saved.audience)) $('audience').value = saved.audience;
  history = saved.history;
  shown = saved.shown;
  for (const message of shown) {
    if (message.role === 'user') {
      addUser(message.content);
    } else {
      const reply = addBot(message.name);
      reply.show(message.content);
      reply.finish(message.content, message.reason);
    }
  }
}

async function refreshModels() {
  let res;
  try {
    res = await fetch('models/list', { headers: headers() });
  } catch {
    // Stopped or restarting: asked again until it answers, when the line says how the model is.
    const words = 'The server cannot be reached: check that it is still running. The page tries again every few seconds.';
    status(words, true);
    stateShown = null;
    if (models.size === 0) {
      $('intro-title').textContent = 'The server cannot be reached';
      $('intro-detail').textContent = words;
    }
    clearTimeout(polling);
    polling = setTimeout(connect, UNREACHABLE_RETRY_MS);
    return false;
  }
  if (!res.ok) {
    if (res.status === 401) showKeyPanel();
    $('intro-title').textContent = res.status !== 401 ? 'The models could not be listed' : apiKey ? 'That API key was not accepted' : 'An API key is needed';
    $('intro-detail').textContent = res.status === 401 ? `${keyNeeded()}.` : await errorText(res);
    return false;
  }
  const body = await res.json();
  const select = $('model');
  const chosen = select.value || body.default_model;
  models.clear();
  select.textContent = '';
  for (const m of body.models) {
    models.set(m.model_key, m);
    const option = document.createElement('option');
    option.value = m.model_key;
    option.textContent = isChat(m) ? m.model_key : `${m.model_key} (text)`;
    select.append(option);
  }
  select.value = models.has(chosen) ? chosen : body.models[0]?.model_key;
  if (!restored) {
    restored = true;
    restoreConversation();
  }
  const model = current();
  if ($('audience').dataset.model !== model?.model_key) fillAudiences(model);
  if (log.children.length === 0) describe(model);
  else showState(model);
  watchLoading(model);
  // The fine-tuning panel (tune.js) picks its models from the same list.
  document.dispatchEvent(new CustomEvent('models-listed'));
  return true;
}

// While the chosen model loads, the page looks again every second.
function watchLoading(model) {
  clearTimeout(polling);
  if (model?.state === 'loading') polling = setTimeout(refreshModels, 1000);
}

// The chosen model starts loading now, not at the first message.
async function prime(model) {
  if (!model || model.state === 'loaded') return;
  await fetch('prime', { method: 'POST', headers: headers(), body: JSON.stringify({ model_key: model.model_key }) }).catch(() => null);
  await refreshModels();
}

$('ask').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('text').value.trim();
  if (!text || busy) return;
  $('text').value = '';
  grow();
  send(text);
});
// Enter sends; Shift+Enter starts a new line; Escape stops the reply being written.
$('text').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $('ask').requestSubmit();
  } else if (e.key === 'Escape' && busy) {
    e.preventDefault();
    stopReply();
  }
});
$('stop').addEventListener('click', () => {
  stopReply();
  $('text').focus();
});
// The box grows with what is written, up to a few lines.
function grow() {
  const box = $('text');
  box.style.height = 'auto';
  box.style.height = `${Math.min(box.scrollHeight, 160)}px`;
}
$('text').addEventListener('input', grow);
$('clear').addEventListener('click', () => {
  startConversation();
  $('text').focus();
});
$('model').addEventListener('change', () => {
  fillAudiences(current());
  startConversation();
  prime(current());
});
$('audience').addEventListener('change', startConversation);
$('key-panel').addEventListener('submit', (e) => {
  e.preventDefault();
  apiKey = $('apikey').value.trim();
  $('key-panel').hidden = true;
  connect();
  $('text').focus();
});

// The models listed and the chosen one primed: at first, once a key is given, and when the server is back.
function connect() {
  return refreshModels().then((ok) => ok && prime(current()));
}

connect();
$('text').focus();
