/**
 * What the demo prints: progress as it goes (stdout; stderr with --json, where stdout carries only the
 * summary), one small table per step, each step's verdict (expected vs seen when it failed), and the
 * one-screen summary (a table, or JSON {steps: [{name, ok, expected, seen, figures}]}).
 */
import { formatTable } from '../cli/table.js';

/** The numbers behind a step's verdict (what tests assert). */
export type Figure = number | string | boolean | Record<string, number>;
export type Figures = Record<string, Figure>;

/** One expectation of a step: what should hold and what was seen. */
export interface Check {
  ok: boolean;
  expected: string;
  seen: string;
}

export interface StepResult {
  name: string;
  ok: boolean;
  /** one line each, short enough for the summary table */
  expected: string;
  seen: string;
  figures: Figures;
  /** each expectation on its own, for the step's verdict */
  checks: Check[];
}

export function check(ok: boolean, expected: string, seen: string): Check {
  return { ok, expected, seen };
}

export function stepResult(name: string, summary: { expected: string; seen: string }, checks: Check[], figures: Figures): StepResult {
  return { name, ok: checks.length > 0 && checks.every((c) => c.ok), ...summary, figures, checks };
}

/** A step that could not run to its end (a command failed, the run was interrupted). */
export function failedStep(name: string, expected: string, error: unknown, figures: Figures = {}): StepResult {
  const seen = error instanceof Error ? error.message.split('\n')[0] ?? error.message : String(error);
  return { name, ok: false, expected, seen, figures, checks: [check(false, expected, seen)] };
}

const HEARTBEAT_MS = 1500;

/** Progress lines; during long waits a heartbeat line says what is still under way. */
export class Output {
  private lastWrite = Date.now();

  constructor(private readonly stream: NodeJS.WritableStream) {}

  line(text = ''): void {
    this.stream.write(`${text}\n`);
    this.lastWrite = Date.now();
  }

  /** Each line of `text`, indented. */
  block(text: string, indent = '  '): void {
    for (const l of text.replace(/\n$/, '').split('\n')) this.line(`${indent}${l}`.trimEnd());
  }

  table(header: string[], rows: (string | number)[][], indent = '  '): void {
    this.block(formatTable(header, rows), indent);
  }

  /** Runs `work`; whenever nothing was printed for 1.5 s, prints `… what()` with the time so far. */
  async during<T>(what: () => string, work: Promise<T>): Promise<T> {
    const started = Date.now();
    const timer = setInterval(() => {
      if (Date.now() - this.lastWrite >= HEARTBEAT_MS) this.line(`  … ${what()} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    }, 250);
    try {
      return await work;
    } finally {
      clearInterval(timer);
    }
  }

  verdict(result: StepResult): void {
    if (result.ok) {
      this.line(`  ✔ ${result.seen}`);
      return;
    }
    for (const c of result.checks.filter((x) => !x.ok)) this.line(`  ✘ expected ${c.expected}; saw ${c.seen}`);
  }
}

const SUMMARY_SEEN_WIDTH = 48;

/** One line per step; a long `seen` (a failure's message) is cut here, the ✘ lines have it whole. */
export function summaryTable(results: StepResult[]): string {
  const cut = (text: string): string => (text.length > SUMMARY_SEEN_WIDTH ? `${text.slice(0, SUMMARY_SEEN_WIDTH - 1)}…` : text);
  return formatTable(
    ['step', 'expected', 'seen', 'ok'],
    results.map((r, i) => [`${i + 1} ${r.name}`, r.expected, cut(r.seen), r.ok ? 'ok' : 'FAILED']),
  );
}

export function summaryJson(results: StepResult[]): string {
  return `${JSON.stringify({ steps: results.map(({ name, ok, expected, seen, figures }) => ({ name, ok, expected, seen, figures })) }, null, 2)}\n`;
}

/** "b1 21 · b2 19 · b3 20" */
export function shares(byBackend: Record<string, number>, names: string[]): string {
  return names.map((n) => `${n} ${byBackend[n] ?? 0}`).join(' · ');
}

/** Rows backend | requests | share for a client report. */
export function shareRows(byBackend: Record<string, number>, names: string[]): (string | number)[][] {
  const total = names.reduce((sum, n) => sum + (byBackend[n] ?? 0), 0);
  return names.map((n) => {
    const count = byBackend[n] ?? 0;
    return [n, count, total > 0 ? `${Math.round((100 * count) / total)}%` : '-'];
  });
}
