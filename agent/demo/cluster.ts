/**
 * The demo's world: the lab (agent/lab: a client, an LB node and three backend nodes in network
 * namespaces), a bpffs mounted in a temp dir (`ip netns exec` remounts /sys, so an agent in a netns
 * cannot see /sys/fs/bpf), lab servers on the backends, and a real xlb-agent on every node: XDP on
 * the LB node, tc only (the DSR receive side) on the backends.
 *
 * With `kubernetes` (`xlb demo --kubernetes`) the services come from a real kube-apiserver instead:
 * etcd and kube-apiserver 1.20 on the host's 127.0.0.1 (agent/lab/kube-apiserver.ts; their temp dir in
 * the run dir, their pids recorded there as they are spawned), every node's agent in Kubernetes mode,
 * each reaching the apiserver through a loopback relay (agent/lab/relay.ts: a node's namespace has a
 * loopback of its own).
 *
 * destroy() removes all of it, once, whatever was built so far (agents SIGTERM'd and awaited, servers
 * and clients stopped, relays and the apiserver stopped, namespaces deleted, bpffs unmounted, temp dir
 * removed). keep() leaves it running and writes a state file naming it (standalone only).
 *
 * A run holds a lock in its temp dir for as long as its process lives, and the kernel drops it when
 * the process goes, however it goes. cleanupDemoRuns() (`xlb demo --cleanup`) finds every run whose
 * lock nobody holds by the names the demo gives what it makes, and removes what is left of it: a lab
 * kept with --keep is such a run (the state file names it), and so is a demo killed with SIGKILL (the
 * apiserver and etcd of a Kubernetes run die with it, by their parent death signal; a cleanup stops
 * any the run's record names all the same).
 */
import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { mountBpffs, unmountBpffs } from '../../lb/datapath/bpffs.js';
import { FileLock } from '../../lb/datapath/file-lock.js';
import { run } from '../../lb/datapath/topology.js';
import { KubeApiServer, buildKubeApiServer, etcdBinary, kubeApiServerRecipe } from '../lab/kube-apiserver.js';
import { LabProcesses } from '../lab/processes.js';
import { LoopbackRelay } from '../lab/relay.js';
import { LAB_POD_DEVICE_PATTERN, Lab, type LabHost } from '../lab/topology.js';
import { AgentProcess } from './agent-process.js';
import { NAMESPACE_NAME, RUN_DIR_NAME, hostProcessesFile, paths, runDir, runLock } from './paths.js';
import type { Output } from './report.js';

const AGENT_READY_TIMEOUT_MS = 45_000;
const SERVER_READY_TIMEOUT_MS = 10_000;
/** A demo waits this long for another's set-up or a cleanup's survey (paths.setupLock); both take a second or so. */
const SETUP_LOCK_TIMEOUT_MS = 60_000;
/** What a leftover run's processes get after SIGTERM (agents detach their programs), then after SIGKILL. */
const STOP_TIMEOUT_MS = 10_000;
const KILL_TIMEOUT_MS = 2_000;
const HTTP_PORT = 8080;
const UDP_PORT = 5353;
/** Each server of a fresh etcd + kube-apiserver 1.20 takes a few seconds here; more on a busy machine. */
const APISERVER_START_TIMEOUT_MS = 60_000;

export interface DemoOptions {
  /** services from a real kube-apiserver (every agent in Kubernetes mode), not from the agents' API */
  kubernetes?: boolean;
}

export interface DemoNode {
  /** "lb", "b1", "b2", "b3": also the lab server's name on a backend */
  name: string;
  host: LabHost;
  agent: AgentProcess;
}

