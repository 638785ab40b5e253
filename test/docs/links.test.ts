// Every relative link of the repository's Markdown (README.md, docs/, the READMEs beside the code, bench/, models/,
// examples/, the fixtures' notes) leads somewhere: `[text](path)` to a file or folder that exists inside the
// repository, and `[text](path#anchor)` or `[text](#anchor)` to a heading of the Markdown file it names, slugged as
// GitHub slugs headings. External links (http, https, mailto...) are not fetched: the tests need no network.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';

const ROOT = path.resolve(__dirname, '..', '..', '..');
// Folders that hold no documentation of the repository: dependencies, build outputs, tap's state, what the
// commands write into a clone (training runs, samples), and the chat apps' exports the import tests read (a
// signal-export chat.md links to media the fixture leaves out).
const SKIPPED = new Set(['node_modules', 'dist', 'build', 'prebuilds', 'checkpoint', 'samples', 'exports']);

// The Markdown files under `dir`, sorted, relative to `root`.
function markdownFiles(root: string, dir = root): string[] {
  const found: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue; // .git, .tap
    const full = path.join(dir, entry.name);
    if (entry.isDirectory() && !SKIPPED.has(entry.name)) found.push(...markdownFiles(root, full));
    else if (entry.isFile() && /\.(md|markdown)$/i.test(entry.name)) found.push(path.relative(root, full));
  }
  return found.sort();
}

// `text` with every character of `from` to `to` made a space, line breaks kept, so that offsets and line numbers
// stay those of the file.
function blank(text: string, from: number, to: number): string {
  return text.slice(0, from) + text.slice(from, to).replace(/[^\n]/g, ' ') + text.slice(to);
}

// The Markdown with its fenced code blocks and HTML comments blanked out.
function withoutBlocks(markdown: string): string {
  let text = markdown;
  const lines = text.split('\n');
  let offset = 0;
  let fence: { char: string; length: number; start: number } | null = null;
  for (const line of lines) {
    const open = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (fence === null && open) fence = { char: open[1][0], length: open[1].length, start: offset };
    else if (fence !== null && new RegExp(`^ {0,3}${fence.char === '`' ? '`' : '~'}{${fence.length},}\\s*$`).test(line)) {
      text = blank(text, fence.start, offset + line.length);
      fence = null;
    }
    offset += line.length + 1;
  }
  if (fence !== null) text = blank(text, fence.start, text.length);
  for (const m of [...text.matchAll(/<!--[\s\S]*?-->/g)]) text = blank(text, m.index ?? 0, (m.index ?? 0) + m[0].length);
  return text;
}

// The Markdown with what is not prose blanked out: fenced code blocks, HTML comments, and inline code spans (which
// end at the paragraph's end).
function proseOnly(markdown: string): string {
  let text = withoutBlocks(markdown);
  for (const m of [...text.matchAll(/(`+)(?!`)(?:(?!\n[ \t]*\n)[\s\S])*?[^`]\1(?!`)/g)]) {
    text = blank(text, m.index ?? 0, (m.index ?? 0) + m[0].length);
  }
  return text;
}

// A heading's text as GitHub renders it, then its slug as GitHub makes it (github-slugger): lowercase, every
// character but letters, marks, digits, spaces, '-' and '_' removed, each space a '-'.
function slug(heading: string): string {
  const rendered = heading
    .replace(/!\[([^\]]*)\]\([^)]*\)/g, '$1') // images: their alt text
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1') // links: their text
    .replace(/\[([^\]]*)\]\[[^\]]*\]/g, '$1') // reference links
    .replace(/<[^>]+>/g, '') // HTML tags
    .split(/(`+[^`]*`+)/) // code spans keep their underscores; elsewhere `_` around words is emphasis
    .map((part) => (part.startsWith('`') ? part : part.replace(/(^|[^\p{L}\p{N}])_+(?=\S)/gu, '$1').replace(/(?<=\S)_+(?=$|[^\p{L}\p{N}_])/gu, '')))
    .join('')
    .trim();
  return rendered.toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-');
}

