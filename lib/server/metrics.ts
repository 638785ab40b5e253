// Prometheus metrics in the text exposition format (version 0.0.4), written out by hand: three metric kinds
// with labels are all a server needs, and a dependency would bring a registry of global state with it.
type Labels = Record<string, string>;

function labelText(labels: Labels, extra?: [string, string]): string {
  const pairs = Object.entries(labels);
  if (extra) pairs.push(extra);
  if (pairs.length === 0) return '';
  const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
  return `{${pairs.map(([k, v]) => `${k}="${esc(v)}"`).join(',')}}`;
}

function keyOf(labels: Labels): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)));
}

function num(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return Number.isNaN(v) ? 'NaN' : String(v);
}

interface Metric {
  render(): string;
}

abstract class Labelled<S> implements Metric {
  protected readonly series = new Map<string, { labels: Labels; value: S }>();
  constructor(readonly name: string, readonly help: string, readonly type: string) {}
  protected get(labels: Labels, fresh: () => S): S {
    const key = keyOf(labels);
    let s = this.series.get(key);
    if (!s) {
      s = { labels: { ...labels }, value: fresh() };
      this.series.set(key, s);
    }
    return s.value;
  }
  protected abstract lines(labels: Labels, value: S): string[];
  render(): string {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    for (const { labels, value } of this.series.values()) out.push(...this.lines(labels, value));
    return out.join('\n');
  }
}

export class Counter extends Labelled<{ v: number }> {
  constructor(name: string, help: string) {
    super(name, help, 'counter');
  }
  inc(labels: Labels = {}, by = 1): void {
    this.get(labels, () => ({ v: 0 })).v += by;
  }
  protected lines(labels: Labels, value: { v: number }): string[] {
    return [`${this.name}${labelText(labels)} ${num(value.v)}`];
  }
}

type Collect = () => { labels: Labels; value: number }[];

// A metric whose series are read when scraped.
abstract class Sampled implements Metric {
  constructor(readonly name: string, readonly help: string, private readonly type: string, private readonly collect: Collect) {}
  render(): string {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    for (const { labels, value } of this.collect()) out.push(`${this.name}${labelText(labels)} ${num(value)}`);
    return out.join('\n');
  }
}

export class Gauge extends Sampled {
  constructor(name: string, help: string, collect: Collect) {
    super(name, help, 'gauge', collect);
  }
}

// A counter that something else keeps (the model registry counts its loads), read when scraped.
export class SampledCounter extends Sampled {
  constructor(name: string, help: string, collect: Collect) {
    super(name, help, 'counter', collect);
  }
}

interface HistogramState {
  counts: number[];  // per bucket, not cumulative
  sum: number;
  count: number;
}

export class Histogram extends Labelled<HistogramState> {
  constructor(name: string, help: string, readonly buckets: readonly number[]) {
    super(name, help, 'histogram');
  }
  observe(labels: Labels, value: number): void {
    const s = this.get(labels, () => ({ counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 }));
    const i = this.buckets.findIndex((b) => value <= b);
    if (i >= 0) s.counts[i]++;
    s.sum += value;
    s.count++;
  }
  protected lines(labels: Labels, s: HistogramState): string[] {
    const out: string[] = [];
    let cumulative = 0;
    this.buckets.forEach((b, i) => {
      cumulative += s.counts[i];
      out.push(`${this.name}_bucket${labelText(labels, ['le', num(b)])} ${cumulative}`);
    });
    out.push(`${this.name}_bucket${labelText(labels, ['le', '+Inf'])} ${s.count}`);
    out.push(`${this.name}_sum${labelText(labels)} ${num(s.sum)}`);
    out.push(`${this.name}_count${labelText(labels)} ${s.count}`);
    return out;
  }
}

export class MetricsRegistry {
  private readonly metrics: Metric[] = [];
  add<M extends Metric>(metric: M): M {
    this.metrics.push(metric);
    return metric;
  }
  render(): string {
    return `${this.metrics.map((m) => m.render()).join('\n')}\n`;
  }
}

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
