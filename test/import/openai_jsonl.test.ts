// Chat fine-tuning data prepared for other tools: OpenAI's JSONL ({"messages": [{"role", "content"}]} a line) and
// ShareGPT's ({"conversations": [{"from", "value"}]} a line, or a JSON list); the user's side written as yours, the
// assistant as the audience (named by a system message "audience: <name>", or --audience-map), no --me; other
// system messages and images dropped and counted; tool calls and their outputs kept as the server reads them; a
// JSONL of documents sent to bin/train.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { fitConversation, type Conversation } from '../../lib/data/chat_format';
import { formatImportSummary, importChats } from '../../lib/import';
import type { ModelConfig } from '../../lib/server/config';
import { chatPrompt, openAIMessages } from '../../lib/server/routes/api_common';
import { fixture, importFolder, importInto } from './helpers';

t.test("OpenAI's fine-tuning JSONL: a conversation a line, the assistant the audience, without --me", async (t) => {
  const { files, summary } = await importInto(t.testdir(), [fixture('openai', 'fine_tune.jsonl')]);
  t.same(files, {
    'assistant.train': [
      "1|assistant|What's the weather? <EOM>",
      '0|assistant|Sunny and warm <EOM>',
      '1|assistant|thanks <EOM>',
      '0|assistant|Anytime! <EOM>',
      '',
      '1|assistant|Book a table <EOM>',
      '0|assistant|{"name":"book","arguments":{}} <EOM>',
      '1|assistant|booked <EOM>',
      '0|assistant|Done, table for two at 8. <EOM>',
    ],
    'grandma.train': ['1|grandma|Hi Grandma! home soon <EOM>', '0|grandma|Great, dinner at 7 <EOM>'],
  });
  t.same(summary.formats, { openai: 1 });
  t.same([summary.read, summary.kept, summary.sent], [13, 10, 5], 'the system message that names the audience is no message');
  t.same(summary.dropped, { 'system prompt': 2, media: 1 }, 'the other system messages, the image');
  const file = fixture('openai', 'fine_tune.jsonl');
  t.same(summary.warnings, [
    `${file}: 2 system messages left out: the chat format has no system role (a system message "audience: <name>" names the audience instead)`,
    `${file}: 1 assistant message has "weight": 0, but the chat format has no weights: it is trained on like the others`,
  ]);
  t.match(formatImportSummary(summary), /^import: 1 export file \(OpenAI fine-tuning JSONL 1\), 13 messages read, 10 kept \(5 sent, 5 received\), 3 dropped \(system prompt 2, media 1\)/);
});

