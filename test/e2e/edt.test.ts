/**
 * The EDT bandwidth manager live, as a user runs it: a real `xlb-agent` (standalone, --device eth0
 * toward the peer, --pod-devices lxc+) in the node's namespace; a pod's rate set with `xlb bandwidth
 * set`; a bounded UDP burst from the pod; the departure times tc_edt_egress gave its packets read at
 * the peer's tc ingress (bpf/test/tstamp_recorder.c: a delivery time crosses a veth on this kernel),
 * where they must follow the rate. A burst longer than the horizon is cut, and the drops counted. This
 * machine has no sch_fq, so nothing paces the packets: the agent must say so in its log and status.
 *
 *   pod  eth0 198.18.60.2 ── lxc-pod 198.18.60.1   node   eth0 198.18.61.1 ── eth0 198.18.61.2  peer
 *                                                  (xlb-agent, tc_edt_egress on eth0)      (recorder)
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { apiRequest } from '../../agent/cli/api-client.js';
import { AgentProcess } from '../../agent/demo/agent-process.js';
import { readCounters } from '../../agent/demo/counters.js';
import { paths } from '../../agent/demo/paths.js';
import { EDT_PROGRAM, EDT_TC_FILTER } from '../../agent/edt-datapath.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { programNameById } from '../../lb/datapath/cleanup.js';
import { ifindexOf } from '../../lb/datapath/netif.js';
import { inNetns } from '../../lb/datapath/netns.js';
import { queryTc } from '../../lb/datapath/tc.js';
import { Topology } from '../../lb/datapath/topology.js';
import { TSTAMP_DELIVERY_MONO, TstampRecorder, type Recorded } from '../support/tstamp-recorder.js';
import { waitFor } from '../support/wait.js';

const POD = { address: '198.18.60.2', gateway: '198.18.60.1' };
const NODE = { address: '198.18.61.1' };
const PEER = { address: '198.18.61.2' };
const PORT = 9;
const PAYLOAD = 1000;
/** 1 Mbit/s: a 1042-byte frame (payload, UDP, IPv4, Ethernet) every 8.336 ms. */
const RATE = '1M';
const BYTES_PER_SECOND = 125_000;
const HORIZON_MS = 500;
const AGENT_READY_MS = 30_000;

/** `count` datagrams of PAYLOAD bytes from the pod to the peer, as fast as the pod sends them (bounded: exits within 10 s). */
function burst(ns: string, count: number): void {
  const script = `
    const socket = require('node:dgram').createSocket('udp4');
    const payload = Buffer.alloc(${PAYLOAD});
    let sent = 0;
    const timer = setTimeout(() => process.exit(2), 10000);
    const next = () => {
      if (sent === ${count}) { clearTimeout(timer); socket.close(); return; }
      sent += 1;
      socket.send(payload, ${PORT}, '${PEER.address}', (error) => (error ? process.exit(1) : next()));
    };
    next();`;
  const result = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { encoding: 'utf8', timeout: 15_000 });
  assert.equal(result.status, 0, `burst from the pod: ${result.stderr}`);
}

function xlb(args: string[], socket: string): { code: number | null; out: string; err: string } {
  const result = spawnSync(process.execPath, [paths.cli, ...args, '--api-socket', socket], { encoding: 'utf8', timeout: 20_000 });
  return { code: result.status, out: result.stdout, err: result.stderr };
}

/** Departure times in order, and the rate they make: bytes sent after the first over the time they span. */
function achievedRate(records: Recorded[]): number {
  const sorted = [...records].sort((a, b) => (a.tstamp < b.tstamp ? -1 : a.tstamp > b.tstamp ? 1 : 0));
  const first = sorted[0];
  const last = sorted[sorted.length - 1];
  assert.ok(first && last && last.tstamp > first.tstamp, 'departure times span some time');
  const bytes = sorted.slice(0, -1).reduce((sum, r) => sum + r.len, 0);
  return (bytes * 1e9) / Number(last.tstamp - first.tstamp);
}