/** What `--keep` leaves behind, for `xlb demo --cleanup`. */
export interface KeptState {
  dir: string;
  bpffs: string;
  namespaces: string[];
  agents: { node: string; pid: number | undefined; socket: string; bpffs: string; log: string }[];
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class DemoCluster {
  private labValue: Lab | undefined;
  private processesValue: LabProcesses | undefined;
  private dirValue: string | undefined;
  private runLock: FileLock | undefined;
  private bpffsMounted = false;
  private readonly nodes: DemoNode[] = [];
  private teardown: Promise<string[]> | undefined;
  private kept = false;
  private kubeValue: KubeApiServer | undefined;
  /** The apiserver's start while it is under way: a teardown waits for it, then stops what it started. */
  private kubeStarting: Promise<unknown> | undefined;
  private readonly relays: LoopbackRelay[] = [];
  /** Aborted by destroy(): stops a kube-apiserver build under way. */
  private readonly abort = new AbortController();

  constructor(
    private readonly out: Output,
    readonly options: DemoOptions = {},
  ) {}

  get kubernetes(): boolean {
    return this.options.kubernetes === true;
  }

  /** The apiserver of a Kubernetes run. */
  get kube(): KubeApiServer {
    if (!this.kubeValue) throw new Error('no kube-apiserver: not a Kubernetes run, or not started');
    return this.kubeValue;
  }

  get lab(): Lab {
    if (!this.labValue) throw new Error('the lab is not built');
    return this.labValue;
  }

  get processes(): LabProcesses {
    if (!this.processesValue) throw new Error('the lab processes are not started');
    return this.processesValue;
  }

  get dir(): string {
    if (this.dirValue === undefined) throw new Error('no temp dir');
    return this.dirValue;
  }

  get bpffs(): string {
    return `${this.dir}/bpffs`;
  }

  get lb(): DemoNode {
    const lb = this.nodes.find((n) => n.name === 'lb');
    if (!lb) throw new Error('no LB node agent');
    return lb;
  }

  get backends(): DemoNode[] {
    return this.nodes.filter((n) => n.name !== 'lb');
  }

  /** Builds everything; `interrupted()` is checked between phases (a signal tears down meanwhile). */
  async build(interrupted: () => boolean): Promise<void> {
    const stop = (): void => {
      if (interrupted()) throw new Error('interrupted');
    };
    // Before any namespace: a first build of the apiserver takes minutes.
    const binaries = this.kubernetes ? await this.kubeBinaries() : undefined;
    stop();
    const started = Date.now();
    const setup = await acquireSetupLock(interrupted);
    try {
      stop(); // a teardown that ran while this waited would not see a lab made now
      this.createLab();
    } finally {
      setup.release();
    }
    stop();
    mountBpffs(this.bpffs);
    this.bpffsMounted = true;
    this.out.line(`  RUN=${this.dir}   # the run's temp dir: agents' sockets, logs, state files`);
    this.out.line(`  mounted a bpffs for the agents' pinned maps on $RUN/bpffs`);

    // The apiserver starts while the servers do; the agents need both.
    const kubeStarted = binaries ? this.startApiServer(binaries) : Promise.resolve();
    this.kubeStarting = kubeStarted.catch(() => undefined);
    const lab = this.lab;
    this.processesValue = new LabProcesses(lab);
    const processes = this.processesValue;
    const names = lab.backends.map((_, i) => `b${i + 1}`);
    await Promise.all(lab.backends.map((b, i) => processes.startServer(b, names[i] ?? `b${i + 1}`)));
    this.out.line(`  started an HTTP server (:${HTTP_PORT}) and a UDP echo server (:${UDP_PORT}) on ${names.join(', ')}`);
    if (binaries) await this.out.during(() => 'waiting for etcd and kube-apiserver', kubeStarted);
    stop();

    const specs: { name: string; host: LabHost; xdp: 'native' | 'off' }[] = [
      { name: 'lb', host: lab.lb, xdp: 'native' },
      ...lab.backends.map((host, i) => ({ name: names[i] ?? `b${i + 1}`, host, xdp: 'off' as const })),
    ];
    const apiServers = this.kubernetes ? await this.startRelays(specs) : new Map<string, string>();
    stop();
    for (const spec of specs) {
      const apiServer = apiServers.get(spec.name);
      const agent = AgentProcess.start({
        node: spec.name,
        ns: spec.host.ns,
        xdp: spec.xdp,
        // Kubernetes: kube-proxy's default; each Service may choose with an annotation.
        mode: apiServer === undefined ? 'dsr' : 'snat',
        nodeAddresses: [spec.host.v4, spec.host.v6],
        dsrServiceRanges: lab.dsrServiceRanges,
        dir: this.dir,
        bpffs: this.bpffs,
        ...(apiServer === undefined
          ? { extraArgs: spec.name === 'lb' && lab.pod ? ['--pod-devices', LAB_POD_DEVICE_PATTERN] : [] }
          : { kubernetes: { kubeconfig: this.kube.kubeconfig, apiServer }, extraArgs: ['--node-name', spec.name] }),
      });
      this.nodes.push({ name: spec.name, host: spec.host, agent });
    }
    this.out.line(`  starting xlb-agent on every node (4 processes; each loads its eBPF programs through the kernel's verifier)`);
    this.out.line(`    LB node:       ${this.lb.agent.commandLine.replaceAll(this.dir, '$RUN')}`);
    this.out.line(
      this.kubernetes
        ? `    backend nodes: the same with --xdp off and their own --node-name (tc programs only: the DSR receive side)`
        : `    backend nodes: the same with --xdp off, no --pod-devices (tc programs only: the DSR receive side)`,
    );
    const pending = new Set(this.nodes.map((n) => n.name));
    await this.out.during(
      () => `waiting for xlb-agent on ${[...pending].join(', ')}`,
      Promise.all(
        this.nodes.map(async (node) => {
          await node.agent.ready(AGENT_READY_TIMEOUT_MS);
          pending.delete(node.name);
          this.out.line(`    xlb-agent on ${node.name.padEnd(2)} ready after ${((Date.now() - started) / 1000).toFixed(1)} s (pid ${String(node.agent.pid)})`);
        }),
      ),
    );
    stop();
  }

  /**
   * The apiserver and etcd binaries: the cached build of deploy/kube-apiserver.sh, else built now by
   * it, its progress shown (once per machine: minutes).
   */
  private async kubeBinaries(): Promise<{ apiserver: string; etcd: string }> {
    const fromEnv = process.env['XLB_KUBE_APISERVER'];
    const recipe = fromEnv ? { path: fromEnv, built: existsSync(fromEnv) } : kubeApiServerRecipe();
    const etcd = etcdBinary();
    if (recipe.built && etcd !== undefined) {
      this.out.line(`  kube-apiserver 1.20: ${recipe.path}${fromEnv ? ' ($XLB_KUBE_APISERVER)' : ' (built by deploy/kube-apiserver.sh, cached)'}; etcd: ${etcd}`);
      return { apiserver: recipe.path, etcd };
    }
    if (fromEnv) throw new Error(`$XLB_KUBE_APISERVER names ${fromEnv}, which does not exist`);
    this.out.line(`  kube-apiserver 1.20 is not built on this machine yet${etcd === undefined ? ' (nor is etcd installed)' : ''}: running deploy/kube-apiserver.sh`);
    this.out.line(`  (once per machine: it builds from Debian's kubernetes source package in 4–10 minutes on 2 cores and`);
    this.out.line(`  caches the binary in ~/.cache/xlb; Ctrl-C stops it, and \`bash deploy/kube-apiserver.sh\` does the same alone)`);
    const apiserver = await buildKubeApiServer((line) => this.out.line(`    ${line}`), this.abort.signal);
    const built = etcdBinary();
    if (built === undefined) throw new Error('deploy/kube-apiserver.sh finished, but there is no etcd on PATH');
    return { apiserver, etcd: built };
  }

  /** etcd and kube-apiserver, their dir in the run dir and their pids recorded there (for --cleanup). */
  private async startApiServer(binaries: { apiserver: string; etcd: string }): Promise<void> {
    const started = Date.now();
    const record = hostProcessesFile(this.dir);
    const kube = await KubeApiServer.start({
      apiserverBinary: binaries.apiserver,
      etcdBinary: binaries.etcd,
      startTimeoutMs: APISERVER_START_TIMEOUT_MS,
      parentDir: this.dir,
      onSpawn: (name, pid) => appendFileSync(record, `${pid} ${name}\n`),
    });
    if (this.teardown !== undefined) {
      // Torn down while it started: the teardown did not know it.
      await kube.stop();
      throw new Error('interrupted');
    }
    this.kubeValue = kube;
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    this.out.line(`  started etcd and kube-apiserver 1.20 on the host's 127.0.0.1 in ${seconds} s: ${kube.url} (pids ${kube.pids().join(', ')})`);
    this.out.line(`    kubeconfig $RUN/${kube.dir.slice(this.dir.length + 1)}/kubeconfig; no controllers run, so the demo writes what they would`);
  }

  /** One loopback relay per node; resolves with the apiserver URL each node's agent is given. */
  private async startRelays(specs: { name: string; host: LabHost }[]): Promise<Map<string, string>> {
    const kube = this.kube;
    const urls = new Map<string, string>();
    await Promise.all(
      specs.map(async (spec) => {
        const { relay, port } = await LoopbackRelay.start(spec.host.ns, `${this.dir}/${spec.name}-apiserver.sock`, { host: '127.0.0.1', port: kube.port });
        this.relays.push(relay);
        urls.set(spec.name, `https://127.0.0.1:${port}`);
      }),
    );
    this.out.line(`  each node reaches the apiserver at https://127.0.0.1:PORT in its own namespace, through a relay to`);
    this.out.line(`    the host's 127.0.0.1:${kube.port} (a unix socket; nothing is routed through the host's namespace)`);
    return urls;
  }

  /**
   * The namespaces, then the run's temp dir and the lock in it, all under paths.setupLock: from the
   * first namespace on, what this run makes is either locked by it or found by a cleanup as a
   * leftover of a run that died. The dir is ours only once mkdir made it (an id taken: not removed).
   */
  private createLab(): void {
    // The pod is the standalone demo's: the Kubernetes one writes no Pods, so no agent would be told of it.
    this.labValue = Lab.create('demo', { pod: !this.kubernetes, progress: (what) => this.out.line(`  ${what}`) });
    const { id, namespaces } = this.labValue.topology;
    const roles = namespaces.map((ns) => ns.replace(`xlb-demo-`, '').replace(`-${id}`, ''));
    this.out.line(`  network namespaces xlb-demo-{${roles.join(',')}}-${id}`);
    const dir = runDir(id);
    mkdirSync(dir, { mode: 0o700 });
    this.dirValue = dir;
    this.runLock = FileLock.tryAcquire(runLock(dir));
    if (!this.runLock) throw new Error(`${runLock(dir)} is held by another process`);
  }

  /** Tears everything down, once (later calls get the first call's promise); resolves with the problems met. */
  destroy(): Promise<string[]> {
    this.teardown ??= this.destroyNow();
    return this.teardown;
  }

  private async destroyNow(): Promise<string[]> {
    const problems: string[] = [];
    const attempt = async (what: string, step: () => unknown): Promise<void> => {
      try {
        await step();
      } catch (error) {
        problems.push(`${what}: ${message(error)}`);
      }
    };
    if (this.kept) return problems;
    this.abort.abort();
    await attempt('stopping the servers and clients', () => this.processesValue?.stopAll());
    await attempt('stopping the agents', () => Promise.all(this.nodes.map((n) => n.agent.stop())));
    await attempt('stopping the apiserver relays', () => Promise.all(this.relays.map((r) => r.stop())));
    await this.kubeStarting;
    await attempt('stopping kube-apiserver and etcd', () => this.kubeValue?.stop());
    await attempt('deleting the network namespaces', () => this.labValue?.destroy());
    await attempt('unmounting the bpffs', () => this.unmountBpffs());
    await attempt('removing the temp dir', () => this.dirValue !== undefined && rmSync(this.dirValue, { recursive: true, force: true }));
    this.runLock?.release();
    return problems;
  }

  private unmountBpffs(): void {
    if (!this.bpffsMounted) return;
    unmountBpffs(this.bpffs);
    this.bpffsMounted = false;
  }

  /**
   * Leaves the topology and the agents running (--keep): the servers move from this process's
   * LabProcesses to detached processes, the agents are let go, and the state file is written. The
   * run lock goes with this process (its children never had it): from then on the run is a leftover
   * that `xlb demo --cleanup` removes.
   */
  async keep(): Promise<KeptState> {
    if (this.kubernetes) throw new Error('a Kubernetes run cannot be kept: its apiserver and relays live in the demo process');
    if (existsSync(paths.keptState)) throw new Error(`${paths.keptState} exists: a kept demo is running; remove it first with xlb demo --cleanup`);
    await this.processes.stopAll();
    await Promise.all(this.backends.map((b) => startDetachedServer(b.host, b.name, `${this.dir}/${b.name}-server.log`)));
    for (const node of this.nodes) node.agent.detach();
    const state: KeptState = {
      dir: this.dir,
      bpffs: this.bpffs,
      namespaces: [...this.lab.topology.namespaces],
      agents: this.nodes.map((n) => ({ node: n.name, pid: n.agent.pid, socket: n.agent.socket, bpffs: n.agent.bpffs, log: n.agent.log })),
    };
    mkdirSync(dirname(paths.keptState), { recursive: true });
    writeFileSync(paths.keptState, `${JSON.stringify(state, null, 2)}\n`);
    this.kept = true;
    return state;
  }
}

/** A lab server (agent/lab/server.js, as LabProcesses starts it) that outlives this process. */
async function startDetachedServer(host: LabHost, name: string, log: string): Promise<void> {
  const fd = openSync(log, 'a');
  try {
    const args = ['--name', name, '--listen', host.v4, '--listen', host.v6, '--http-port', String(HTTP_PORT), '--udp-port', String(UDP_PORT)];
    spawn('ip', ['netns', 'exec', host.ns, process.execPath, paths.server, ...args], { detached: true, stdio: ['ignore', fd, fd] }).unref();
  } finally {
    closeSync(fd);
  }
  const deadline = Date.now() + SERVER_READY_TIMEOUT_MS;
  while (!/^ready$/m.test(readFileSync(log, 'utf8'))) {
    if (Date.now() > deadline) throw new Error(`server ${name} in ${host.ns} did not start: ${readFileSync(log, 'utf8').trim()}`);
    await sleep(50);
  }
}

/** paths.setupLock, waited for with a deadline (a demo setting up or a cleanup surveying holds it for a second or so). */
async function acquireSetupLock(interrupted: () => boolean = () => false): Promise<FileLock> {
  const deadline = Date.now() + SETUP_LOCK_TIMEOUT_MS;
  for (;;) {
    const lock = FileLock.tryAcquire(paths.setupLock);
    if (lock) return lock;
    if (interrupted()) throw new Error('interrupted');
    if (Date.now() > deadline) throw new Error(`${paths.setupLock} still held after ${SETUP_LOCK_TIMEOUT_MS / 1000} s: another demo setting up, or a cleanup, did not finish`);
    await sleep(50);
  }
}

/** What one earlier demo run left, found by the names the demo gives it. */
interface Leftover {
  id: string;
  /** its temp dir, when there is one; then `lock` is its run lock, now held by this cleanup */
  dir: string | undefined;
  lock: FileLock | undefined;
  namespaces: string[];
  /** the run `xlb demo --keep` left: the state file names it */
  kept: boolean;
}

/** What `xlb demo --cleanup` did: runs whose remains it removed, runs it left alone, and what went wrong. */
export interface CleanupReport {
  removed: string[];
  running: string[];
  problems: string[];
}

/**
 * Removes what earlier demo runs left, and only that: run dirs /run/xlb-demo-<id> whose run lock no
 * process holds, namespaces xlb-demo-<role>-<id> of those runs and of runs whose dir is gone too
 * (killed during set-up), the processes in those namespaces and those the run recorded on the host
 * (SIGTERM, so the agents detach their programs; SIGKILL after a deadline), mounts under the run dirs (the bpffs), and the state file of a
 * kept run. A running demo holds its lock and is left alone. Reports what it did through `log`.
 */
export async function cleanupDemoRuns(log: (line: string) => void): Promise<CleanupReport> {
  const report: CleanupReport = { removed: [], running: [], problems: [] };
  const kept = readKeptState();
  if (kept.problem !== undefined) report.problems.push(kept.problem);
  // Under the set-up lock: no demo is between its first namespace and its run lock meanwhile.
  const setup = await acquireSetupLock();
  let leftovers: Leftover[];
  try {
    ({ leftovers, running: report.running } = surveyRuns(kept.id));
  } finally {
    setup.release();
  }
  for (const id of report.running) log(`demo run ${id} is running (its process holds ${runLock(runDir(id))}): left alone`);
  for (const leftover of leftovers) {
    report.problems.push(...(await removeLeftover(leftover, log)));
    report.removed.push(leftover.id);
  }
  // A state file naming a run of which nothing is left any more (removed by hand).
  if (kept.id !== undefined && !report.running.includes(kept.id) && !leftovers.some((l) => l.kept)) {
    removeKeptState();
    log(`removed ${paths.keptState} (it named demo run ${kept.id}, of which nothing was left)`);
    report.removed.push(kept.id);
  }
  return report;
}

/** The run the state file names, when there is a state file; a file that names no demo run is left to a human. */
function readKeptState(): { id?: string; problem?: string } {
  if (!existsSync(paths.keptState)) return {};
  let dir: unknown;
  try {
    dir = (JSON.parse(readFileSync(paths.keptState, 'utf8')) as Partial<KeptState>).dir;
  } catch {
    // unreadable: reported below
  }
  const id = typeof dir === 'string' && dirname(dir) === paths.runBase ? RUN_DIR_NAME.exec(dir.slice(paths.runBase.length + 1))?.[1] : undefined;
  if (id === undefined) return { problem: `${paths.keptState} does not describe a demo run; left it (remove it by hand)` };
  return { id };
}

function removeKeptState(): void {
  rmSync(dirname(paths.keptState), { recursive: true, force: true });
}

/**
 * Every demo run on this machine, by its names: run dirs and namespaces, grouped by run id. A run
 * whose lock is held is running; the others are leftovers, their locks now held by this process.
 * Dirs are listed before namespaces: a demo tearing down deletes its namespaces, then its dir, then
 * lets go of its lock, so a run seen without a dir had no namespaces left either, and a run whose dir
 * vanished before its lock could be taken was finishing on its own.
 */
function surveyRuns(keptId: string | undefined): { leftovers: Leftover[]; running: string[] } {
  const dirs = new Set<string>();
  for (const name of readdirSync(paths.runBase)) {
    const id = RUN_DIR_NAME.exec(name)?.[1];
    // A directory of that name, never a symlink: everything under it gets removed.
    if (id !== undefined && lstatSync(join(paths.runBase, name), { throwIfNoEntry: false })?.isDirectory() === true) dirs.add(id);
  }
  const namespaces = new Map<string, string[]>();
  for (const line of run('ip', ['netns', 'list']).split('\n')) {
    const ns = line.split(' ')[0] ?? '';
    const id = NAMESPACE_NAME.exec(ns)?.[1];
    if (id !== undefined) namespaces.set(id, [...(namespaces.get(id) ?? []), ns]);
  }
  const leftovers: Leftover[] = [];
  const running: string[] = [];
  for (const id of [...new Set([...dirs, ...namespaces.keys()])].sort()) {
    const dir = dirs.has(id) ? runDir(id) : undefined;
    let lock: FileLock | undefined;
    if (dir !== undefined) {
      try {
        lock = FileLock.tryAcquire(runLock(dir));
      } catch (error) {
        if (!existsSync(dir)) continue; // its demo finished meanwhile
        throw error;
      }
      if (lock === undefined) {
        running.push(id);
        continue;
      }
    }
    leftovers.push({ id, dir, lock, namespaces: (namespaces.get(id) ?? []).sort(), kept: id === keptId });
  }
  return { leftovers, running };
}

/** Removes one leftover run, in the order its parts depend on each other; resolves with the problems met. */
async function removeLeftover(leftover: Leftover, log: (line: string) => void): Promise<string[]> {
  const problems: string[] = [];
  log(`demo run ${leftover.id} (${leftover.kept ? 'kept with --keep' : 'its demo ended without cleaning up'}):`);
  try {
    const host = leftover.dir === undefined ? [] : recordedHostProcesses(leftover.dir);
    const stopped = await stopProcesses([...new Set(leftover.namespaces.flatMap(pidsIn)), ...host.map((p) => p.pid)]);
    const inNamespaces = stopped.pids.filter((pid) => !host.some((p) => p.pid === pid));
    const killed = (pids: number[]): string => {
      const n = pids.filter((pid) => stopped.killed.includes(pid)).length;
      return n > 0 ? `; ${n} only by SIGKILL` : '';
    };
    if (inNamespaces.length > 0) {
      log(`  stopped ${count(inNamespaces.length, 'process', 'processes')} in its namespaces (agents, servers, clients): pids ${inNamespaces.join(' ')}${killed(inNamespaces)}`);
    }
    if (host.length > 0) {
      log(`  stopped ${host.map((p) => `${p.name} (pid ${p.pid})`).join(', ')} on the host${killed(host.map((p) => p.pid))}`);
    }
    if (stopped.left.length > 0) problems.push(`run ${leftover.id}: processes ${stopped.left.join(' ')} survived SIGKILL`);

    const deleted: string[] = [];
    for (const ns of leftover.namespaces) {
      try {
        run('ip', ['netns', 'delete', ns]);
        deleted.push(ns);
      } catch (error) {
        problems.push(message(error));
      }
    }
    if (deleted.length > 0) log(`  deleted ${count(deleted.length, 'network namespace', 'network namespaces')}: ${deleted.join(' ')}`);

    if (leftover.dir !== undefined) {
      const dir = leftover.dir;
      // Deepest first; a directory is removed only once nothing is mounted under it any more.
      for (const mount of mountsUnder(dir).sort((a, b) => b.path.length - a.path.length)) {
        try {
          unmountBpffs(mount.path);
          log(`  unmounted ${mount.path} (${mount.type})`);
        } catch (error) {
          problems.push(message(error));
        }
      }
      if (mountsUnder(dir).length === 0) {
        rmSync(dir, { recursive: true, force: true });
        log(`  removed ${dir}`);
      } else {
        problems.push(`${dir}: still has mounts under it; left it`);
      }
    }
    if (leftover.kept) {
      removeKeptState();
      log(`  removed ${paths.keptState}`);
    }
  } finally {
    leftover.lock?.release();
  }
  return problems;
}

function count(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Mount points at or under `dir` (/proc/mounts escapes spaces; the demo's names have none). */
function mountsUnder(dir: string): { path: string; type: string }[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .flatMap(([, path, type]) => (path !== undefined && (path === dir || path.startsWith(`${dir}/`)) ? [{ path, type: type ?? '?' }] : []));
}

/**
 * The host processes a run recorded (hostProcessesFile) that still run as what it started: alive, and
 * their command line names the run dir (etcd's data dir and the apiserver's certificates are in it),
 * so a pid the system gave to another process since is never touched.
 */
function recordedHostProcesses(dir: string): { pid: number; name: string }[] {
  let text: string;
  try {
    text = readFileSync(hostProcessesFile(dir), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .map((line) => /^(\d+) (\S+)$/.exec(line))
    .flatMap((m) => (m?.[1] !== undefined && m[2] !== undefined ? [{ pid: Number(m[1]), name: m[2] }] : []))
    .filter(({ pid }) => isRunning(pid) && commandLine(pid).includes(`${dir}/`));
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/** Every process of `pids` gets SIGTERM, then, if still there after the deadline, SIGKILL. */
async function stopProcesses(candidates: number[]): Promise<{ pids: number[]; killed: number[]; left: number[] }> {
  const pids = [...new Set(candidates)].filter((pid) => pid !== process.pid).sort((a, b) => a - b);
  for (const pid of pids) signal(pid, 'SIGTERM');
  await waitGone(pids, STOP_TIMEOUT_MS);
  const killed = pids.filter(isRunning);
  for (const pid of killed) signal(pid, 'SIGKILL');
  await waitGone(killed, KILL_TIMEOUT_MS);
  return { pids, killed, left: killed.filter(isRunning) };
}

function pidsIn(ns: string): number[] {
  return run('ip', ['netns', 'pids', ns], { allowFailure: true })
    .split('\n')
    .filter((l) => /^\d+$/.test(l.trim()))
    .map(Number);
}

async function waitGone(pids: number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(isRunning) && Date.now() < deadline) await sleep(50);
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

/**
 * Alive and not a zombie: a killed demo's agents are reparented to pid 1, which may be slow to reap
 * them (or never do, in a container), and kill(pid, 0) succeeds on a zombie.
 */
function isRunning(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}
