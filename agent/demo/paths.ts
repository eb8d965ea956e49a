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
} as const;

/** The temp dir of one run: sockets, state files, logs, the bpffs mount. */
export function runDir(id: string): string {
  return join(paths.runBase, `xlb-demo-${id}`);
}
