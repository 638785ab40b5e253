#!/usr/bin/env node
// Writes the example chat dataset (examples/chat/train/*.train for training, examples/chat/valid.train for
// validation): made-up conversations in the chat format (flag|audience|message <EOM>), a blank line between
// conversations as bin/import-chat writes them, varied enough for a small model to learn who says what to whom,
// and how each audience answers what you say.
//
// The split is by conversation, and no line of valid.train appears in the training files: every possible line
// (each template with each filling of its blanks) belongs to one side of the split by a hash of its text, and
// each conversation is written from its side's lines alone. The validation loss thus measures messages the model
// has never seen, not ones it could have memorised.
// Deterministic: `node examples/chat/generate.js` rewrites the same files. No dependencies.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

let state = 0x2545f491;
function rand() {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return (state >>> 0) / 4294967296;
}
const pick = (list) => list[Math.floor(rand() * list.length)];
const chance = (p) => rand() < p;

const words = {
  food: ['lasagna', 'tacos', 'pancakes', 'soup', 'curry', 'pizza', 'salad', 'dumplings', 'chili', 'roast chicken', 'pad thai', 'burgers'],
  day: ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday', 'tomorrow', 'tonight', 'this weekend'],
  time: ['7', '8', 'noon', '6:30', '9', 'half past five', '10', 'lunchtime'],
  place: ['the park', 'the library', 'the old diner', 'the gym', 'the farmers market', 'the beach', 'the office', 'the bakery on Main'],
  weather: ['raining again', 'so sunny', 'freezing', 'really windy', 'humid', 'snowing a little', 'perfect out'],
  thing: ['the car', 'the dishwasher', 'my laptop', 'the printer', 'the wifi', 'the garage door', 'my phone', 'the heater'],
  show: ['that baking show', 'the space documentary', 'the detective series', 'the game', 'the cooking competition', 'the nature show'],
  pet: ['the cat', 'Biscuit', 'the dog', 'the goldfish', 'Pepper'],
  feeling: ['tired', 'great', 'a bit stressed', 'happy', 'excited', 'pretty good', 'sleepy', 'busy but fine'],
  project: ['the quarterly report', 'the launch', 'the budget sheet', 'the client deck', 'the migration', 'the demo'],
  activity: ['gardening', 'baking', 'reading', 'painting', 'knitting', 'sewing', 'cleaning'],
};

