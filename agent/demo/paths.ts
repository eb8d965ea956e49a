/** Where the demo finds the programs it runs (we run from dist/agent/demo/) and where it keeps its state. */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const distAgent = join(dirname(fileURLToPath(import.meta.url)), '..');

export const paths = {
  /** the repository (or package) root */
  root: join(distAgent, '..', '..'),
  /** xlb-agent */
  agent: join(distAgent, 'main.js'),
  /** the xlb CLI */
  cli: join(distAgent, 'cli', 'main.js'),
  /** the lab's HTTP + UDP echo server (agent/lab/server.ts) */
  server: join(distAgent, 'lab', 'server.js'),
  /** parent of each run's temp dir (/run/xlb-demo-<id>) */
  runBase: '/run',
  /** what `xlb demo --keep` leaves for `xlb demo --cleanup` */
  keptState: '/run/xlb-demo/state.json',
  /**
   * Held while a demo creates its namespaces and takes its run lock, and while `xlb demo --cleanup`
   * looks for leftovers: a run's namespaces exist before its run dir does, so without it a cleanup
   * could take a run still being set up for one that was killed. Never removed (like /run/xtables.lock):
   * a lock file unlinked while someone waits for it locks nothing.
   */
  setupLock: '/run/xlb-demo.lock',
} as const;

/** The names a demo run gives what it makes; `xlb demo --cleanup` removes only what matches them. */
export const RUN_DIR_NAME = /^xlb-demo-([a-z0-9]+)$/;
/** xlb-demo-<role>-<id>, as agent/lab/topology.ts names a demo lab's namespaces */
export const NAMESPACE_NAME = /^xlb-demo-[a-z0-9]+-([a-z0-9]+)$/;

/** The temp dir of one run: sockets, state files, logs, the bpffs mount. */
export function runDir(id: string): string {
  return join(paths.runBase, `xlb-demo-${id}`);
}

/**
 * Processes a run starts outside its namespaces (`xlb demo --kubernetes`: etcd and kube-apiserver on
 * the host's 127.0.0.1), one "PID NAME" line each, written as each is spawned: `xlb demo --cleanup`
 * stops those of a run that was killed (each only while its command line still names the run dir).
 */
export function hostProcessesFile(dir: string): string {
  return join(dir, 'host-processes');
}

/** Held by a demo run for as long as its process lives (flock: the kernel drops it even on SIGKILL). */
export function runLock(dir: string): string {
  return join(dir, 'demo.lock');
}
