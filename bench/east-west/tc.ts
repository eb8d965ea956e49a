/**
 * What tc_pod costs a pod's packet: ns per packet under BPF_PROG_TEST_RUN (the kernel times its repeat
 * loop; no syscall in the figure), beside a pass-through tc program timed the same way in the same run.
 * tc_pod is loaded as the agent loads it, over xdp_lb's pinned maps, with services written by the real
 * writer (a ClusterIP with three backends — chosen at random, as ClusterIPs are; M = 16381 for the
 * others — and a conntrack of the default 262144 entries).
 *
 * tc_pod rewrites the skb it is given and the repeat loop hands it back, so the translating cases run
 * through bpf/test/tc_pod_bench.c, a harness around the very same code that restores the frame from a
 * template before every run; the harness alone is timed too and subtracted:
 * - new flow: a flow of its own every run (source port and address from a counter) — service lookup,
 *   backend selection, reply entry, DNAT, flow entry; past the table's size each one evicts old
 *   flows, as on a busy node;
 * - established: the template's one flow every run (conntrack hit, DNAT);
 * - reply: a backend's answer to that flow on the way to the pod (reply entry hit, source rewritten);
 * - not for a service: a packet to a port no frontend uses, straight through tc_pod_ingress (it passes
 *   untouched, so no harness is needed).
 * Each figure is the median of `rounds` rounds, alternating with the harness's and the peer's (the
 * machine is shared).
 *
 * measureTcTranslation() is for the east-west bench suite; run alone (node dist/bench/east-west/tc.js)
 * it prints its figures as a table and JSON, and writes no result files.
 */
import { pathToFileURL } from 'node:url';
import { Reason, Direction } from '../../lb/reasons.js';
import { parseFrame, TCP_FLAGS } from '../../test/support/packet.js';
import { formatNumber, type BenchFigure } from '../lib/report.js';
import { CONNTRACK_ENTRIES, families, FRAME_LEN, frame, MAGLEV_SIZE, TcPodHarness } from './tc-harness.js';

export interface TcTranslationOptions {
  /** Runs per round in the kernel's loop (default 1e6). */
  repeat?: number;
  /** Rounds; each figure is the median (default 5). */
  rounds?: number;
  log?: (line: string) => void;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/**
 * The median of each measurement over `rounds` rounds, the measurements taking turns within a round
 * (the machine is shared: alternating spreads its noise over all of them alike). Each returns ns/packet,
 * e.g. a program's BPF_PROG_TEST_RUN duration.
 */
export function medianOfRounds(measurements: readonly (() => number)[], rounds: number): number[] {
  const samples = Array.from({ length: rounds }, () => measurements.map((measure) => measure()));
  return measurements.map((_, i) => median(samples.map((round) => round[i] ?? 0)));
}

export async function measureTcTranslation(options: TcTranslationOptions = {}): Promise<BenchFigure[]> {
  const repeat = options.repeat ?? 1_000_000;
  const rounds = options.rounds ?? 5;
  const log = options.log ?? (() => undefined);
  const tc = TcPodHarness.load('ew-tc', repeat);
  try {
    /** Rounds of `program` (through the harness) alternating with the harness alone and tc_pass. */
    const compare = (program: string, harness: string | undefined, data: Buffer): { value: number; harness: number; pass: number } => {
      const [value = 0, harnessValue = 0, pass = 0] = medianOfRounds([() => tc.time(program, data), () => (harness ? tc.time(harness, data) : 0), () => tc.time('tc_pass', data)], rounds);
      return { value, harness: harnessValue, pass };
    };

    const figures: BenchFigure[] = [];
    for (const f of families) {
      const params = { method: `median of ${rounds} x repeat ${repeat}`, family: f.name, frameBytes: FRAME_LEN, maglevTableSize: MAGLEV_SIZE, conntrackEntries: CONNTRACK_ENTRIES };
      const push = (name: string, m: { value: number; harness: number; pass: number }, extra: Record<string, string | number>): void => {
        const value = m.value - m.harness;
        log(`${f.name} ${name}: ${value.toFixed(1)} ns/packet (with harness ${m.value} ns, harness ${m.harness} ns); tc_pass ${m.pass} ns`);
        figures.push({ name: `tc_pod ${name}, ${f.name}`, value, unit: 'ns/packet', peer: 'tc_pass (pass-through tc program)', peerValue: m.pass, ratio: value / m.pass, params: { ...params, ...extra } });
      };

      tc.lb.conntrack.flush();
      const syn = frame(f, f.pod, f.vip, 1024, 80, TCP_FLAGS.SYN);
      tc.setTemplate(syn, f);
      const newFlows = tc.counter(Reason.FWD_NEW_FLOW, Direction.INGRESS);
      push('new flow (service, backend, reply entry, DNAT, flow entry)', compare('tc_pod_new_flows', 'tc_template_only', syn), {
        method: `${params.method}, a new flow each run from a template (harness subtracted); past ${CONNTRACK_ENTRIES} entries each evicts old ones`,
      });
      const opened = Number(tc.counter(Reason.FWD_NEW_FLOW, Direction.INGRESS) - newFlows);
      if (opened < rounds * repeat) throw new Error(`only ${opened} of ${rounds * repeat} runs opened a flow: the harness is not measuring new flows`);

      tc.lb.conntrack.flush();
      const ack = frame(f, f.pod, f.vip, 1024, 80, TCP_FLAGS.ACK);
      tc.setTemplate(ack, f);
      const first = tc.bench.program('tc_pod_ingress').testRun({ data: ack });
      const backend = parseFrame(first.data).ip.dst;
      push('established flow (conntrack hit, DNAT)', compare('tc_pod_same_flow', 'tc_template_same_only', ack), {
        method: `${params.method}, the template's one flow each run (harness subtracted)`,
      });
      const reply = frame(f, backend, f.pod, 8080, 1024, TCP_FLAGS.ACK, true);
      tc.setTemplate(reply, f);
      const replies = tc.counter(Reason.FWD_REPLY, Direction.EGRESS);
      push('reply to the pod (reply entry hit, source back to the service)', compare('tc_pod_same_reply', 'tc_template_same_only', reply), {
        method: `${params.method}, one flow's reply each run (harness subtracted)`,
      });
      if (tc.counter(Reason.FWD_REPLY, Direction.EGRESS) - replies < BigInt(rounds * repeat)) throw new Error('the reply runs did not all translate');

      const other = frame(f, f.pod, f.other, 40000, 22, TCP_FLAGS.ACK);
      push('packet not for a service (port without frontends)', compare('tc_pod_ingress', undefined, other), { method: `${params.method}, the packet passes untouched (no harness)` });
    }
    return figures;
  } finally {
    tc.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const figures = await measureTcTranslation({ log: (line) => process.stdout.write(`[east-west tc] ${line}\n`) });
  process.stdout.write('\n| figure | value | peer | peer value |\n|---|---|---|---|\n');
  for (const f of figures) process.stdout.write(`| ${f.name} | ${formatNumber(f.value)} ${f.unit} | ${f.peer ?? ''} | ${f.peerValue === undefined ? '' : `${formatNumber(f.peerValue)} ${f.unit}`} |\n`);
  process.stdout.write(`\n${JSON.stringify(figures, null, 2)}\n`);
}
