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
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { LbDatapath, lbSharedLoadOptions } from '../../lb/datapath/lb-datapath.js';
import { LbMapWriter } from '../../lb/datapath/lb-writer.js';
import { BpfObject } from '../../lb/datapath/object.js';
import { bpfObjectPath } from '../../lb/datapath/objects.js';
import { desiredLbState } from '../../lb/lbmap/desired.js';
import { IdAllocator } from '../../lb/lbmap/ids.js';
import { DEFAULT_MAGLEV_SEED, parseMaglevSeed } from '../../lb/maglev/index.js';
import { Reason, counterIndex, Direction } from '../../lb/reasons.js';
import { validateService, type Service } from '../../lb/service.js';
import { buildFrame, TCP_FLAGS, parseFrame } from '../../test/support/packet.js';
import { formatNumber, type BenchFigure } from '../lib/report.js';

export interface TcTranslationOptions {
  /** Runs per round in the kernel's loop (default 1e6). */
  repeat?: number;
  /** Rounds; each figure is the median (default 5). */
  rounds?: number;
  log?: (line: string) => void;
}

/** bpf/test/tc_pod_bench.c: XLB_TC_BENCH_FRAME_LEN, and its template's layout (offsets, then the bytes). */
const FRAME_LEN = 96;
const MAGLEV_SIZE = 16381;
const CONNTRACK_ENTRIES = 262144;
const NAT_PORTS = { min: 20000, max: 29999 };
const POD_MAC = '02:00:00:00:20:02';
const HOST_MAC = '02:00:00:00:20:01';
const families = [
  { name: 'IPv4', pod: '198.18.20.2', vip: '198.18.30.10', other: '198.18.30.99', node: '198.18.0.2', backends: ['198.18.21.11', '198.18.21.12', '198.18.21.13'], l3: 20, saddrLow: 14 + 12 + 2 },
  { name: 'IPv6', pod: '2001:db8:20::2', vip: '2001:db8:30::10', other: '2001:db8:30::99', node: '2001:db8::2', backends: ['2001:db8:21::11', '2001:db8:21::12', '2001:db8:21::13'], l3: 40, saddrLow: 14 + 8 + 14 },
] as const;
type Family = (typeof families)[number];

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

/** A TCP frame of FRAME_LEN bytes. */
function frame(f: Family, src: string, dst: string, sport: number, dport: number, flags: number, toPod = false): Buffer {
  const payload = Buffer.alloc(FRAME_LEN - 14 - f.l3 - 20);
  const eth = toPod ? { src: HOST_MAC, dst: POD_MAC } : { src: POD_MAC, dst: HOST_MAC };
  return buildFrame({ eth, ip: { src, dst }, l4: { proto: 'tcp', sport, dport, flags, payload } });
}

function services(): Map<string, Service> {
  const all = new Map<string, Service>();
  for (const f of families) {
    const id = `web-${f.name.toLowerCase()}`;
    all.set(id, validateService({ type: 'ClusterIP', frontend: { address: f.vip, port: 80, protocol: 'TCP' }, backends: f.backends.map((address) => ({ address, port: 8080 })) }, id, { defaultMode: 'snat', clusterIP: true }));
  }
  return all;
}

