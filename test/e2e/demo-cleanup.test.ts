/**
 * `xlb demo --cleanup` as a user runs it. After a demo killed with SIGKILL (its agents run on, in
 * process groups of their own) it stops them and removes the run's namespaces, bpffs mount and run
 * dir, naming each; a second --cleanup has nothing to do. A run whose lock is held (a demo still
 * running) is left alone; namespaces of a run without a dir (killed during set-up) and a kept run
 * (the state file names it) are removed like any other leftover.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { FileLock } from '../../lb/datapath/file-lock.js';
import { run } from '../../lb/datapath/topology.js';
import { repoRoot } from '../support/paths.js';
import { runNode, type NodeRun } from '../support/run-node.js';
import { waitFor } from '../support/wait.js';
import { alive, mountsUnder, namespaces, pidsIn, processesNaming, removeRun, runDir } from '../support/demo-runs.js';

const CLI = join(repoRoot, 'dist', 'agent', 'cli', 'main.js');
const KEPT_STATE = '/run/xlb-demo/state.json';
const SETUP_LOCK = '/run/xlb-demo.lock';
const SETUP_TIMEOUT_MS = 60_000;

const runLock = (id: string): string => `${runDir(id)}/demo.lock`;

/** `xlb ARGS` to completion. */
function xlb(...args: string[]): Promise<NodeRun> {
  return runNode(CLI, args);
}

/**
 * What demo runs left on this machine: namespaces, mounts and run dirs of every run whose lock
 * nobody holds (a demo another test or person runs at the same time holds its own). Under the demo's
 * set-up lock, as --cleanup looks: a demo being set up has namespaces before it has a run dir.
 */
async function demoLeftovers(): Promise<{ netns: string[]; mounts: string[]; dirs: string[] }> {
  let setup: FileLock | undefined;
  await waitFor(() => (setup = FileLock.tryAcquire(SETUP_LOCK)) !== undefined, 60_000, SETUP_LOCK);
  try {
    const live = (id: string | undefined): boolean => id !== undefined && existsSync(runDir(id)) && FileLock.isHeld(runLock(id));
    return {
      netns: namespaces().filter((ns) => /^xlb-demo-/.test(ns) && !live(/^xlb-demo-[a-z0-9]+-([a-z0-9]+)$/.exec(ns)?.[1])),
      mounts: mountsUnder('/run/xlb-demo-').filter((m) => !live(/^\/run\/xlb-demo-([a-z0-9]+)/.exec(m)?.[1])),
      dirs: readdirSync('/run').filter((d) => /^xlb-demo-[a-z0-9]+$/.test(d) && !live(d.slice('xlb-demo-'.length))),
    };
  } finally {
    setup?.release();
  }
}

