/**
 * Benchmark results, the same way for every suite: bench/results/<suite>.json (machine-readable:
 * each figure with its unit, parameters and the peer it was compared with in the same run),
 * <suite>.md (a table) and <suite>.svg (value beside peer value, one row per figure).
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem, arch, platform } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BenchFigure {
  name: string;
  value: number;
  unit: string;
  /** What `value` was compared with in the same run (another implementation, or theory). */
  peer?: string;
  peerValue?: number;
  /** value / peerValue, when that comparison means something. */
  ratio?: number;
  params: Record<string, string | number>;
}

export interface BenchReport {
  suite: string;
  date: string;
  host: { cpus: number; cpuModel: string; node: string; kernel: string; platform: string; arch: string; memoryBytes: number };
  figures: BenchFigure[];
}

export interface WriteBenchReportOptions {
  /** Where the files go; default bench/results/ in the repository. */
  dir?: string;
  /** Print the markdown table to stdout (default true). */
  print?: boolean;
}

/** The repository root: the nearest directory above this module holding package.json. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  return dir;
}

export function writeBenchReport(suite: string, figures: BenchFigure[], options: WriteBenchReportOptions = {}): BenchReport {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(suite)) throw new Error(`bench suite name ${JSON.stringify(suite)} must be [a-z0-9-]`);
  const cpuList = cpus();
  const report: BenchReport = {
    suite,
    date: new Date().toISOString(),
    host: {
      cpus: cpuList.length,
      cpuModel: cpuList[0]?.model ?? 'unknown',
      node: process.version,
      kernel: release(),
      platform: platform(),
      arch: arch(),
      memoryBytes: totalmem(),
    },
    figures,
  };
  const dir = options.dir ?? join(repoRoot(), 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const markdown = renderMarkdown(report);
  writeFileSync(join(dir, `${suite}.json`), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(dir, `${suite}.md`), markdown);
  writeFileSync(join(dir, `${suite}.svg`), renderSvg(report));
  if (options.print ?? true) process.stdout.write(`\n${markdown}\nwritten: ${join(dir, suite)}.{json,md,svg}\n`);
  return report;
}

/** Four significant digits, without exponent for the magnitudes benchmarks produce. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return value.toLocaleString('en-US');
  const abs = Math.abs(value);
  const digits = abs >= 1000 ? 0 : abs >= 1 ? 3 - Math.floor(Math.log10(abs)) : 4 - Math.floor(Math.log10(abs || 1));
  return value.toLocaleString('en-US', { maximumFractionDigits: Math.min(Math.max(digits, 0), 8) });
}

function formatParams(params: Record<string, string | number>): string {
  return Object.entries(params)
    .map(([key, value]) => `${key}=${value}`)
    .join(' ');
}

function renderMarkdown(report: BenchReport): string {
  const { host } = report;
  const escape = (text: string): string => text.replace(/\|/g, '\\|');
  const rows = report.figures.map((f) =>
    [
      escape(f.name),
      `${formatNumber(f.value)} ${f.unit}`,
      f.peer === undefined ? '' : escape(f.peer),
      f.peerValue === undefined ? '' : `${formatNumber(f.peerValue)} ${f.unit}`,
      f.ratio === undefined ? '' : formatNumber(f.ratio),
      escape(formatParams(f.params)),
    ].join(' | '),
  );
  return [
    `# Benchmark: ${report.suite}`,
    '',
    `${report.date} · ${host.cpus} × ${host.cpuModel} · Node ${host.node} · Linux ${host.kernel}`,
    '',
    '| figure | value | peer | peer value | ratio | parameters |',
    '| --- | ---: | --- | ---: | ---: | --- |',
    ...rows.map((row) => `| ${row} |`),
    '',
  ].join('\n');
}

function clip(text: string, chars: number): string {
  return text.length <= chars ? text : `${text.slice(0, chars - 1)}…`;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * One row per figure: the value bar, and the peer bar under it. Each row has its own scale (the larger
 * of the two) because figures carry different units; the numbers are printed beside the bars.
 */
function renderSvg(report: BenchReport): string {
  const labelWidth = 440;
  const barMax = 340;
  const width = labelWidth + barMax + 360;
  const barHeight = 14;
  const rowHeight = 52;
  const top = 56;
  const colors = { value: '#3b6fb6', peer: '#e08a2c' };
  const height = top + rowHeight * report.figures.length + 16;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="12" y="22" font-size="16" font-weight="bold">${escapeXml(`Benchmark: ${report.suite}`)}</text>`,
    `<rect x="12" y="32" width="12" height="12" fill="${colors.value}"/><text x="30" y="42">xlb (value)</text>`,
    `<rect x="120" y="32" width="12" height="12" fill="${colors.peer}"/><text x="138" y="42">peer</text>`,
  ];
  report.figures.forEach((figure, index) => {
    const y = top + index * rowHeight;
    const scale = Math.max(Math.abs(figure.value), Math.abs(figure.peerValue ?? 0)) || 1;
    const bar = (value: number, dy: number, color: string, text: string): void => {
      const w = Math.max(1, (Math.abs(value) / scale) * barMax);
      parts.push(`<rect x="${labelWidth}" y="${y + dy}" width="${w.toFixed(1)}" height="${barHeight}" fill="${color}"/>`);
      parts.push(`<text x="${(labelWidth + w + 6).toFixed(1)}" y="${y + dy + 11}">${escapeXml(text)}</text>`);
    };
    parts.push(`<text x="12" y="${y + 12}">${escapeXml(figure.name)}</text>`);
    parts.push(`<text x="12" y="${y + 28}" fill="#666666">${escapeXml(clip(formatParams(figure.params), 58))}</text>`);
    bar(figure.value, 0, colors.value, `${formatNumber(figure.value)} ${figure.unit}`);
    if (figure.peerValue !== undefined) {
      const ratio = figure.ratio === undefined ? '' : ` (ratio ${formatNumber(figure.ratio)})`;
      bar(figure.peerValue, barHeight + 4, colors.peer, `${figure.peer ?? 'peer'}: ${formatNumber(figure.peerValue)} ${figure.unit}${ratio}`);
    }
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
