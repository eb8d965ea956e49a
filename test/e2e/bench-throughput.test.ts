/**
 * `xlb bench throughput` as a user runs it, cut down to seconds: a couple of systems, tiny rounds. The
 * report is well formed (every system's figures > 0 in every case, the goals table, the chart) and goes
 * where --out says, not to bench/results; nothing is left behind — no namespace, agent, bpffs mount or
 * temp dir — after a run, and after a run stopped with Ctrl-C (SIGINT) in the middle.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { perfAvailable } from '../../bench/throughput/profile.js';
import { run } from '../../lb/datapath/topology.js';
import { repoRoot } from '../support/paths.js';
import { runNode } from '../support/run-node.js';
import { waitFor } from '../support/wait.js';

const CLI = join(repoRoot, 'dist', 'agent', 'cli', 'main.js');
const RESULTS = join(repoRoot, 'bench', 'results', 'throughput.json');
const TINY = ['--rounds', '2', '--packets', '20000', '--seconds', '0.2', '--warm-up', '2000'];

/** What a run may leave behind, each a set of names: namespaces, bpffs mounts, temp dirs, processes naming one. */
function leftovers(): { namespaces: Set<string>; mounts: Set<string>; dirs: Set<string>; processes: Set<string> } {
  const namespaces = run('ip', ['netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((ns) => ns.startsWith('xlb-tput-'));
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.includes('xlb-bpffs-tput-'));
  const dirs = readdirSync(tmpdir()).filter((d) => d.startsWith('xlb-tput-') || d.startsWith('xlb-bpffs-tput-'));
  const processes = readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)
    .flatMap((p) => {
      try {
        const cmdline = readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ');
        return /xlb-tput-|xlb-bpffs-tput-/.test(cmdline) ? [`${p} ${cmdline}`] : [];
      } catch {
        return [];
      }
    });
  return { namespaces: new Set(namespaces), mounts: new Set(mounts), dirs: new Set(dirs), processes: new Set(processes) };
}

function assertNothingNew(before: ReturnType<typeof leftovers>): void {
  const after = leftovers();
  for (const key of ['namespaces', 'mounts', 'dirs', 'processes'] as const) {
    const added = [...after[key]].filter((x) => !before[key].has(x));
    assert.deepEqual(added, [], `${key} left behind`);
  }
}

interface Figure {
  name: string;
  value: number;
  unit: string;
  params: Record<string, string | number>;
}

test('xlb bench throughput --quick, two systems, tiny rounds: a well-formed report in --out, nothing left behind', { timeout: 120_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'xlb-test-tput-out-'));
  const resultsBefore = existsSync(RESULTS) ? statSync(RESULTS).mtimeMs : undefined;
  const before = leftovers();
  try {
    const perf = perfAvailable() ? ['--perf'] : [];
    const result = await runNode(CLI, ['bench', 'throughput', '--quick', '--services', '1,20', '--systems', 'xlb-dsr,iptables', ...TINY, ...perf, '--out', out], { timeoutMs: 100_000 });
    assert.equal(result.code, 0, result.err);
    assert.match(result.err, /case 6\/6/, 'progress names the cases');
    assert.match(result.err, /round 2\/2 Mpps: generator [\d.]+ {2}xlb-dsr [\d.]+ {2}iptables [\d.]+/);

    const report = JSON.parse(readFileSync(join(out, 'throughput.json'), 'utf8')) as { suite: string; figures: Figure[] };
    assert.equal(report.suite, 'throughput');
    const forwarded = report.figures.filter((f) => f.name.endsWith(': forwarded'));
    for (const system of ['xlb-dsr', 'iptables', 'generator']) {
      const mine = forwarded.filter((f) => f.params['system'] === system);
      // 1 service: established and new; 20 services: one and spread of each.
      assert.equal(mine.length, 6, `${system}: ${mine.map((f) => f.name).join('; ')}`);
      for (const f of mine) {
        assert.equal(f.unit, 'Mpps');
        assert.ok(f.value > 0, `${f.name}: ${f.value}`);
        assert.ok(Number(f.params['forwarded']) > 0 && Number(f.params['sent']) >= Number(f.params['forwarded']), f.name);
        assert.equal(f.params['check'], undefined, `${f.name}: ${String(f.params['check'])}`);
      }
    }
    const node = report.figures.filter((f) => f.unit === 'ns/packet' && f.params['system'] === 'xlb-dsr');
    assert.equal(node.length, 6);
    for (const f of node) assert.ok(Number.isFinite(f.value), f.name);
    const goals = report.figures.filter((f) => f.name.startsWith('goal: '));
    assert.ok(goals.some((g) => g.name.includes('≥ 5x iptables')), 'the established-flow goal against iptables is checked');
    assert.ok(goals.some((g) => g.name.includes('new flows ≥ 8x iptables at 1 service')), 'the new-flow goal at 1 service is checked');
    for (const g of goals) assert.match(String(g.params['verdict']), /^(met|missed: [\d.]+x, \d+% short)/);

    const markdown = readFileSync(join(out, 'throughput.md'), 'utf8');
    assert.match(markdown, /\| xlb DSR \| [\d.]+/);
    assert.match(markdown, /\| iptables \(kube-proxy layout\) \| [\d.]+/);
    assert.match(markdown, /## Goals/);
    assert.match(markdown, /IPVS: not measured/);
    assert.match(markdown, /\*\*20 services\*\*/);
    if (perf.length > 0) assert.match(markdown, /## Where the time goes[^]*\| xlb DSR \| \d+ \| \d+ \| [^\n]*bpf: xdp_lb \d+/, 'perf: xdp_lb among xlb DSR\'s symbols');
    const svg = readFileSync(join(out, 'throughput.svg'), 'utf8');
    assert.match(svg, /^<svg /);
    assert.match(svg, /<polyline [^>]*stroke="#2ca02c"/, 'a line for xlb DSR');
    assert.match(svg, /spread, new flows/);

    assert.equal(existsSync(RESULTS) ? statSync(RESULTS).mtimeMs : undefined, resultsBefore, 'bench/results untouched');
    assertNothingNew(before);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('xlb bench throughput stopped with SIGINT mid-run: it says so, exits non-zero and removes everything', { timeout: 90_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'xlb-test-tput-out-'));
  const before = leftovers();
  try {
    const child = spawn(process.execPath, [CLI, 'bench', 'throughput', '--services', '1', '--systems', 'xlb-snat,nftables', '--rounds', '50', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    const exited = once(child, 'close');
    await waitFor(() => /round 1\/50/.test(err) || child.exitCode !== null, 60_000, 'the first round');
    assert.equal(child.exitCode, null, err);
    child.kill('SIGINT');
    const [code] = (await exited) as [number | null];
    assert.notEqual(code, 0);
    assert.match(err, /SIGINT: stopping/);
    assert.match(err, /interrupted/);
    assert.ok(!existsSync(join(out, 'throughput.json')), 'no report from a stopped run');
    assertNothingNew(before);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
