/**
 * `xlb demo --json` as a real process, exactly as a user runs it: every step's figures, then that
 * nothing it made is left (network namespaces, the pod's included, the bpffs mount, the temp dir).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { run } from '../../lb/datapath/topology.js';
import { repoRoot } from '../support/paths.js';
import { runNode } from '../support/run-node.js';

const CLI = join(repoRoot, 'dist', 'agent', 'cli', 'main.js');
const TIMEOUT_MS = 120_000;

interface Step {
  name: string;
  ok: boolean;
  expected: string;
  seen: string;
  figures: Record<string, unknown>;
}

/**
 * What this run of the demo may have left behind: names carrying its run id (the `RUN=/run/xlb-demo-<id>`
 * it prints), so another demo running on the machine at the same time is not counted.
 */
function leftovers(runId: string): { netns: string[]; mounts: string[]; dirs: string[] } {
  const ours = (text: string): boolean => text.includes(`-${runId}`);
  return {
    netns: run('ip', ['netns', 'list']).split('\n').filter(ours).map((l) => l.split(' ')[0] ?? l),
    mounts: readFileSync('/proc/mounts', 'utf8').split('\n').filter(ours).map((l) => l.split(' ')[1] ?? l),
    dirs: readdirSync('/run').filter((d) => d === `xlb-demo-${runId}`),
  };
}

function num(figures: Record<string, unknown>, name: string): number {
  const value = figures[name];
  assert.equal(typeof value, 'number', `figure ${name}: ${JSON.stringify(value)}`);
  return value as number;
}

function counts(figures: Record<string, unknown>, name: string): Record<string, number> {
  const value = figures[name];
  assert.ok(typeof value === 'object' && value !== null, `figure ${name}: ${JSON.stringify(value)}`);
  return value as Record<string, number>;
}

test('xlb demo --json: every step holds, and nothing is left behind', { timeout: TIMEOUT_MS + 10_000 }, async () => {
  const { code, out, err } = await runNode(CLI, ['demo', '--json'], { timeoutMs: TIMEOUT_MS });

  const context = `exit ${String(code)}\nstdout:\n${out}\nstderr (progress):\n${err.slice(-4000)}`;
  let steps: Step[] = [];
  try {
    steps = (JSON.parse(out) as { steps: Step[] }).steps;
  } catch {
    assert.fail(`no JSON summary on stdout\n${context}`);
  }
  for (const step of steps) assert.ok(step.ok, `step ${step.name}: expected ${step.expected}; saw ${step.seen}\n${context}`);
  assert.equal(code, 0, context);
  assert.equal(steps.length, 7, context);
  const [dsr4, dsr6, snat, maglev, ranges, clusterIp, inspect] = steps.map((s) => s.figures);
  assert.ok(dsr4 && dsr6 && snat && maglev && ranges && clusterIp && inspect);

  // 1-3 and 6: every request answered, each backend got a share.
  for (const figures of [dsr4, dsr6, snat, clusterIp]) {
    assert.equal(num(figures, 'answered'), num(figures, 'requests'));
    const byBackend = counts(figures, 'byBackend');
    assert.deepEqual(Object.keys(byBackend).sort(), ['b1', 'b2', 'b3']);
    for (const share of Object.values(byBackend)) assert.ok(share > 0);
  }
  // DSR: no reply crossed the LB node; the backends sent them, rewritten to the VIP.
  for (const figures of [dsr4, dsr6]) {
    assert.equal(num(figures, 'lbReplies'), 0);
    assert.ok(num(figures, 'lbNewFlows') >= num(figures, 'requests'));
    assert.ok(num(figures, 'dsrReplies') >= num(figures, 'requests'));
    for (const replies of Object.values(counts(figures, 'backendDsrReplies'))) assert.ok(replies > 0);
  }
  // SNAT: the replies came back through the LB node.
  assert.ok(num(snat, 'lbReplies') >= num(snat, 'requests'));
  assert.equal(num(snat, 'dsrReplies'), 0);

  // 4: the held connection survived the removal of another backend on one connection; new ones avoid it.
  assert.notEqual(maglev.keptBackend, maglev.removedBackend);
  assert.equal(num(maglev, 'heldOnKeptBackend'), num(maglev, 'heldRequests'));
  assert.equal(num(maglev, 'heldSameConnection'), num(maglev, 'heldRequests'));
  assert.equal(num(maglev, 'freshAnswered'), num(maglev, 'freshRequests'));
  assert.equal(num(maglev, 'freshToRemoved'), 0);

  // 5: the denied client got nothing; the drop was seen by the monitor and counted.
  assert.equal(num(ranges, 'answered'), 0);
  assert.ok(num(ranges, 'monitorDropEvents') > 0);
  assert.ok(num(ranges, 'dropSourceRange') >= num(ranges, 'requests'));

  // 6: the pod reached the ClusterIP through tc_pod, and the backends saw the pod's own address (no SNAT).
  assert.equal(num(clusterIp, 'seenFromPod'), num(clusterIp, 'requests'));
  assert.ok(num(clusterIp, 'podNewFlows') >= num(clusterIp, 'requests'));
  assert.ok(num(clusterIp, 'podReplies') >= num(clusterIp, 'requests'));

  // 7: /metrics and `xlb bpf lb list` / `ct list` show the services and flows.
  assert.ok(num(inspect, 'metricsLines') > 0);
  assert.equal(num(inspect, 'lbListServices'), 5);
  assert.deepEqual(counts(inspect, 'lbListBackends'), {
    '198.18.10.10:53/UDP': 3,
    '198.18.10.10:80/TCP': 2,
    '198.18.10.20:80/TCP': 3,
    '198.18.10.30:80/TCP': 3,
    '[2001:db8:10::10]:80/TCP': 3,
  });
  assert.ok(num(inspect, 'ctEntries') > 0);

  const runId = /RUN=\/run\/xlb-demo-([a-z0-9]+)/.exec(err)?.[1];
  assert.ok(runId, `the demo names its run directory\n${context}`);
  assert.match(err, new RegExp(`network namespaces xlb-demo-\\{[a-z0-9,]*\\bpod\\b[a-z0-9,]*\\}-${runId}`), 'the lab had a pod namespace');
  assert.deepEqual(leftovers(runId), { netns: [], mounts: [], dirs: [] }, 'the demo removed its namespaces (the pod\'s too), bpffs mount and temp dir');
});
