/**
 * The conntrack table (bpf/include/conntrack.h) driven by real packets through xdp_lb, and the agent's
 * side of it (lb/datapath/conntrack.ts): flows read back from the buckets, the BPF sweep's purge,
 * flush and count, eviction when a bucket is full, and the hash seed kept across reconfiguration.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { CT_WAYS, CtFlag, XlbConfig } from '../../lb/layouts.js';
import { Reason } from '../../lb/reasons.js';
import { BACKENDS, CLIENT, LbHarness, NAT_PORTS, NODE, XDP } from '../support/lb-harness.js';
import { buildFrame, TCP_FLAGS } from '../support/packet.js';

const VIP_A = '198.18.10.10';
const VIP_B = '198.18.10.11';
const SERVICES = {
  a: { frontend: { address: VIP_A, port: 80, protocol: 'TCP' }, mode: 'dsr', backends: BACKENDS.map((b) => ({ address: b.v4, port: 8080 })) },
  b: { frontend: { address: VIP_B, port: 80, protocol: 'TCP' }, mode: 'snat', backends: BACKENDS.map((b) => ({ address: b.v4, port: 8080 })) },
};

const syn = (vip: string, sport: number): Buffer =>
  buildFrame({ eth: { src: CLIENT.mac, dst: '02:00:00:00:00:02' }, ip: { src: CLIENT.v4, dst: vip }, l4: { proto: 'tcp', sport, dport: 80, flags: TCP_FLAGS.SYN } });

describe('conntrack table', () => {
  let h: LbHarness;
  before(() => {
    h = LbHarness.create('ct');
    h.install(SERVICES);
  });
  after(() => h.destroy());
  beforeEach(() => h.flushFlows());

  /** Open `count` flows to `vip`; returns the backend address each one got, by client port. */
  const open = (vip: string, firstPort: number, count: number): Map<number, string> => {
    const got = new Map<number, string>();
    for (let port = firstPort; port < firstPort + count; port++) {
      const out = h.run(syn(vip, port));
      assert.equal(out.retval, XDP.TX, `flow from port ${port}`);
      got.set(port, out.parsed.ip.dst);
    }
    return got;
  };

  test('every new flow is read back from the buckets with its service, backend and translation', () => {
    const dsr = open(VIP_A, 20000, 30);
    const snat = open(VIP_B, 21000, 30);
    const flows = h.flows();
    assert.equal(flows.length, 60);
    assert.equal(h.lb.conntrack.sweep().live, 90, '60 flows, and a reply entry for each SNAT flow');
    const replies = h.snatReplies();
    assert.equal(replies.length, 30);
    for (const { tuple, reverse } of replies) {
      const flow = flows.find((f) => f.tuple.sport === reverse.clientPort);
      assert.ok(flow, `the reply entry of client port ${reverse.clientPort} has its flow`);
      assert.deepEqual(
        [tuple.saddr, tuple.sport, tuple.daddr, tuple.dport, reverse.client, reverse.service, reverse.servicePort, reverse.backendId, reverse.serviceId],
        [flow.entry.slot.backend.addr, flow.entry.slot.backend.port, NODE.v4, flow.entry.natPort, CLIENT.v4, VIP_B, 80, flow.entry.slot.backendId, flow.entry.serviceId],
      );
    }
    for (const { tuple, entry } of flows) {
      const vip = tuple.sport < 21000 ? VIP_A : VIP_B;
      assert.equal(tuple.daddr, vip);
      assert.equal(tuple.saddr, CLIENT.v4);
      assert.equal(entry.slot.backend.addr, (tuple.sport < 21000 ? dsr : snat).get(tuple.sport));
      assert.equal(entry.flags & (CtFlag.Dsr | CtFlag.Snat), tuple.sport < 21000 ? CtFlag.Dsr : CtFlag.Snat);
      if (entry.flags & CtFlag.Snat) {
        assert.equal(entry.natAddr, NODE.v4);
        assert.ok(entry.natPort >= NAT_PORTS.min && entry.natPort <= NAT_PORTS.max);
      }
    }
  });

  test('a purge clears exactly the flows (and SNAT reply entries) of a (service, backend) pair, or of a backend everywhere', () => {
    open(VIP_A, 22000, 40);
    open(VIP_B, 23000, 40);
    const flows = h.flows();
    const serviceOf = (vip: string): number => flows.find((f) => f.tuple.daddr === vip)?.entry.serviceId ?? 0;
    const [a, b] = [serviceOf(VIP_A), serviceOf(VIP_B)];
    const backendId = flows[0]?.entry.slot.backendId ?? 0;
    const count = (pred: (f: (typeof flows)[number]) => boolean): number => h.flows().filter(pred).length;
    const inA = count((f) => f.entry.serviceId === a && f.entry.slot.backendId === backendId);
    const inB = count((f) => f.entry.serviceId === b && f.entry.slot.backendId === backendId);
    assert.ok(inA > 0 && inB > 0, 'the backend has flows in both services');

    assert.equal(h.lb.conntrack.purge({ pairs: [{ serviceId: a, backendId }], backendIds: [] }), inA);
    assert.equal(count((f) => f.entry.serviceId === a && f.entry.slot.backendId === backendId), 0);
    assert.equal(count((f) => f.entry.serviceId === b && f.entry.slot.backendId === backendId), inB);
    assert.equal(h.flows().length, 80 - inA);

    const repliesOf = (): number => h.snatReplies().filter((r) => r.reverse.backendId === backendId).length;
    assert.equal(repliesOf(), inB, 'service b is SNAT: a reply entry per flow');
    assert.equal(h.lb.conntrack.purge({ pairs: [], backendIds: [backendId] }), 2 * inB);
    assert.equal(count((f) => f.entry.slot.backendId === backendId), 0);
    assert.equal(repliesOf(), 0);
    assert.equal(h.flows().length, 80 - inA - inB);
    assert.deepEqual([...h.lb.map('xlb_ct_purge').keys()], [], 'the purge requests are removed after the sweep');

    assert.equal(h.lb.conntrack.flush(), 80 - inA - inB + (40 - inB));
    assert.equal(h.flows().length, 0);
    assert.equal(h.lb.conntrack.sweep().live, 0);
  });

  test('an established flow keeps its entry: later packets are counted established, not new; the SYN\'s short lifetime ends with the handshake', () => {
    const port = 24000;
    const first = h.run(syn(VIP_A, port));
    const established = Number(h.counter(Reason.FWD_ESTABLISHED));
    const ackFrame = buildFrame({
      eth: { src: CLIENT.mac, dst: '02:00:00:00:00:02' },
      ip: { src: CLIENT.v4, dst: VIP_A },
      l4: { proto: 'tcp', sport: port, dport: 80, flags: TCP_FLAGS.ACK, payload: Buffer.from('x') },
    });
    const flags = (): number => h.flows()[0]?.entry.flags ?? 0;
    assert.equal(flags() & CtFlag.Opening, CtFlag.Opening, 'a SYN opens the entry with the short, opening lifetime');
    for (let i = 0; i < 5; i++) assert.equal(h.run(ackFrame).parsed.ip.dst, first.parsed.ip.dst);
    assert.equal(Number(h.counter(Reason.FWD_ESTABLISHED)) - established, 5);
    assert.equal(h.flows().length, 1);
    assert.equal(flags() & CtFlag.Opening, 0, 'the first packet past the SYN makes it an established entry');
  });

  test('a DSR flow picked up mid-stream stays opening (short-lived) however many packets its client sends: only a SYN stands for an answer', () => {
    const ack = buildFrame({
      eth: { src: CLIENT.mac, dst: '02:00:00:00:00:02' },
      ip: { src: CLIENT.v4, dst: VIP_A },
      l4: { proto: 'tcp', sport: 24100, dport: 80, flags: TCP_FLAGS.ACK, payload: Buffer.from('x') },
    });
    for (let i = 0; i < 3; i++) assert.equal(h.run(ack).retval, XDP.TX);
    const flags = h.flows()[0]?.entry.flags ?? 0;
    assert.equal(flags & (CtFlag.Opening | CtFlag.Handshake), CtFlag.Opening);
  });

  test('the hash seed is drawn once and kept when the node is reconfigured (entries hash by it)', () => {
    const seed = (): number => XlbConfig.decode(h.lb.map('xlb_config').lookup(Buffer.alloc(4)) ?? Buffer.alloc(XlbConfig.size)).ctSeed;
    const before = seed();
    assert.notEqual(before, 0);
    h.lb.configure({ nodeV4: NODE.v4, nodeV6: NODE.v6, natPortMin: NAT_PORTS.min, natPortMax: NAT_PORTS.max, eventSample: 1 });
    assert.equal(seed(), before);
  });
});

