/**
 * `xlb demo --kubernetes` as a user runs it: a real kube-apiserver (the cached build of
 * deploy/kube-apiserver.sh), every agent in Kubernetes mode, real traffic; every step holds and
 * nothing is left (namespaces, mounts, run dir, the apiserver and etcd, agents and relays). A run
 * killed with SIGKILL is removed by `xlb demo --cleanup`, and so are host processes a run recorded
 * (only while they still name its run dir).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { kubeApiServerRecipe } from '../../agent/lab/kube-apiserver.js';
import { repoRoot } from '../support/paths.js';
import { runNode } from '../support/run-node.js';
import { waitFor } from '../support/wait.js';
import { alive, mountsUnder, namespaces, pidsIn, processesNaming, removeRun, runDir } from '../support/demo-runs.js';

const CLI = join(repoRoot, 'dist', 'agent', 'cli', 'main.js');
const DEMO_TIMEOUT_MS = 150_000;
const SETUP_TIMEOUT_MS = 90_000;

const runIdIn = (output: string): string | undefined => /RUN=\/run\/xlb-demo-([a-z0-9]+)/.exec(output)?.[1];

/** Everything of run `id` that may be left: namespaces, mounts, the run dir, processes naming it. */
function leftovers(id: string): { netns: string[]; mounts: string[]; dir: boolean; processes: number[] } {
  return {
    netns: namespaces().filter((ns) => ns.startsWith('xlb-demo-') && ns.endsWith(`-${id}`)),
    mounts: mountsUnder(`${runDir(id)}/`),
    dir: existsSync(runDir(id)),
    processes: processesNaming(`${runDir(id)}/`),
  };
}

const NOTHING = { netns: [], mounts: [], dir: false, processes: [] };

/** The pids the demo printed for etcd and kube-apiserver. */
function apiServerPids(output: string): number[] {
  const pids = /started etcd and kube-apiserver .*\(pids (\d+), (\d+)\)/.exec(output);
  return pids ? [Number(pids[1]), Number(pids[2])] : [];
}

function assertBuilt(): void {
  const recipe = kubeApiServerRecipe();
  assert.ok(recipe.built, `kube-apiserver is not built (${recipe.path}): run bash deploy/kube-apiserver.sh (npm test's set-up does)`);
}

