// Stop sequences in a text that grows at its end, searched for as it grows. Searching the whole end of the text
// again after every token cost each token the text's length times the stops' (a long stop that the text nearly
// matched held the event loop for tens of milliseconds a token); here each stop keeps how much of it the text's end
// matches (Knuth-Morris-Pratt), so that a character of new text costs each stop a constant amount on average,
// however long the stops are.
export class StopSearch {
  // fallback[i][k]: the longest proper prefix of stop i's first k + 1 characters that also ends them, where its
  // match continues when the next character breaks a match of those k + 1.
  private readonly fallback: Int32Array[];
  // matched[i]: how many of stop i's first characters the end of the text read matches.
  private readonly matched: Int32Array;
  private read = 0;

  constructor(private readonly stops: readonly string[]) {
    this.fallback = stops.map(fallbackOf);
    this.matched = new Int32Array(stops.length);
  }

  // Reads `text` past what was read of it before (it only grows between calls). Returns where the earliest of the
  // stops that the new characters complete begins, or -1 when they complete none.
  find(text: string): number {
    const from = this.read;
    this.read = text.length;
    let at = -1;
    this.stops.forEach((stop, i) => {
      const fallback = this.fallback[i];
      let k = this.matched[i];
      for (let p = from; p < text.length; p++) {
        const c = text.charCodeAt(p);
        while (k > 0 && stop.charCodeAt(k) !== c) k = fallback[k - 1];
        if (stop.charCodeAt(k) === c) k++;
        if (k === stop.length) {
          // A stop's first occurrence is its earliest; the text is cut there, so nothing past it is read.
          const start = p + 1 - stop.length;
          if (at < 0 || start < at) at = start;
          break;
        }
      }
      this.matched[i] = k;
    });
    return at;
  }

  // The characters at the end of the text read that could begin a stop still to complete.
  get partial(): number {
    return this.matched.reduce((most, k) => Math.max(most, k), 0);
  }
}

function fallbackOf(stop: string): Int32Array {
  const fallback = new Int32Array(stop.length);
  for (let i = 1, k = 0; i < stop.length; i++) {
    while (k > 0 && stop.charCodeAt(i) !== stop.charCodeAt(k)) k = fallback[k - 1];
    if (stop.charCodeAt(i) === stop.charCodeAt(k)) k++;
    fallback[i] = k;
  }
  return fallback;
}
