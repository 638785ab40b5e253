// The chat page's fine-tuning panel, shown only when the server has fine-tuning on (GET /v1/fine_tuning/jobs answers
// 200 rather than 404). It uploads a training file as OpenAI's clients do (POST /v1/files, multipart, purpose
// "fine-tune"; a chat app's export is imported there, and when it does not say which sender is the user, the server
// lists the senders and the panel asks, as it asks for the export's encoding or its dates' order when the server's
// refusal or guess names them), starts a job on one of the served models (POST /v1/fine_tuning/jobs), and
// follows the jobs by asking for them and their events: each step's training loss comes as a "metrics" event. A job
// that succeeds serves its model beside the others, so the model picker is listed again and the job offers to talk
// to it.
// It runs beside app.js, whose helpers ($, models, current, plural, status, authorization, refreshModels, keyNeeded, showKeyPanel) it uses.
'use strict';

// Once a second at most, while a job is unfinished.
const POLL_MS = 1000;
// Events asked for at once: the newest step's loss and the newest message are among them.
const EVENTS_LIMIT = 20;
const JOBS_LIMIT = 20;
const FINISHED = ['succeeded', 'failed', 'cancelled'];
const STATUS_WORDS = {
  validating_files: 'Reading the file',
  queued: 'Waiting its turn',
  running: 'Training',
  paused: 'Paused',
  succeeded: 'Ready',
  failed: 'Failed',
  cancelled: 'Cancelled',
};
// The upload's fields for an export that the panel offers when a refusal asks for them (its asks_for), each with its
// control and what to pick.
const EXPORT_CHOICES = {
  encoding: { id: 'tune-encoding', what: 'its text encoding' },
  date_order: { id: 'tune-date-order', what: 'how it writes its dates' },
};
// The server's rule for a suffix, which becomes part of the model's name.
const SUFFIX = /^[A-Za-z0-9._-]{1,64}$/;

const tune = {
  probed: false,
  rows: new Map(),       // job id -> its row and what is known of it
  timer: null,
  polling: false,        // a round of poll(), or the first asking of probeFineTuning(), under way
  lastPoll: -Infinity,   // when the jobs were last asked for (performance.now())
  uploaded: null,        // {file, id}: a file taken already, kept for another try at the job with the same file
  senders: null,         // the file whose senders #tune-me offers, when the server asked which is the user
};

// What a refused request says, as the server words it.
async function tuneError(res) {
  if (res.status === 401) {
    showKeyPanel();
    return `${keyNeeded()}, then try again.`;
  }
  const body = await res.json().catch(() => ({}));
  const message = body.error?.message ?? body.error ?? res.statusText;
  if (res.status >= 500) return `Something went wrong on the server (${res.status}): ${message}`;
  return message;
}

// A request that got no answer at all: the server stopped or restarting, or the network between cut.
function unreachable(err) {
  return `The server could not be reached (${err.message || err}): check that it is still running, then try again.`;
}

async function api(path, init = {}) {
  return fetch(path, { ...init, headers: { Accept: 'application/json', ...authorization(), ...init.headers } });
}

// Whether fine-tuning is on: asked once the models are listed, that is once any API key needed is known. The models
// are listed again soon after (the chosen one primed), so an asking under way is not asked again.
async function probeFineTuning() {
  if (tune.polling) return;
  tune.polling = true;
  let res;
  try {
    tune.lastPoll = performance.now();
    res = await api(`v1/fine_tuning/jobs?limit=${JOBS_LIMIT}`);
  } catch {
    return;
  } finally {
    tune.polling = false;
  }
  if (res.status === 404) {
    tune.probed = true;
    document.body.dataset.fineTuning = 'off';
    return;
  }
  if (!res.ok) return;  // no key yet, or the server in trouble: asked again at the next listing
  tune.probed = true;
  document.body.dataset.fineTuning = 'on';
  $('tune-toggle').hidden = false;
  showJobs((await res.json()).data, false);
  fillBases();
  schedulePoll(0);  // each job's figures, from its events
}

