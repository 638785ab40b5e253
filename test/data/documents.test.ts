// CSV (gpt-2-simple's) and JSONL (Hugging Face datasets') training data: their documents, and the tokens a dataset
// of them gives against the same documents in a text file, separated by <|endoftext|>; the header row; chat
// documents checked as chat files are, by file:line; and the errors that stop a run.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ChatChecker } from '../../lib/data/chat_check';
import { loadDataset } from '../../lib/data/dataset';
import { documentFileKind, fileDocuments } from '../../lib/data/documents';
import { FIXTURES, allTokens, tokenizer } from './helpers';

const DOCUMENTS = path.join(FIXTURES, 'documents');

const STORIES = [
  'Once upon a time, there was a fox.',
  'She said "hello" and left.',
  'A poem:\nroses are red\nviolets are blue',
  'plain row without quotes',
  'café and 東京',
  'last row, without a line break',
];

function fixture(name: string): string {
  return path.join(DOCUMENTS, name);
}

function documentsOf(file: string): { texts: string[]; lines: number[]; warnings: string[] } {
  const { documents, warnings } = fileDocuments(file, documentFileKind(file), fs.readFileSync(file, 'utf8'));
  return { texts: documents.map((d) => d.text), lines: documents.map((d) => d.line), warnings };
}


t.test('the kind is told by the extension, in any case', async (t) => {
  t.same(['a.csv', 'b.CSV', 'c.jsonl', 'd.ndjson', 'e.JSONL', 'f.txt', 'g.train', 'h.json', 'csv'].map(documentFileKind), ['csv', 'csv', 'jsonl', 'jsonl', 'jsonl', 'text', 'text', 'text', 'text']);
});

t.test("CSV: each row's first column a document, the header skipped, RFC 4180 quoting, CRLF, blank lines", async (t) => {
  const csv = documentsOf(fixture('stories.csv'));
  t.same(csv.texts, STORIES, 'quotes doubled and line breaks inside quotes kept; other columns left out; CRLF ends a row');
  t.same(csv.lines, [2, 3, 4, 8, 9, 10], 'each document at the line its row starts on, the blank line 7 skipped');
  t.same(csv.warnings, []);
  t.same(documentsOf(fixture('chats.csv')).lines, [2, 4]);
});

t.test('JSONL: each line\'s "text" a document, blank lines skipped, other fields left out', async (t) => {
  const jsonl = documentsOf(fixture('stories.jsonl'));
  t.same(jsonl.texts, STORIES);
  t.same(jsonl.lines, [1, 2, 4, 5, 6, 7]);
  t.same(jsonl.warnings, []);
});

t.test('CSV and JSONL train on the tokens of their documents in a text file, separated by <|endoftext|>', async (t) => {
  const text = await loadDataset(fixture('stories.txt'), { tokenizer });
  for (const name of ['stories.csv', 'stories.jsonl']) {
    const data = await loadDataset(fixture(name), { tokenizer });
    t.same(allTokens(data.source), allTokens(text.source), name);
    t.equal(data.chat, null, `${name}: prose is not checked as chat`);
    t.same(data.warnings, []);
  }
  // Documents combine as text files do: with --combine 1, a chunk each.
  const enc = (s: string): number[] => [...tokenizer.encode(s, { allowSpecial: true })];
  for (const name of ['stories.csv', 'stories.jsonl']) {
    const data = await loadDataset(fixture(name), { tokenizer, combine: 1 });
    t.same(allTokens(data.source), STORIES.map(enc), `${name}, --combine 1`);
  }
  // And with the text files of a folder, in the folder's order, joined the same way.
  const dir = t.testdir({ 'a.txt': 'first', 'b.csv': 'text\nsecond\nthird\n', 'c.jsonl': '{"text": "fourth"}\n' });
  const folder = await loadDataset(dir, { tokenizer });
  t.same(allTokens(folder.source), [enc('first<|endoftext|>second<|endoftext|>third<|endoftext|>fourth<|endoftext|>')]);
});

