/**
 * End to end, in network namespaces: a "pod" with a veth to a node, the node running xlb's datapath
 * (createNodeDatapath with no devices, and PodDatapath watching for `lxc+` devices), three backends
 * with real HTTP/UDP servers (agent/lab/server.ts), each on a veth of its own to the node. The pod
 * reaches ClusterIP services through tc_pod on the host side of its veth: TCP and UDP over IPv4 and
 * IPv6, spread over the backends, a backend removed (and one terminating) while a connection is open,
 * a service without backends refused, the pod reaching itself through a service (hairpin), and devices
 * that come and go.
 *
 * Each of the four is plugged into the node as a CNI plugs a pod (agent/lab/pod.ts, as the demo's pod):
 *
 *   pod  eth0 198.18.40.2 ── lxc-pod 198.18.40.1   node   bk1 198.18.41.1 ── eth0 198.18.41.2  b1
 *                                                          bk2 198.18.42.1 ── eth0 198.18.42.2  b2
 *                                                          bk3 198.18.43.1 ── eth0 198.18.43.2  b3
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import type { ServiceDatapath } from '../../agent/datapath.js';
import { attachPod } from '../../agent/lab/pod.js';
import type { ClientReport, HeldAnswer } from '../../agent/lab/processes.js';
import { createNodeDatapath } from '../../agent/node-datapath.js';
import { PodDatapath } from '../../agent/pod-datapath.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { inNetns } from '../../lb/datapath/netns.js';
import { POD_TC_FILTER } from '../../lb/datapath/pod-devices.js';
import { programNameById } from '../../lb/datapath/cleanup.js';
import { queryTc } from '../../lb/datapath/tc.js';
import { Topology } from '../../lb/datapath/topology.js';
import { DEFAULT_MAGLEV_SEED, parseMaglevSeed } from '../../lb/maglev/index.js';
import { Direction, Reason } from '../../lb/reasons.js';
import { validateService, type Service } from '../../lb/service.js';
import { repoRoot } from '../support/paths.js';
import { waitFor } from '../support/wait.js';

const SERVER = join(repoRoot, 'dist', 'agent', 'lab', 'server.js');
const CLIENT = join(repoRoot, 'dist', 'agent', 'lab', 'client.js');
const CAPACITY = { services: 1024, backends: 4096 };
const SHARED = { maglevTableSize: 251, maglevSeed: parseMaglevSeed(DEFAULT_MAGLEV_SEED), conntrackEntries: 16384, capacity: CAPACITY };
const SNAT_PORTS = { min: 20000, max: 29999 };

const POD = { v4: '198.18.40.2', v6: '2001:db8:40::2', gw4: '198.18.40.1', gw6: '2001:db8:40::1' };
const BACKENDS = [1, 2, 3].map((n) => ({ name: `b${n}`, dev: `bk${n}`, v4: `198.18.4${n}.2`, v6: `2001:db8:4${n}::2`, gw4: `198.18.4${n}.1`, gw6: `2001:db8:4${n}::1` }));
const VIP = { v4: '198.18.50.10', v6: '2001:db8:50::10' };
const SELF = { v4: '198.18.50.11', v6: '2001:db8:50::11' };
const EMPTY = { v4: '198.18.50.12', v6: '2001:db8:50::12' };
type Family = 'v4' | 'v6';
const target = (address: string, port: number): string => (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);

describe('ClusterIP services from a pod, through tc_pod on its veth', () => {
  const topology = new Topology('cip');
  const children = new Set<ChildProcess>();
  let bpffs: TempBpffs | undefined;
  let nodeNs = '';
  let podNs = '';
  let node: ServiceDatapath | undefined;
  let pods: PodDatapath | undefined;
  let services = new Map<string, Service>();

  const spawnIn = (ns: string, script: string, args: string[]): ChildProcess => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    child.on('exit', () => children.delete(child));
    return child;
  };
  const startServer = (ns: string, name: string, v4: string, v6: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const child = spawnIn(ns, SERVER, ['--name', name, '--listen', v4, '--listen', v6, '--http-port', '8080', '--udp-port', '5353']);
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.stdout?.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`server ${name} exited with ${code}: ${stderr.trim()}`)));
    });
  /** N exchanges from the pod (agent/lab/client.ts: each a new connection or a new source port). */
  const fromPod = (kind: 'http' | 'udp', to: string, count: number, timeoutMs = 2000): Promise<ClientReport> =>
    new Promise((resolve, reject) => {
      const child = spawnIn(podNs, CLIENT, [kind, '--target', to, '--count', String(count), '--timeout-ms', String(timeoutMs)]);
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(stdout) as ClientReport) : reject(new Error(`client ${kind} ${to} exited with ${code}: ${stderr.trim()}`))));
    });
  /** One TCP connection from the pod, a request every intervalMs. */
  const hold = (to: string, count: number, intervalMs: number): { next(): Promise<HeldAnswer>; rest(): Promise<HeldAnswer[]> } => {
    const child = spawnIn(podNs, CLIENT, ['hold', '--target', to, '--count', String(count), '--interval-ms', String(intervalMs)]);
    const lines = createInterface({ input: child.stdout ?? process.stdin })[Symbol.asyncIterator]();
    return {
      async next() {
        const { value, done } = await lines.next();
        if (done) throw new Error(`held connection to ${to} ended early`);
        return JSON.parse(value) as HeldAnswer;
      },
      async rest() {
        const answers: HeldAnswer[] = [];
        for (let step = await lines.next(); !step.done; step = await lines.next()) answers.push(JSON.parse(step.value) as HeldAnswer);
        return answers;
      },
    };
  };
  const counter = (reason: number, direction: number = Direction.INGRESS): bigint =>
    node?.counters().find((c) => c.reason === reason && c.direction === direction)?.packets ?? 0n;
  const backendsOf = (family: Family, port: number, change: (name: string) => Partial<{ state: string }> | undefined = () => ({})): unknown[] =>
    BACKENDS.flatMap((b) => {
      const extra = change(b.name);
      return extra ? [{ address: b[family], port, ...extra }] : [];
    });
  const service = (id: string, raw: unknown): [string, Service] => [id, validateService(raw, id, { defaultMode: 'snat', clusterIP: true })];
  const apply = async (changes: [string, Service][]): Promise<void> => {
    await node?.apply(new Map(changes));
    for (const [id, value] of changes) services.set(id, value);
  };
  const spreadOver = (report: ClientReport, names: string[]): void =>
    assert.deepEqual(Object.keys(report.byBackend).sort(), names, `shares: ${JSON.stringify(report.byBackend)}`);
  const allAnswered = (report: ClientReport, sent: number): void => {
    assert.deepEqual(report.errors, []);
    assert.equal(report.answered, sent);
  };
  /** Every backend saw the exchanges come from the pod's own address: no SNAT east-west. */
  const fromPodAddress = (report: ClientReport, address: string): void => {
    for (const seen of report.seenFrom) assert.equal(seen.slice(0, seen.lastIndexOf(':')).replace(/^::ffff:/, ''), address, seen);
  };

  before(async () => {
    nodeNs = topology.namespace('node');
    // The network as a CNI sets it up: pods on veths with their routes. Forwarding is the agent's (tc_pod's node settings).
    const plug = (role: string, hostDevice: string, p: { v4: string; v6: string; gw4: string; gw6: string }): string =>
      attachPod(topology, nodeNs, { role, hostDevice, v4: p.v4, v6: p.v6, gateway: { v4: p.gw4, v6: p.gw6 } }).ns;
    podNs = plug('pod', 'lxc-pod', POD);
    for (const b of BACKENDS) await startServer(plug(b.name, b.dev, b), b.name, b.v4, b.v6);
    // The backends' devices are not tc_pod's here (only lxc+ is), so nothing of xlb sets them up: their
    // replies are forwarded as the CNI that made them would have it. The pod's device is left to the agent.
    for (const b of BACKENDS) topology.exec(nodeNs, 'sysctl', ['-qw', `net.ipv4.conf.${b.dev}.forwarding=1`, `net.ipv6.conf.${b.dev}.force_forwarding=1`]);
    await startServer(podNs, 'pod', POD.v4, POD.v6); // the pod serves too: its own backend for hairpin

    bpffs = TempBpffs.mount('cip');
    const pinDir = `${bpffs.dir}/node`;
    node = inNetns(nodeNs, () => createNodeDatapath({
      ...SHARED, devices: [], xdp: 'off', mode: 'snat', bpffs: pinDir, nodeAddresses: [POD.gw4, POD.gw6], nodeName: 'node',
      snatPorts: SNAT_PORTS, nodeSetup: true, dsrServiceRanges: [], log: () => undefined,
    }));
    pods = PodDatapath.load({ ...SHARED, pinDir, podDevices: ['lxc+'], log: () => undefined, netns: nodeNs });
    assert.deepEqual(pods.object.replacedPins, [], 'tc_pod reuses the node datapath\'s pinned maps as they are');
    pods.watch();

    for (const family of ['v4', 'v6'] as const) {
      const n = family === 'v4' ? '4' : '6';
      await apply([
        service(`web${n}`, { type: 'ClusterIP', frontend: { address: VIP[family], port: 80, protocol: 'TCP' }, backends: backendsOf(family, 8080) }),
        service(`dns${n}`, { type: 'ClusterIP', frontend: { address: VIP[family], port: 53, protocol: 'UDP' }, backends: backendsOf(family, 5353) }),
        service(`self${n}`, { type: 'ClusterIP', frontend: { address: SELF[family], port: 80, protocol: 'TCP' }, backends: [{ address: POD[family], port: 8080 }] }),
        service(`selfudp${n}`, { type: 'ClusterIP', frontend: { address: SELF[family], port: 53, protocol: 'UDP' }, backends: [{ address: POD[family], port: 5353 }] }),
        service(`empty${n}`, { type: 'ClusterIP', frontend: { address: EMPTY[family], port: 80, protocol: 'TCP' }, backends: [] }),
      ]);
    }
  });

  after(async () => {
    await Promise.all([...children].map((child) => new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    })));
    await pods?.close();
    await node?.close();
    topology.destroy();
    bpffs?.remove();
  });

  test('tc_pod sits on the pod\'s device only (lxc+), in a slot of its own', () => {
    assert.deepEqual(pods?.attached(), ['lxc-pod']);
    inNetns(nodeNs, () => {
      assert.equal(programNameById(queryTc('lxc-pod', 'ingress', POD_TC_FILTER)), 'tc_pod_ingress');
      assert.equal(programNameById(queryTc('lxc-pod', 'egress', POD_TC_FILTER)), 'tc_pod_egress');
      for (const b of BACKENDS) assert.equal(queryTc(b.dev, 'ingress', POD_TC_FILTER), 0, b.dev);
    });
  });

  for (const family of ['v4', 'v6'] as const) {
    test(`TCP over ${family === 'v4' ? 'IPv4' : 'IPv6'}: every request answered, spread over all backends, from the pod's own address`, async () => {
      const newFlows = counter(Reason.FWD_NEW_FLOW);
      const report = await fromPod('http', target(VIP[family], 80), 30);
      allAnswered(report, 30);
      spreadOver(report, ['b1', 'b2', 'b3']);
      fromPodAddress(report, POD[family]);
      assert.ok(counter(Reason.FWD_NEW_FLOW) - newFlows >= 30n);
      assert.ok(counter(Reason.FWD_REPLY, Direction.EGRESS) > 0n, 'replies were given the service address back');
    });

    test(`UDP over ${family === 'v4' ? 'IPv4' : 'IPv6'}: every datagram answered by a backend, from the service`, async () => {
      const report = await fromPod('udp', target(VIP[family], 53), 30);
      allAnswered(report, 30);
      spreadOver(report, ['b1', 'b2', 'b3']);
      fromPodAddress(report, POD[family]);
    });

    test(`hairpin over ${family === 'v4' ? 'IPv4' : 'IPv6'}: the pod reaches itself through a service, seen coming from the service address`, async () => {
      const hairpins = counter(Reason.POD_HAIRPIN);
      for (const kind of ['http', 'udp'] as const) {
        const report = await fromPod(kind, target(SELF[family], kind === 'http' ? 80 : 53), 10);
        allAnswered(report, 10);
        spreadOver(report, ['pod']);
        for (const seen of report.seenFrom) {
          const at = seen.lastIndexOf(':');
          const port = Number(seen.slice(at + 1));
          assert.equal(seen.slice(0, at).replace(/^::ffff:/, ''), SELF[family], seen);
          assert.ok(port >= SNAT_PORTS.min && port <= SNAT_PORTS.max, `${seen}: a port of the SNAT range`);
        }
      }
      assert.equal(counter(Reason.POD_HAIRPIN) - hairpins, 20n);
    });

    test(`a service without backends refuses connections at once (${family === 'v4' ? 'IPv4' : 'IPv6'})`, async () => {
      const rejects = counter(Reason.REJECT_NO_BACKEND);
      const started = Date.now();
      const report = await fromPod('http', target(EMPTY[family], 80), 3, 5000);
      assert.equal(report.answered, 0);
      assert.equal(report.errors.length, 3);
      for (const error of report.errors) assert.match(error, /ECONNREFUSED/);
      assert.ok(Date.now() - started < 4000, 'refused, not timed out');
      assert.ok(counter(Reason.REJECT_NO_BACKEND) - rejects >= 3n);
    });
  }

  test('checksums computed by the pod (no offload) are kept right too', async () => {
    topology.exec(podNs, 'ethtool', ['-K', 'eth0', 'tx', 'off']);
    try {
      for (const family of ['v4', 'v6'] as const) {
        allAnswered(await fromPod('http', target(VIP[family], 80), 10), 10);
        allAnswered(await fromPod('udp', target(VIP[family], 53), 10), 10);
        allAnswered(await fromPod('http', target(SELF[family], 80), 5), 5);
      }
    } finally {
      topology.exec(podNs, 'ethtool', ['-K', 'eth0', 'tx', 'on']);
    }
  });

  test('removing a backend leaves an open connection to another untouched; new connections avoid the removed one', async () => {
    const held = hold(target(VIP.v4, 80), 40, 50);
    const first = await held.next();
    const keep = first.backend;
    const removed = BACKENDS.find((b) => b.name !== keep)?.name ?? assert.fail('a backend to remove');
    const original = services.get('web4') ?? assert.fail('web4');
    await apply([service('web4', { type: 'ClusterIP', frontend: { address: VIP.v4, port: 80, protocol: 'TCP' }, backends: backendsOf('v4', 8080, (n) => (n === removed ? undefined : {})) })]);
    try {
      const rest = await held.rest();
      assert.equal(rest.length, 39);
      for (const line of rest) {
        assert.equal(line.backend, keep, `request ${line.i} answered by ${line.backend ?? line.error}`);
        assert.equal(line.localPort, first.localPort, 'one TCP connection throughout');
      }
      const fresh = await fromPod('http', target(VIP.v4, 80), 30);
      allAnswered(fresh, 30);
      assert.ok(!(removed in fresh.byBackend), `the removed backend ${removed} got no new connections: ${JSON.stringify(fresh.byBackend)}`);
    } finally {
      await apply([['web4', original]]);
    }
  });

  test('a terminating backend keeps its open connection; new connections avoid it', async () => {
    const held = hold(target(VIP.v6, 80), 30, 50);
    const first = await held.next();
    const draining = first.backend ?? assert.fail('first answer');
    const original = services.get('web6') ?? assert.fail('web6');
    await apply([service('web6', { type: 'ClusterIP', frontend: { address: VIP.v6, port: 80, protocol: 'TCP' }, backends: backendsOf('v6', 8080, (n) => (n === draining ? { state: 'terminating' } : {})) })]);
    try {
      const rest = await held.rest();
      assert.equal(rest.length, 29);
      for (const line of rest) assert.equal(line.backend, draining, `request ${line.i} answered by ${line.backend ?? line.error}`);
      const fresh = await fromPod('http', target(VIP.v6, 80), 30);
      allAnswered(fresh, 30);
      assert.ok(!(draining in fresh.byBackend), `the terminating backend ${draining} got no new connections: ${JSON.stringify(fresh.byBackend)}`);
    } finally {
      await apply([['web6', original]]);
    }
  });

  test('a pod device that appears gets tc_pod within moments, one that goes is forgotten; others are left alone', async () => {
    const datapath = pods ?? assert.fail('pods');
    topology.exec(nodeNs, 'ip', ['link', 'add', 'lxc-new', 'type', 'veth', 'peer', 'name', 'other-new']);
    await waitFor(() => datapath.attached().includes('lxc-new'), 3000, 'tc_pod on lxc-new');
    inNetns(nodeNs, () => {
      assert.equal(programNameById(queryTc('lxc-new', 'ingress', POD_TC_FILTER)), 'tc_pod_ingress');
      assert.equal(queryTc('other-new', 'ingress', POD_TC_FILTER), 0, 'a device the patterns do not match');
    });
    topology.exec(nodeNs, 'ip', ['link', 'set', 'lxc-new', 'name', 'renamed-new']);
    await waitFor(() => !datapath.attached().includes('lxc-new'), 3000, 'the renamed device detached');
    inNetns(nodeNs, () => assert.equal(queryTc('renamed-new', 'ingress', POD_TC_FILTER), 0));
    topology.exec(nodeNs, 'ip', ['link', 'set', 'renamed-new', 'name', 'lxc-new']);
    await waitFor(() => datapath.attached().includes('lxc-new'), 3000, 'tc_pod back on lxc-new');
    topology.exec(nodeNs, 'ip', ['link', 'delete', 'lxc-new']);
    await waitFor(() => !datapath.attached().includes('lxc-new'), 3000, 'lxc-new forgotten');
    assert.deepEqual(datapath.attached(), ['lxc-pod']);
    // Kubernetes mode names devices: one not matching the patterns gets the programs too.
    datapath.setNamed(['bk1']);
    assert.deepEqual(datapath.attached(), ['bk1', 'lxc-pod']);
    datapath.setNamed([]);
    assert.deepEqual(datapath.attached(), ['lxc-pod']);
    inNetns(nodeNs, () => assert.equal(queryTc('bk1', 'ingress', POD_TC_FILTER), 0));
  });

  test('cleanup takes tc_pod off every device, and the pod then reaches backends directly only', async () => {
    const removed = await (pods ?? assert.fail('pods')).detachAll();
    assert.deepEqual(removed.sort(), ['lxc-pod: tc egress tc_pod_egress', 'lxc-pod: tc ingress tc_pod_ingress']);
    inNetns(nodeNs, () => assert.equal(queryTc('lxc-pod', 'ingress', POD_TC_FILTER), 0));
    allAnswered(await fromPod('http', target(BACKENDS[0]?.v4 ?? '', 8080), 2), 2);
  });
});
