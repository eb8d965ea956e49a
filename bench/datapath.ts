/**
 * Bench suite "datapath": ns per packet of xdp_lb under BPF_PROG_TEST_RUN, beside a pass-through XDP
 * program timed the same way in the same run (the kernel times the runs; no syscall in the figure).
 *
 * Timing methods, because xdp_lb rewrites the packet it is given and repeated runs reuse it:
 * - repeat = 1e6 on one frame (median of 5 rounds), for packets that stay the same across runs:
 *   non-service traffic;
 * - established flows, DSR and SNAT, through the harness below restoring one flow's frame every run
 *   (every forward takes a hop off the TTL, and SNAT rewrites both ends, so no output can be fed back),
 *   harness cost subtracted; the DSR figure's peer is xdp_pass on the same frame;
 * - new flows in the same repeat loop through bpf/test/xdp_lb_bench.c, a harness around the very same
 *   xdp_lb code that restores the frame from a template and gives each run a flow of its own (source
 *   port and address from a counter): 1e6 new flows a round, so past the conntrack table's 262144 each
 *   one evicts an old flow, as on a busy node; its peer is the harness alone (xdp_template_only), so
 *   value − peer is xdp_lb's;
 * - repeat = 1 on N distinct frames, for new flows as they come cold (each run pays the caches that
 *   the syscall in between emptied); the peer is timed the same way.
 * And what a new flow cannot avoid, measured the same way: one cache miss (bpf/test/memory_latency.c),
 * beside the same program without the load.
 */
import { BpfObject } from '../lb/datapath/object.js';
import { bpfObjectPath } from '../lb/datapath/objects.js';
import { buildFrame, TCP_FLAGS, type L4Spec } from '../test/support/packet.js';
import { Reason } from '../lb/reasons.js';
import { CLIENT, LbHarness } from '../test/support/lb-harness.js';
import { writeBenchReport, type BenchFigure } from './lib/report.js';

const REPEAT = 1_000_000;
const ROUNDS = 5;
const NEW_FLOWS = 20_000;
/** A conntrack table of 2.4 MB: it stays in the caches, where the default 262144 flows (38 MB) do not. */
const SMALL_CONNTRACK = 16_384;
/** New SNAT flows per round: with their reply entries, 200000 of the table's 262144 entries. */
const SNAT_NEW_FLOWS = 100_000;
/** bpf/test/xdp_lb_bench.c: XLB_BENCH_FRAME_LEN, and its template map's layout (sport offset, saddr offset, bytes). */
const BENCH_FRAME_LEN = 80;
const log = (message: string): void => void process.stderr.write(`[bench datapath] ${message}\n`);

const families = [
  { name: 'IPv4', client: CLIENT.v4, vip: '198.18.10.10', snatVip: '198.18.10.11', other: '198.18.10.99' },
  { name: 'IPv6', client: CLIENT.v6, vip: '2001:db8:10::10', snatVip: '2001:db8:10::11', other: '2001:db8:10::99' },
];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

function frame(src: string, dst: string, l4: L4Spec): Buffer {
  return buildFrame({ eth: { src: CLIENT.mac, dst: '02:00:00:00:00:02' }, ip: { src, dst }, l4 });
}

type Family = (typeof families)[number];

function benchServices(): Record<string, unknown> {
  const services: Record<string, unknown> = {};
  for (const f of families) {
    const backends = [1, 2, 3].map((n) => ({ address: f.name === 'IPv4' ? `198.18.0.${10 + n}` : `2001:db8::${(10 + n).toString(16)}`, port: 8080 }));
    services[`new-${f.name.toLowerCase()}`] = { frontend: { address: f.vip, port: 80, protocol: 'TCP' }, mode: 'dsr', backends };
    services[`snat-${f.name.toLowerCase()}`] = { frontend: { address: f.snatVip, port: 80, protocol: 'TCP' }, mode: 'snat', backends };
  }
  return services;
}

type HarnessCase = 'new DSR flows' | 'new SNAT flows' | 'refused SNAT flows' | 'one DSR flow' | 'one SNAT flow';
/** A SNAT range of one port: after the first flow to each backend, every new flow finds it exhausted. */
const EXHAUSTED_PORT = 40_000;

