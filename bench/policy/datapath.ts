/**
 * What the identity policy costs tc_pod's packets: ns per packet under BPF_PROG_TEST_RUN (the kernel
 * times its repeat loop), each case beside the same packet through tc_pod with no endpoint on the
 * device (no policy: one endpoint lookup) and beside a pass-through tc program, in the same rounds
 * (bench/east-west/tc.ts's medianOfRounds). Loaded as tc_pod's benchmark harness
 * (bpf/test/tc_pod_bench.c: the very same code, restoring the frame from a template before each run)
 * over xdp_lb's pins, services written by the real writer, the policy by PolicyMapWriter; the endpoint
 * is the loopback device's (ifindex 1), which a test run's skb is on. For the bench suite "policy":
 * - established, from the pod: a connection the policy conntrack holds (one hash lookup);
 * - established, a reply to the pod: the same connection the other way (tc_pod_egress);
 * - denied: a new connection no rule allows, from the pod (ipcache, two allow-map lookups, counted,
 *   an event — the ring buffer fills within the first round, so most runs pay a failed reserve);
 * - allowed new connection, from the pod: a flow of its own each run (ipcache, allow map, a conntrack
 *   insert; past the LRU's size each insert evicts one), the harness's own cost subtracted;
 * - a new service flow with policy: backend chosen, egress decided for it, tc_pod's own state stored.
 *
 *   node dist/bench/policy/datapath.js [--quick]
 */
import { pathToFileURL } from 'node:url';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { LbDatapath, lbSharedLoadOptions } from '../../lb/datapath/lb-datapath.js';
import { LbMapWriter } from '../../lb/datapath/lb-writer.js';
import { BpfObject } from '../../lb/datapath/object.js';
import { bpfObjectPath } from '../../lb/datapath/objects.js';
import { PolicyMapWriter, type PolicyEndpointState } from '../../lb/datapath/policy-writer.js';
import { desiredLbState } from '../../lb/lbmap/desired.js';
import { IdAllocator } from '../../lb/lbmap/ids.js';
import { DEFAULT_MAGLEV_SEED, parseMaglevSeed } from '../../lb/maglev/index.js';
import { counterIndex, Direction, Reason } from '../../lb/reasons.js';
import { validateService, type Service } from '../../lb/service.js';
import { buildFrame, TCP_FLAGS } from '../../test/support/packet.js';
import { formatNumber, type BenchFigure } from '../lib/report.js';
import { medianOfRounds } from '../east-west/tc.js';

export interface PolicyBenchOptions {
  progress?: (message: string) => void;
  /** Fewer, shorter rounds. */
  quick?: boolean;
  /** Runs per round in the kernel's loop (default 1e6; quick 1e5). */
  repeat?: number;
  /** Rounds; each figure is the median (default 5; quick 3). */
  rounds?: number;
}

/** bpf/test/tc_pod_bench.c: XLB_TC_BENCH_FRAME_LEN, and its template's layout (offsets, then the bytes). */
const FRAME_LEN = 96;
const MAGLEV_SIZE = 16381;
const CONNTRACK_ENTRIES = 262144;
const NAT_PORTS = { min: 20000, max: 29999 };
const POD_MAC = '02:00:00:00:20:02';
const HOST_MAC = '02:00:00:00:20:01';
/** The device a test run's skb is on (the loopback). */
const DEVICE = 1;
const PEER = 'tc_pass (pass-through tc program)';
const ID = { pod: 256, peer: 257, backends: 258 } as const;
const PORT = { allowed: 8080, denied: 9090 } as const;
const families = [
  { name: 'IPv4', bits: 32, pod: '198.18.20.2', vip: '198.18.30.10', peer: '198.18.40.2', node: '198.18.0.2', backends: ['198.18.21.11', '198.18.21.12', '198.18.21.13'], l3: 20, saddrLow: 14 + 12 + 2 },
  { name: 'IPv6', bits: 128, pod: '2001:db8:20::2', vip: '2001:db8:30::10', peer: '2001:db8:40::2', node: '2001:db8::2', backends: ['2001:db8:21::11', '2001:db8:21::12', '2001:db8:21::13'], l3: 40, saddrLow: 14 + 8 + 14 },
] as const;
type Family = (typeof families)[number];

/** A TCP frame of FRAME_LEN bytes, from the pod or (toPod) to it. */
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

/** The pod's endpoint: egress enforced, allowing its peer and the service's backends on port 8080. */
const ENDPOINT: PolicyEndpointState = {
  identity: ID.pod,
  ingressEnforced: true,
  egressEnforced: true,
  rules: [
    { direction: 'egress', identity: ID.peer, protocol: 6, port: PORT.allowed, portPrefixLen: 16 },
    { direction: 'egress', identity: ID.backends, protocol: 6, port: PORT.allowed, portPrefixLen: 16 },
  ],
};