// Every anchor a Markdown file has: its headings' slugs (a repeated one numbered -1, -2... as GitHub does), and the
// ids and names of its HTML elements.
function anchors(markdown: string): Set<string> {
  const text = withoutBlocks(markdown);
  const lines = text.split('\n');
  const found = new Set<string>();
  const occurrences = new Map<string, number>();
  const add = (heading: string): void => {
    const base = slug(heading);
    let result = base;
    while (occurrences.has(result)) {
      const count = (occurrences.get(base) ?? 0) + 1;
      occurrences.set(base, count);
      result = `${base}-${count}`;
    }
    occurrences.set(result, 0);
    found.add(result);
  };
  let paragraph: string[] = [];
  for (const line of lines) {
    const atx = /^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/.exec(line);
    if (atx) {
      add(atx[1] ?? '');
      paragraph = [];
    } else if (paragraph.length > 0 && /^ {0,3}(=+|-+)[ \t]*$/.test(line)) {
      add(paragraph.join(' ')); // a setext heading: the paragraph above the underline
      paragraph = [];
    } else if (line.trim() === '') paragraph = [];
    else paragraph.push(line.trim());
  }
  for (const m of text.matchAll(/<[a-z][^>]*\s(?:id|name)\s*=\s*["']([^"']+)["']/gi)) found.add(m[1]);
  return found;
}

interface Link {
  line: number;
  text: string;
  target: string;
}

// Every inline link and image `[text](target "title")` (nested ones too: an image inside a link) and every
// reference definition `[label]: target`, outside code.
function links(markdown: string): Link[] {
  const text = proseOnly(markdown);
  const lineOf = (index: number): number => text.slice(0, index).split('\n').length;
  const found: Link[] = [];
  const inline = /!?\[((?:[^[\]]|\[(?:[^[\]]|\[[^[\]]*\])*\])*)\]\(\s*(<[^>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)/g;
  const scan = (from: number, to: number): void => {
    const part = text.slice(from, to);
    for (const m of [...part.matchAll(inline)]) {
      const at = from + (m.index ?? 0);
      found.push({ line: lineOf(at), text: m[1].replace(/\s+/g, ' '), target: m[2].replace(/^<|>$/g, '') });
      const textStart = at + m[0].indexOf('[') + 1;
      scan(textStart, textStart + m[1].length);
    }
  };
  scan(0, text.length);
  for (const m of text.matchAll(/^ {0,3}\[([^\]\n]+)\]:[ \t]*(<[^>\n]*>|\S+)/gm)) {
    found.push({ line: lineOf(m.index ?? 0), text: m[1], target: m[2].replace(/^<|>$/g, '') });
  }
  return found.sort((a, b) => a.line - b.line);
}

// What is wrong with each relative link of the Markdown file `file` (relative to `root`), as "file:line: [text](target):
// why"; nothing for external links.
function brokenLinks(root: string, file: string): string[] {
  const problems: string[] = [];
  const source = path.join(root, file);
  const anchorCache = new Map<string, Set<string>>();
  const anchorsOf = (full: string): Set<string> => {
    let set = anchorCache.get(full);
    if (!set) anchorCache.set(full, (set = anchors(fs.readFileSync(full, 'utf8'))));
    return set;
  };
  for (const link of links(fs.readFileSync(source, 'utf8'))) {
    const where = `${file}:${link.line}: [${link.text}](${link.target})`;
    const { target } = link;
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) continue; // http(s), mailto...: not fetched
    if (target === '') {
      problems.push(`${where}: an empty link`);
      continue;
    }
    const hash = target.indexOf('#');
    const pathPart = (hash < 0 ? target : target.slice(0, hash)).replace(/\?.*$/, '');
    const anchor = hash < 0 ? null : target.slice(hash + 1);
    let decoded: string;
    try {
      decoded = decodeURIComponent(pathPart);
    } catch {
      problems.push(`${where}: a path that is not valid percent-encoding`);
      continue;
    }
    const full = decoded === '' ? source : decoded.startsWith('/') ? path.join(root, decoded) : path.resolve(path.dirname(source), decoded);
    const inside = path.relative(root, full);
    if (inside.startsWith('..') || path.isAbsolute(inside)) {
      problems.push(`${where}: points outside the repository`);
      continue;
    }
    if (!fs.existsSync(full)) {
      problems.push(`${where}: ${inside} does not exist`);
      continue;
    }
    if (anchor === null) continue;
    if (fs.statSync(full).isFile() && /\.(md|markdown)$/i.test(full)) {
      let wanted: string;
      try {
        wanted = decodeURIComponent(anchor);
      } catch {
        wanted = anchor;
      }
      if (!anchorsOf(full).has(wanted)) problems.push(`${where}: ${inside} has no heading #${anchor}`);
    } else if (!(fs.statSync(full).isFile() && /^L\d+(-L\d+)?$/.test(anchor))) {
      problems.push(`${where}: #${anchor} is no anchor of ${inside} (only Markdown headings and a file's #L<line> are)`);
    }
  }
  return problems;
}