// The models a job can start from: the served ones that are not LoRA adapters (an adapter's base is fine-tuned instead).
function fillBases() {
  const select = $('tune-base');
  const chosen = select.value || (current() && !current().adapter ? current().model_key : '');
  select.textContent = '';
  for (const m of models.values()) {
    if (m.adapter) continue;
    const option = document.createElement('option');
    option.value = m.model_key;
    option.textContent = m.model_key;
    select.append(option);
  }
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

function openPanel(open) {
  $('tune').hidden = !open;
  $('chat').hidden = open;
  document.querySelector('.composer').hidden = open;
  // New chat would clear the conversation out of sight, behind the panel.
  $('clear').hidden = open;
  const toggle = $('tune-toggle');
  toggle.setAttribute('aria-expanded', String(open));
  toggle.textContent = open ? 'Back to chat' : 'Fine-tune';
  if (open) {
    fillBases();
    $('tune-title').focus();
  }
}

function formError(text) {
  $('tune-error').textContent = text;
}

// The upload, then the job. A file taken already is not sent again when only the job was refused.
async function startJob() {
  formError('');
  const file = $('tune-file').files[0];
  const model = $('tune-base').value;
  const suffix = $('tune-suffix').value.trim();
  const epochsText = $('tune-epochs').value.trim();
  const epochs = Number(epochsText);
  if (!model) return formError('Pick the model to start from.');
  if (!file) return formError('Choose a training file.');
  if (suffix && !SUFFIX.test(suffix)) return formError('The name suffix may have up to 64 letters, digits, ".", "_" or "-".');
  if (epochsText && !(Number.isInteger(epochs) && epochs >= 1 && epochs <= 1000)) return formError('Epochs: a whole number from 1 to 1000, or empty for auto.');

  const button = $('tune-start');
  button.disabled = true;
  const progress = $('tune-progress');
  try {
    let fileId = tune.uploaded?.file === file ? tune.uploaded.id : null;
    if (fileId === null) {
      const me = tune.senders === file ? $('tune-me').value : '';
      if (tune.senders === file && !me) {
        $('tune-me').focus();
        return formError('Pick which of the senders is you.');
      }
      const form = new FormData();
      form.append('purpose', 'fine-tune');
      if (me) form.append('me', me);
      for (const [field, { id, what }] of Object.entries(EXPORT_CHOICES)) {
        if ($(`${id}-field`).hidden) continue;
        if (!$(id).value) {
          $(id).focus();
          return formError(`Pick ${what}.`);
        }
        form.append(field, $(id).value);
      }
      form.append('file', file, file.name);
      const res = await upload(form, file, (text) => (progress.textContent = text));
      if (!res.ok) {
        const refusal = (await res.clone().json().catch(() => ({}))).error ?? {};
        if (refusal.param === 'me' && Array.isArray(refusal.senders) && refusal.senders.length > 0) {
          askWhoIsMe(file, refusal.senders);
          return formError(me ? 'None of the senders is called that: pick yourself again.' : `${file.name} is a chat app's export: pick which of its senders is you, then start again.`);
        }
        const asked = (Array.isArray(refusal.asks_for) ? refusal.asks_for : []).filter((field) => Object.hasOwn(EXPORT_CHOICES, field));
        if (asked.length > 0) {
          offerChoices(asked);
          return formError(`The file was refused: ${await tuneError(res)}. Pick ${asked.map((field) => EXPORT_CHOICES[field].what).join(' and ')} below, then start again.`);
        }
        return formError(`The file was refused: ${await tuneError(res)}`);
      }
      const uploaded = await res.json();
      // An import that guessed what the panel can ask (the order of dates that read either way) starts nothing: the
      // file is let go, and the guess is asked for, its warning told. A file the server did not let go is said to
      // stay there, by its id: the person would otherwise take it for gone.
      const guessed = (uploaded.imported?.asks_for ?? []).filter((field) => Object.hasOwn(EXPORT_CHOICES, field) && $(`${EXPORT_CHOICES[field].id}-field`).hidden);
      if (guessed.length > 0) {
        const deleted = await api(`v1/files/${encodeURIComponent(uploaded.id)}`, { method: 'DELETE' });
        const kept = deleted.ok ? '' : ` The file of the guess could not be removed from the server, where it stays as ${uploaded.id}: ${await tuneError(deleted)}`;
        offerChoices(guessed);
        return formError(`${uploaded.imported.warnings.join(' ')}. Pick ${guessed.map((field) => EXPORT_CHOICES[field].what).join(' and ')} below, then start again.${kept}`);
      }
      fileId = uploaded.id;
      tune.uploaded = { file, id: fileId };
      $('tune-imported').textContent = uploaded.imported ? importedText(file.name, uploaded.imported) : '';
    }
    progress.textContent = 'Starting the job...';
    const body = { model, training_file: fileId };
    if (suffix) body.suffix = suffix;
    if (epochsText) body.method = { type: 'supervised', supervised: { hyperparameters: { n_epochs: epochs } } };
    const res = await api('v1/fine_tuning/jobs', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    if (!res.ok) return formError(`The job was not started: ${await tuneError(res)}`);
    const job = await res.json();
    $('tune-form').reset();
    forgetSenders();
    forgetChoices();
    fillBases();
    $('tune-base').value = model;
    tune.uploaded = null;
    showJobs([job], true);
    tune.rows.get(job.id).name.focus();
    schedulePoll(0);
  } catch (err) {
    formError(`${unreachable(err)} The file is still chosen.`);
  } finally {
    button.disabled = false;
    progress.textContent = '';
  }
}

// POST /v1/files with the upload's progress told as it goes: an export with its photos is hundreds of megabytes,
// minutes of a home connection, and fetch() tells nothing of a body on its way. Answers as fetch() would.
function upload(form, file, tell) {
  const size = file.size < 1e6 ? `${Math.ceil(file.size / 1e3)} kB` : `${(file.size / 1e6).toFixed(file.size < 1e7 ? 1 : 0)} MB`;
  tell(`Uploading ${file.name}...`);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', 'v1/files');
    xhr.setRequestHeader('Accept', 'application/json');
    for (const [name, value] of Object.entries(authorization())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) tell(`Uploading ${file.name}: ${Math.floor((100 * e.loaded) / e.total)}% of ${size}`);
    };
    xhr.upload.onload = () => tell(`Reading ${file.name}...`);
    xhr.onload = () => resolve(new Response(xhr.responseText, { status: xhr.status, headers: { 'Content-Type': xhr.getResponseHeader('Content-Type') ?? 'application/json' } }));
    xhr.onerror = () => reject(new Error('the upload was cut off'));
    xhr.send(form);
  });
}