describe('conntrack table when full', () => {
  const ENTRIES = 4 * CT_WAYS; // four buckets
  let h: LbHarness;
  before(() => {
    h = LbHarness.create('ctfull', undefined, ENTRIES);
    h.install({ a: SERVICES.a });
  });
  after(() => h.destroy());

  test('new flows still go through, each taking the least recently seen way of its bucket; evictions are counted', () => {
    const FLOWS = 128; // ~32 per bucket: every bucket fills whatever the random hash seed
    for (let port = 25000; port < 25000 + FLOWS; port++) assert.equal(h.run(syn(VIP_A, port)).retval, XDP.TX);
    assert.equal(Number(h.counter(Reason.FWD_NEW_FLOW)), FLOWS);
    assert.equal(h.lb.conntrack.capacity, ENTRIES);
    const live = h.lb.conntrack.sweep().live;
    assert.equal(live, ENTRIES, 'every way is taken');
    assert.equal(Number(h.counter(Reason.CT_EVICTED)), FLOWS - ENTRIES);
    assert.ok(h.flows().some((f) => f.tuple.sport === 25000 + FLOWS - 1), 'the newest flow is tracked');
  });

  test('a new SNAT flow keeps its reply entry in its own bucket, and neither evicts the other in a full table', () => {
    h.install({ a: SERVICES.a, b: SERVICES.b });
    h.flushFlows();
    const FLOWS = 64; // ~16 per bucket, two ways each: every bucket is full many times over
    for (let port = 26000; port < 26000 + FLOWS; port++) {
      const out = h.run(syn(VIP_B, port));
      assert.equal(out.retval, XDP.TX, `flow from port ${port}`);
      const flow = h.flows().find((f) => f.tuple.sport === port);
      const reply = h.snatReplies().find((r) => r.reverse.clientPort === port);
      assert.ok(flow && reply, `flow from port ${port}: both its entry and its reply entry are tracked`);
      assert.equal(reply.bucket, flow.bucket, `flow from port ${port}: one bucket for both`);
      assert.equal(reply.tuple.dport, flow.entry.natPort);
      assert.equal(out.parsed.ip.l4?.sport, flow.entry.natPort, 'the packet leaves from the claimed port');
    }
    assert.equal(Number(h.counter(Reason.DROP_NAT_NO_PORT)), 0);
  });

  test('a SNAT flow and its reply entry are evicted together: no live half is left without the other', () => {
    h.install({ a: SERVICES.a, b: SERVICES.b });
    h.flushFlows();
    const ack = (port: number): Buffer =>
      buildFrame({ eth: { src: CLIENT.mac, dst: '02:00:00:00:00:02' }, ip: { src: CLIENT.v4, dst: VIP_B }, l4: { proto: 'tcp', sport: port, dport: 80, flags: TCP_FLAGS.ACK } });
    // Half the table's worth of flows, touched by their clients a few seconds later (which must push their
    // reply entries back too), then as many new flows: each bucket overflows, evicting what expires first.
    for (let port = 27000; port < 27008; port++) assert.equal(h.run(syn(VIP_B, port)).retval, XDP.TX);
    h.advanceClock(5);
    for (let port = 27000; port < 27008; port++) assert.equal(h.run(ack(port)).retval, XDP.TX);
    const evicted = h.counter(Reason.CT_EVICTED);
    for (let port = 27008; port < 27016; port++) assert.equal(h.run(syn(VIP_B, port)).retval, XDP.TX);
    assert.ok(h.counter(Reason.CT_EVICTED) > evicted, 'the table overflowed');
    h.lb.conntrack.sweep(); // clears the halves that died with the other
    const flows = h.flows().filter((f) => f.tuple.sport >= 27000);
    const replies = h.snatReplies();
    assert.ok(flows.length > 0);
    assert.deepEqual(
      replies.map((r) => r.reverse.clientPort).sort(),
      flows.map((f) => f.tuple.sport).sort(),
      'a reply entry for every live flow, and none for a flow that is gone',
    );
    for (const flow of flows) {
      assert.equal(replies.find((r) => r.reverse.clientPort === flow.tuple.sport)?.tuple.dport, flow.entry.natPort);
    }
  });

  test('a table size that is not CT_WAYS × a power of two is refused', () => {
    assert.throws(() => LbHarness.create('ctbad', undefined, 24), /conntrack entries must be 4 × a power of two/);
  });
});