/**
 * Frames through the harness (bpf/test/xdp_lb_bench.c) from an empty table on: medians of xdp_lb +
 * harness, and of the harness alone. New flows: a flow of its own each run (SYNs to the DSR or the SNAT
 * VIP); one flow: the template's every run (an ACK to the DSR VIP after the flow's handshake, or to the
 * SNAT VIP, established from the second run on).
 */
function harnessRounds(h: LbHarness, f: Family, what: HarnessCase): { value: number; harness: number } {
  const headers = f.name === 'IPv4' ? 14 + 20 + 20 : 14 + 40 + 20;
  const payload = Buffer.alloc(BENCH_FRAME_LEN - headers);
  const snatFlows = what === 'new SNAT flows' || what === 'refused SNAT flows';
  const newFlows = what === 'new DSR flows' || snatFlows;
  const vip = what === 'new DSR flows' || what === 'one DSR flow' ? f.vip : f.snatVip;
  const template = frame(f.client, vip, { proto: 'tcp', sport: 1024, dport: 80, flags: newFlows ? TCP_FLAGS.SYN : TCP_FLAGS.ACK, payload });
  const templateValue = Buffer.alloc(8 + BENCH_FRAME_LEN);
  templateValue.writeUInt32LE(headers - 20, 0);
  templateValue.writeUInt32LE(f.name === 'IPv4' ? 14 + 12 + 2 : 14 + 8 + 14, 4);
  template.copy(templateValue, 8);
  h.lb.map('xlb_bench_tmpl').update(Buffer.alloc(4), templateValue);
  h.flushFlows();
  if (what === 'one DSR flow') h.run(frame(f.client, vip, { proto: 'tcp', sport: 1024, dport: 80, flags: TCP_FLAGS.SYN, mss: 1460 }));
  const [lb, alone] = newFlows ? ['xdp_lb_new_flows', 'xdp_template_only'] : ['xdp_lb_same_flow', 'xdp_template_same_only'];
  // New SNAT flows each claim a port (3 backends × the range: ~193000 reply tuples), held for the
  // opening lifetime: rounds small enough never to run out, from an emptied table each.
  const repeat = snatFlows ? SNAT_NEW_FLOWS : REPEAT;
  if (what === 'refused SNAT flows') h.setNatPorts(EXHAUSTED_PORT, EXHAUSTED_PORT);
  const rounds = Array.from({ length: ROUNDS }, () => {
    if (snatFlows) h.flushFlows();
    return [h.time(h.lb.object.program(lb), template, repeat), h.time(h.lb.object.program(alone), template, repeat)] as const;
  });
  if (what === 'refused SNAT flows') h.setNatPorts();
  return { value: median(rounds.map(([lb]) => lb)), harness: median(rounds.map(([, peer]) => peer)) };
}

/** One dependent read of a random line of a 38 MB array: what a new flow's conntrack bucket costs when it is not cached. */
function memoryLatency(): BenchFigure {
  log(`one cache miss: ${ROUNDS} rounds of ${REPEAT.toLocaleString()} dependent reads of a 38 MB array`);
  const object = BpfObject.load(bpfObjectPath('test/memory_latency.o'));
  try {
    const data = Buffer.alloc(64);
    const time = (name: string): number => object.program(name).testRun({ data, repeat: REPEAT }).duration;
    const rounds = Array.from({ length: ROUNDS }, () => [time('memory_latency'), time('memory_latency_base')] as const);
    const value = median(rounds.map(([read]) => read));
    const base = median(rounds.map(([, peer]) => peer));
    return {
      name: 'one cache miss (a dependent read of a random line of 38 MB, base subtracted)',
      value: value - base,
      unit: 'ns/read',
      params: { method: `median of ${ROUNDS} x repeat ${REPEAT}`, arrayBytes: 38 << 20, withRead: value, withoutRead: base },
    };
  } finally {
    object.close();
  }
}

