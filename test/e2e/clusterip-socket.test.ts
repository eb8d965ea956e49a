/**
 * End to end, the socket path of the east-west datapath: host processes on a node (in the test's own
 * cgroup, socket-LB attached to it) reach every kind of service address — ClusterIP, LoadBalancer,
 * ExternalIP, a NodePort on the node's address — with the semantics the packet path has
 * (internalTrafficPolicy Local, terminating endpoints as a fallback), through an agent restart, and
 * with `xlb monitor`'s events. Real servers in three backend namespaces.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { DatapathEvent } from '../../agent/datapath.js';
import { SOCKET_LB_PROGRAMS, socketLbLinkPin } from '../../agent/socket-lb.js';
import { pinnedCgroupLink } from '../../lb/datapath/cgroup.js';
import { Direction, Reason } from '../../lb/reasons.js';
import { NODE, NODE_NAME, SockLab, type SockReport } from '../support/sock-lab.js';
import { waitFor } from '../support/wait.js';

const CLUSTER_IP = '198.18.20.20';
const CLUSTER_IP6 = '2001:db8:20::20';
const LOAD_BALANCER = '198.18.10.20';
const EXTERNAL_IP = '198.18.30.20';
const FENCED = '198.18.10.21';
const LOCAL = '198.18.20.21';
const ROLLING = '198.18.20.22';
const EMPTY = '198.18.20.23';
const NODE_PORT = 30080;

describe('ClusterIP and every service address from a node\'s processes, through socket-LB', () => {
  let lab: SockLab;

  before(async () => {
    lab = await SockLab.create('cipsock');
    const tcp = (address: string, port = 80): Record<string, unknown> => ({ address, port, protocol: 'TCP' });
    await lab.apply({
      cluster: { type: 'ClusterIP', frontend: tcp(CLUSTER_IP), backends: lab.backendList('v4', 8080) },
      cluster6: { type: 'ClusterIP', frontend: tcp(CLUSTER_IP6), backends: lab.backendList('v6', 8080) },
      dns: { type: 'ClusterIP', frontend: { address: CLUSTER_IP, port: 53, protocol: 'UDP' }, backends: lab.backendList('v4', 5353) },
      lb: { type: 'LoadBalancer', frontend: tcp(LOAD_BALANCER), backends: lab.backendList('v4', 8080) },
      external: { type: 'ExternalIP', frontend: tcp(EXTERNAL_IP), backends: lab.backendList('v4', 8080) },
      nodeport: { type: 'NodePort', frontend: tcp('0.0.0.0', NODE_PORT), backends: lab.backendList('v4', 8080) },
      fenced: { type: 'LoadBalancer', frontend: tcp(FENCED), sourceRanges: ['198.18.0.0/24'], backends: lab.backendList('v4', 8080) },
      local: {
        type: 'ClusterIP', frontend: tcp(LOCAL), internalTrafficPolicy: 'Local',
        backends: lab.backends.map((b, i) => ({ address: b.v4, port: 8080, node: i === 1 ? NODE_NAME : 'node-b' })),
      },
      rolling: { type: 'ClusterIP', frontend: tcp(ROLLING), backends: lab.backendList('v4', 8080, undefined, { state: 'terminating' }) },
      empty: { type: 'ClusterIP', frontend: tcp(EMPTY), backends: lab.backendList('v4', 8080, undefined, { state: 'maintenance' }) },
    });
  });

  after(async () => {
    await lab?.destroy();
  });

  const backendsOf = (report: SockReport): string[] => [...new Set(report.answers.map((a) => a.backend))].sort();
  const expectServed = (report: SockReport, count: number, peer: string, backends = ['b1', 'b2', 'b3']): void => {
    assert.deepEqual(report.errors, []);
    assert.equal(report.answers.length, count);
    assert.deepEqual(backendsOf(report), backends, JSON.stringify(report.answers.map((a) => a.backend)));
    for (const answer of report.answers) assert.equal(answer.peer, peer);
  };

  test('every service address a process may dial: ClusterIP, LoadBalancer, ExternalIP, NodePort on the node address', async () => {
    for (const target of [`${CLUSTER_IP}:80`, `${LOAD_BALANCER}:80`, `${EXTERNAL_IP}:80`, `${NODE.v4}:${NODE_PORT}`]) {
      expectServed(await lab.client('tcp', target, 24), 24, target);
    }
    expectServed(await lab.client('tcp', `[${CLUSTER_IP6}]:80`, 24), 24, `[${CLUSTER_IP6}]:80`);
    expectServed(await lab.client('udp', `${CLUSTER_IP}:53`, 24), 24, `${CLUSTER_IP}:53`);
  });

  test('a dual-stack socket dialing an IPv4 service as ::ffff:a.b.c.d is served, and sees that address', async () => {
    expectServed(await lab.client('tcp', `[::ffff:${CLUSTER_IP}]:80`, 24), 24, `[::ffff:${CLUSTER_IP}]:80`);
  });

  test('internalTrafficPolicy Local: only the backend on this node gets connections', async () => {
    expectServed(await lab.client('tcp', `${LOCAL}:80`, 15), 15, `${LOCAL}:80`, ['b2']);
  });

  test('terminating endpoints serve when no endpoint is ready; maintenance ones never: refused', async () => {
    expectServed(await lab.client('tcp', `${ROLLING}:80`, 15), 15, `${ROLLING}:80`);
    const refused = await lab.client('tcp', `${EMPTY}:80`, 2);
    assert.deepEqual(refused.errors, ['ECONNREFUSED', 'ECONNREFUSED']);
  });

  test('a service with loadBalancerSourceRanges is left to the packet path (a socket has no source address yet)', async () => {
    const report = await lab.client('tcp', `${FENCED}:80`, 1, ['--timeout-ms', '1000']);
    assert.deepEqual(report.answers, []);
    // Not translated: the node has no route to the VIP itself (the LB node's XDP would take it).
    assert.deepEqual(report.errors, ['ENETUNREACH']);
  });

  test('xlb monitor sees socket-LB: translations while someone watches, refusals always', async () => {
    assert.ok(lab.datapath);
    const events: DatapathEvent[] = [];
    const stop = lab.datapath.subscribe((event) => events.push(event));
    try {
      assert.equal((await lab.client('tcp', `${CLUSTER_IP}:80`, 5)).answers.length, 5);
      assert.deepEqual((await lab.client('tcp', `${EMPTY}:80`, 1)).errors, ['ECONNREFUSED']);
      const xlated = (): DatapathEvent[] => events.filter((e) => e.type === 'new-flow' && e.reason === Reason.SOCK_XLATE && e.daddr === CLUSTER_IP);
      await waitFor(() => xlated().length >= 5 && events.some((e) => e.type === 'reject' && e.daddr === EMPTY), 5_000, 'socket-LB events');
      for (const event of xlated()) {
        assert.equal(event.direction, Direction.EGRESS);
        assert.equal(event.dport, 80);
        assert.ok(event.backendId > 0);
      }
    } finally {
      stop();
    }
  });

  test('an agent restart: programs swapped into the same links, maps kept; an open connection and new ones go on', async () => {
    const links = SOCKET_LB_PROGRAMS.map((name) => pinnedCgroupLink(socketLbLinkPin(lab.pinDir, name))?.linkId);
    const held = lab.hold(`${CLUSTER_IP}:80`, 25, 40);
    const first = await held.next();
    const { log, written } = await lab.restart();
    assert.equal(written, 0, 'the pinned maps held every service already');
    assert.match(log.join('\n'), /replaced xlb_connect4, xlb_connect6, xlb_sendmsg4/);
    assert.deepEqual(SOCKET_LB_PROGRAMS.map((name) => pinnedCgroupLink(socketLbLinkPin(lab.pinDir, name))?.linkId), links);
    const rest = await held.rest();
    assert.equal(rest.length, 24);
    for (const line of rest) {
      assert.equal(line.backend, first.backend, JSON.stringify(line));
      assert.equal(line.localPort, first.localPort);
      assert.equal(line.peer, `${CLUSTER_IP}:80`);
    }
    expectServed(await lab.client('tcp', `${CLUSTER_IP}:80`, 24), 24, `${CLUSTER_IP}:80`);
  });
});
