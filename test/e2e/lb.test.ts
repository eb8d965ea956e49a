/**
 * End to end, in network namespaces: a client, an LB node running xdp_lb, three backend nodes running
 * the tc DSR programs and real HTTP/UDP servers. Real connections through VIPs and a NodePort, in DSR,
 * SNAT and hybrid modes, over IPv4 and IPv6.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { DatapathEvent, ServiceDatapath } from '../../agent/datapath.js';
import { Lab } from '../../agent/lab/topology.js';
import { createNodeDatapath } from '../../agent/node-datapath.js';
import { FrontendConflictError } from '../../agent/store.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { BpfMap } from '../../lb/datapath/map.js';
import { inNetns } from '../../lb/datapath/netns.js';
import { XlbConfig } from '../../lb/layouts.js';
import { DEFAULT_MAGLEV_SEED, parseMaglevSeed } from '../../lb/maglev/index.js';
import { Direction, Reason } from '../../lb/reasons.js';
import { validateService, type Service } from '../../lb/service.js';
import { LabProcesses, type ClientReport } from '../../agent/lab/processes.js';
import { waitFor } from '../support/wait.js';

const VIP4 = '198.18.10.10';
const VIP6 = '2001:db8:10::10';
const HYBRID = '198.18.10.11';

function counter(datapath: ServiceDatapath, reason: number, direction: number = Direction.INGRESS): bigint {
  return datapath.counters().find((c) => c.reason === reason && c.direction === direction)?.packets ?? 0n;
}

describe('load balancing real traffic between network namespaces', () => {
  let bpffs: TempBpffs;
  let lab: Lab;
  let processes: LabProcesses;
  let lbNode: ServiceDatapath;
  const backendNodes: ServiceDatapath[] = [];
  let services: Map<string, Service>;

  /** The LB node's SNAT ports (--snat-port-range): not the default, so the tests see it is used. */
  const SNAT_PORTS = { min: 40000, max: 40999 };
  const node = (ns: string, name: string, devices: string[], xdp: 'native' | 'off', addresses: string[]): ServiceDatapath =>
    inNetns(ns, () => createNodeDatapath({
      devices, xdp, mode: 'dsr', maglevTableSize: 251, maglevSeed: parseMaglevSeed(DEFAULT_MAGLEV_SEED),
      bpffs: `${bpffs.dir}/${name}`, nodeAddresses: addresses, nodeName: name, conntrackEntries: 16384, snatPorts: SNAT_PORTS, nodeSetup: true, dsrServiceRanges: lab.dsrServiceRanges,
      log: () => undefined,
    }));

  const backends = (family: 'v4' | 'v6', port: number, skip?: string): { address: string; port: number }[] =>
    lab.backends.filter((b) => b[family] !== skip).map((b) => ({ address: b[family], port }));

  before(async () => {
    bpffs = TempBpffs.mount('e2e');
    lab = Lab.create('e2e');
    processes = new LabProcesses(lab);
    lbNode = node(lab.lb.ns, 'lb', ['eth0'], 'native', [lab.lb.v4, lab.lb.v6]);
    for (const b of lab.backends) backendNodes.push(node(b.ns, b.ns, ['eth0'], 'off', [b.v4, b.v6]));
    await Promise.all(lab.backends.map((b, i) => processes.startServer(b, `b${i + 1}`)));
    services = new Map(Object.entries({
      web4: { frontend: { address: VIP4, port: 80, protocol: 'TCP' }, mode: 'dsr', backends: backends('v4', 8080) },
      web6: { frontend: { address: VIP6, port: 80, protocol: 'TCP' }, mode: 'dsr', backends: backends('v6', 8080) },
      dns4: { frontend: { address: VIP4, port: 53, protocol: 'UDP' }, mode: 'snat', backends: backends('v4', 5353) },
      dns6: { frontend: { address: VIP6, port: 53, protocol: 'UDP' }, mode: 'snat', backends: backends('v6', 5353) },
      udp4dsr: { frontend: { address: VIP4, port: 54, protocol: 'UDP' }, mode: 'dsr', backends: backends('v4', 5353) },
      hyweb: { frontend: { address: HYBRID, port: 80, protocol: 'TCP' }, mode: 'hybrid', backends: backends('v4', 8080) },
      hydns: { frontend: { address: HYBRID, port: 53, protocol: 'UDP' }, mode: 'hybrid', backends: backends('v4', 5353) },
      np: { frontend: { address: '0.0.0.0', port: 30080, protocol: 'TCP' }, type: 'NodePort', mode: 'snat', backends: backends('v4', 8080) },
      np6: { frontend: { address: '::', port: 30080, protocol: 'TCP' }, type: 'NodePort', mode: 'dsr', backends: backends('v6', 8080) },
    }).map(([id, raw]) => [id, validateService(raw, id)]));
    await lbNode.apply(services);
  });

  after(async () => {
    await processes?.stopAll();
    for (const datapath of [lbNode, ...backendNodes]) await datapath?.close();
    lab?.destroy();
    bpffs?.remove();
  });

  const expectAllAnswered = (report: ClientReport, sent: number): void => {
    assert.deepEqual(report.errors, []);
    assert.equal(report.answered, sent);
  };
  /** SNAT: every backend saw the exchanges come from `address`, on a port of SNAT_PORTS. */
  const fromSnatPorts = (report: ClientReport, address: string): void => {
    assert.equal(report.seenFrom.length, report.answered);
    for (const seen of report.seenFrom) {
      const at = seen.lastIndexOf(':');
      const port = Number(seen.slice(at + 1));
      assert.equal(seen.slice(0, at), address, seen);
      assert.ok(port >= SNAT_PORTS.min && port <= SNAT_PORTS.max, `${seen}: a port of ${SNAT_PORTS.min}-${SNAT_PORTS.max}`);
    }
  };

  const spreadOver = (report: ClientReport, names: string[]): void => {
    assert.deepEqual(Object.keys(report.byBackend).sort(), names, `shares: ${JSON.stringify(report.byBackend)}`);
  };
  const dsrReplies = (): bigint => backendNodes.reduce((sum, n) => sum + counter(n, Reason.DSR_REPLY, Direction.EGRESS), 0n);

  test('DSR over IPv4: every request answered, spread over all backends, replies bypass the LB node', async () => {
    const repliesBefore = counter(lbNode, Reason.FWD_REPLY);
    const dsrBefore = dsrReplies();
    const report = await processes.client('http', `${VIP4}:80`, 30);
    expectAllAnswered(report, 30);
    spreadOver(report, ['b1', 'b2', 'b3']);
    assert.equal(counter(lbNode, Reason.FWD_REPLY), repliesBefore, 'the LB node translated no replies');
    assert.ok(dsrReplies() - dsrBefore >= 30n * 2n, 'backends rewrote the replies to come from the VIP');
  });

  test('new-flow events are sampled while someone subscribes, and switched off after', async () => {
    const config = (): number => {
      const map = BpfMap.openPinned(`${bpffs.dir}/lb/xlb_config`);
      try {
        return XlbConfig.decode(map.lookup(Buffer.alloc(4)) ?? Buffer.alloc(XlbConfig.size)).eventSample;
      } finally {
        map.close();
      }
    };
    assert.equal(config(), 0, 'nobody listens: no new-flow events');
    const events: DatapathEvent[] = [];
    const stop = lbNode.subscribe((event) => events.push(event));
    const ours = (): number => events.filter((e) => e.type === 'new-flow' && e.daddr === VIP4 && e.dport === 80).length;
    try {
      assert.equal(config(), 1);
      expectAllAnswered(await processes.client('http', `${VIP4}:80`, 10), 10);
      await waitFor(() => ours() >= 10, 5_000, 'a new-flow event per connection');
    } finally {
      stop();
    }
    assert.equal(config(), 0);
  });

  test('DSR over IPv6', async () => {
    const report = await processes.client('http', `[${VIP6}]:80`, 30);
    expectAllAnswered(report, 30);
    spreadOver(report, ['b1', 'b2', 'b3']);
  });

  test('SNAT UDP over IPv4 and IPv6: requests and replies through the LB node', async () => {
    const repliesBefore = counter(lbNode, Reason.FWD_REPLY);
    for (const [target, nodeAddress] of [[`${VIP4}:53`, lab.lb.v4], [`[${VIP6}]:53`, lab.lb.v6]] as const) {
      const report = await processes.client('udp', target, 30);
      expectAllAnswered(report, 30);
      spreadOver(report, ['b1', 'b2', 'b3']);
      fromSnatPorts(report, nodeAddress);
    }
    assert.ok(counter(lbNode, Reason.FWD_REPLY) - repliesBefore >= 60n);
  });

  test('DSR UDP over IPv4', async () => {
    const report = await processes.client('udp', `${VIP4}:54`, 30);
    expectAllAnswered(report, 30);
    spreadOver(report, ['b1', 'b2', 'b3']);
  });

  test('hybrid: TCP by DSR, UDP by SNAT', async () => {
    const repliesBefore = counter(lbNode, Reason.FWD_REPLY);
    expectAllAnswered(await processes.client('http', `${HYBRID}:80`, 20), 20);
    assert.equal(counter(lbNode, Reason.FWD_REPLY), repliesBefore, 'TCP replies did not come through the LB');
    expectAllAnswered(await processes.client('udp', `${HYBRID}:53`, 20), 20);
    assert.ok(counter(lbNode, Reason.FWD_REPLY) - repliesBefore >= 20n, 'UDP replies came through the LB');
  });

  test('NodePort on the node addresses, IPv4 (SNAT) and IPv6 (DSR)', async () => {
    const four = await processes.client('http', `${lab.lb.v4}:30080`, 40);
    expectAllAnswered(four, 40);
    spreadOver(four, ['b1', 'b2', 'b3']);
    fromSnatPorts(four, lab.lb.v4);
    expectAllAnswered(await processes.client('http', `[${lab.lb.v6}]:30080`, 20), 20);
  });

  test('a frontend two services claim (a NodePort on a node address) is refused; nothing changes', async () => {
    const clash = validateService({ frontend: { address: lab.lb.v4, port: 30080, protocol: 'TCP' }, mode: 'dsr', backends: backends('v4', 8080) }, 'clash');
    await assert.rejects(lbNode.apply(new Map([...services, ['clash', clash]])), (error: unknown) => {
      assert.ok(error instanceof FrontendConflictError);
      assert.match(error.message, /198\.18\.0\.2:30080\/TCP is already the frontend of service np/);
      return true;
    });
    expectAllAnswered(await processes.client('http', `${lab.lb.v4}:30080`, 5), 5);
  });

  test('an agent restart (programs replaced, maps reused from their pins) keeps an open connection', async () => {
    const held = processes.hold(`${VIP4}:80`, 30, 50);
    const first = await held.next();
    await lbNode.close();
    lbNode = node(lab.lb.ns, 'lb', ['eth0'], 'native', [lab.lb.v4, lab.lb.v6]);
    const resync = await lbNode.apply(services);
    assert.deepEqual({ written: resync.written, deleted: resync.deleted }, { written: 0, deleted: 0 }, 'the pinned maps already held every service');
    const after = await held.rest();
    assert.equal(after.length, 29);
    for (const line of after) {
      assert.equal(line.backend, first.backend, `request ${line.i} answered by ${line.backend ?? line.error}`);
      assert.equal(line.localPort, first.localPort);
    }
  });

  test('removing a backend leaves open connections to the others untouched; new requests avoid it', async () => {
    const held = processes.hold(`${VIP4}:80`, 40, 50);
    const first = await held.next();
    const keep = first.backend;
    const remove = lab.backends.find((_, i) => `b${i + 1}` !== keep);
    assert.ok(remove);
    const removedName = `b${lab.backends.indexOf(remove) + 1}`;
    await lbNode.apply(new Map([...services, ['web4', validateService({ frontend: { address: VIP4, port: 80, protocol: 'TCP' }, mode: 'dsr', backends: backends('v4', 8080, remove.v4) }, 'web4')]]));
    try {
      const after = await held.rest();
      assert.equal(after.length, 39);
      for (const line of after) {
        assert.equal(line.backend, keep, `request ${line.i} answered by ${line.backend ?? line.error}`);
        assert.equal(line.localPort, first.localPort, 'the same TCP connection throughout');
      }
      const fresh = await processes.client('http', `${VIP4}:80`, 30);
      expectAllAnswered(fresh, 30);
      assert.ok(!(removedName in fresh.byBackend), `the removed backend ${removedName} got no new requests`);
    } finally {
      await lbNode.apply(services);
    }
  });
});