// Each audience has its own voice: what they say unprompted (theirs), what "you" say to them (yours), and
// exchanges: something you say, then how they answer it.
const audiences = {
  mom: {
    theirs: ['Hi sweetie!', 'Did you eat yet?', 'I made {food}, come by if you want some.', 'It is {weather} here. Wear a jacket!',
      'Call your grandmother, she misses you.', 'Are you sleeping enough?', 'Love you!', 'Dad says hi.',
      'Can you help me with {thing} {day}?', 'I saw {show}, you would love it.', 'How was your week?', 'Drive safe!'],
    yours: ['Hi Mom!', 'Yes, I had {food}.', 'I will come by {day} around {time}.', 'Love you too!', 'I am {feeling}, thanks for asking.',
      'Sure, I can look at {thing}.', 'Tell Dad I said hi.', 'It is {weather} here too.', 'I will call Grandma {day}.', 'Thanks Mom!'],
    exchanges: [
      ['How are you doing, Mom?', 'I am good, sweetie. I spent the day {activity}.'],
      ['How was your day?', 'It was lovely. I spent the morning {activity}, and I made {food} for dinner.'],
      ['How was your day?', 'A quiet one. Dad fixed {thing} and I did some {activity}.'],
      ['What are you doing {day}?', 'Nothing much, some {activity}. Come over for {food}!'],
      ['What is for dinner?', 'I am making {food}. There is plenty if you want to come by.'],
      ['I am {feeling} today.', 'Oh honey, get some rest. I love you.'],
      ['Did you watch {show}?', 'Yes! Your father fell asleep halfway through, as always.'],
      ['Can I come over {day}?', 'Of course! I will make {food}.'],
      ['I got the job!', 'I am so proud of you! We have to celebrate.'],
      ['Good night, Mom.', 'Good night, sweetie. Sleep well.'],
    ],
  },
  dad: {
    theirs: ['Hey kiddo.', 'Did you check the oil in {thing}?', 'Game is on {day}, you coming?', 'Mom made {food}.',
      'Fixed {thing} myself. Only took three hours.', 'What is the wifi password again?', 'Proud of you.', 'Ok.'],
    yours: ['Hey Dad!', 'Not yet, I will {day}.', 'I will be there at {time}.', 'Nice work on {thing}!',
      'It is on the fridge, Dad.', 'Thanks Dad.', 'Save me some {food}.'],
    exchanges: [
      ['How are you, Dad?', 'Doing fine. Spent the day on {thing}.'],
      ['How was your day?', 'Long day. Had to fix {thing} again.'],
      ['Are you watching {show}?', 'Wouldn\'t miss it. Come watch it with me {day}.'],
      ['Can you help me with {thing}?', 'Sure, bring it over {day} and we will take a look.'],
      ['What are you doing {day}?', 'Working on {thing}. Want to help?'],
      ['I am {feeling}.', 'Hang in there, kiddo. Call me if you need anything.'],
      ['Good night, Dad.', 'Night, kiddo.'],
    ],
  },
  sam: {
    theirs: ['yo', 'you free {day}?', 'lets get {food} at {place}', 'did you see {show}??', 'haha no way',
      'running late, 10 min', 'its {weather} lol', 'bring snacks', 'pizza or tacos?', 'ok deal'],
    yours: ['hey!', 'yeah I am free {day}', 'sounds good, {place} at {time}?', 'omg yes, {show} was wild',
      'lol', 'no worries', 'I am {feeling} today', 'see you there'],
    exchanges: [
      ['how are you?', 'good! just got back from {place}'],
      ['how was your day?', 'pretty chill, had {food} at {place}'],
      ['want to hang out {day}?', 'yes! {place} at {time}?'],
      ['what are you up to?', 'nothing, watching {show} lol'],
      ['did you see {show}?', 'yes omg, that ending'],
      ['I am {feeling}', 'same honestly, lets get {food}'],
    ],
  },
  team: {
    theirs: ['Morning all.', 'Can someone review {project}?', 'Standup moved to {time}.', 'Heads up: {thing} is down again.',
      'Great job on {project}, everyone.', 'Status on {project}?', 'Who is out {day}?', 'Thanks!'],
    yours: ['Morning!', 'I can review {project} {day}.', 'Works for me.', 'On it.', '{project} is almost done, ETA {day}.',
      'I am out {day}, back after.', 'Filed a ticket for {thing}.', 'Sounds good, thanks.'],
    exchanges: [
      ['How is {project} going?', 'Almost there. We should be done by {day}.'],
      ['How was your day?', 'Busy. We shipped {project} and fixed {thing}.'],
      ['Can we meet {day}?', 'Sure, {time} works for me.'],
      ['Is {thing} working again?', 'Not yet, I filed a ticket this morning.'],
      ['I finished {project}.', 'Great work, thanks! I will take a look {day}.'],
    ],
  },
  grandma: {
    theirs: ['Hello dear, is this thing working?', 'I baked cookies.', 'When are you visiting?', '{pet} knocked over the plant again.',
      'You are getting so grown up.', 'It is {weather} today.', 'Bring an umbrella!'],
    yours: ['Hi Grandma! It works!', 'I will visit {day}.', 'Save me a cookie!', 'Oh no, poor plant.', 'Love you Grandma.',
      'I am {feeling}, how are you?'],
    exchanges: [
      ['How are you, Grandma?', 'I am well, dear. I have {pet} for company.'],
      ['How was your day?', 'Very nice, dear. I did some {activity} and baked cookies.'],
      ['What are you doing {day}?', 'Oh, a little {activity}. Will you come by?'],
      ['I will visit {day}.', 'Wonderful! I will bake your favorite cookies.'],
      ['I am {feeling}.', 'You work too hard, dear. Come have some tea.'],
    ],
  },
  alex: {
    theirs: ['hey, how did the interview go?', 'want to study at {place} {day}?', 'I cannot find my notes for {project}', 'feeding {pet} now',
      'movie night {day}?', 'I am so {feeling}'],
    yours: ['it went well I think!', 'sure, {place} at {time}', 'check the shared folder', 'movie night yes!', 'same honestly',
      'did you feed {pet}?'],
    exchanges: [
      ['how are you?', 'I am {feeling}, long day at {place}'],
      ['how was your day?', 'not bad, studied at {place} all afternoon'],
      ['want to study {day}?', 'yes please, {place} at {time}?'],
      ['did you find your notes?', 'yes, they were in the shared folder'],
    ],
  },
};

