/**
 * tc_pod loaded as the agent loads it, for the PROG_TEST_RUN tests (tc-pod, policy, fuzz-pod): xdp_lb's
 * maps on a temporary bpffs, configured with the node's addresses and a SNAT range, tc_pod over their
 * pins, the services written by the real writer. Nothing attached: frames are run with runFrame.
 */
import { PodDatapath } from '../../agent/pod-datapath.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { LbDatapath } from '../../lb/datapath/lb-datapath.js';
import { LbMapWriter } from '../../lb/datapath/lb-writer.js';
import { desiredLbState } from '../../lb/lbmap/desired.js';
import { IdAllocator } from '../../lb/lbmap/ids.js';
import { DEFAULT_MAGLEV_SEED, parseMaglevSeed } from '../../lb/maglev/index.js';
import type { Service } from '../../lb/service.js';

export const TC_ACT_OK = 0;
export const TC_ACT_SHOT = 2;
export const TC_ACT_REDIRECT = 7;
/** TC_ACT_UNSPEC (-1) as a test run's retval reads. */
export const TC_ACT_UNSPEC = 0xffffffff;
export const MAGLEV_SIZE = 251;
export const NAT_PORTS = { min: 20000, max: 29999 };
/** The pod's MAC and its gateway's (the host side of its veth). */
export const POD_MAC = '02:00:00:00:20:02';
export const HOST_MAC = '02:00:00:00:20:01';

export interface PodHarness {
  bpffs: TempBpffs;
  lb: LbDatapath;
  pods: PodDatapath;
}

/** Loaded in a bpffs named by `tag`, the node at `node`'s addresses, `services` written (ids from `ids`). */
export function loadPodHarness(tag: string, node: { v4: string; v6: string }, services: Map<string, Service>, ids = new IdAllocator()): PodHarness {
  const bpffs = TempBpffs.mount(tag);
  let lb: LbDatapath | undefined;
  try {
    const maglevSeed = parseMaglevSeed(DEFAULT_MAGLEV_SEED);
    const shared = { maglevTableSize: MAGLEV_SIZE, maglevSeed, pinDir: `${bpffs.dir}/node`, conntrackEntries: 16384, capacity: { services: 1024, backends: 4096 } };
    lb = LbDatapath.load(shared);
    lb.configure({ nodeV4: node.v4, nodeV6: node.v6, natPortMin: NAT_PORTS.min, natPortMax: NAT_PORTS.max, eventSample: 0 });
    const pods = PodDatapath.load({ ...shared, podDevices: [], log: () => undefined });
    const desired = desiredLbState(services, { addresses: [node.v4, node.v6], maglevTableSize: MAGLEV_SIZE, maglevSeed, defaultMode: 'snat', nodeName: 'here' }, ids);
    LbMapWriter.fromObject(lb.object).reconcile(desired);
    return { bpffs, lb, pods };
  } catch (error) {
    lb?.close();
    bpffs.remove();
    throw error;
  }
}
