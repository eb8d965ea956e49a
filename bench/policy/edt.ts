/**
 * What the EDT bandwidth manager costs a packet leaving the node: tc_edt_egress's ns per packet under
 * BPF_PROG_TEST_RUN (the kernel times its repeat loop), beside a pass-through tc program timed the
 * same way in the same run (bench/east-west/tc.ts's rounds). tc_edt.o is loaded as the agent loads
 * it (EdtDatapath, a pinned xlb_edt with rates written by setRate), for the bench suite "policy":
 * - a pod without a rate: one array lookup (its device's index), no verdict;
 * - under its rate: the packet passes at once (the rate so high a packet takes no time), the pod's
 *   schedule advanced by compare-and-swap;
 * - over its rate: every packet is given a departure time (800 Mbit/s for 100-byte packets: 1 µs
 *   each, more than a run of the loop takes), written with bpf_skb_set_tstamp. The repeat loop hands
 *   the same skb back, so each run is scheduled after the one before, as a pod's burst is; the rate is
 *   written anew before every round, and a round's schedule (repeat × 1 µs) stays within the horizon;
 * - under its rate, a device index past the array (a node that has made that many devices): the hash
 *   xlb_edt_far instead.
 *
 *   node dist/bench/policy/edt.js [--quick]
 */
import { pathToFileURL } from 'node:url';
import { EdtDatapath } from '../../agent/edt-datapath.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { BpfObject } from '../../lb/datapath/object.js';
import { bpfObjectPath } from '../../lb/datapath/objects.js';
import type { BpfProgram } from '../../lb/datapath/program.js';
import { counterIndex, Direction, Reason } from '../../lb/reasons.js';
import { medianOfRounds } from '../east-west/tc.js';
import type { BenchFigure } from '../lib/report.js';

export interface EdtBenchOptions {
  progress?: (message: string) => void;
  /** Fewer, shorter rounds. */
  quick?: boolean;
  /** Runs per round in the kernel's loop (default 1e6; quick 1e5; at most 1.5e6, or the over-rate case reaches the horizon). */
  repeat?: number;
  /** Rounds; each figure is the median (default 5; quick 3). */
  rounds?: number;
}

/** struct __sk_buff: its size, and where ingress_ifindex and tstamp are. */
const SKB_CTX_SIZE = 192;
const INGRESS_IFINDEX = 36;
const TSTAMP = 152;
const FRAME_BYTES = 100;
const POD = { unlimited: 10, under: 11, over: 12, far: 1_000_000 };
/** 1 Pbit/s: a packet takes 0 ns, so every one passes at once. */
const UNDER_RATE = 125_000_000_000_000;
/** 800 Mbit/s: a 100-byte packet takes 1 µs, longer than a run of the loop. */
const OVER_RATE = 100_000_000;
const PEER = 'tc_pass (pass-through tc program)';

function context(ifindex: number): Buffer {
  const ctx = Buffer.alloc(SKB_CTX_SIZE);
  ctx.writeUInt32LE(ifindex, INGRESS_IFINDEX);
  return ctx;
}

export async function benchEdtDatapath(options: EdtBenchOptions = {}): Promise<BenchFigure[]> {
  const repeat = options.repeat ?? (options.quick ? 100_000 : 1_000_000);
  const rounds = options.rounds ?? (options.quick ? 3 : 5);
  const progress = options.progress ?? (() => undefined);
  const bpffs = TempBpffs.mount('edt-bench');
  let edt: EdtDatapath | undefined;
  let pass: BpfObject | undefined;
  try {
    edt = EdtDatapath.load({ pinDir: `${bpffs.dir}/node`, devices: [], horizonNs: 2_000_000_000, nodeSetup: false, log: () => undefined });
    pass = BpfObject.load(bpfObjectPath('test/tc_pass.o'));
    const datapath = edt;
    const data = Buffer.alloc(FRAME_BYTES);
    data.writeUInt16BE(0x0800, 12);
    const run = (program: BpfProgram, ifindex: number) =>
      program.testRun({ data, ctx: context(ifindex), ctxOutSize: SKB_CTX_SIZE, repeat });
    const edtProgram = datapath.object.program('tc_edt_egress');
    const passProgram = pass.program('tc_pass');
    const drops = (): bigint => {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(counterIndex(Reason.DROP_EDT_HORIZON, Direction.EGRESS));
      return datapath.object.map('xlb_metrics').sumPerCpuU64(key)[0] ?? 0n;
    };

    datapath.setRate(POD.under, UNDER_RATE);
    datapath.setRate(POD.far, UNDER_RATE);
    const cases = [
      { name: 'tc_edt_egress, pod without a rate', ifindex: POD.unlimited, departs: false, before: () => undefined },
      { name: 'tc_edt_egress, pod under its rate (passes at once)', ifindex: POD.under, departs: false, before: () => undefined },
      { name: 'tc_edt_egress, pod over its rate (departure time set)', ifindex: POD.over, departs: true, before: () => datapath.setRate(POD.over, OVER_RATE) },
      { name: 'tc_edt_egress, device past the array (hash lookup), passes at once', ifindex: POD.far, departs: false, before: () => undefined },
    ];
    const figures: BenchFigure[] = [];
    const dropsBefore = drops();
    for (const c of cases) {
      let departure = 0n;
      const measureEdt = (): number => {
        c.before();
        const result = run(edtProgram, c.ifindex);
        departure = result.ctx.readBigUInt64LE(TSTAMP);
        return result.duration;
      };
      const [value = 0, peerValue = 0] = medianOfRounds([measureEdt, () => run(passProgram, c.ifindex).duration], rounds);
      if ((departure !== 0n) !== c.departs) throw new Error(`${c.name}: the last run left with tstamp ${departure}, not what the case measures`);
      progress(`${c.name}: ${value} ns/packet; ${PEER} ${peerValue} ns/packet`);
      figures.push({
        name: c.name,
        value,
        unit: 'ns/packet',
        peer: PEER,
        peerValue,
        ratio: value / peerValue,
        params: { method: `median of ${rounds} x repeat ${repeat} (BPF_PROG_TEST_RUN)`, frameBytes: FRAME_BYTES, overPassThroughNs: value - peerValue },
      });
    }
    if (drops() !== dropsBefore) throw new Error(`${drops() - dropsBefore} packets were dropped past the horizon: the over-rate case measured drops too`);
    return figures;
  } finally {
    pass?.close();
    edt?.close();
    bpffs.remove();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const figures = await benchEdtDatapath({ quick: process.argv.includes('--quick'), progress: (line) => process.stdout.write(`[policy edt] ${line}\n`) });
  process.stdout.write(`\n${JSON.stringify(figures, null, 2)}\n`);
}