export async function benchPolicyDatapath(options: PolicyBenchOptions = {}): Promise<BenchFigure[]> {
  const repeat = options.repeat ?? (options.quick ? 100_000 : 1_000_000);
  const rounds = options.rounds ?? (options.quick ? 3 : 5);
  const progress = options.progress ?? (() => undefined);
  const bpffs = TempBpffs.mount('policy-bench');
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
    const writer = PolicyMapWriter.open(bench);
    writer.setIpcache(
      families.flatMap((f) => [
        { cidr: `${f.pod}/${f.bits}`, identity: ID.pod },
        { cidr: `${f.peer}/${f.bits}`, identity: ID.peer },
        ...f.backends.map((b) => ({ cidr: `${b}/${f.bits}`, identity: ID.backends })),
      ]),
    );
    const loaded = bench;
    const datapath = lb;
    const time = (program: string, data: Buffer): number => loaded.program(program).testRun({ data, repeat }).duration;
    const verdictOf = (program: string, data: Buffer): number => loaded.program(program).testRun({ data }).retval;
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
    const withPolicy = (measure: () => number) => (): number => {
      writer.setEndpoint(DEVICE, ENDPOINT);
      return measure();
    };
    const withoutPolicy = (measure: () => number) => (): number => {
      writer.deleteEndpoint(DEVICE);
      return measure();
    };

    interface Case {
      name: string;
      /** The program and frame timed, with and without the endpoint; the harness's own program, when one restores frames. */
      program: string;
      data: Buffer;
      harness?: string;
      /** The verdict a single run gives with the policy, checked before timing. */
      verdict: number;
    }
    const figures: BenchFigure[] = [];
    for (const f of families) {
      const established = frame(f, f.pod, f.peer, 40000, PORT.allowed, TCP_FLAGS.ACK);
      const cases: Case[] = [
        { name: 'established, from the pod (policy conntrack hit)', program: 'tc_pod_ingress', data: established, verdict: 0 },
        { name: 'established, reply to the pod (policy conntrack hit)', program: 'tc_pod_egress', data: frame(f, f.peer, f.pod, PORT.allowed, 40000, TCP_FLAGS.ACK, true), verdict: 0 },
        { name: 'denied new connection (ipcache, allow map, drop counted and reported)', program: 'tc_pod_ingress', data: frame(f, f.pod, f.peer, 40001, PORT.denied, TCP_FLAGS.SYN), verdict: 2 },
        { name: 'allowed new connection (ipcache, allow map, conntrack insert)', program: 'tc_pod_new_flows', harness: 'tc_template_only', data: frame(f, f.pod, f.peer, 1024, PORT.allowed, TCP_FLAGS.SYN), verdict: 0 },
        { name: 'new service flow (egress decided for the backend chosen)', program: 'tc_pod_new_flows', harness: 'tc_template_only', data: frame(f, f.pod, f.vip, 1024, 80, TCP_FLAGS.SYN), verdict: 0 },
      ];
      for (const c of cases) {
        datapath.conntrack.flush();
        writer.setEndpoint(DEVICE, ENDPOINT);
        setTemplate(c.data, f);
        verdictOf('tc_pod_ingress', established); // the connection the established cases find
        const verdict = verdictOf(c.program, c.data);
        if (verdict !== c.verdict) throw new Error(`${f.name} ${c.name}: verdict ${verdict}, the case expects ${c.verdict}`);
        const drops = counter(Reason.DROP_POLICY_EGRESS, Direction.INGRESS);
        const measure = (): number => time(c.program, c.data);
        const [value = 0, noPolicy = 0, harness = 0, pass = 0] = medianOfRounds(
          [withPolicy(measure), withoutPolicy(measure), () => (c.harness ? time(c.harness, c.data) : 0), () => time('tc_pass', c.data)],
          rounds,
        );
        const dropped = counter(Reason.DROP_POLICY_EGRESS, Direction.INGRESS) - drops;
        if ((dropped === BigInt(rounds * repeat)) !== (c.verdict === 2)) throw new Error(`${f.name} ${c.name}: ${dropped} of ${rounds * repeat} runs dropped by policy`);
        const withIt = value - harness;
        const withoutIt = noPolicy - harness;
        progress(`${f.name} ${c.name}: ${withIt.toFixed(1)} ns/packet, without an endpoint ${withoutIt.toFixed(1)}; ${PEER} ${pass}`);
        figures.push({
          name: `tc_pod policy: ${c.name}, ${f.name}`,
          value: withIt,
          unit: 'ns/packet',
          peer: PEER,
          peerValue: pass,
          ratio: withIt / pass,
          params: {
            method: `median of ${rounds} x repeat ${repeat} (BPF_PROG_TEST_RUN)${c.harness ? ', a flow of its own each run from a template (harness subtracted)' : ''}`,
            family: f.name,
            frameBytes: FRAME_LEN,
            withoutEndpointNs: withoutIt,
            policyNs: withIt - withoutIt,
            overPassThroughNs: withIt - pass,
          },
        });
      }
    }
    return figures;
  } finally {
    bench?.close();
    lb?.close();
    bpffs.remove();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const figures = await benchPolicyDatapath({ quick: process.argv.includes('--quick'), progress: (line) => process.stdout.write(`[policy datapath] ${line}\n`) });
  process.stdout.write('\n| figure | ns/packet | without an endpoint | policy | tc_pass |\n|---|---|---|---|---|\n');
  for (const f of figures) {
    const p = f.params;
    process.stdout.write(`| ${f.name} | ${formatNumber(f.value)} | ${formatNumber(Number(p.withoutEndpointNs))} | ${formatNumber(Number(p.policyNs))} | ${formatNumber(f.peerValue ?? 0)} |\n`);
  }
}
