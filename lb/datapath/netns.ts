import { closeSync, openSync } from 'node:fs';
import { BpfError } from './errors.js';
import { koffi, libcCalls } from './libbpf.js';

const CLONE_NEWNET = 0x40000000;

/**
 * Run `fn` with the calling thread inside network namespace `name` (/run/netns/<name>), then return.
 * Only synchronous work belongs here: the namespace is per thread, and Node's other threads and
 * any awaited continuation stay where they were.
 */
export function inNetns<T>(name: string, fn: () => T): T {
  const home = openSync('/proc/thread-self/ns/net', 'r');
  const target = openSync(`/run/netns/${name}`, 'r');
  try {
    if ((libcCalls.setns(target, CLONE_NEWNET) as number) !== 0) throw new BpfError('setns', `network namespace ${name}`, koffi.errno());
    try {
      return fn();
    } finally {
      if ((libcCalls.setns(home, CLONE_NEWNET) as number) !== 0) {
        // Staying in the wrong namespace would silently misdirect every later operation.
        process.stderr.write(`xlb: cannot return from network namespace ${name}; exiting\n`);
        process.exit(70);
      }
    }
  } finally {
    closeSync(target);
    closeSync(home);
  }
}