test('a demo killed with SIGKILL: --cleanup stops its agents and removes its namespaces, bpffs and run dir', { timeout: SETUP_TIMEOUT_MS + 60_000 }, async () => {
  const demo = spawn(process.execPath, [CLI, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  demo.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  demo.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = once(demo, 'exit');
  let id: string | undefined;
  try {
    // Until every agent is up: the run is then all there (namespaces, bpffs, agents, servers).
    await waitFor(() => (out.match(/xlb-agent on \S+ +ready after/g) ?? []).length === 4 || demo.exitCode !== null, SETUP_TIMEOUT_MS, 'the demo\'s agents');
    id = /RUN=\/run\/xlb-demo-([a-z0-9]+)/.exec(out)?.[1];
    assert.ok(id !== undefined && demo.exitCode === null, `the demo runs and names its run dir:\n${out}`);
    const ours = namespaces().filter((ns) => ns.startsWith('xlb-demo-') && ns.endsWith(`-${id}`));
    const pids = ours.flatMap(pidsIn);
    // sw, client, lb, b1-b3 and the pod on the LB node
    assert.equal(ours.length, 7, ours.join(' '));
    assert.ok(ours.includes(`xlb-demo-pod-${id}`), ours.join(' '));
    assert.ok(pids.length >= 7, `4 agents and 3 servers in the run's namespaces: ${pids.join(' ')}`);

    demo.kill('SIGKILL');
    await exited;
    // What a hard kill leaves: the agents run on, the namespaces and the bpffs stay.
    assert.ok(pids.some(alive), 'the agents outlive the killed demo');
    assert.equal(namespaces().filter((ns) => ns.endsWith(`-${id}`)).length, 7);
    assert.deepEqual(mountsUnder(runDir(id)), [`${runDir(id)}/bpffs`]);

    const cleanup = await xlb('demo', '--cleanup');
    const context = `stdout:\n${cleanup.out}\nstderr:\n${cleanup.err}`;
    assert.equal(cleanup.code, 0, context);
    assert.match(cleanup.out, new RegExp(`^demo run ${id} \\(its demo ended without cleaning up\\):$`, 'm'), context);
    assert.match(cleanup.out, /^ {2}stopped \d+ processes in its namespaces/m, context);
    assert.match(cleanup.out, new RegExp(`^ {2}deleted 7 network namespaces: .*xlb-demo-lb-${id}.*xlb-demo-pod-${id}`, 'm'), context);
    assert.match(cleanup.out, new RegExp(`^ {2}unmounted ${runDir(id)}/bpffs \\(bpf\\)$`, 'm'), context);
    assert.match(cleanup.out, new RegExp(`^ {2}removed ${runDir(id)}$`, 'm'), context);
    assert.doesNotMatch(cleanup.out, /nothing to clean up/, context);

    assert.deepEqual(await demoLeftovers(), { netns: [], mounts: [], dirs: [] }, context);
    assert.deepEqual(pids.filter(alive), [], `the run's processes are gone\n${context}`);
    assert.deepEqual(processesNaming(runDir(id)), [], `no process names the run dir\n${context}`);

    const again = await xlb('demo', '--cleanup');
    assert.equal(again.code, 0, again.err);
    assert.match(again.out, /^nothing to clean up$/m, again.out);
    assert.doesNotMatch(again.out, /^demo run \S+ \(/m, again.out);
  } finally {
    demo.kill('SIGKILL');
    id ??= /RUN=\/run\/xlb-demo-([a-z0-9]+)/.exec(out)?.[1];
    if (id !== undefined) removeRun(id);
  }
});

test('--cleanup leaves a run whose lock is held alone, and removes it once the lock is gone', { timeout: 60_000 }, async () => {
  // A live run as a demo makes it: the run dir with its lock held (here by this process), a namespace
  // with a process in it. And namespaces of a run with no dir: killed before it made one.
  const live = `t${randomBytes(4).toString('hex')}`;
  const orphan = `t${randomBytes(4).toString('hex')}`;
  const liveNs = `xlb-demo-lb-${live}`;
  const orphanNs = [`xlb-demo-sw-${orphan}`, `xlb-demo-client-${orphan}`];
  let lock: FileLock | undefined;
  let sleeper: ChildProcess | undefined;
  try {
    mkdirSync(runDir(live), { mode: 0o700 });
    lock = FileLock.tryAcquire(runLock(live));
    assert.ok(lock);
    for (const ns of [liveNs, ...orphanNs]) run('ip', ['netns', 'add', ns]);
    sleeper = spawn('ip', ['netns', 'exec', liveNs, 'sleep', '60'], { stdio: 'ignore' });
    const pid = sleeper.pid;
    assert.ok(pid !== undefined);
    await waitFor(() => pidsIn(liveNs).includes(pid), 5_000, 'the process in the live run\'s namespace');

    const first = await xlb('demo', '--cleanup');
    const context = `stdout:\n${first.out}\nstderr:\n${first.err}`;
    assert.equal(first.code, 0, context);
    assert.match(first.out, new RegExp(`^demo run ${live} is running \\(its process holds ${runLock(live)}\\): left alone$`, 'm'), context);
    assert.match(first.out, new RegExp(`^demo run ${orphan} \\(its demo ended without cleaning up\\):$`, 'm'), context);
    assert.match(first.out, new RegExp(`^ {2}deleted 2 network namespaces: xlb-demo-client-${orphan} xlb-demo-sw-${orphan}$`, 'm'), context);
    assert.doesNotMatch(first.out, new RegExp(`^demo run ${live} \\(`, 'm'), context);
    assert.ok(namespaces().includes(liveNs), 'the live run keeps its namespace');
    assert.ok(existsSync(runDir(live)), 'the live run keeps its dir');
    assert.ok(alive(pid), 'the live run keeps its process');
    assert.deepEqual(namespaces().filter((ns) => ns.endsWith(`-${orphan}`)), []);

    // The run's process is gone (as a demo --keep exits): its remains are a leftover now.
    lock.release();
    const second = await xlb('demo', '--cleanup');
    const context2 = `stdout:\n${second.out}\nstderr:\n${second.err}`;
    assert.equal(second.code, 0, context2);
    assert.match(second.out, new RegExp(`^demo run ${live} \\(its demo ended without cleaning up\\):$`, 'm'), context2);
    assert.match(second.out, new RegExp(`^ {2}stopped 1 process in its namespaces .*: pids ${pid}$`, 'm'), context2);
    assert.match(second.out, new RegExp(`^ {2}deleted 1 network namespace: ${liveNs}$`, 'm'), context2);
    assert.match(second.out, new RegExp(`^ {2}removed ${runDir(live)}$`, 'm'), context2);
    assert.ok(!alive(pid), 'the process in its namespace is stopped');
    assert.ok(!namespaces().includes(liveNs));
    assert.ok(!existsSync(runDir(live)));
  } finally {
    lock?.release();
    sleeper?.kill('SIGKILL');
    removeRun(live);
    removeRun(orphan);
  }
});

test('--cleanup removes a kept run with its state file, and a state file naming nothing left', { timeout: 30_000 }, async (t) => {
  if (existsSync(KEPT_STATE)) {
    t.skip(`${KEPT_STATE} exists: a demo --keep is running on this machine`);
    return;
  }
  const kept = `t${randomBytes(4).toString('hex')}`;
  const gone = `t${randomBytes(4).toString('hex')}`;
  const keptNs = `xlb-demo-lb-${kept}`;
  const writeState = (id: string): void => {
    mkdirSync(dirname(KEPT_STATE), { recursive: true });
    writeFileSync(KEPT_STATE, JSON.stringify({ dir: runDir(id), bpffs: `${runDir(id)}/bpffs`, namespaces: [], agents: [] }));
  };
  try {
    // What `xlb demo --keep` leaves once its process has exited: the dir (lock free), a namespace, the state file.
    mkdirSync(runDir(kept), { mode: 0o700 });
    FileLock.tryAcquire(runLock(kept))?.release();
    run('ip', ['netns', 'add', keptNs]);
    writeState(kept);
    const first = await xlb('demo', '--cleanup');
    const context = `stdout:\n${first.out}\nstderr:\n${first.err}`;
    assert.equal(first.code, 0, context);
    assert.match(first.out, new RegExp(`^demo run ${kept} \\(kept with --keep\\):$`, 'm'), context);
    assert.match(first.out, new RegExp(`^ {2}deleted 1 network namespace: ${keptNs}$`, 'm'), context);
    assert.match(first.out, new RegExp(`^ {2}removed ${runDir(kept)}$`, 'm'), context);
    assert.match(first.out, new RegExp(`^ {2}removed ${KEPT_STATE}$`, 'm'), context);
    assert.ok(!existsSync(KEPT_STATE) && !existsSync(runDir(kept)) && !namespaces().includes(keptNs), context);

    // The kept run was removed by hand; only its state file is left.
    writeState(gone);
    const second = await xlb('demo', '--cleanup');
    assert.equal(second.code, 0, second.err);
    assert.match(second.out, new RegExp(`^removed ${KEPT_STATE} \\(it named demo run ${gone}, of which nothing was left\\)$`, 'm'), second.out);
    assert.ok(!existsSync(KEPT_STATE));
  } finally {
    removeRun(kept);
    removeRun(gone);
    // Only the state file this test wrote: it names one of the test's runs.
    if (existsSync(KEPT_STATE) && [kept, gone].some((id) => readFileSync(KEPT_STATE, 'utf8').includes(runDir(id)))) rmSync(dirname(KEPT_STATE), { recursive: true, force: true });
  }
});
