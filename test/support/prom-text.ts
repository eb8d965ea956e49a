/**
 * A small parser of the Prometheus text exposition format (0.0.4), strict enough to catch a malformed
 * line: `# HELP name text`, `# TYPE name type`, and `name{label="value",...} value [timestamp]`.
 */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromExposition {
  samples: PromSample[];
  types: Map<string, string>;
  help: Map<string, string>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;

function parseValue(text: string, line: string): number {
  // Prometheus reads values with Go's strconv.ParseFloat: NaN and Inf in any case.
  if (/^\+?inf$/i.test(text)) return Infinity;
  if (/^-inf$/i.test(text)) return -Infinity;
  if (/^nan$/i.test(text)) return NaN;
  const value = Number(text);
  if (text === '' || Number.isNaN(value)) throw new Error(`bad sample value ${JSON.stringify(text)} in ${JSON.stringify(line)}`);
  return value;
}

function parseLabels(text: string, line: string): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let rest = text;
  if (!rest.startsWith('{')) return { labels, rest };
  rest = rest.slice(1);
  while (!rest.startsWith('}')) {
    const name = LABEL_NAME.exec(rest)?.[0];
    if (name === undefined || rest[name.length] !== '=' || rest[name.length + 1] !== '"') {
      throw new Error(`bad label in ${JSON.stringify(line)}`);
    }
    rest = rest.slice(name.length + 2);
    let value = '';
    for (;;) {
      const char = rest[0];
      if (char === undefined) throw new Error(`unterminated label value in ${JSON.stringify(line)}`);
      rest = rest.slice(1);
      if (char === '"') break;
      if (char === '\\') {
        const escaped = rest[0];
        rest = rest.slice(1);
        value += escaped === 'n' ? '\n' : escaped === '\\' ? '\\' : escaped === '"' ? '"' : `\\${escaped ?? ''}`;
      } else {
        value += char;
      }
    }
    if (name in labels) throw new Error(`label ${name} twice in ${JSON.stringify(line)}`);
    labels[name] = value;
    if (rest.startsWith(',')) rest = rest.slice(1);
    else if (!rest.startsWith('}')) throw new Error(`expected , or } in ${JSON.stringify(line)}`);
  }
  return { labels, rest: rest.slice(1) };
}

export function parsePromText(text: string): PromExposition {
  const out: PromExposition = { samples: [], types: new Map(), help: new Map() };
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const match = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) ?(.*)$/.exec(line);
      if (!match) continue; // a plain comment
      const [, kind = '', name = '', rest = ''] = match;
      if (kind === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest)) throw new Error(`bad TYPE line ${JSON.stringify(line)}`);
        out.types.set(name, rest);
      } else {
        out.help.set(name, rest);
      }
      continue;
    }
    const name = NAME.exec(line)?.[0];
    if (name === undefined) throw new Error(`bad sample line ${JSON.stringify(line)}`);
    const { labels, rest } = parseLabels(line.slice(name.length), line);
    const fields = rest.trim().split(/\s+/);
    if (!rest.startsWith(' ') || fields.length < 1 || fields.length > 2) throw new Error(`bad sample line ${JSON.stringify(line)}`);
    out.samples.push({ name, labels, value: parseValue(fields[0] ?? '', line) });
  }
  return out;
}

/** The value of the one sample with this name and (at least) these labels; undefined if none. */
export function sampleValue(exposition: PromExposition, name: string, labels: Record<string, string> = {}): number | undefined {
  const matches = exposition.samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (matches.length > 1) throw new Error(`${matches.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return matches[0]?.value;
}