export async function measureTcTranslation(options: TcTranslationOptions = {}): Promise<BenchFigure[]> {
  const repeat = options.repeat ?? 1_000_000;
  const rounds = options.rounds ?? 5;
  const log = options.log ?? (() => undefined);
  const bpffs = TempBpffs.mount('ew-tc');
  let lb: LbDatapath | undefined;
  let bench: BpfObject | undefined;
  try {
    const shared = { maglevTableSize: MAGLEV_SIZE, maglevSeed: parseMaglevSeed(DEFAULT_MAGLEV_SEED), conntrackEntries: CONNTRACK_ENTRIES };
    const pinDir = `${bpffs.dir}/node`;
    lb = LbDatapath.load({ ...shared, pinDir });
    lb.configure({ nodeV4: families[0].node, nodeV6: families[1].node, natPortMin: NAT_PORTS.min, natPortMax: NAT_PORTS.max, eventSample: 0 });
    bench = BpfObject.load(bpfObjectPath('test/tc_pod_bench.o'), { pinDir, ...lbSharedLoadOptions(shared) });
    if (bench.replacedPins.length > 0) throw new Error(`the harness replaced pinned maps: ${bench.replacedPins.join('; ')}`);
    const desired = desiredLbState(services(), { addresses: [families[0].node, families[1].node], maglevTableSize: MAGLEV_SIZE, maglevSeed: parseMaglevSeed(DEFAULT_MAGLEV_SEED), defaultMode: 'snat' }, new IdAllocator());
    LbMapWriter.fromObject(lb.object).reconcile(desired);
    const loaded = bench;
    const datapath = lb;
    const time = (program: string, data: Buffer): number => loaded.program(program).testRun({ data, repeat }).duration;
    const setTemplate = (template: Buffer, f: Family): void => {
      const value = Buffer.alloc(8 + FRAME_LEN);
      value.writeUInt32LE(14 + f.l3, 0);
      value.writeUInt32LE(f.saddrLow, 4);
      template.copy(value, 8);
      loaded.map('xlb_tcb_tmpl').update(Buffer.alloc(4), value);
    };
    const counter = (reason: number, direction: number): bigint => {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(counterIndex(reason, direction));
      return datapath.map('xlb_metrics').sumPerCpuU64(key)[0] ?? 0n;
    };
    /** Rounds of `program` (through the harness) alternating with the harness alone and tc_pass. */
    const compare = (program: string, harness: string | undefined, data: Buffer): { value: number; harness: number; pass: number } => {
      const [value = 0, harnessValue = 0, pass = 0] = medianOfRounds([() => time(program, data), () => (harness ? time(harness, data) : 0), () => time('tc_pass', data)], rounds);
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

      datapath.conntrack.flush();
      const syn = frame(f, f.pod, f.vip, 1024, 80, TCP_FLAGS.SYN);
      setTemplate(syn, f);
      const newFlows = counter(Reason.FWD_NEW_FLOW, Direction.INGRESS);
      push('new flow (service, backend, reply entry, DNAT, flow entry)', compare('tc_pod_new_flows', 'tc_template_only', syn), {
        method: `${params.method}, a new flow each run from a template (harness subtracted); past ${CONNTRACK_ENTRIES} entries each evicts old ones`,
      });
      const opened = Number(counter(Reason.FWD_NEW_FLOW, Direction.INGRESS) - newFlows);
      if (opened < rounds * repeat) throw new Error(`only ${opened} of ${rounds * repeat} runs opened a flow: the harness is not measuring new flows`);

      datapath.conntrack.flush();
      const ack = frame(f, f.pod, f.vip, 1024, 80, TCP_FLAGS.ACK);
      setTemplate(ack, f);
      const first = loaded.program('tc_pod_ingress').testRun({ data: ack });
      const backend = parseFrame(first.data).ip.dst;
      push('established flow (conntrack hit, DNAT)', compare('tc_pod_same_flow', 'tc_template_same_only', ack), {
        method: `${params.method}, the template's one flow each run (harness subtracted)`,
      });
      const reply = frame(f, backend, f.pod, 8080, 1024, TCP_FLAGS.ACK, true);
      setTemplate(reply, f);
      const replies = counter(Reason.FWD_REPLY, Direction.EGRESS);
      push('reply to the pod (reply entry hit, source back to the service)', compare('tc_pod_same_reply', 'tc_template_same_only', reply), {
        method: `${params.method}, one flow's reply each run (harness subtracted)`,
      });
      if (counter(Reason.FWD_REPLY, Direction.EGRESS) - replies < BigInt(rounds * repeat)) throw new Error('the reply runs did not all translate');

      const other = frame(f, f.pod, f.other, 40000, 22, TCP_FLAGS.ACK);
      push('packet not for a service (port without frontends)', compare('tc_pod_ingress', undefined, other), { method: `${params.method}, the packet passes untouched (no harness)` });
    }
    return figures;
  } finally {
    bench?.close();
    lb?.close();
    bpffs.remove();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const figures = await measureTcTranslation({ log: (line) => process.stdout.write(`[east-west tc] ${line}\n`) });
  process.stdout.write('\n| figure | value | peer | peer value |\n|---|---|---|---|\n');
  for (const f of figures) process.stdout.write(`| ${f.name} | ${formatNumber(f.value)} ${f.unit} | ${f.peer ?? ''} | ${f.peerValue === undefined ? '' : `${formatNumber(f.peerValue)} ${f.unit}`} |\n`);
  process.stdout.write(`\n${JSON.stringify(figures, null, 2)}\n`);
}