t.test('function calling is written as the server reads a conversation that called tools', async (t) => {
  const weather = { id: 'w1', type: 'function', function: { name: 'weather', arguments: '{"city": "Oslo"}' } };
  const time = { id: 't1', type: 'function', function: { name: 'time', arguments: '{"zone":"CET"}' } };
  const messages = [
    { role: 'user', content: 'Weather and time in Oslo?' },
    { role: 'assistant', content: 'Checking.', tool_calls: [weather, time] },
    { role: 'tool', tool_call_id: 'w1', content: '4 C | rain' },
    { role: 'tool', tool_call_id: 't1', content: '14:05' },
    { role: 'assistant', content: '4 C and rain, at 14:05.' },
  ];
  const older = [
    { role: 'user', content: 'Any news?' },
    { role: 'assistant', content: null, function_call: { name: 'news', arguments: '{}' } },
    { role: 'function', name: 'news', content: 'none' },
    { role: 'assistant', content: 'Nothing new.' },
  ];
  const sharegpt = [
    { from: 'human', value: 'Convert 5 km' },
    { from: 'function_call', value: '{"name": "convert", "arguments": {"km": 5}}' },
    { from: 'observation', value: '{"miles": 3.1}' },
    { from: 'gpt', value: '5 km is 3.1 miles.' },
  ];
  const tools = [{ type: 'function', function: { name: 'weather', parameters: { type: 'object' } } }];
  const dir = t.testdir({
    'calls.jsonl': `${JSON.stringify({ messages, tools })}\n${JSON.stringify({ messages: older })}\n`,
    'sharegpt.json': JSON.stringify([{ conversations: sharegpt }]),
  });
  const { files, summary } = await importInto(path.join(dir, 'out'), [path.join(dir, 'calls.jsonl')]);
  const lines = [
    '1|assistant|Weather and time in Oslo? <EOM>',
    '0|assistant|Checking. {"name":"weather","arguments":{"city":"Oslo"}} {"name":"time","arguments":{"zone":"CET"}} <EOM>',
    '1|assistant|4 C rain <EOM>',
    '1|assistant|14:05 <EOM>',
    '0|assistant|4 C and rain, at 14:05. <EOM>',
  ];
  t.same(files, { 'assistant.train': [...lines, '', '1|assistant|Any news? <EOM>', '0|assistant|{"name":"news","arguments":{}} <EOM>', '1|assistant|none <EOM>', '0|assistant|Nothing new. <EOM>'] });
  t.same(summary.dropped, {}, 'no call and no output is dropped');
  t.same(summary.warnings, [`${path.join(dir, 'calls.jsonl')}: 1 conversation lists its "tools", which the chat format has no place for: the calls and their outputs are kept, the tools' definitions are not (the server's requests name the tools a reply may call)`]);

  // The server's prompt for the same conversation, the reply to come after it, holds the same lines.
  const { prompt } = chatPrompt({ promptFormat: 'chat', audience: 'assistant', systemMessages: 'refuse' } as ModelConfig, openAIMessages(messages), 'messages');
  t.equal(fitConversation(prompt as Conversation).prompt, `${lines.join('\n')}\n0|assistant|`);

  const shared = await importInto(path.join(dir, 'out-sharegpt'), [path.join(dir, 'sharegpt.json')]);
  t.same(shared.files, { 'assistant.train': ['1|assistant|Convert 5 km <EOM>', '0|assistant|{"name":"convert","arguments":{"km":5}} <EOM>', '1|assistant|{"miles": 3.1} <EOM>', '0|assistant|5 km is 3.1 miles. <EOM>'] });
});

