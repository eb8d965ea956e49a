/**
 * xlb-agent on nodes nobody prepared: the lab sets no sysctl and no neighbour on the LB or backend
 * nodes, so the agents must do what their datapath needs. Real `xlb-agent` processes in network
 * namespaces, as a user runs them: node settings, the first packet to a backend whose neighbour is
 * unknown, bpffs, one agent per node, and --cleanup.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { apiRequest } from '../../agent/cli/api-client.js';
import { AgentProcess } from '../../agent/demo/agent-process.js';
import { readCounters } from '../../agent/demo/counters.js';
import { paths } from '../../agent/demo/paths.js';
import { LabProcesses } from '../../agent/lab/processes.js';
import { Lab, type LabHost } from '../../agent/lab/topology.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { BpfMap } from '../../lb/datapath/map.js';
import { inNetns } from '../../lb/datapath/netns.js';
import { queryTc } from '../../lb/datapath/tc.js';
import { queryXdp } from '../../lb/datapath/xdp.js';

const VIP4 = '198.18.10.30';
const VIP6 = '2001:db8:10::30';
const AGENT_READY_MS = 30_000;
/** The bar: a first request to a backend nobody has talked to yet is answered within 0.9 s. */
const FIRST_CONTACT_MS = 900;

function sysctl(ns: string, name: string): string {
  return spawnSync('ip', ['netns', 'exec', ns, 'sysctl', '-n', name], { encoding: 'utf8' }).stdout.trim();
}

/** One agent run to its end (it must refuse, or --cleanup): exit code, output, how long it took. */
function runAgent(ns: string, args: string[]): { code: number | null; output: string; ms: number } {
  const started = Date.now();
  const result = spawnSync('ip', ['netns', 'exec', ns, process.execPath, paths.agent, ...args], { encoding: 'utf8', timeout: 20_000, killSignal: 'SIGKILL' });
  return { code: result.status, output: `${result.stdout}${result.stderr}`, ms: Date.now() - started };
}