t.test('headings are slugged as GitHub slugs them', async (t) => {
  t.equal(slug('Quick start: a chatbot from chat logs'), 'quick-start-a-chatbot-from-chat-logs');
  t.equal(slug('Weights in memory: `--dtype`, `weight_dtype`, `weightDtype`'), 'weights-in-memory---dtype-weight_dtype-weightdtype');
  t.equal(slug('Importing chats: `bin/import-chat`'), 'importing-chats-binimport-chat');
  t.equal(slug('server_config.json'), 'server_configjson');
  t.equal(slug('GPUs (CUDA backend)'), 'gpus-cuda-backend');
  t.equal(slug('CPU decoding beside llama.cpp, same machine, same weights'), 'cpu-decoding-beside-llamacpp-same-machine-same-weights');
  t.equal(slug('See [the API](api.md) and _this_ **now**'), 'see-the-api-and-this-now');
  t.equal(slug('Café à la carte'), 'café-à-la-carte');
  t.same([...anchors('# A\n\n## A\n\n```\n# not a heading\n```\n\nB\n---\n\n<a name="here"></a>\n## A ##\n')], ['a', 'a-1', 'b', 'a-2', 'here']);
});

t.test('a broken link, a missing heading and a path outside the repository are found; code and the web are left alone', async (t) => {
  const root = t.testdir({
    'README.md': [
      '# Top',
      '',
      'Good: [docs](docs/guide.md), [a section](docs/guide.md#second-part), [here](#top), [folder](docs/),',
      '[line](docs/code.ts#L3), ![image](docs/pic.png "a title"), [web](https://example.com/nowhere.md), [mail](mailto:a@b.c).',
      'Broken: [gone](docs/gone.md), [no heading](docs/guide.md#third-part), [not here](#bottom),',
      '[outside](../outside.md), [code anchor](docs/code.ts#main).',
      '',
      '`[in code](nowhere.md)`',
      '',
      '```',
      '[in a block](nowhere.md)',
      '```',
      '',
      '[ref]: docs/missing.md',
    ].join('\n'),
    docs: { 'guide.md': '# Guide\n\n## Second part\n', 'code.ts': '', 'pic.png': '' },
  });
  t.same(markdownFiles(root), ['README.md', path.join('docs', 'guide.md')]);
  t.same(brokenLinks(root, 'README.md'), [
    'README.md:5: [gone](docs/gone.md): docs/gone.md does not exist',
    'README.md:5: [no heading](docs/guide.md#third-part): docs/guide.md has no heading #third-part',
    'README.md:5: [not here](#bottom): README.md has no heading #bottom',
    'README.md:6: [outside](../outside.md): points outside the repository',
    'README.md:6: [code anchor](docs/code.ts#main): #main is no anchor of docs/code.ts (only Markdown headings and a file\'s #L<line> are)',
    'README.md:14: [ref](docs/missing.md): docs/missing.md does not exist',
  ]);
});

t.test('every relative link of the repository\'s Markdown leads to a file and heading that exist', async (t) => {
  const files = markdownFiles(ROOT);
  for (const file of ['README.md', 'docs/compatibility.md', 'lib/server/README.md', 'bench/README.md', 'bench/NOTES.md', 'models/README.md']) {
    t.ok(files.includes(file), `${file} is read`);
  }
  t.notOk(files.some((f) => f.split(path.sep).some((part) => part === 'node_modules' || part === 'dist')), 'no dependency or build output');
  let count = 0;
  const problems: string[] = [];
  for (const file of files) {
    count += links(fs.readFileSync(path.join(ROOT, file), 'utf8')).length;
    problems.push(...brokenLinks(ROOT, file));
  }
  t.ok(count > 0, `${count} links in ${files.length} Markdown files`);
  t.same(problems, [], 'no broken link');
});
