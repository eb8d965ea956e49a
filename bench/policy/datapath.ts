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
import { PolicyMapWriter, type PolicyEndpointState } from '../../lb/datapath/policy-writer.js';
import { Direction, Reason } from '../../lb/reasons.js';
import { TCP_FLAGS } from '../../test/support/packet.js';
import { medianOfRounds } from '../east-west/tc.js';
import { families, FRAME_LEN, frame, TcPodHarness } from '../east-west/tc-harness.js';
import { formatNumber, type BenchFigure } from '../lib/report.js';

export interface PolicyBenchOptions {
  progress?: (message: string) => void;
  /** Fewer, shorter rounds. */
  quick?: boolean;
  /** Runs per round in the kernel's loop (default 1e6; quick 1e5). */
  repeat?: number;
  /** Rounds; each figure is the median (default 5; quick 3). */
  rounds?: number;
}

/** The device a test run's skb is on (the loopback). */
const DEVICE = 1;
const PEER = 'tc_pass (pass-through tc program)';
const ID = { pod: 256, peer: 257, backends: 258 } as const;
const PORT = { allowed: 8080, denied: 9090 } as const;
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
  const tc = TcPodHarness.load('policy-bench', repeat);
  try {
    const writer = PolicyMapWriter.open(tc.bench);
    writer.setIpcache(
      families.flatMap((f) => [
        { cidr: `${f.pod}/${f.bits}`, identity: ID.pod },
        { cidr: `${f.peer}/${f.bits}`, identity: ID.peer },
        ...f.backends.map((b) => ({ cidr: `${b}/${f.bits}`, identity: ID.backends })),
      ]),
    );
    /* Deleting the endpoint forgets its connections: each round with it tracks the established one again. */
    const withPolicy = (established: Buffer, measure: () => number) => (): number => {
      writer.setEndpoint(DEVICE, ENDPOINT);
      tc.verdictOf('tc_pod_ingress', established);
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
        tc.lb.conntrack.flush();
        writer.setEndpoint(DEVICE, ENDPOINT);
        tc.setTemplate(c.data, f);
        tc.verdictOf('tc_pod_ingress', established); // the connection the established cases find
        const verdict = tc.verdictOf(c.program, c.data);
        if (verdict !== c.verdict) throw new Error(`${f.name} ${c.name}: verdict ${verdict}, the case expects ${c.verdict}`);
        const policyDrops = (): bigint =>
          tc.counter(Reason.DROP_POLICY_EGRESS, Direction.INGRESS) + tc.counter(Reason.DROP_POLICY_INGRESS, Direction.EGRESS);
        const drops = policyDrops();
        const measure = (): number => tc.time(c.program, c.data);
        const [value = 0, noPolicy = 0, harness = 0, pass = 0] = medianOfRounds(
          [withPolicy(established, measure), withoutPolicy(measure), () => (c.harness ? tc.time(c.harness, c.data) : 0), () => tc.time('tc_pass', c.data)],
          rounds,
        );
        const dropped = policyDrops() - drops;
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
    tc.close();
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