// The senders of an export that does not say which is the user, most messages first, offered as a choice.
function askWhoIsMe(file, senders) {
  const select = $('tune-me');
  select.textContent = '';
  select.append(new Option('Pick yourself', ''));
  for (const sender of senders) select.append(new Option(`${sender.name} (${plural(sender.messages, 'message')})`, sender.name));
  tune.senders = file;
  $('tune-me-field').hidden = false;
  select.focus();
}

function forgetSenders() {
  tune.senders = null;
  $('tune-me-field').hidden = true;
  $('tune-me').textContent = '';
}

// The controls of EXPORT_CHOICES that a refusal asked for, shown with the first to pick focused; kept for the file
// until another is chosen.
function offerChoices(fields) {
  for (const field of fields) $(`${EXPORT_CHOICES[field].id}-field`).hidden = false;
  $(EXPORT_CHOICES[fields[0]].id).focus();
}

function forgetChoices() {
  for (const { id } of Object.values(EXPORT_CHOICES)) {
    $(`${id}-field`).hidden = true;
    $(id).value = '';
  }
}

// "Imported 1204 messages with Mom from WhatsApp Chat with Mom.txt, 590 of them yours."
function importedText(filename, imported) {
  const audiences = imported.audiences.map((a) => a.audience);
  const withWhom = audiences.length <= 3 ? audiences.join(', ') : `${audiences.slice(0, 3).join(', ')} and ${plural(audiences.length - 3, 'other')}`;
  const warnings = imported.warnings.length > 0 ? ` ${imported.warnings.join(' ')}` : '';
  return `Imported ${plural(imported.messages, 'message')} with ${withWhom} from ${filename}, ${imported.sent} of them yours.${warnings}`;
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function actionButton(row, label, action) {
  const button = element('button', 'ghost small', label);
  button.type = 'button';
  button.addEventListener('click', () => act(row, action, button));
  return button;
}

// A row for each job; its elements are kept and changed in place, so that polling never takes the focus away.
function addRow(job, newest) {
  const li = element('li', 'job');
  const row = { job, li, step: null, total: null, loss: null, message: null, eventsSeen: false, problem: '' };
  row.name = element('h4', 'job-name');
  row.name.tabIndex = -1;
  row.badge = element('span', 'badge');
  const head = element('div', 'job-head');
  head.append(row.name, row.badge);
  row.origin = element('p', 'job-origin hint');
  row.bar = element('progress', 'job-bar');
  row.bar.setAttribute('aria-label', 'Progress');
  row.figures = element('p', 'job-figures');
  row.steps = element('span', 'job-steps');
  row.lossText = element('span', 'job-loss');
  row.eta = element('span', 'job-eta');
  row.figures.append(row.steps, row.lossText, row.eta);
  row.detail = element('p', 'job-detail hint');
  row.error = element('p', 'job-error form-error');
  row.error.setAttribute('role', 'alert');
  row.buttons = {
    chat: element('button', 'small', 'Chat with it'),
    pause: actionButton(row, 'Pause', 'pause'),
    resume: actionButton(row, 'Resume', 'resume'),
    cancel: actionButton(row, 'Cancel', 'cancel'),
  };
  row.buttons.chat.type = 'button';
  row.buttons.chat.addEventListener('click', () => chatWith(row.job.fine_tuned_model));
  const actions = element('div', 'actions');
  actions.append(...Object.values(row.buttons));
  li.append(head, row.origin, row.bar, row.figures, row.detail, row.error, actions);
  if (newest) $('tune-jobs').prepend(li);
  else $('tune-jobs').append(li);
  tune.rows.set(job.id, row);
  return row;
}

// Jobs as the API lists them, newest first; `newest`: they came after those shown.
function showJobs(jobs, newest) {
  const list = newest ? [...jobs].reverse() : jobs;
  for (const job of list) {
    const row = tune.rows.get(job.id) ?? addRow(job, newest);
    const was = row.job.status;
    row.job = job;
    if (was !== job.status) $('tune-news').textContent = `${job.fine_tuned_model ?? job.id}: ${STATUS_WORDS[job.status] ?? job.status}`;
    if (was !== 'succeeded' && job.status === 'succeeded' && row.seenUnfinished) {
      // Its model is served now: the picker lists it.
      refreshModels();
      if ($('tune').hidden) status(`${job.fine_tuned_model} is ready: pick it from the models to talk to it.`);
    }
    if (!FINISHED.includes(job.status)) row.seenUnfinished = true;
    render(row);
  }
  $('tune-none').hidden = tune.rows.size > 0;
}

function render(row) {
  const { job } = row;
  const suffix = job.user_provided_suffix ? ` "${job.user_provided_suffix}"` : '';
  row.name.textContent = job.fine_tuned_model ?? `A new bot${suffix}`;
  row.li.dataset.status = job.status;
  row.li.dataset.job = job.id;
  row.badge.textContent = STATUS_WORDS[job.status] ?? job.status;
  const epochs = job.hyperparameters?.n_epochs;
  const created = new Date(job.created_at * 1000).toLocaleString();
  row.origin.textContent = `From ${job.model}, ${epochs === 'auto' || epochs === undefined ? 'epochs: auto' : plural(epochs, 'epoch')}; started ${created}`;

  // The bar: the steps trained of all; moving but unmeasured until the first step is known.
  if (job.status === 'succeeded') {
    row.bar.max = row.total ?? 1;
    row.bar.value = row.total ?? 1;
  } else if (row.total) {
    row.bar.max = row.total;
    row.bar.value = row.step;
  } else {
    row.bar.removeAttribute('value');
  }
  row.bar.hidden = job.status === 'failed' || (job.status === 'cancelled' && row.total === null);
  row.steps.textContent = row.total ? `Step ${row.step}/${row.total}` : '';
  row.lossText.textContent = row.loss === null ? '' : `Training loss ${row.loss.toFixed(3)}`;
  row.eta.textContent = job.status === 'running' && job.estimated_finish ? timeLeft(job.estimated_finish) : '';
  row.figures.hidden = !row.total;
  // A failed job's reason, else what went wrong with the last button pressed.
  const failed = job.status === 'failed' ? job.error?.message ?? 'The job failed.' : row.problem;
  if (row.error.textContent !== failed) row.error.textContent = failed;
  row.detail.textContent = job.status === 'succeeded' ? servedText(job) : row.message ?? '';
  row.detail.hidden = row.detail.textContent === '' || job.status === 'failed';

  const { chat, pause, resume, cancel } = row.buttons;
  chat.hidden = !(job.status === 'succeeded' && models.has(job.fine_tuned_model));
  pause.hidden = !['validating_files', 'queued', 'running'].includes(job.status);
  resume.hidden = job.status !== 'paused';
  cancel.hidden = FINISHED.includes(job.status);
}

// The time to the server's estimate of the end, at the pace so far.
function timeLeft(finish) {
  const s = Math.max(1, Math.round(finish - Date.now() / 1000));
  if (s < 90) return `about ${plural(s, 'second')} left`;
  if (s < 90 * 60) return `about ${plural(Math.round(s / 60), 'minute')} left`;
  return `about ${plural(Math.round(s / 3600), 'hour')} left`;
}

function servedText(job) {
  if (models.has(job.fine_tuned_model)) return `Trained on ${Number(job.trained_tokens).toLocaleString()} tokens. Pick it from the models, or chat with it now.`;
  return 'Its model is not served now.';
}

// The newest step's figures and the newest message, from the job's newest events.
async function readEvents(row) {
  const res = await api(`v1/fine_tuning/jobs/${encodeURIComponent(row.job.id)}/events?limit=${EVENTS_LIMIT}`);
  if (!res.ok) return;
  const events = (await res.json()).data;
  const step = events.find((e) => e.type === 'metrics' && typeof e.data?.train_loss === 'number');
  if (step) {
    row.step = step.data.step;
    row.total = step.data.total_steps;
    row.loss = step.data.train_loss;
  }
  const message = events.find((e) => e.type !== 'metrics');
  if (message) row.message = message.message;
  row.eventsSeen = true;
}

// One round: the jobs, then the events of each one unfinished (and of each finished one once, for its figures).
async function poll() {
  if (tune.polling) return;
  tune.polling = true;
  clearTimeout(tune.timer);
  tune.lastPoll = performance.now();
  try {
    const res = await api(`v1/fine_tuning/jobs?limit=${JOBS_LIMIT}`);
    if (!res.ok) {
      if (res.status === 401) showKeyPanel();
      return;
    }
    const jobs = (await res.json()).data;
    await Promise.all(jobs.map((job) => {
      const row = tune.rows.get(job.id) ?? addRow(job, false);
      const settled = row.eventsSeen && FINISHED.includes(job.status) && FINISHED.includes(row.job.status);
      return settled ? null : readEvents(row);
    }));
    showJobs(jobs, false);
    reorder(jobs);
  } catch {
    // The server gone for a moment: the next round asks again.
  } finally {
    tune.polling = false;
    schedulePoll();
  }
}

// The rows in the order the server lists the jobs, newest first; rows already in place are not moved (a moved
// element loses the focus).
function reorder(jobs) {
  const list = $('tune-jobs');
  let at = list.firstElementChild;
  for (const job of jobs) {
    const li = tune.rows.get(job.id)?.li;
    if (!li) continue;
    if (li !== at) list.insertBefore(li, at);
    else at = at.nextElementSibling;
  }
}

// The next round, never sooner than POLL_MS after the last; none once every job has finished and shows its figures.
// `delay`: wanted sooner than the usual pace (a job just started, or acted on).
function schedulePoll(delay) {
  clearTimeout(tune.timer);
  const busy = [...tune.rows.values()].some((r) => !FINISHED.includes(r.job.status) || !r.eventsSeen);
  if (!busy && delay === undefined) return;
  const wanted = delay ?? POLL_MS;
  const earliest = tune.lastPoll + POLL_MS - performance.now();
  tune.timer = setTimeout(poll, Math.max(wanted, earliest, 0));
}

// Pause, resume or cancel; the job as the server answers is shown at once.
async function act(row, action, button) {
  const hadFocus = document.activeElement === button;
  row.problem = '';
  button.disabled = true;
  try {
    const res = await api(`v1/fine_tuning/jobs/${encodeURIComponent(row.job.id)}/${action}`, { method: 'POST' });
    if (res.ok) {
      showJobs([await res.json()], false);
    } else {
      row.problem = `Could not ${action} the job: ${await tuneError(res)}`;
    }
  } catch (err) {
    row.problem = unreachable(err);
  } finally {
    render(row);
    button.disabled = false;
    // The button pressed may be gone (Pause becomes Resume): the focus goes to what took its place.
    if (hadFocus) (button.hidden ? Object.values(row.buttons).find((b) => !b.hidden) ?? row.name : button).focus();
    schedulePoll(0);
  }
}

function chatWith(model) {
  if (!models.has(model)) return;
  $('model').value = model;
  $('model').dispatchEvent(new Event('change'));
  openPanel(false);
  $('text').focus();
}

document.addEventListener('models-listed', () => {
  if (!tune.probed) probeFineTuning();
  else {
    fillBases();
    for (const row of tune.rows.values()) render(row);
  }
});
$('tune-toggle').addEventListener('click', () => openPanel($('tune').hidden));
$('tune').addEventListener('keydown', (e) => {
  if (e.key !== 'Escape') return;
  e.preventDefault();
  openPanel(false);
  $('tune-toggle').focus();
});
$('tune-file').addEventListener('change', () => {
  forgetSenders();
  forgetChoices();
  $('tune-imported').textContent = '';
});
$('tune-form').addEventListener('submit', (e) => {
  e.preventDefault();
  startJob();
});
