/**
 * `--perf`: where a system's time goes, from `perf record` of this process during one extra round (not
 * in the medians). The whole pipeline runs in the generator's call, in this process (measure.ts), so
 * its samples are the generator's, the node's and the sink's work; each symbol's share of them times
 * the round's kernel-timed ns per forwarded packet is that symbol's ns per packet.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface SymbolCost {
  /** a kernel function, or a BPF program by its name (bpf_prog_<tag>_<name> → "bpf: <name>") */
  symbol: string;
  share: number;
  nsPerPacket: number;
}

/** perf takes a moment to attach (what runs before is not sampled): its file, then a little more. */
const ATTACH_TIMEOUT_MS = 3_000;
const ATTACH_MS = 200;
const SHOWN = 12;

export function perfAvailable(): boolean {
  try {
    execFileSync('perf', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** "bpf_prog_f54fb62c70bf2a26_xdp_lb" → "bpf: xdp_lb"; kernel symbols as they are. */
export function symbolName(raw: string): string {
  const bpf = /^bpf_prog_[0-9a-f]{16}_(.+)$/.exec(raw);
  return bpf ? `bpf: ${bpf[1] ?? raw}` : raw;
}

/** `perf report --sort symbol` lines: "    18.68%  [k] veth_xdp_rcv_one". */
export function parsePerfReport(text: string): { symbol: string; share: number }[] {
  const out: { symbol: string; share: number }[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([\d.]+)%\s+\[[^\]]+\]\s+(\S+)/.exec(line);
    if (m) out.push({ symbol: symbolName(m[2] ?? ''), share: Number(m[1]) / 100 });
  }
  return out;
}

export class Profiler {
  private child: ChildProcess | undefined;

  constructor(private readonly dir: string) {}

  /**
   * Runs `round` under `perf record -p <this process>`; returns its result and the symbols by cost,
   * given the round's ns per forwarded packet.
   */
  async profile<T>(name: string, round: () => Promise<T>, nsPerPacket: (result: T) => number): Promise<{ result: T; symbols: SymbolCost[] }> {
    const file = join(this.dir, `${name.replace(/[^a-z0-9-]+/gi, '-')}.perf.data`);
    const child = spawn('perf', ['record', '-q', '-F', '2999', '-p', String(process.pid), '-o', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = once(child, 'close');
    // perf writes its file's header once it has attached.
    const deadline = Date.now() + ATTACH_TIMEOUT_MS;
    while (Date.now() < deadline && child.exitCode === null && !(existsSync(file) && statSync(file).size > 0)) await sleep(20);
    await sleep(ATTACH_MS);
    let result: T;
    try {
      result = await round();
    } finally {
      child.kill('SIGINT');
      await exited;
      this.child = undefined;
    }
    const report = execFileSync('perf', ['report', '-i', file, '--no-children', '--sort', 'symbol', '--stdio', '-g', 'none', '--percent-limit', '0.5'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      maxBuffer: 64 << 20,
    });
    const ns = nsPerPacket(result);
    const symbols = parsePerfReport(report).slice(0, SHOWN).map((s) => ({ ...s, nsPerPacket: s.share * ns }));
    if (symbols.length === 0) throw new Error(`perf record of ${name} gave no samples${stderr ? `: ${stderr.trim()}` : ''}`);
    return { result, symbols };
  }

  /** Stops a perf still running (the run was interrupted). */
  stop(): void {
    this.child?.kill('SIGKILL');
    this.child = undefined;
  }
}
