/**
 * What demo runs leave on this machine, for the demo tests to look for and to remove in `finally`:
 * namespaces, processes (by the run dir their command lines name), mounts, the run dir.
 */
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { run } from '../../lb/datapath/topology.js';

export const runDir = (id: string): string => `/run/xlb-demo-${id}`;

export function namespaces(): string[] {
  return run('ip', ['netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((ns) => ns !== '');
}

export function pidsIn(ns: string): number[] {
  return run('ip', ['netns', 'pids', ns], { allowFailure: true })
    .split('\n')
    .filter((l) => /^\d+$/.test(l.trim()))
    .map(Number);
}

/** Alive and not a zombie (a killed demo's agents are reparented to a pid 1 that may not reap them). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

/** Live processes whose command line names `text` (agents, relays, etcd and the apiserver name their run dir), this one aside. */
export function processesNaming(text: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid)
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(text);
      } catch {
        return false;
      }
    })
    .map(Number)
    .filter(alive);
}

export function mountsUnder(prefix: string): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(prefix));
}

export function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

/** What a test removes in `finally`, whatever the code under test did: everything of run `id`. */
export function removeRun(id: string): void {
  for (const ns of namespaces().filter((n) => n.startsWith('xlb-demo-') && n.endsWith(`-${id}`))) {
    for (const pid of pidsIn(ns)) kill(pid);
    run('ip', ['netns', 'delete', ns], { allowFailure: true });
  }
  for (const pid of processesNaming(`${runDir(id)}/`)) kill(pid);
  for (const mount of mountsUnder(`${runDir(id)}/`)) run('umount', ['-l', mount], { allowFailure: true });
  rmSync(runDir(id), { recursive: true, force: true });
}
