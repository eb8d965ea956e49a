import { check } from './errors.js';
import { libbpf } from './libbpf.js';
import { ifindexOf } from './netif.js';
import type { BpfProgram } from './program.js';

const BPF_TC_INGRESS = 1;
const BPF_TC_EGRESS = 2;
const BPF_TC_F_REPLACE = 1;
const EEXIST = 17;
const ENOENT = 2;
const EINVAL = 22;

export type TcDirection = 'ingress' | 'egress';

export interface TcFilter {
  /** filter handle and priority identify our filter among others on the hook */
  handle: number;
  priority: number;
}

export const DEFAULT_TC_FILTER: TcFilter = { handle: 1, priority: 1 };

function hook(ifindex: number, attachPoint: number): Buffer {
  const h = Buffer.alloc(24);
  h.writeBigUInt64LE(24n, 0);
  h.writeInt32LE(ifindex, 8);
  h.writeUInt32LE(attachPoint, 12);
  return h;
}

function filterOpts(filter: TcFilter, programFd: number, flags: number): Buffer {
  const o = Buffer.alloc(32);
  o.writeBigUInt64LE(32n, 0);
  o.writeInt32LE(programFd, 8);
  o.writeUInt32LE(flags, 12);
  o.writeUInt32LE(filter.handle, 20);
  o.writeUInt32LE(filter.priority, 24);
  return o;
}

const attachPoint = (direction: TcDirection): number => (direction === 'ingress' ? BPF_TC_INGRESS : BPF_TC_EGRESS);

/** Create the clsact qdisc if needed and attach (or atomically replace) a direct-action filter. */
export function attachTc(ifname: string, direction: TcDirection, program: BpfProgram, filter = DEFAULT_TC_FILTER): void {
  const ifindex = ifindexOf(ifname);
  const what = `program ${program.name} on ${ifname} ${direction}`;
  const h = hook(ifindex, attachPoint(direction));
  const created = libbpf.bpf_tc_hook_create(h) as number;
  if (created !== -EEXIST) check(created, 'bpf_tc_hook_create (clsact)', `interface ${ifname}`);
  check(libbpf.bpf_tc_attach(h, filterOpts(filter, program.fd, BPF_TC_F_REPLACE)) as number, 'bpf_tc_attach', what);
}

/** Returns false when no such filter was attached. */
export function detachTc(ifname: string, direction: TcDirection, filter = DEFAULT_TC_FILTER): boolean {
  const result = libbpf.bpf_tc_detach(hook(ifindexOf(ifname), attachPoint(direction)), filterOpts(filter, 0, 0)) as number;
  if (result === -ENOENT) return false;
  check(result, 'bpf_tc_detach', `interface ${ifname} ${direction}`);
  return true;
}

/** id of the program in our filter slot, 0 when none. */
export function queryTc(ifname: string, direction: TcDirection, filter = DEFAULT_TC_FILTER): number {
  const opts = filterOpts(filter, 0, 0);
  const result = libbpf.bpf_tc_query(hook(ifindexOf(ifname), attachPoint(direction)), opts) as number;
  // Once the last filter is gone the kernel drops the chain too and answers EINVAL ("cannot find
  // specified filter chain") instead of ENOENT; our own arguments are always well-formed.
  if (result === -ENOENT || result === -EINVAL) return 0;
  check(result, 'bpf_tc_query', `interface ${ifname} ${direction}`);
  return opts.readUInt32LE(16);
}

/** Remove the clsact qdisc and with it every tc filter on the interface. */
export function removeClsact(ifname: string): void {
  const result = libbpf.bpf_tc_hook_destroy(hook(ifindexOf(ifname), BPF_TC_INGRESS | BPF_TC_EGRESS)) as number;
  if (result !== -ENOENT) check(result, 'bpf_tc_hook_destroy (clsact)', `interface ${ifname}`);
}