describe('EDT bandwidth manager: a pod paced to its rate, live', () => {
  const topology = new Topology('edt');
  let bpffs: TempBpffs | undefined;
  let dir = '';
  let nodeNs = '';
  let podNs = '';
  let peerNs = '';
  let agent: AgentProcess | undefined;
  let recorder: TstampRecorder | undefined;
  let recorded = 0;
  /** The latest departure time given so far (CLOCK_MONOTONIC, as process.hrtime). */
  let lastDeparture = 0n;

  const startAgent = async (): Promise<AgentProcess> => {
    const started = AgentProcess.start({
      node: 'node', ns: nodeNs, xdp: 'off', mode: 'snat', nodeAddresses: [NODE.address], dir, bpffs: bpffs?.dir ?? '',
      dsrServiceRanges: [`${NODE.address}/32`], extraArgs: ['--pod-devices', 'lxc+', '--edt-horizon', `${HORIZON_MS}ms`],
    });
    agent = started;
    await started.ready(AGENT_READY_MS);
    return started;
  };
  const socket = (): string => {
    assert.ok(agent, 'the agent runs');
    return agent.socket;
  };
  /** What the recorder got since the last call. */
  const newRecords = async (expected: number): Promise<Recorded[]> => {
    const rec = recorder;
    assert.ok(rec);
    await waitFor(() => rec.count() >= recorded + expected, 5_000, `${expected} packets at the peer`);
    const records = rec.records().slice(recorded);
    recorded = rec.count();
    for (const r of records) if (r.tstamp > lastDeparture) lastDeparture = r.tstamp;
    return records;
  };

  before(async () => {
    dir = mkdtempSync('/tmp/xlb-edt-');
    bpffs = TempBpffs.mount('edt');
    podNs = topology.namespace('pod');
    nodeNs = topology.namespace('node');
    peerNs = topology.namespace('peer');
    // The pod's network as a CNI sets it up, forwarding on the node included.
    topology.veth({ ns: podNs, name: 'eth0' }, { ns: nodeNs, name: 'lxc-pod' });
    topology.veth({ ns: nodeNs, name: 'eth0' }, { ns: peerNs, name: 'eth0' });
    topology.address(podNs, 'eth0', `${POD.address}/24`);
    topology.address(nodeNs, 'lxc-pod', `${POD.gateway}/24`);
    topology.address(nodeNs, 'eth0', `${NODE.address}/24`);
    topology.address(peerNs, 'eth0', `${PEER.address}/24`);
    topology.exec(podNs, 'ip', ['route', 'add', 'default', 'via', POD.gateway]);
    topology.exec(nodeNs, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    recorder = TstampRecorder.attach(peerNs, 'eth0', PORT);
    await startAgent();
  });

  after(async () => {
    await agent?.stop();
    recorder?.close();
    topology.destroy();
    bpffs?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('no fq on this machine: the agent warns, naming the device, and xlb status shows it', async () => {
    assert.match(readFileSync(agent?.log ?? '', 'utf8'), /warn\s+EDT timestamps are set but not enforced: no fq qdisc on eth0 \(tc qdisc replace dev eth0 root fq: .+\)/);
    const status = xlb(['status'], socket());
    assert.equal(status.code, 0, status.err);
    assert.match(status.out, /bandwidth:\n {2}devices: +eth0 \(fq no\)\n {2}horizon: +500 ms/);
    // No pod has a rate yet: a note; a WARNING once one has (the pacing test).
    assert.match(status.out, /\n {2}note: +EDT timestamps are set but not enforced: no fq qdisc on eth0/);
    assert.doesNotMatch(status.out, /WARNING/);
    const body = (await apiRequest(socket(), 'GET', '/v1/status')).body as { bandwidth?: { devices: unknown; horizonNs: number } };
    assert.deepEqual(body.bandwidth?.devices, [{ name: 'eth0', fq: false }]);
    assert.equal(body.bandwidth?.horizonNs, 500_000_000);
    assert.equal(inNetns(nodeNs, () => programNameById(queryTc('eth0', 'egress', EDT_TC_FILTER))), EDT_PROGRAM);
  });

  test('without a rate the pod\'s packets leave untouched', async () => {
    burst(podNs, 5);
    const records = await newRecords(5);
    assert.deepEqual(records.map((r) => r.tstamp), new Array(5).fill(0n));
  });

  test('xlb bandwidth set: the pod\'s departure times follow its rate (±2%)', async () => {
    const set = xlb(['bandwidth', 'set', 'lxc-pod', RATE], socket());
    assert.equal(set.code, 0, set.err);
    assert.match(set.out, /lxc-pod \(ifindex \d+\): egress limited to 1M \(1 Mbit\/s, 125000 bytes\/s\)/);
    const list = (await apiRequest(socket(), 'GET', '/v1/bandwidth')).body;
    const ifindex = inNetns(nodeNs, () => ifindexOf('lxc-pod'));
    assert.deepEqual(list, { bandwidth: [{ device: 'lxc-pod', ifindex, egress: RATE, bytesPerSecond: BYTES_PER_SECOND }] });
    assert.match(xlb(['status'], socket()).out, /WARNING: EDT timestamps are set but not enforced: no fq qdisc on eth0/, 'a pod has a rate now: unpaced');

    const count = 40; // 40 × 8.3 ms = 333 ms of schedule: within the 500 ms horizon
    burst(podNs, count);
    const records = await newRecords(count);
    assert.equal(records.length, count, 'none dropped');
    const scheduled = records.filter((r) => r.tstamp !== 0n);
    assert.ok(scheduled.length >= count - 2, `${scheduled.length} of ${count} packets were given a departure time`);
    assert.ok(scheduled.every((r) => r.tstampType === TSTAMP_DELIVERY_MONO), 'as monotonic delivery times');
    const rate = achievedRate(scheduled);
    assert.ok(Math.abs(rate / BYTES_PER_SECOND - 1) <= 0.02, `departures at ${rate.toFixed(0)} bytes/s for a rate of ${BYTES_PER_SECOND}`);
    const frame = scheduled[0]?.len ?? 0;
    const gaps = scheduled.slice(1).map((r, i) => r.tstamp - (scheduled[i]?.tstamp ?? 0n));
    assert.deepEqual([...new Set(gaps)], [BigInt(Math.floor((frame * 1e9) / BYTES_PER_SECOND))], 'each exactly len × 1e9 / rate after the one before');
  });

  test('a burst longer than the horizon is cut, the drops counted as edt_horizon', async () => {
    await waitFor(() => process.hrtime.bigint() > lastDeparture, 2 * HORIZON_MS, 'the schedule of the burst before to pass');
    const before = await readCounters(socket());
    const count = 150; // 150 × 8.3 ms = 1.25 s of schedule, more than twice the horizon
    burst(podNs, count);
    const dropped = (await readCounters(socket())).since(before).get('DROP_EDT_HORIZON', 'EGRESS');
    assert.ok(dropped > count / 3 && dropped < count, `${dropped} of ${count} dropped`);
    const records = await newRecords(count - dropped);
    assert.equal(records.length, count - dropped, 'every packet not dropped reached the peer');
    // The first packet leaves at once (tstamp 0), the others at their departure times.
    const departures = records.map((r) => r.tstamp).filter((t) => t !== 0n);
    const span = Number(departures.reduce((a, b) => (a > b ? a : b)) - departures.reduce((a, b) => (a < b ? a : b))) / 1e6;
    assert.ok(span < HORIZON_MS, `the departures span ${span.toFixed(0)} ms: nothing scheduled past the horizon`);
  });

  test('bad input: 404 naming a device that is not a pod device, 400 naming egress', async () => {
    const missing = await apiRequest(socket(), 'PUT', '/v1/bandwidth/lxc-none', { egress: '10M' });
    assert.equal(missing.status, 404);
    assert.match(JSON.stringify(missing.body), /no pod device \\"lxc-none\\" on this node/);
    const notPods = await apiRequest(socket(), 'PUT', '/v1/bandwidth/eth0', { egress: '10M' });
    assert.equal(notPods.status, 404);
    assert.match(JSON.stringify(notPods.body), /\\"eth0\\" is not a pod device \(--pod-devices lxc\+\)/);
    const bad = await apiRequest(socket(), 'PUT', '/v1/bandwidth/lxc-pod', { egress: '10 Mbps' });
    assert.equal(bad.status, 400);
    assert.deepEqual((bad.body as { issues: { field: string }[] }).issues.map((i) => i.field), ['egress']);
    const cli = xlb(['bandwidth', 'set', 'lxc-pod', '0'], socket());
    assert.equal(cli.code, 2);
    assert.match(cli.err, /RATE: bandwidth "0" is zero/);
    const openapi = (await apiRequest(socket(), 'GET', '/v1/openapi.json')).body as { paths: Record<string, unknown> };
    assert.ok(openapi.paths['/v1/bandwidth/{device}'] && openapi.paths['/v1/bandwidth'], 'the routes are in the OpenAPI document');
  });

  test('the rate as given survives an agent restart; delete lifts it; --cleanup takes tc_edt_egress off', async () => {
    await agent?.stop();
    await startAgent();
    const list = xlb(['bandwidth', 'list'], socket());
    assert.equal(list.code, 0, list.err);
    assert.match(list.out, /lxc-pod +\d+ +1M +125000 +1 Mbit\/s/);
    const removed = xlb(['bandwidth', 'delete', 'lxc-pod'], socket());
    assert.equal(removed.code, 0, removed.err);
    assert.deepEqual((await apiRequest(socket(), 'GET', '/v1/bandwidth')).body, { bandwidth: [] });
    const again = xlb(['bandwidth', 'delete', 'lxc-pod'], socket());
    assert.equal(again.code, 1);
    assert.match(again.err, /device "lxc-pod" has no bandwidth limit/);

    await agent?.stop();
    const cleanup = spawnSync('ip', ['netns', 'exec', nodeNs, process.execPath, paths.agent, '--cleanup', '--bpffs', agent?.bpffs ?? '', '--api-socket', socket()], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(cleanup.status, 0, cleanup.stderr);
    assert.match(cleanup.stderr, /detached eth0: tc egress tc_edt_egress/);
    assert.equal(inNetns(nodeNs, () => queryTc('eth0', 'egress', EDT_TC_FILTER)), 0);
  });
});
