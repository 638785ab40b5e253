#!/usr/bin/env node
// Writes the example chat dataset (examples/chat/train/*.train for training, examples/chat/valid.train for
// validation): made-up conversations in the chat format
// (flag|audience|message <EOM>), varied enough for a small model to learn who says what to whom.
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
};
const fill = (template) => template.replace(/\{(\w+)\}/g, (_, k) => pick(words[k]));

// Each audience has its own voice: their lines (flag 0) and what "you" say to them (flag 1).
const audiences = {
  mom: {
    theirs: ['Hi sweetie! <EOM>', 'Did you eat yet? <EOM>', 'I made {food}, come by if you want some. <EOM>', 'It is {weather} here. Wear a jacket! <EOM>',
      'Call your grandmother, she misses you. <EOM>', 'Are you sleeping enough? <EOM>', 'Love you! <EOM>', 'Dad says hi. <EOM>',
      'Can you help me with {thing} {day}? <EOM>', 'I saw {show}, you would love it. <EOM>', 'How was your week? <EOM>', 'Drive safe! <EOM>'],
    yours: ['Hi Mom! <EOM>', 'How are you doing, Mom? <EOM>', 'Yes, I had {food}. <EOM>', 'I will come by {day} around {time}. <EOM>',
      'Love you too! <EOM>', 'I am {feeling}, thanks for asking. <EOM>', 'Sure, I can look at {thing}. <EOM>', 'Tell Dad I said hi. <EOM>',
      'It is {weather} here too. <EOM>', 'I will call Grandma {day}. <EOM>', 'Thanks Mom! <EOM>'],
  },
  dad: {
    theirs: ['Hey kiddo. <EOM>', 'Did you check the oil in {thing}? <EOM>', 'Game is on {day}, you coming? <EOM>', 'Mom made {food}. <EOM>',
      'Fixed {thing} myself. Only took three hours. <EOM>', 'What is the wifi password again? <EOM>', 'Proud of you. <EOM>', 'Ok. <EOM>'],
    yours: ['Hey Dad! <EOM>', 'Not yet, I will {day}. <EOM>', 'I will be there at {time}. <EOM>', 'Nice work on {thing}! <EOM>',
      'It is on the fridge, Dad. <EOM>', 'Thanks Dad. <EOM>', 'Save me some {food}. <EOM>'],
  },
  sam: {
    theirs: ['yo <EOM>', 'you free {day}? <EOM>', 'lets get {food} at {place} <EOM>', 'did you see {show}?? <EOM>', 'haha no way <EOM>',
      'running late, 10 min <EOM>', 'its {weather} lol <EOM>', 'bring snacks <EOM>', 'pizza or tacos? <EOM>', 'ok deal <EOM>'],
    yours: ['hey! <EOM>', 'yeah I am free {day} <EOM>', 'sounds good, {place} at {time}? <EOM>', 'omg yes, {show} was wild <EOM>',
      'lol <EOM>', 'no worries <EOM>', 'tacos | always tacos <EOM>', 'I am {feeling} today <EOM>', 'see you there <EOM>'],
  },
  team: {
    theirs: ['Morning all. <EOM>', 'Can someone review {project}? <EOM>', 'Standup moved to {time}. <EOM>', 'Heads up: {thing} is down again. <EOM>',
      'Great job on {project}, everyone. <EOM>', 'Status on {project}? <EOM>', 'Who is out {day}? <EOM>', 'Thanks! <EOM>'],
    yours: ['Morning! <EOM>', 'I can review {project} {day}. <EOM>', 'Works for me. <EOM>', 'On it. <EOM>', '{project} is almost done, ETA {day}. <EOM>',
      'I am out {day}, back after. <EOM>', 'Filed a ticket for {thing}. <EOM>', 'Sounds good, thanks. <EOM>'],
  },
  grandma: {
    theirs: ['Hello dear, is this thing working? <EOM>', 'I baked cookies. <EOM>', 'When are you visiting? <EOM>', '{pet} knocked over the plant again. <EOM>',
      'You are getting so grown up. <EOM>', 'It is {weather} today. <EOM>', 'Bring an umbrella! <EOM>'],
    yours: ['Hi Grandma! It works! <EOM>', 'I will visit {day}. <EOM>', 'Save me a cookie! <EOM>', 'Oh no, poor plant. <EOM>', 'Love you Grandma. <EOM>',
      'I am {feeling}, how are you? <EOM>'],
  },
  alex: {
    theirs: ['hey, how did the interview go? <EOM>', 'want to study at {place} {day}? <EOM>', 'I cannot find my notes for {project} <EOM>', 'feeding {pet} now <EOM>',
      'movie night {day}? <EOM>', 'I am so {feeling} <EOM>'],
    yours: ['it went well I think! <EOM>', 'sure, {place} at {time} <EOM>', 'check the shared folder <EOM>', 'movie night yes! <EOM>', 'same honestly <EOM>',
      'did you feed {pet}? <EOM>'],
  },
};

function conversation(name) {
  const a = audiences[name];
  const lines = [];
  let fromYou = chance(0.5);
  const length = 3 + Math.floor(rand() * 8);
  for (let i = 0; i < length; i++) {
    lines.push(`${fromYou ? 1 : 0}|${name}|${fill(pick(fromYou ? a.yours : a.theirs))}`);
    // Turns mostly alternate; sometimes one side sends two messages in a row.
    if (!chance(0.2)) fromYou = !fromYou;
  }
  return lines;
}

function writeFile(file, names, conversations) {
  const lines = [];
  for (let i = 0; i < conversations; i++) lines.push(...conversation(pick(names)));
  fs.mkdirSync(path.dirname(path.join(__dirname, file)), { recursive: true });
  fs.writeFileSync(path.join(__dirname, file), `${lines.join('\n')}\n`);
  return lines.length;
}

const counts = [
  ['train/family.train', writeFile('train/family.train', ['mom', 'dad', 'grandma'], 480)],
  ['train/friends.train', writeFile('train/friends.train', ['sam', 'alex'], 440)],
  ['train/work.train', writeFile('train/work.train', ['team'], 240)],
  ['valid.train', writeFile('valid.train', Object.keys(audiences), 80)],
];
console.log(counts.map(([file, n]) => `${file}: ${n} lines`).join(', '));