test('xlb demo --kubernetes: every step holds with a real apiserver, and nothing is left behind', { timeout: DEMO_TIMEOUT_MS + 15_000 }, async () => {
  assertBuilt();
  const started = Date.now();
  const { code, out, err } = await runNode(CLI, ['demo', '--kubernetes'], { timeoutMs: DEMO_TIMEOUT_MS });
  const seconds = (Date.now() - started) / 1000;
  const context = `exit ${String(code)} after ${seconds.toFixed(1)} s\nstdout:\n${out}\nstderr:\n${err}`;
  const id = runIdIn(out);
  try {
    assert.equal(code, 0, context);
    assert.ok(id, `the demo names its run dir\n${context}`);
    // Set-up: the apiserver, then every agent in Kubernetes mode through a relay.
    assert.match(out, /started etcd and kube-apiserver 1\.20 on the host's 127\.0\.0\.1 in [\d.]+ s: https:\/\/127\.0\.0\.1:\d+/, context);
    assert.match(out, /LB node: +ip netns exec xlb-demo-lb-\S+ xlb-agent --kubeconfig \$RUN\/\S+\/kubeconfig --k8s-api-server https:\/\/127\.0\.0\.1:\d+ .*--node-name lb$/m, context);
    assert.equal((out.match(/xlb-agent on \S+ +ready after/g) ?? []).length, 4, context);
    // 1: the objects shown, the agents serve them (origin kubernetes), read-only through the API.
    assert.match(out, /^ {4}metadata: \{name: web, namespace: default, annotations: \{service\.cilium\.io\/forwarding-mode: dsr\}\}$/m, context);
    assert.match(out, /^ {6}- \{conditions: \{ready: true\}, addresses: \[198\.18\.0\.11\], topology: \{kubernetes\.io\/hostname: b1\}\}$/m, context);
    assert.match(out, /^ {2}\$ xlb service list --origin kubernetes --api-socket \$LB$/m, context);
    for (const id of ['default/web:http@198.18.10.10', 'default/dns:dns@198.18.10.10', 'default/web-nodeport:http@0.0.0.0']) {
      assert.match(out, new RegExp(`^ {4}${id.replace(/[./]/g, '\\$&')} +kubernetes +`, 'm'), context);
    }
    assert.match(out, /comes from Kubernetes: change its Service or EndpointSlices through the apiserver/, context);
    // 2-4: traffic, 5: scale down, 6: status.
    assert.match(out, /^ {2}✔ 60\/60; b1 \d+ · b2 \d+ · b3 \d+; 0 via LB$/m, context);
    assert.match(out, /^ {2}✔ 30\/30; b1 \d+ · b2 \d+ · b3 \d+; \d+ via LB$/m, context);
    assert.match(out, /^ {2}the LB node's agent served web without 198\.18\.0\.1\d \d+ ms after the write$/m, context);
    // The held connection stays on its backend; another one is removed and gets no new connection.
    assert.match(out, /^ {2}✔ held 20\/20 on b\d; new b1 \d+ · b2 \d+ · b3 \d+$/m, context);
    assert.match(out, /^ {2}✔ held 20\/20 on b\d; new .*\bb\d 0\b/m, context);
    assert.match(out, /^ {4}kubernetes:\n {6}apiserver: +https:\/\/127\.0\.0\.1:\d+\n {6}connection: +connected since /m, context);
    assert.match(out, /^ {6}endpointslices: +discovery\.k8s\.io\/v1beta1$/m, context);
    assert.equal((out.match(/^ {2}✔ /gm) ?? []).length, 6, context);
    assert.doesNotMatch(out, /✘/, context);
    assert.match(out, /^Every step held\.$/m, context);
    assert.match(out, /^Cleaned up: agents, relays, kube-apiserver and etcd stopped, namespaces deleted, bpffs unmounted, temp dir removed\.$/m, context);

    const pids = apiServerPids(out);
    assert.equal(pids.length, 2, context);
    assert.deepEqual(pids.filter(alive), [], 'etcd and kube-apiserver are gone');
    assert.deepEqual(leftovers(id), NOTHING, 'no namespace, mount, run dir or process of the run is left');
  } finally {
    if (id !== undefined) removeRun(id);
  }
});

test('xlb demo --kubernetes killed with SIGKILL: the apiserver dies with it; --cleanup removes the rest', { timeout: SETUP_TIMEOUT_MS + 60_000 }, async () => {
  assertBuilt();
  const demo = spawn(process.execPath, [CLI, 'demo', '--kubernetes'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  demo.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  demo.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = once(demo, 'exit');
  let id: string | undefined;
  try {
    await waitFor(() => (out.match(/xlb-agent on \S+ +ready after/g) ?? []).length === 4 || demo.exitCode !== null, SETUP_TIMEOUT_MS, 'the demo\'s agents');
    id = runIdIn(out);
    assert.ok(id !== undefined && demo.exitCode === null, `the demo runs and names its run dir:\n${out}`);
    const apiServer = apiServerPids(out);
    assert.equal(apiServer.length, 2, out);
    const recorded = readFileSync(join(runDir(id), 'host-processes'), 'utf8');
    assert.match(recorded, new RegExp(`^${apiServer[0]} etcd$`, 'm'), recorded);
    assert.match(recorded, new RegExp(`^${apiServer[1]} kube-apiserver$`, 'm'), recorded);
    const inNamespaces = namespaces().filter((ns) => ns.endsWith(`-${id}`)).flatMap(pidsIn);
    assert.ok(inNamespaces.length >= 11, `4 agents, 4 relays and 3 servers in the run's namespaces: ${inNamespaces.join(' ')}`);

    demo.kill('SIGKILL');
    await exited;
    await waitFor(() => !apiServer.some(alive), 10_000, 'etcd and kube-apiserver to die with the demo (their parent death signal)');
    assert.ok(inNamespaces.some(alive), 'the agents outlive the killed demo');

    const cleanup = await runNode(CLI, ['demo', '--cleanup']);
    const context = `stdout:\n${cleanup.out}\nstderr:\n${cleanup.err}`;
    assert.equal(cleanup.code, 0, context);
    assert.match(cleanup.out, new RegExp(`^demo run ${id} \\(its demo ended without cleaning up\\):$`, 'm'), context);
    assert.match(cleanup.out, /^ {2}stopped 11 processes in its namespaces/m, context);
    assert.match(cleanup.out, new RegExp(`^ {2}deleted 6 network namespaces: .*xlb-demo-lb-${id}`, 'm'), context);
    assert.match(cleanup.out, new RegExp(`^ {2}removed ${runDir(id)}$`, 'm'), context);
    assert.deepEqual(leftovers(id), NOTHING, context);
    assert.deepEqual(inNamespaces.filter(alive), [], context);
  } finally {
    demo.kill('SIGKILL');
    id ??= runIdIn(out);
    if (id !== undefined) removeRun(id);
  }
});

test('--cleanup stops the host processes a dead run recorded, only while they still name its run dir', { timeout: 60_000 }, async () => {
  // What a Kubernetes run whose servers outlived it would leave: its run dir (lock free) recording
  // two pids; one is still what the run started (its command line names the run dir), the other's
  // pid now belongs to something else.
  const id = `t${randomBytes(4).toString('hex')}`;
  const dir = runDir(id);
  const children: ChildProcess[] = [];
  const idle = (...args: string[]): ChildProcess => {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', ...args], { stdio: 'ignore' });
    children.push(child);
    return child;
  };
  try {
    mkdirSync(dir, { mode: 0o700 });
    const ours = idle(`${dir}/xlb-kube-x/etcd`);
    const other = idle();
    const [oursPid, otherPid] = [ours.pid, other.pid];
    assert.ok(oursPid !== undefined && otherPid !== undefined);
    writeFileSync(join(dir, 'host-processes'), `${oursPid} etcd\n${otherPid} kube-apiserver\n`);

    const cleanup = await runNode(CLI, ['demo', '--cleanup']);
    const context = `stdout:\n${cleanup.out}\nstderr:\n${cleanup.err}`;
    assert.equal(cleanup.code, 0, context);
    assert.match(cleanup.out, new RegExp(`^demo run ${id} \\(its demo ended without cleaning up\\):$`, 'm'), context);
    assert.match(cleanup.out, new RegExp(`^ {2}stopped etcd \\(pid ${oursPid}\\) on the host$`, 'm'), context);
    assert.doesNotMatch(cleanup.out, new RegExp(`pid ${otherPid}\\b`), context);
    assert.match(cleanup.out, new RegExp(`^ {2}removed ${dir}$`, 'm'), context);
    await waitFor(() => ours.exitCode !== null || ours.signalCode !== null, 5_000, 'the recorded etcd to exit');
    assert.equal(ours.signalCode, 'SIGTERM', 'stopped with SIGTERM');
    assert.ok(alive(otherPid), 'a recorded pid that no longer names the run dir is left alone');
    assert.ok(!existsSync(dir));
  } finally {
    for (const child of children) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