t.test('a call that cannot be read stops the import, naming its line and field', async (t) => {
  const call = (fn: unknown): string => JSON.stringify({ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', tool_calls: [{ id: 'a', type: 'function', function: fn }] }] });
  const dir = t.testdir({
    'arguments.jsonl': `${call({ name: 'f', arguments: '{}' })}\n${call({ name: 'f', arguments: '{city: Oslo}' })}\n`,
    'name.jsonl': `${call({ arguments: '{}' })}\n`,
    'sharegpt.json': JSON.stringify([{ conversations: [{ from: 'human', value: 'hi' }, { from: 'function_call', value: 'weather please' }] }]),
  });
  const rejects = (name: string, message: string | RegExp): Promise<unknown> => t.rejects(importChats([path.join(dir, name)], { out: path.join(dir, 'out') }), { message }, name);
  await rejects('arguments.jsonl', new RegExp(`^${path.join(dir, 'arguments.jsonl')}:2: messages\\[1\\]\\.tool_calls\\[0\\]\\.function\\.arguments: not JSON \\(`));
  await rejects('name.jsonl', `${path.join(dir, 'name.jsonl')}:1: messages[1].tool_calls[0].function: must be a call, {"name", "arguments"}`);
  await rejects('sharegpt.json', new RegExp(`^${path.join(dir, 'sharegpt.json')}: conversation 1: conversations\\[1\\]\\.value: not JSON \\(`));
});

t.test('--audience-map renames the assistant', async (t) => {
  const { files } = await importInto(t.testdir(), [fixture('openai', 'fine_tune.jsonl')], { audienceMap: { assistant: 'helper' } });
  t.same(Object.keys(files), ['grandma.train', 'helper.train']);
  t.equal(files['helper.train'][0], "1|helper|What's the weather? <EOM>");
});

t.test("ShareGPT's conversations, a line each or in a JSON list, give the same bytes", async (t) => {
  const expected = {
    'assistant.train': ['1|assistant|hello <EOM>', "0|assistant|hey, what's up? <EOM>"],
    'coach.train': ['1|coach|tacos tonight? <EOM>', '0|coach|yes!! 7pm <EOM>'],
  };
  const lines = fs.readFileSync(fixture('openai', 'sharegpt.jsonl'), 'utf8').trim().split(/\r?\n/);
  const dir = t.testdir({ 'sharegpt.json': `[\n${lines.join(',\n')}\n]\n` });
  for (const file of [fixture('openai', 'sharegpt.jsonl'), path.join(dir, 'sharegpt.json')]) {
    const name = path.basename(file);
    const { files, summary } = await importInto(path.join(dir, `out-${name.replace('.', '-')}`), [file]);
    t.same(files, expected, name);
    t.same(summary.formats, { sharegpt: 1 }, name);
    t.same(summary.dropped, {}, `${name}: the system message that names the audience is no message`);
    t.same(summary.warnings, [], `${name}: no other system message to warn of`);
  }
});

t.test('in a folder .jsonl files are read; JSONL of documents is sent to bin/train', async (t) => {
  const conversation = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n';
  const documents = '{"text": "Once upon a time"}\n{"text": "The end"}\n';
  const { files, summary } = await importFolder(t, { 'chat.jsonl': conversation, 'notes.jsonl': documents }, {});
  t.same(files, { 'assistant.train': ['1|assistant|hi <EOM>', '0|assistant|hello <EOM>'] });
  t.match(summary.warnings, [/^skipped 1 file in the folders and zips that is no chat export: .*notes\.jsonl$/]);
  const dir = t.testdir({ 'notes.jsonl': documents });
  await t.rejects(importChats([path.join(dir, 'notes.jsonl')], { out: path.join(dir, 'out') }), {
    message: new RegExp(`^${path.join(dir, 'notes.jsonl')}:1: JSONL of documents \\(\\{"text": \\.\\.\\.\\} a line\\), which bin/train --dataset trains on as it is, not `),
  });
});

t.test('bad lines stop the import with file:line', async (t) => {
  const dir = t.testdir({
    'cut.jsonl': '{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": [{"role": "user", "con\n',
    'role.jsonl': '{"messages": [{"role": "user", "content": "hi"}]}\n\n{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hey"}]}\n',
    'from.jsonl': '{"conversations": [{"from": "human", "value": "hi"}]}\n{"conversations": "hi"}\n',
    'list.json': '[{"conversations": [{"from": "human", "value": "hi"}]}, {"conversations": [{"from": "wizard", "value": "hey"}]}]',
  });
  const rejects = (name: string, message: string | RegExp): Promise<unknown> => t.rejects(importChats([path.join(dir, name)], { out: path.join(dir, 'out') }), { message }, name);
  await rejects('cut.jsonl', new RegExp(`^${path.join(dir, 'cut.jsonl')}:2: not valid JSON \\(a JSONL file holds a conversation a line\\): `));
  await rejects('role.jsonl', `${path.join(dir, 'role.jsonl')}:3: messages[1]: "role" must be one of "user", "assistant", "system", "developer", "tool", "function", got "bot"`);
  await rejects('from.jsonl', `${path.join(dir, 'from.jsonl')}:2: not a conversation: {"conversations": [{"from": "human", "value": "..."}, ...]} expected`);
  await rejects('list.json', `${path.join(dir, 'list.json')}: conversation 2: conversations[0]: "from" must be one of "human", "user", "gpt", "assistant", "system", "function_call", "observation", got "wizard"`);
});

t.test('--format openai reads a conversation written over several lines', async (t) => {
  const dir = t.testdir({ 'one.json': JSON.stringify({ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] }, null, 2) });
  const detected = await importInto(path.join(dir, 'detected'), [path.join(dir, 'one.json')]);
  const forced = await importInto(path.join(dir, 'forced'), [path.join(dir, 'one.json')], { format: 'openai' });
  t.same(detected.files, { 'assistant.train': ['1|assistant|hi <EOM>', '0|assistant|hello <EOM>'] });
  t.same(forced.files, detected.files);
});
