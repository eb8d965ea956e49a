import { BpfError } from './errors.js';
import { libcCalls } from './libbpf.js';

const ENODEV = 19;

/** ifindex of an interface in the calling thread's network namespace. */
export function ifindexOf(ifname: string): number {
  const index = libcCalls.if_nametoindex(ifname) as number;
  if (index === 0) throw new BpfError('if_nametoindex', `interface ${ifname}`, ENODEV);
  return index;
}