function main(): void {
  log('setting up a network namespace and loading xdp_lb and the pass-through peer');
  const h = LbHarness.create('bench', 'test/xdp_lb_bench.o');
  const peer = BpfObject.load(bpfObjectPath('xdp/xdp_pass.o'));
  const figures: BenchFigure[] = [];
  try {
    h.install(benchServices());
    const xdpLb = h.lb.object.program('xdp_lb');
    const pass = peer.program('xdp_pass');

    for (const f of families) {
      const params = { method: `median of ${ROUNDS} x repeat ${REPEAT}`, family: f.name, maglevTableSize: 251 };
      log(`${f.name} established flow: ${ROUNDS} rounds of ${REPEAT.toLocaleString()} runs of one DSR flow, and of xdp_pass`);
      const dsr = harnessRounds(h, f, 'one DSR flow');
      const established = frame(f.client, f.vip, { proto: 'tcp', sport: 1024, dport: 80, flags: TCP_FLAGS.ACK, payload: Buffer.alloc(BENCH_FRAME_LEN - (f.name === 'IPv4' ? 14 + 20 + 20 : 14 + 40 + 20)) });
      const passValue = median(Array.from({ length: ROUNDS }, () => h.time(pass, established, REPEAT)));
      figures.push({
        name: `established flow ${f.name}`,
        value: dsr.value - dsr.harness,
        unit: 'ns/packet',
        peer: 'xdp_pass',
        peerValue: passValue,
        ratio: (dsr.value - dsr.harness) / passValue,
        params: { ...params, method: `${params.method}, one DSR flow's frame restored each run (harness subtracted)`, withHarness: dsr.value, harness: dsr.harness },
      });
      // Two kinds of traffic not for a service: to a port no frontend uses (the port bitmap answers),
      // and to a port some frontend uses on another address (a full service lookup).
      const otherPort = frame(f.client, f.other, { proto: 'tcp', sport: 50001, dport: 22, flags: TCP_FLAGS.ACK, payload: Buffer.alloc(64) });
      const servicePort = frame(f.client, f.other, { proto: 'tcp', sport: 50001, dport: 80, flags: TCP_FLAGS.ACK, payload: Buffer.alloc(64) });
      const cases = [
        ['non-service packet, port without frontends', otherPort],
        ['non-service packet, port of a frontend elsewhere', servicePort],
      ] as const;
      for (const [name, packet] of cases) {
        log(`${f.name} ${name}: ${ROUNDS} rounds of ${REPEAT.toLocaleString()} runs each of xdp_lb and xdp_pass`);
        // Rounds alternate between the two programs and the median is kept: the machine is shared.
        const rounds = Array.from({ length: ROUNDS }, () => [h.time(xdpLb, packet, REPEAT), h.time(pass, packet, REPEAT)] as const);
        const value = median(rounds.map(([lb]) => lb));
        const peerValue = median(rounds.map(([, peer]) => peer));
        figures.push({ name: `${name} ${f.name}`, value, unit: 'ns/packet', peer: 'xdp_pass', peerValue, ratio: value / peerValue, params });
      }

      log(`${f.name} new flow: ${ROUNDS} rounds of ${REPEAT.toLocaleString()} runs, each a new flow`);
      const { value: newFlow, harness } = harnessRounds(h, f, 'new DSR flows');
      const newParams = { method: `median of ${ROUNDS} x repeat ${REPEAT}, a new flow each run (conntrack full: each evicts one)`, family: f.name, maglevTableSize: 251, mode: 'dsr (option inserted)' };
      figures.push({ name: `new flow ${f.name} (with harness)`, value: newFlow, unit: 'ns/packet', peer: 'harness alone', peerValue: harness, ratio: newFlow / harness, params: newParams });
      figures.push({ name: `new flow ${f.name} (harness subtracted)`, value: newFlow - harness, unit: 'ns/packet', params: newParams });

      log(`${f.name} new SNAT flows: ${ROUNDS} rounds of ${SNAT_NEW_FLOWS.toLocaleString()} runs, each a new flow`);
      const unclaimed = h.counter(Reason.DROP_NAT_NO_PORT);
      const newSnat = harnessRounds(h, f, 'new SNAT flows');
      const noPort = Number(h.counter(Reason.DROP_NAT_NO_PORT) - unclaimed);
      figures.push({
        name: `new flow, SNAT ${f.name} (harness subtracted)`,
        value: newSnat.value - newSnat.harness,
        unit: 'ns/packet',
        params: { method: `median of ${ROUNDS} x repeat ${SNAT_NEW_FLOWS} into an emptied table, a new flow each run`, family: f.name, mode: 'snat (port claimed: a reply entry too)', noPort },
      });

      log(`${f.name} refused SNAT flows: ${ROUNDS} rounds of ${SNAT_NEW_FLOWS.toLocaleString()} runs, the port range exhausted`);
      const refusedBefore = h.counter(Reason.DROP_NAT_NO_PORT);
      const refused = harnessRounds(h, f, 'refused SNAT flows');
      const refusals = Number(h.counter(Reason.DROP_NAT_NO_PORT) - refusedBefore);
      figures.push({
        name: `new flow, SNAT ${f.name}, port range exhausted (harness subtracted)`,
        value: refused.value - refused.harness,
        unit: 'ns/refused flow',
        peer: 'new flow, SNAT (port claimed)',
        peerValue: newSnat.value - newSnat.harness,
        ratio: (refused.value - refused.harness) / (newSnat.value - newSnat.harness),
        params: { method: `median of ${ROUNDS} x repeat ${SNAT_NEW_FLOWS}, a new flow each run, a one-port SNAT range`, family: f.name, refusals },
      });

      log(`${f.name} established SNAT flow: ${ROUNDS} rounds of ${REPEAT.toLocaleString()} runs of one flow`);
      const snat = harnessRounds(h, f, 'one SNAT flow');
      const snatParams = { method: `median of ${ROUNDS} x repeat ${REPEAT}, the template's one flow each run`, family: f.name, mode: 'snat (both ends rewritten)' };
      figures.push({ name: `established flow, SNAT ${f.name} (harness subtracted)`, value: snat.value - snat.harness, unit: 'ns/packet', params: snatParams });

      log(`${f.name} new flow, cold: ${NEW_FLOWS.toLocaleString()} distinct TCP SYNs, one run each`);
      const syns = Array.from({ length: NEW_FLOWS }, (_, i) =>
        frame(f.client, f.vip, { proto: 'tcp', sport: 1024 + i, dport: 80, flags: TCP_FLAGS.SYN, mss: 1460 }));
      h.flushFlows();
      const value = syns.reduce((total, syn) => total + h.time(xdpLb, syn, 1), 0) / NEW_FLOWS;
      const peerValue = syns.reduce((total, syn) => total + h.time(pass, syn, 1), 0) / NEW_FLOWS;
      figures.push({ name: `new flow ${f.name} (cold)`, value, unit: 'ns/packet', peer: 'xdp_pass', peerValue, ratio: value / peerValue, params: { method: `repeat 1 x ${NEW_FLOWS} distinct SYNs (DSR, option inserted)`, family: f.name, maglevTableSize: 251 } });
    }
  } finally {
    peer.close();
    h.destroy();
  }

  // The same new flows with a conntrack table small enough to stay in the CPU caches: how much of a new
  // flow's cost is the memory a 262144-flow table (38 MB) makes it wait for.
  const small = LbHarness.create('bench-small', 'test/xdp_lb_bench.o', SMALL_CONNTRACK);
  try {
    small.install(benchServices());
    for (const f of families) {
      log(`${f.name} new flow, conntrack of ${SMALL_CONNTRACK.toLocaleString()} flows: ${ROUNDS} rounds of ${REPEAT.toLocaleString()} runs`);
      const { value, harness } = harnessRounds(small, f, 'new DSR flows');
      const params = { method: `median of ${ROUNDS} x repeat ${REPEAT}, a new flow each run (conntrack full: each evicts one)`, family: f.name, conntrackEntries: SMALL_CONNTRACK, mode: 'dsr (option inserted)' };
      figures.push({ name: `new flow ${f.name}, ${SMALL_CONNTRACK}-flow conntrack (harness subtracted)`, value: value - harness, unit: 'ns/packet', params });
    }
  } finally {
    small.destroy();
  }
  figures.push(memoryLatency());
  writeBenchReport('datapath', figures);
}

main();