describe('xlb-agent on a node nobody prepared', () => {
  let bpffs: TempBpffs;
  let dir: string;
  let lab: Lab;
  let processes: LabProcesses;
  let lbAgent: AgentProcess | undefined;
  const agents: AgentProcess[] = [];
  /** The LB agent first, then the backends' (from the second test on). */
  const serving: AgentProcess[] = [];

  const startAgent = async (node: string, host: LabHost, xdp: 'native' | 'off', extraArgs: string[] = []): Promise<AgentProcess> => {
    const agent = AgentProcess.start({ node, ns: host.ns, xdp, mode: 'dsr', nodeAddresses: [host.v4, host.v6], dir, bpffs: bpffs.dir, dsrServiceRanges: lab.dsrServiceRanges, extraArgs });
    agents.push(agent);
    await agent.ready(AGENT_READY_MS);
    return agent;
  };
  const lbSocket = (): string => {
    assert.ok(lbAgent, 'the LB agent runs');
    return lbAgent.socket;
  };
  const put = async (id: string, body: unknown): Promise<void> => {
    const response = await apiRequest(lbSocket(), 'PUT', `/v1/services/${id}`, body);
    assert.ok(response.status === 200 || response.status === 201, `PUT ${id}: ${response.status} ${JSON.stringify(response.body)}`);
  };
  const backends = (family: 'v4' | 'v6', port: number): { address: string; port: number }[] => lab.backends.map((b) => ({ address: b[family], port }));
  const lbXdpProgram = (): number => inNetns(lab.lb.ns, () => queryXdp('eth0').programId);
  const agentLog = (agent: AgentProcess): string => readFileSync(agent.log, 'utf8');
  /** Every key and value of the LB node's pinned service and backend maps, as hex. */
  const lbMapContents = (): string[] => ['xlb_lb_svc', 'xlb_lb_be'].flatMap((name) => {
    const map = BpfMap.openPinned(`${bpffs.dir}/lb/${name}`);
    try {
      return [...map.keys()].map((key) => `${name} ${key.toString('hex')} ${map.lookup(key)?.toString('hex') ?? ''}`).sort();
    } finally {
      map.close();
    }
  });

  before(async () => {
    bpffs = TempBpffs.mount('node');
    dir = mkdtempSync('/tmp/xlb-node-');
    lab = Lab.create('node');
    processes = new LabProcesses(lab);
    await Promise.all(lab.backends.map((b, i) => processes.startServer(b, `b${i + 1}`)));
  });

  after(async () => {
    await processes?.stopAll();
    await Promise.all(agents.map((a) => a.stop()));
    lab?.destroy();
    bpffs?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('--no-node-setup: nothing changed, each unmet sysctl named in a warning, the FIB refusal counted as fib_fwd_disabled', async () => {
    assert.equal(sysctl(lab.lb.ns, 'net.ipv4.conf.eth0.forwarding'), '0', 'a fresh node does not forward');
    lbAgent = await startAgent('lb', lab.lb, 'native', ['--no-node-setup']);
    const log = agentLog(lbAgent);
    assert.match(log, /warn.*sysctl net\.ipv4\.conf\.eth0\.forwarding is 0, the datapath needs 1: the FIB refuses to forward/);
    assert.match(log, /warn.*sysctl net\.ipv6\.conf\.eth0\.forwarding is 0, the datapath needs 1/);
    assert.equal(sysctl(lab.lb.ns, 'net.ipv4.conf.eth0.forwarding'), '0', 'told not to, the agent set nothing');
    const status = spawnSync(process.execPath, [paths.cli, 'status', '--api-socket', lbAgent.socket], { encoding: 'utf8' });
    assert.match(status.stdout, /WARNING: sysctl net\.ipv4\.conf\.eth0\.forwarding is 0, the datapath needs 1: the FIB refuses/);
    await put('web4', { frontend: { address: VIP4, port: 80, protocol: 'TCP' }, mode: 'dsr', backends: backends('v4', 8080) });
    const before = await readCounters(lbSocket());
    const report = await processes.client('http', `${VIP4}:80`, 1, 500);
    assert.equal(report.answered, 0);
    const delta = (await readCounters(lbSocket())).since(before);
    assert.ok(delta.get('DROP_FIB_FWD_DISABLED', 'INGRESS') >= 1, 'the drop carries the FIB\'s own reason');
    assert.equal(delta.get('DROP_FIB', 'INGRESS'), 0);
    await lbAgent.stop();
  });

  test('the agents set forwarding and redirects on their devices and log each change', async () => {
    lbAgent = await startAgent('lb', lab.lb, 'native');
    serving.push(lbAgent);
    for (const [i, b] of lab.backends.entries()) serving.push(await startAgent(`b${i + 1}`, b, 'off'));
    for (const [name, wanted] of [
      ['net.ipv4.conf.eth0.forwarding', '1'],
      ['net.ipv6.conf.eth0.forwarding', '1'],
      ['net.ipv4.conf.all.send_redirects', '0'],
      ['net.ipv4.conf.eth0.send_redirects', '0'],
    ] as const) {
      assert.equal(sysctl(lab.lb.ns, name), wanted, name);
    }
    assert.match(agentLog(lbAgent), /set sysctl net\.ipv4\.conf\.eth0\.forwarding: 0 -> 1 \(otherwise the FIB refuses/);
    assert.match(agentLog(lbAgent), /set sysctl net\.ipv4\.conf\.all\.send_redirects: 1 -> 0/);
    const status = spawnSync(process.execPath, [paths.cli, 'status', '--api-socket', lbAgent.socket], { encoding: 'utf8' });
    assert.match(status.stdout, /set at start-up: .*net\.ipv4\.conf\.eth0\.forwarding 0 -> 1/);
    assert.doesNotMatch(status.stdout, /WARNING/);
  });

  test('first contact: with no neighbour known, every first request is answered within 0.9 s (DSR, SNAT; IPv4, IPv6; TCP, UDP)', async () => {
    const cases = [
      { id: 'web4', kind: 'http', target: `${VIP4}:80`, frontend: { address: VIP4, port: 80, protocol: 'TCP' }, mode: 'dsr', family: 'v4', port: 8080 },
      { id: 'dsr-tcp6', kind: 'http', target: `[${VIP6}]:80`, frontend: { address: VIP6, port: 80, protocol: 'TCP' }, mode: 'dsr', family: 'v6', port: 8080 },
      { id: 'dsr-udp4', kind: 'udp', target: `${VIP4}:54`, frontend: { address: VIP4, port: 54, protocol: 'UDP' }, mode: 'dsr', family: 'v4', port: 5353 },
      { id: 'dsr-udp6', kind: 'udp', target: `[${VIP6}]:54`, frontend: { address: VIP6, port: 54, protocol: 'UDP' }, mode: 'dsr', family: 'v6', port: 5353 },
      { id: 'snat-tcp4', kind: 'http', target: `${VIP4}:81`, frontend: { address: VIP4, port: 81, protocol: 'TCP' }, mode: 'snat', family: 'v4', port: 8080 },
      { id: 'snat-tcp6', kind: 'http', target: `[${VIP6}]:81`, frontend: { address: VIP6, port: 81, protocol: 'TCP' }, mode: 'snat', family: 'v6', port: 8080 },
      { id: 'snat-udp4', kind: 'udp', target: `${VIP4}:53`, frontend: { address: VIP4, port: 53, protocol: 'UDP' }, mode: 'snat', family: 'v4', port: 5353 },
      { id: 'snat-udp6', kind: 'udp', target: `[${VIP6}]:53`, frontend: { address: VIP6, port: 53, protocol: 'UDP' }, mode: 'snat', family: 'v6', port: 5353 },
    ] as const;
    for (const c of cases) await put(c.id, { frontend: c.frontend, mode: c.mode, backends: backends(c.family, c.port) });
    const failures: string[] = [];
    // Traffic left from the case before may teach the LB a neighbour again between the flush and the
    // request, so the hand-over to tc is counted over all cases, not required of each.
    let resolved = 0;
    for (const c of cases) {
      // Forget every neighbour on every node, as on a node that has just booted.
      for (const host of [lab.lb, ...lab.backends]) spawnSync('ip', ['netns', 'exec', host.ns, 'ip', 'neigh', 'flush', 'all']);
      const known = spawnSync('ip', ['netns', 'exec', lab.lb.ns, 'ip', 'neigh', 'show'], { encoding: 'utf8' }).stdout
        .split('\n').filter((line) => lab.backends.some((b) => line.startsWith(`${b[c.family]} `)) && /lladdr/.test(line));
      assert.deepEqual(known, [], `the LB node knows no backend's link-layer address before ${c.id}`);
      const before = await Promise.all(serving.map((a) => readCounters(a.socket)));
      const report = await processes.client(c.kind, c.target, 1, FIRST_CONTACT_MS);
      const after = await Promise.all(serving.map((a) => readCounters(a.socket)));
      const [delta, ...backendDeltas] = after.map((counters, i) => counters.since(before[i] ?? counters));
      assert.ok(delta);
      if (backendDeltas.some((d) => d.get('FWD_NEIGH_RESOLVE', 'INGRESS') !== 0)) failures.push(`${c.id}: a backend node's tc took the LB's hand-over mark for its own`);
      if (report.answered !== 1) failures.push(`${c.id}: ${report.errors.join('; ') || 'no answer'}`);
      resolved += delta.get('FWD_NEIGH_RESOLVE', 'INGRESS');
      if (delta.get('DSR_RECEIVED', 'INGRESS') !== 0) failures.push(`${c.id}: the LB node's own DSR receive side took a packet it forwards`);
    }
    assert.deepEqual(failures, []);
    assert.ok(resolved >= cases.length / 2, `${resolved} first packets sent on by tc while their next hop was resolved`);
  });

  test('a second agent on the node is refused before it touches anything; the first keeps serving', async () => {
    const program = lbXdpProgram();
    const maps = lbMapContents();
    assert.ok(maps.length >= 16, 'the LB node serves its services');
    const services = await apiRequest(lbSocket(), 'GET', '/v1/services');
    const attempts = [
      // the same pins, its own socket
      ['--bpffs', `${bpffs.dir}/lb`, '--api-socket', `${dir}/lb-second.sock`],
      // everything of its own: still the same node
      ['--bpffs', `${bpffs.dir}/lb-second`, '--api-socket', `${dir}/lb-third.sock`],
    ];
    for (const args of attempts) {
      const run = runAgent(lab.lb.ns, ['--standalone', '--device', 'eth0', '--mode', 'dsr', '--state-file', `${dir}/second.state.json`, ...args]);
      assert.equal(run.code, 1, run.output);
      assert.match(run.output, new RegExp(`another xlb-agent \\(pid ${String(lbAgent?.pid)}\\) is running on this node`));
      assert.doesNotMatch(run.output, /datapath:|written|attached|set sysctl/);
      assert.equal(existsSync(`${dir}/second.state.json`), false);
    }
    assert.equal(existsSync(`${bpffs.dir}/lb-second`), false, 'the refused agent created no pin directory');
    assert.equal(lbXdpProgram(), program, 'the running agent\'s program is still attached');
    assert.deepEqual(lbMapContents(), maps, 'the running agent\'s maps are as it wrote them');
    assert.deepEqual((await apiRequest(lbSocket(), 'GET', '/v1/services')).body, services.body);
    const report = await processes.client('http', `${VIP4}:80`, 3);
    assert.equal(report.answered, 3, report.errors.join('; '));
  });

  test('--bpffs on no bpffs: exits 1 at once naming the path and the mount command, or mounts one and says so', async () => {
    // Inside `ip netns exec` /sys is a fresh sysfs: /sys/fs/bpf is no bpffs there.
    const refused = runAgent(lab.client.ns, ['--standalone', '--device', 'eth0', '--xdp', 'off', '--no-node-setup',
      '--bpffs', '/sys/fs/bpf/xlb', '--api-socket', `${dir}/client.sock`, '--state-file', `${dir}/client.state.json`]);
    assert.equal(refused.code, 1, refused.output);
    assert.match(refused.output, /--bpffs \/sys\/fs\/bpf\/xlb: \/sys\/fs\/bpf is on sysfs, not on a bpffs; mount one with: mount -t bpf bpf \/sys\/fs\/bpf/);
    assert.ok(refused.ms < 5_000, `answered in ${refused.ms} ms`);
    assert.equal(inNetns(lab.client.ns, () => queryTc('eth0', 'ingress')), 0, 'nothing attached');

    const plain = mkdtempSync('/tmp/xlb-node-plain-');
    try {
      const inPlain = runAgent(lab.client.ns, ['--standalone', '--device', 'eth0', '--xdp', 'off', '--no-node-setup',
        '--bpffs', `${plain}/pins`, '--api-socket', `${dir}/client.sock`, '--state-file', `${dir}/client.state.json`]);
      assert.equal(inPlain.code, 1, inPlain.output);
      assert.match(inPlain.output, new RegExp(`--bpffs ${plain}/pins: ${plain} is on \\S+, not on a bpffs`));
      assert.equal(existsSync(`${plain}/pins`), false, 'no directory left behind');
    } finally {
      rmSync(plain, { recursive: true, force: true });
    }

    // Allowed to, the agent mounts one where --bpffs needs it (in `ip netns exec`'s own mount namespace).
    const client = await startAgent('client', lab.client, 'off', ['--bpffs', '/sys/fs/bpf/xlb']);
    await client.stop();
    assert.match(agentLog(client), /mounted a bpffs on \/sys\/fs\/bpf \(\/sys\/fs\/bpf\/xlb was on no bpffs\)/);
    const cleaned = runAgent(lab.client.ns, ['--cleanup', '--bpffs', '/sys/fs/bpf/xlb', '--api-socket', client.socket]);
    assert.equal(cleaned.code, 0, cleaned.output);
    assert.equal(inNetns(lab.client.ns, () => queryTc('eth0', 'ingress')), 0, 'its tc programs detached');
  });

  test('xlb-agent --cleanup is refused while the agent runs, then takes xlb off the node', async () => {
    assert.ok(lbAgent);
    const args = ['--cleanup', '--bpffs', lbAgent.bpffs, '--api-socket', lbAgent.socket];
    const refused = runAgent(lab.lb.ns, args);
    assert.equal(refused.code, 1, refused.output);
    assert.match(refused.output, /another xlb-agent \(pid \d+\) is running on this node/);
    assert.notEqual(lbXdpProgram(), 0);

    await lbAgent.stop();
    assert.notEqual(lbXdpProgram(), 0, 'a stopped agent leaves its programs serving');
    const cleaned = runAgent(lab.lb.ns, args);
    assert.equal(cleaned.code, 0, cleaned.output);
    assert.match(cleaned.output, /detached eth0: XDP xdp_lb \(native\)/);
    assert.match(cleaned.output, /detached eth0: tc ingress tc_dsr_ingress/);
    assert.equal(lbXdpProgram(), 0);
    assert.equal(inNetns(lab.lb.ns, () => queryTc('eth0', 'ingress')), 0);
    assert.equal(inNetns(lab.lb.ns, () => queryTc('eth0', 'egress')), 0);
    assert.equal(existsSync(lbAgent.bpffs), false, 'pins removed');
    assert.equal(existsSync(lbAgent.socket), false, 'socket removed');
  });
});
