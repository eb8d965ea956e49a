/**
 * tc_pod timed under BPF_PROG_TEST_RUN, as the east-west suite (tc.ts) and the policy suite
 * (bench/policy/datapath.ts) both time it: bpf/test/tc_pod_bench.c — the very same tc_pod code behind
 * wrappers that restore the frame from a template before each run — loaded over xdp_lb's pins in a
 * temporary bpffs, a ClusterIP per family with three backends written by the real writer.
 */
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { LbDatapath, lbSharedLoadOptions } from '../../lb/datapath/lb-datapath.js';
import { LbMapWriter } from '../../lb/datapath/lb-writer.js';
import { BpfObject } from '../../lb/datapath/object.js';
import { bpfObjectPath } from '../../lb/datapath/objects.js';
import { desiredLbState } from '../../lb/lbmap/desired.js';
import { IdAllocator } from '../../lb/lbmap/ids.js';
import { DEFAULT_MAGLEV_SEED, parseMaglevSeed } from '../../lb/maglev/index.js';
import { counterIndex } from '../../lb/reasons.js';
import { validateService, type Service } from '../../lb/service.js';
import { buildFrame } from '../../test/support/packet.js';

/** bpf/test/tc_pod_bench.c: XLB_TC_BENCH_FRAME_LEN, and its template's layout (offsets, then the bytes). */
export const FRAME_LEN = 96;
export const MAGLEV_SIZE = 16381;
export const CONNTRACK_ENTRIES = 262144;
const NAT_PORTS = { min: 20000, max: 29999 };
const POD_MAC = '02:00:00:00:20:02';
const HOST_MAC = '02:00:00:00:20:01';

/** Per family: the pod, its service (vip), addresses that are neither, the node, the backends; where the harness rewrites. */
export const families = [
  { name: 'IPv4', bits: 32, pod: '198.18.20.2', vip: '198.18.30.10', other: '198.18.30.99', peer: '198.18.40.2', node: '198.18.0.2', backends: ['198.18.21.11', '198.18.21.12', '198.18.21.13'], l3: 20, saddrLow: 14 + 12 + 2 },
  { name: 'IPv6', bits: 128, pod: '2001:db8:20::2', vip: '2001:db8:30::10', other: '2001:db8:30::99', peer: '2001:db8:40::2', node: '2001:db8::2', backends: ['2001:db8:21::11', '2001:db8:21::12', '2001:db8:21::13'], l3: 40, saddrLow: 14 + 8 + 14 },
] as const;
export type Family = (typeof families)[number];

/** A TCP frame of FRAME_LEN bytes, from the pod or (toPod) to it. */
export function frame(f: Family, src: string, dst: string, sport: number, dport: number, flags: number, toPod = false): Buffer {
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

export class TcPodHarness {
  private constructor(
    private readonly bpffs: TempBpffs,
    readonly lb: LbDatapath,
    readonly bench: BpfObject,
    private readonly repeat: number,
  ) {}

  /** Loaded in a bpffs of its own (`tag` names it), services written; `repeat` runs per timing. */
  static load(tag: string, repeat: number): TcPodHarness {
    const bpffs = TempBpffs.mount(tag);
    let lb: LbDatapath | undefined;
    try {
      const shared = { maglevTableSize: MAGLEV_SIZE, maglevSeed: parseMaglevSeed(DEFAULT_MAGLEV_SEED), conntrackEntries: CONNTRACK_ENTRIES };
      const pinDir = `${bpffs.dir}/node`;
      lb = LbDatapath.load({ ...shared, pinDir });
      lb.configure({ nodeV4: families[0].node, nodeV6: families[1].node, natPortMin: NAT_PORTS.min, natPortMax: NAT_PORTS.max, eventSample: 0 });
      const bench = BpfObject.load(bpfObjectPath('test/tc_pod_bench.o'), { pinDir, ...lbSharedLoadOptions(shared) });
      if (bench.replacedPins.length > 0) {
        bench.close();
        throw new Error(`the harness replaced pinned maps: ${bench.replacedPins.join('; ')}`);
      }
      const desired = desiredLbState(services(), { addresses: [families[0].node, families[1].node], maglevTableSize: MAGLEV_SIZE, maglevSeed: parseMaglevSeed(DEFAULT_MAGLEV_SEED), defaultMode: 'snat' }, new IdAllocator());
      LbMapWriter.fromObject(lb.object).reconcile(desired);
      return new TcPodHarness(bpffs, lb, bench, repeat);
    } catch (error) {
      lb?.close();
      bpffs.remove();
      throw error;
    }
  }

  /** ns/packet of `program` on `data` over `repeat` runs, as the kernel timed its loop. */
  time(program: string, data: Buffer): number {
    return this.bench.program(program).testRun({ data, repeat: this.repeat }).duration;
  }

  /** One run's verdict. */
  verdictOf(program: string, data: Buffer): number {
    return this.bench.program(program).testRun({ data }).retval;
  }

  /** The frame the wrappers restore before each run. */
  setTemplate(template: Buffer, f: Family): void {
    const value = Buffer.alloc(8 + FRAME_LEN);
    value.writeUInt32LE(14 + f.l3, 0);
    value.writeUInt32LE(f.saddrLow, 4);
    template.copy(value, 8);
    this.bench.map('xlb_tcb_tmpl').update(Buffer.alloc(4), value);
  }

  /** xlb_metrics' packets for a reason and direction, over every CPU. */
  counter(reason: number, direction: number): bigint {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(counterIndex(reason, direction));
    return this.lb.map('xlb_metrics').sumPerCpuU64(key)[0] ?? 0n;
  }

  close(): void {
    this.bench.close();
    this.lb.close();
    this.bpffs.remove();
  }
}