// Every way a template's blanks can be filled, in a fixed order.
function fillings(template) {
  let texts = [''];
  for (const part of template.split(/(\{\w+\})/)) {
    const slot = /^\{(\w+)\}$/.exec(part);
    const options = slot ? words[slot[1]] : [part];
    texts = texts.flatMap((t) => options.map((o) => t + o));
  }
  // A message that starts with a blank starts with a capital, as the sentences around it do.
  return template.startsWith('{') ? texts.map((t) => t.charAt(0).toUpperCase() + t.slice(1)) : texts;
}

// FNV-1a of a line: which side of the split it belongs to (one line in eight is held out for validation).
function heldOut(line) {
  let h = 0x811c9dc5;
  for (let i = 0; i < line.length; i++) h = Math.imul(h ^ line.charCodeAt(i), 0x01000193);
  return (h >>> 0) % 8 === 0;
}

// A line of `side` for the split, from one of `templates` picked at random; null when none of them has one.
function line(templates, side, audience, valid) {
  const usable = templates
    .map((t) => fillings(t).map((text) => `${side}|${audience}|${text} <EOM>`).filter((l) => heldOut(l) === valid))
    .filter((lines) => lines.length > 0);
  return usable.length === 0 ? null : pick(pick(usable));
}

// An exchange (what you say, their answer) whose two lines are both on the split's side, or null.
function exchange(name, valid) {
  for (let tries = 0; tries < 20; tries++) {
    const [yours, theirs] = pick(audiences[name].exchanges);
    const ask = line([yours], 1, name, valid);
    const answer = line([theirs], 0, name, valid);
    if (ask && answer) return [ask, answer];
  }
  return null;
}

function conversation(name, valid) {
  const a = audiences[name];
  const lines = [];
  const length = 3 + Math.floor(rand() * 8);
  // Some conversations open with them; then mostly exchanges, with a few messages of either side between.
  if (chance(0.4)) lines.push(line(a.theirs, 0, name, valid));
  while (lines.length < length) {
    const r = rand();
    if (r < 0.6) lines.push(...(exchange(name, valid) ?? []));
    else if (r < 0.8) lines.push(line(a.yours, 1, name, valid));
    else lines.push(line(a.theirs, 0, name, valid));
  }
  return lines.filter((l) => l !== null);
}

function writeFile(file, names, conversations, valid) {
  const blocks = [];
  for (let i = 0; i < conversations; i++) blocks.push(conversation(pick(names), valid).join('\n'));
  fs.mkdirSync(path.dirname(path.join(__dirname, file)), { recursive: true });
  fs.writeFileSync(path.join(__dirname, file), `${blocks.join('\n\n')}\n`);
  return blocks.join('\n').split('\n').length;
}

// Mom is the one "you" talk to most, so the chatbot answers as her unless asked otherwise.
const counts = [
  ['train/family.train', writeFile('train/family.train', ['mom', 'mom', 'dad', 'grandma'], 520, false)],
  ['train/friends.train', writeFile('train/friends.train', ['sam', 'alex'], 400, false)],
  ['train/work.train', writeFile('train/work.train', ['team'], 200, false)],
  ['valid.train', writeFile('valid.train', Object.keys(audiences), 80, true)],
];
console.log(counts.map(([file, n]) => `${file}: ${n} lines`).join(', '));
