/**
 * Socket-level load balancing (bpf/sock/sock_lb.c) on a cgroup of the test's own: the programs load
 * and verify, attach by pinned links (a second load swaps programs in place), and processes in the
 * cgroup reach ClusterIP services through them — real servers in backend namespaces, the LB maps
 * written by the agent's own datapath.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SOCKET_LB_PROGRAMS, SOCKET_REVNAT_MAP, SocketLb, socketLbLinkPin } from '../../agent/socket-lb.js';
import {
  CgroupHook,
  cgroup2MountPoints,
  cgroupHookOf,
  cgroupId,
  findCgroup2Root,
  pinnedCgroupLink,
  queryCgroup,
  resolveCgroupRoot,
  type CgroupHookName,
} from '../../lb/datapath/cgroup.js';
import { programNameById } from '../../lb/datapath/cleanup.js';
import type { BpfMap } from '../../lb/datapath/map.js';
import { Direction, Reason } from '../../lb/reasons.js';
import { CAPACITY, MAGLEV, SockLab, type SockReport } from '../support/sock-lab.js';
import { TestCgroup } from '../support/test-cgroup.js';
import { waitFor } from '../support/wait.js';

const CIP4 = '198.18.20.10';
const CIP6 = '2001:db8:20::10';
const AFFINITY4 = '198.18.20.11';
const EMPTY4 = '198.18.20.12';
const EMPTY6 = '2001:db8:20::12';

describe('finding the cgroup v2 hierarchy', () => {
  test('mount points of cgroup2 in mountinfo, escaped paths included', () => {
    const mountinfo = [
      '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
      '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
      '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
      '90 23 0:38 / /run/my\\040cgroups rw shared:5 - cgroup2 none rw',
    ].join('\n');
    assert.deepEqual(cgroup2MountPoints(mountinfo), ['/sys/fs/cgroup/unified', '/run/my cgroups']);
  });

  test('--cgroup-root: a cgroup v2 directory, or by default the hierarchy this host has mounted', () => {
    const root = findCgroup2Root();
    assert.ok(root, 'this host has cgroup v2 mounted');
    assert.equal(resolveCgroupRoot(undefined, { mount: false }), root);
    assert.throws(() => resolveCgroupRoot('/tmp', { mount: false }), /--cgroup-root \/tmp is not a cgroup v2 directory/);
  });
});

describe('socket-level load balancing on a test cgroup', () => {
  let lab: SockLab;

  before(async () => {
    lab = await SockLab.create('sock');
    const cluster = (address: string, port: number, protocol: 'TCP' | 'UDP', backends: Record<string, unknown>[], extra: Record<string, unknown> = {}) => ({
      type: 'ClusterIP', frontend: { address, port, protocol }, backends, ...extra,
    });
    await lab.apply({
      web4: cluster(CIP4, 80, 'TCP', lab.backendList('v4', 8080)),
      web6: cluster(CIP6, 80, 'TCP', lab.backendList('v6', 8080)),
      dns4: cluster(CIP4, 53, 'UDP', lab.backendList('v4', 5353)),
      dns6: cluster(CIP6, 53, 'UDP', lab.backendList('v6', 5353)),
      sticky: cluster(AFFINITY4, 80, 'TCP', lab.backendList('v4', 8080), { sessionAffinity: { type: 'ClientIP', timeoutSeconds: 600 } }),
      empty4: cluster(EMPTY4, 80, 'TCP', []),
      empty4u: cluster(EMPTY4, 53, 'UDP', []),
      empty6: cluster(EMPTY6, 80, 'TCP', []),
    });
  });

  after(async () => {
    await lab?.destroy();
  });

  const counter = (reason: number, direction: number): bigint =>
    lab.datapath?.counters().find((c) => c.reason === reason && c.direction === direction)?.packets ?? 0n;
  const backendsOf = (report: SockReport): string[] => [...new Set(report.answers.map((a) => a.backend))].sort();
  const revnat = (): BpfMap => {
    const map = lab.socketLb?.object.map(SOCKET_REVNAT_MAP);
    assert.ok(map);
    return map;
  };

  test('every program loads, verifies and is attached to the cgroup by its pinned link', () => {
    assert.ok(lab.socketLb);
    for (const name of SOCKET_LB_PROGRAMS) {
      const program = lab.socketLb.object.program(name);
      const hook: CgroupHookName = cgroupHookOf(program);
      const link = pinnedCgroupLink(socketLbLinkPin(lab.pinDir, name));
      assert.ok(link, `${name} has a pinned link`);
      assert.equal(link.attachType, CgroupHook[hook]);
      assert.deepEqual(queryCgroup(lab.cgroup.dir, hook).map(programNameById), [name], `${hook} holds ${name} alone`);
    }
  });

  test('TCP to a ClusterIP (IPv4, IPv6): answered by the backends, getpeername shows the service', async () => {
    const before = counter(Reason.SOCK_XLATE, Direction.EGRESS);
    for (const [target, service] of [[`${CIP4}:80`, `${CIP4}:80`], [`[${CIP6}]:80`, `[${CIP6}]:80`]] as const) {
      const report = await lab.client('tcp', target, 30);
      assert.deepEqual(report.errors, []);
      assert.equal(report.answers.length, 30);
      assert.deepEqual(backendsOf(report), ['b1', 'b2', 'b3'], 'spread over every backend');
      for (const answer of report.answers) assert.equal(answer.peer, service);
      // No NAT on the packets: the backend sees the node's own address.
      for (const answer of report.answers) assert.match(answer.client, target.startsWith('[') ? /^2001:db8::1:\d+$/ : /^198\.18\.0\.1:\d+$/);
    }
    assert.ok(counter(Reason.SOCK_XLATE, Direction.EGRESS) - before >= 60n);
  });
  test('unconnected UDP (DNS-like sendto): each datagram to a backend, each reply from the service address', async () => {
    const before = counter(Reason.SOCK_REVERSE, Direction.INGRESS);
    for (const [target, service] of [[`${CIP4}:53`, `${CIP4}:53`], [`[${CIP6}]:53`, `[${CIP6}]:53`]] as const) {
      const report = await lab.client('udp', target, 30);
      assert.deepEqual(report.errors, []);
      assert.equal(report.answers.length, 30);
      assert.deepEqual(backendsOf(report), ['b1', 'b2', 'b3'], 'new sockets spread over every backend');
      for (const answer of report.answers) assert.equal(answer.peer, service, 'recvmsg shows the service as the source');
      // One socket sending again and again keeps its backend (the socket cookie is its flow hash).
      const one = await lab.client('udp', target, 10, ['--one-socket']);
      assert.deepEqual(one.errors, []);
      assert.equal(backendsOf(one).length, 1, JSON.stringify(one.answers));
      for (const answer of one.answers) assert.equal(answer.peer, service);
    }
    assert.ok(counter(Reason.SOCK_REVERSE, Direction.INGRESS) - before >= 80n);
  });

  test('connected UDP: connect() picks the backend once; getpeername and recvmsg show the service', async () => {
    const report = await lab.client('cudp', `${CIP4}:53`, 10);
    assert.deepEqual(report.errors, []);
    assert.equal(backendsOf(report).length, 1);
    for (const answer of report.answers) assert.equal(answer.peer, `${CIP4}:53 from ${CIP4}:53`);
  });

  test('sessionAffinity ClientIP: every connection from the namespace gets one backend', async () => {
    const report = await lab.client('tcp', `${AFFINITY4}:80`, 20);
    assert.deepEqual(report.errors, []);
    assert.equal(backendsOf(report).length, 1, JSON.stringify(report.answers.map((a) => a.backend)));
    for (const answer of report.answers) assert.equal(answer.peer, `${AFFINITY4}:80`);
  });

  test('a service without backends: connect() and sendto() fail with ECONNREFUSED, counted as rejects', async () => {
    const before = counter(Reason.REJECT_NO_BACKEND, Direction.EGRESS);
    for (const [kind, target] of [['tcp', `${EMPTY4}:80`], ['tcp', `[${EMPTY6}]:80`], ['udp', `${EMPTY4}:53`]] as const) {
      const report = await lab.client(kind, target, 3);
      assert.deepEqual(report.answers, []);
      assert.deepEqual(report.errors, ['ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED'], `${kind} ${target}`);
    }
    assert.equal(counter(Reason.REJECT_NO_BACKEND, Direction.EGRESS) - before, 9n);
  });

  test('a socket’s reverse entry lives as long as the socket (sock_release takes it along)', async () => {
    const entries = (): number => [...revnat().keys()].length;
    const before = entries();
    const held = lab.hold(`${CIP4}:80`, 5, 100);
    await held.next();
    assert.equal(entries(), before + 1, 'the open connection has its entry');
    await held.rest();
    await waitFor(() => entries() === before, 5_000, 'the closed connection\'s reverse entry to go');
    const report = await lab.client('tcp', `${CIP4}:80`, 20);
    assert.equal(report.answers.length, 20);
    await waitFor(() => entries() === before, 5_000, 'twenty closed connections\' reverse entries to go');
  });

  test('a removed backend: its open connection goes on (and still sees the service); new connections avoid it', async () => {
    const held = lab.hold(`${CIP4}:80`, 30, 40);
    const first = await held.next();
    const kept = String(first.backend);
    assert.equal(first.peer, `${CIP4}:80`);
    const others = lab.backends.map((b) => b.name).filter((name) => name !== kept);
    await lab.apply({ web4: { type: 'ClusterIP', frontend: { address: CIP4, port: 80, protocol: 'TCP' }, backends: lab.backendList('v4', 8080, others) } });
    try {
      const fresh = await lab.client('tcp', `${CIP4}:80`, 30);
      assert.deepEqual(fresh.errors, []);
      assert.deepEqual(backendsOf(fresh), others, 'new connections avoid the removed backend');
      const rest = await held.rest();
      assert.equal(rest.length, 29);
      for (const line of rest) {
        assert.equal(line.backend, kept, `request ${String(line.i)}: ${JSON.stringify(line)}`);
        assert.equal(line.localPort, first.localPort, 'the same connection');
        assert.equal(line.peer, `${CIP4}:80`);
      }
    } finally {
      await lab.apply({ web4: { type: 'ClusterIP', frontend: { address: CIP4, port: 80, protocol: 'TCP' }, backends: lab.backendList('v4', 8080) } });
    }
  });

  test('a restarted agent swaps its programs into the same links; connections go on', async () => {
    assert.ok(lab.socketLb);
    const links = SOCKET_LB_PROGRAMS.map((name) => pinnedCgroupLink(socketLbLinkPin(lab.pinDir, name)));
    const held = lab.hold(`${CIP4}:80`, 20, 40);
    const first = await held.next();
    const lines: string[] = [];
    lab.socketLb.close();
    lab.socketLb = lab.loadSocketLb((line) => lines.push(line));
    assert.match(lines.join('\n'), /replaced xlb_connect4, xlb_connect6/);
    SOCKET_LB_PROGRAMS.forEach((name, i) => {
      const link = pinnedCgroupLink(socketLbLinkPin(lab.pinDir, name));
      assert.equal(link?.linkId, links[i]?.linkId, `${name}: the same link`);
      assert.notEqual(link?.programId, links[i]?.programId, `${name}: a new program in it`);
      assert.deepEqual(queryCgroup(lab.cgroup.dir, cgroupHookOf(lab.socketLb?.object.program(name) ?? { name, section: '' })), [link?.programId]);
    });
    for (const line of await held.rest()) assert.equal(line.backend, first.backend);
    const report = await lab.client('tcp', `${CIP4}:80`, 10);
    assert.equal(report.answers.length, 10);
    for (const answer of report.answers) assert.equal(answer.peer, `${CIP4}:80`);
  });

  test('socket-LB refuses to load on LB maps of another capacity (it would replace them)', () => {
    assert.throws(
      () => SocketLb.load({ pinDir: lab.pinDir, capacity: { services: 1024, backends: 4096 }, maglevTableSize: MAGLEV.size, maglevSeed: MAGLEV.seed, cgroupRoot: lab.cgroup.dir, log: () => undefined }),
      /pinned map .*xlb_lb_svc holds 65536 entries, the capacity given asks for 1024/,
    );
  });

  test('a deleted service: its open connection goes on; the stale reverse entry goes, getpeername shows the backend', async () => {
    const held = lab.hold(`[${CIP6}]:80`, 12, 60);
    const first = await held.next();
    assert.equal(first.peer, `[${CIP6}]:80`);
    const backend = lab.backends.find((b) => b.name === first.backend);
    assert.ok(backend);
    await lab.apply({ web6: undefined });
    try {
      const rest = await held.rest();
      assert.equal(rest.length, 11);
      assert.ok(rest.every((line) => line.backend === first.backend), JSON.stringify(rest));
      assert.equal(rest.at(-1)?.peer, `[${backend.v6}]:8080`, 'once the service is gone, the peer is what it is');
    } finally {
      await lab.apply({ web6: { type: 'ClusterIP', frontend: { address: CIP6, port: 80, protocol: 'TCP' }, backends: lab.backendList('v6', 8080) } });
    }
  });

  test('another --cgroup-root: the links move there, the old cgroup keeps nothing', async () => {
    const other = TestCgroup.create('sock-moved');
    try {
      const lines: string[] = [];
      lab.socketLb?.close();
      lab.socketLb = SocketLb.load({ pinDir: lab.pinDir, capacity: CAPACITY, maglevTableSize: MAGLEV.size, maglevSeed: MAGLEV.seed, cgroupRoot: other.dir, log: (l) => lines.push(l) });
      assert.match(lines.join('\n'), /moved xlb_connect4/);
      for (const name of SOCKET_LB_PROGRAMS) assert.equal(pinnedCgroupLink(socketLbLinkPin(lab.pinDir, name))?.cgroupId, cgroupId(other.dir));
      for (const hook of Object.keys(CgroupHook) as CgroupHookName[]) {
        assert.deepEqual(queryCgroup(lab.cgroup.dir, hook), []);
        assert.equal(queryCgroup(other.dir, hook).length, 1);
      }
    } finally {
      lab.socketLb?.close();
      lab.socketLb = lab.loadSocketLb();
      await other.remove();
    }
    assert.equal(pinnedCgroupLink(socketLbLinkPin(lab.pinDir, 'xlb_connect4'))?.cgroupId, cgroupId(lab.cgroup.dir));
  });

  test('detachAll takes every program off the cgroup and removes the links', () => {
    const removed = SocketLb.detachAll({ pinDir: lab.pinDir, cgroupRoot: lab.cgroup.dir });
    assert.equal(removed.length, SOCKET_LB_PROGRAMS.length, removed.join('\n'));
    for (const hook of Object.keys(CgroupHook) as CgroupHookName[]) assert.deepEqual(queryCgroup(lab.cgroup.dir, hook), []);
    for (const name of SOCKET_LB_PROGRAMS) assert.equal(pinnedCgroupLink(socketLbLinkPin(lab.pinDir, name)), undefined);
    assert.deepEqual(SocketLb.detachAll({ pinDir: lab.pinDir, cgroupRoot: lab.cgroup.dir }), [], 'nothing left the second time');
  });
});
