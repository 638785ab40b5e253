// Lines of text (a string, or its bytes), for messages that place a problem at file:line. A line feed ends a line,
// as editors count them; a \r before it changes nothing.

// The 1-based line of an offset (characters of a string, bytes of a Buffer).
export function lineAt(text: string | Buffer, offset: number): number {
  return lineCounter(text)(offset);
}

// The lines of offsets asked for in increasing order, each counted on from the one before: a file's lines in one
// pass, however many of them are asked for.
export function lineCounter(text: string | Buffer): (offset: number) => number {
  let line = 1;
  let nextLineBreak = text.indexOf('\n');
  return (offset) => {
    for (; nextLineBreak >= 0 && nextLineBreak < offset; nextLineBreak = text.indexOf('\n', nextLineBreak + 1)) line++;
    return line;
  };
}
