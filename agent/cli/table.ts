/** A plain text table: left-aligned text, right-aligned numbers, a rule under the header. */
export function formatTable(header: string[], rows: (string | number | bigint)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] !== 'string'));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string =>
    r.map((c, i) => (numeric[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n') + '\n';
}