t.test('the first row is the header whatever it holds, as gpt-2-simple reads it; blank documents are warned of', async (t) => {
  const dir = t.testdir({
    'no-header.csv': 'a first document\nthe second\n',
    'header-only.csv': 'text\n',
    'blanks.csv': 'text,n\n,1\n"  ",2\nkept,3\n',
    'blanks.jsonl': '{"text": ""}\n{"text": "kept"}\n',
  });
  t.same(documentsOf(path.join(dir, 'no-header.csv')).texts, ['the second'], 'a CSV without a header loses its first row');
  t.same(documentsOf(path.join(dir, 'header-only.csv')).warnings, [`${path.join(dir, 'header-only.csv')}: no documents (only the header row), nothing to train on`]);
  const blanks = documentsOf(path.join(dir, 'blanks.csv'));
  t.same(blanks.texts, ['kept']);
  t.same(blanks.warnings, [`${path.join(dir, 'blanks.csv')}: 2 rows whose first column is empty, not trained on`]);
  t.same(documentsOf(path.join(dir, 'blanks.jsonl')).warnings, [`${path.join(dir, 'blanks.jsonl')}: 1 line whose "text" is empty, not trained on`]);
  const data = await loadDataset(path.join(dir, 'blanks.csv'), { tokenizer });
  t.same(data.warnings, blanks.warnings, 'the warnings reach the dataset, which bin/train --check fails on');
});

t.test('a document in the chat format is checked as a chat file is, its lines named by the file\'s', async (t) => {
  for (const [name, line] of [['chats.csv', 5], ['chats.jsonl', 2]] as const) {
    const data = await loadDataset(fixture(name), { tokenizer });
    const chat = data.chat;
    t.ok(chat, name);
    t.equal(chat?.files, 1, `${name}: one file, however many documents`);
    t.equal(chat?.messages, 3);
    t.same(chat?.issues.map((i) => [i.file, i.line, i.text]), [[fixture(name), line, '2|sam|yes <EOM>']], `${name}: the malformed line at the file's line`);
  }
  // The checker alone: a document's line 2 is its file's line 2 + (start - 1), or its JSONL line.
  const checker = new ChatChecker();
  checker.add('a.csv', '1|mom|ok <EOM>\nbad', { line: 10, ownLines: true });
  checker.add('a.jsonl', '1|mom|ok <EOM>\nbad', { line: 7, ownLines: false });
  t.same(checker.summary().issues.map((i) => `${i.file}:${i.line}`), ['a.csv:11', 'a.jsonl:7']);
  t.equal(checker.summary().files, 2);
});

t.test('malformed CSV and JSONL stop the load with file:line', async (t) => {
  await t.rejects(loadDataset(fixture('unclosed.csv'), { tokenizer }), { message: `${fixture('unclosed.csv')}:3: a quoted field of the row that starts here is never closed (a quote inside quotes is written "")` });
  await t.rejects(loadDataset(fixture('not-json.jsonl'), { tokenizer }), { message: new RegExp(`^${fixture('not-json.jsonl')}:2: not JSON \\(a JSONL file holds a JSON object a line\\): `) });
  await t.rejects(loadDataset(fixture('no-text.jsonl'), { tokenizer }), { message: `${fixture('no-text.jsonl')}:3: each line must be a JSON object whose "text" field is a string (a document), got an object without "text"` });
  const dir = t.testdir({ 'number.jsonl': '{"text": 5}\n', 'list.jsonl': '["a"]\n', 'null.jsonl': 'null\n' });
  await t.rejects(loadDataset(path.join(dir, 'number.jsonl'), { tokenizer }), { message: /number\.jsonl:1: .*got an object whose "text" is no string$/ });
  await t.rejects(loadDataset(path.join(dir, 'list.jsonl'), { tokenizer }), { message: /list\.jsonl:1: .*got a list$/ });
  await t.rejects(loadDataset(path.join(dir, 'null.jsonl'), { tokenizer }), { message: /null\.jsonl:1: .*got null$/ });
});

t.test('chat fine-tuning JSONL is sent to bin/import-chat', async (t) => {
  const file = fixture('openai.jsonl');
  await t.rejects(loadDataset(file, { tokenizer }), {
    message: `${file}:1: a conversation in OpenAI's chat fine-tuning format ("messages"), not a document: make it chat training data with bin/import-chat ${file}, then train on the .train files it writes`,
  });
  const dir = t.testdir({ 'sharegpt.jsonl': '{"conversations": [{"from": "human", "value": "Hi"}]}\n' });
  await t.rejects(loadDataset(path.join(dir, 'sharegpt.jsonl'), { tokenizer }), { message: /sharegpt\.jsonl:1: a conversation in ShareGPT's format \("conversations"\), not a document: make it chat training data with bin\/import-chat/ });
});
