/**
 * tc_pod under BPF_PROG_TEST_RUN: loaded over the maps xdp_lb pinned (as the agent loads it), services
 * written by the real writer. Packets from the pod go through tc_pod_ingress, packets to it through
 * tc_pod_egress; the output frames are checked whole (addresses, ports, MACs, checksums).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PodDatapath } from '../../agent/pod-datapath.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { CONNTRACK_MAPS, ctWays } from '../../lb/datapath/conntrack.js';
import { LbDatapath } from '../../lb/datapath/lb-datapath.js';
import { CT_WAYS, CtBucket, CtEntry, CtFlag, CtWay, NatReverse, TupleKind, XlbTuple } from '../../lb/layouts.js';
import { IdAllocator } from '../../lb/lbmap/ids.js';
import { counterIndex, Direction, Reason } from '../../lb/reasons.js';
import { validateService, type Service } from '../../lb/service.js';
import { IPPROTO, TCP_FLAGS, buildFrame, buildIp, checksumErrors, type FrameSpec, type L4Spec } from '../support/packet.js';
import { TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT, NAT_PORTS, POD_MAC, HOST_MAC, loadPodHarness } from '../support/pod-harness.js';
import { runFrame, type RunResult } from '../support/lb-harness.js';


const families = [
  {
    name: 'IPv4',
    pod: '198.18.20.2',
    vip: '198.18.30.10',
    other: '198.18.30.99',
    node: '198.18.0.2',
    backends: ['198.18.21.11', '198.18.21.12', '198.18.21.13'],
  },
  {
    name: 'IPv6',
    pod: '2001:db8:20::2',
    vip: '2001:db8:30::10',
    other: '2001:db8:30::99',
    node: '2001:db8::2',
    backends: ['2001:db8:21::11', '2001:db8:21::12', '2001:db8:21::13'],
  },
] as const;
type Family = (typeof families)[number];
/** A second service address for the clash case, per family. */
const VIP_B = { IPv4: '198.18.30.11', IPv6: '2001:db8:30::11' } as const;

function servicesFor(f: Family): Record<string, unknown> {
  const key = f.name === 'IPv4' ? '4' : '6';
  const backends = (port: number): unknown[] => f.backends.map((address) => ({ address, port }));
  return {
    [`web${key}`]: { type: 'ClusterIP', frontend: { address: f.vip, port: 80, protocol: 'TCP' }, backends: backends(8080) },
    [`dns${key}`]: { type: 'ClusterIP', frontend: { address: f.vip, port: 53, protocol: 'UDP' }, backends: backends(5353) },
    [`self${key}`]: { type: 'ClusterIP', frontend: { address: f.vip, port: 81, protocol: 'TCP' }, backends: [{ address: f.pod, port: 8080 }] },
    [`selfudp${key}`]: { type: 'ClusterIP', frontend: { address: f.vip, port: 81, protocol: 'UDP' }, backends: [{ address: f.pod, port: 5353 }] },
    [`empty${key}`]: { type: 'ClusterIP', frontend: { address: f.vip, port: 82, protocol: 'TCP' }, backends: [] },
    [`emptyudp${key}`]: { type: 'ClusterIP', frontend: { address: f.vip, port: 82, protocol: 'UDP' }, backends: [] },
    [`local${key}`]: {
      type: 'ClusterIP',
      frontend: { address: f.vip, port: 83, protocol: 'TCP' },
      internalTrafficPolicy: 'Local',
      backends: [{ address: f.backends[0], port: 8080, node: 'elsewhere' }],
    },
    [`one${key}`]: { type: 'ClusterIP', frontend: { address: f.vip, port: 86, protocol: 'TCP' }, backends: [{ address: f.backends[2], port: 8080 }] },
    [`affinity${key}`]: {
      type: 'ClusterIP',
      frontend: { address: f.vip, port: 84, protocol: 'UDP' },
      sessionAffinity: { type: 'ClientIP', timeoutSeconds: 60 },
      backends: backends(5353),
    },
    [`here${key}`]: {
      type: 'ClusterIP',
      frontend: { address: f.vip, port: 85, protocol: 'UDP' },
      internalTrafficPolicy: 'Local',
      backends: f.backends.map((address, i) => ({ address, port: 5353, node: i === 1 ? 'here' : 'elsewhere' })),
    },
    // Two services sharing one backend: a pod asking both from one port makes their replies clash.
    [`clasha${key}`]: { type: 'ClusterIP', frontend: { address: f.vip, port: 54, protocol: 'UDP' }, backends: [{ address: f.backends[0], port: 5353 }] },
    [`clashb${key}`]: { type: 'ClusterIP', frontend: { address: VIP_B[f.name], port: 54, protocol: 'UDP' }, backends: [{ address: f.backends[0], port: 5353 }] },
  };
}

describe('tc_pod with BPF_PROG_TEST_RUN', () => {
  let bpffs: TempBpffs;
  let lb: LbDatapath;
  let pods: PodDatapath;
  const ids = new IdAllocator();

  before(() => {
    const services = new Map<string, Service>();
    for (const f of families) {
      for (const [id, raw] of Object.entries(servicesFor(f))) services.set(id, validateService(raw, id, { defaultMode: 'snat', clusterIP: true }));
    }
    ({ bpffs, lb, pods } = loadPodHarness('tc-pod', { v4: families[0].node, v6: families[1].node }, services, ids));
    assert.deepEqual(pods.object.replacedPins, [], 'tc_pod reuses every pinned map as it is');
  });

  after(async () => {
    await pods?.close();
    lb?.close();
    bpffs?.remove();
  });

  const run = (program: 'tc_pod_ingress' | 'tc_pod_egress', frame: Buffer): RunResult => runFrame(pods.object.program(program), frame);
  /** A frame the pod sends (to its gateway's MAC), through tc_pod_ingress. */
  const fromPod = (src: string, dst: string, l4: L4Spec, ip: Partial<FrameSpec['ip']> = {}): RunResult =>
    run('tc_pod_ingress', buildFrame({ eth: { src: POD_MAC, dst: HOST_MAC }, ip: { ...ip, src, dst }, l4 }));
  /** A frame the node sends to the pod, through tc_pod_egress. */
  const toPod = (src: string, dst: string, l4: L4Spec): RunResult => run('tc_pod_egress', buildFrame({ eth: { src: HOST_MAC, dst: POD_MAC }, ip: { src, dst }, l4 }));
  const counter = (reason: number, direction: number = Direction.INGRESS): bigint => {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(counterIndex(reason, direction));
    return lb.map('xlb_metrics').sumPerCpuU64(key)[0] ?? 0n;
  };
  const ways = (): { key: ReturnType<typeof XlbTuple.decode>; value: Buffer }[] =>
    [...ctWays([...lb.map(CONNTRACK_MAPS.table).entries()].map(([, bucket]) => bucket))].map(([key, value]) => ({ key: XlbTuple.decode(key), value }));
  const flowOf = (src: string, sport: number, dst: string, dport: number): ReturnType<typeof CtEntry.decode> | undefined => {
    const way = ways().find((w) => w.key.kind === TupleKind.Flow && w.key.saddr === src && w.key.sport === sport && w.key.daddr === dst && w.key.dport === dport);
    return way ? CtEntry.decode(way.value) : undefined;
  };
  const replyEntryOf = (src: string, sport: number, dst: string, dport: number): ReturnType<typeof NatReverse.decode> | undefined => {
    const way = ways().find((w) => w.key.kind === TupleKind.SnatReply && w.key.saddr === src && w.key.sport === sport && w.key.daddr === dst && w.key.dport === dport);
    return way ? NatReverse.decode(way.value) : undefined;
  };
  /** The expiry of the way holding this key (0: expired now), or undefined when none does. */
  const expiryOf = (kind: number, src: string, sport: number, dst: string, dport: number): number | undefined => {
    for (const [, bucket] of lb.map(CONNTRACK_MAPS.table).entries()) {
      for (let way = 0; way < CT_WAYS; way++) {
        const key = XlbTuple.decode(bucket.subarray(CtBucket.offsetOf('way') + way * CtWay.size));
        const held = bucket.readUInt32LE(CtBucket.offsetOf('tag') + 4 * way) !== 0;
        if (held && key.kind === kind && key.saddr === src && key.sport === sport && key.daddr === dst && key.dport === dport) {
          return bucket.readUInt32LE(CtBucket.offsetOf('expires') + 4 * way);
        }
      }
    }
    return undefined;
  };
  const validChecksums = (r: RunResult): void => assert.deepEqual(checksumErrors(r.out), []);

  for (const f of families) {
    test(`${f.name} TCP: the SYN goes to a backend (DNAT only), later packets to the same one, replies come from the service`, () => {
      const newFlows = counter(Reason.FWD_NEW_FLOW);
      const syn = fromPod(f.pod, f.vip, { proto: 'tcp', sport: 40001, dport: 80, flags: TCP_FLAGS.SYN, seq: 7, mss: 1460 }, { ttl: 64 });
      assert.equal(syn.retval, TC_ACT_OK, 'on to the stack, which routes it');
      validChecksums(syn);
      const backend = syn.parsed.ip.dst;
      assert.ok((f.backends as readonly string[]).includes(backend), backend);
      assert.equal(syn.parsed.ip.src, f.pod, 'the pod stays the source');
      assert.equal(syn.parsed.ip.ttl, 64, 'the stack takes the hop off, not tc');
      assert.equal(syn.parsed.ip.l4?.sport, 40001);
      assert.equal(syn.parsed.ip.l4?.dport, 8080);
      assert.equal(syn.parsed.eth.dst, HOST_MAC);
      assert.equal(counter(Reason.FWD_NEW_FLOW) - newFlows, 1n);
      const entry = flowOf(f.pod, 40001, f.vip, 80);
      assert.equal(entry?.slot.backend.addr, backend);
      assert.equal((entry?.flags ?? 0) & CtFlag.Snat, 0, 'no SNAT');
      const reverse = replyEntryOf(backend, 8080, f.pod, 40001);
      assert.equal(reverse?.service, f.vip);
      assert.equal(reverse?.servicePort, 80);

      const synAck = toPod(backend, f.pod, { proto: 'tcp', sport: 8080, dport: 40001, flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK, seq: 100, ack: 8 });
      assert.equal(synAck.retval, TC_ACT_OK);
      validChecksums(synAck);
      assert.deepEqual([synAck.parsed.ip.src, synAck.parsed.ip.l4?.sport, synAck.parsed.ip.dst, synAck.parsed.ip.l4?.dport], [f.vip, 80, f.pod, 40001]);
      assert.equal(counter(Reason.FWD_REPLY, Direction.EGRESS) > 0n, true);

      const established = counter(Reason.FWD_ESTABLISHED);
      for (let i = 0; i < 5; i++) {
        const ack = fromPod(f.pod, f.vip, { proto: 'tcp', sport: 40001, dport: 80, flags: TCP_FLAGS.ACK, seq: 8 + i, payload: Buffer.from(`GET /${i}`) });
        assert.equal(ack.retval, TC_ACT_OK);
        validChecksums(ack);
        assert.equal(ack.parsed.ip.dst, backend);
      }
      assert.equal(counter(Reason.FWD_ESTABLISHED) - established, 5n);
      assert.equal((flowOf(f.pod, 40001, f.vip, 80)?.flags ?? 0) & CtFlag.Opening, 0, 'the backend answered: no longer opening');
    });

    test(`${f.name} UDP: datagrams and their replies translated, new flows spread over every backend`, () => {
      const seen = new Set<string>();
      for (let sport = 41000; sport < 41060; sport++) {
        const out = fromPod(f.pod, f.vip, { proto: 'udp', sport, dport: 53, payload: Buffer.from('query') });
        assert.equal(out.retval, TC_ACT_OK);
        validChecksums(out);
        assert.equal(out.parsed.ip.l4?.dport, 5353);
        seen.add(out.parsed.ip.dst);
        const answer = toPod(out.parsed.ip.dst, f.pod, { proto: 'udp', sport: 5353, dport: sport, payload: Buffer.from('answer') });
        assert.equal(answer.retval, TC_ACT_OK);
        validChecksums(answer);
        assert.deepEqual([answer.parsed.ip.src, answer.parsed.ip.l4?.sport, answer.parsed.ip.dst, answer.parsed.ip.l4?.dport], [f.vip, 53, f.pod, sport]);
      }
      assert.deepEqual([...seen].sort(), [...f.backends].sort());
    });

    test(`${f.name} hairpin: a pod reaching itself through a service gets the service as the source, both ways`, () => {
      const hairpins = counter(Reason.POD_HAIRPIN);
      const syn = fromPod(f.pod, f.vip, { proto: 'tcp', sport: 40002, dport: 81, flags: TCP_FLAGS.SYN, mss: 1460 });
      assert.equal(syn.retval, TC_ACT_REDIRECT, 'straight back into the pod');
      validChecksums(syn);
      const natPort = syn.parsed.ip.l4?.sport ?? 0;
      assert.equal(syn.parsed.ip.src, f.vip, 'from the service address');
      assert.ok(natPort >= NAT_PORTS.min && natPort <= NAT_PORTS.max, `port ${natPort} of the SNAT range`);
      assert.deepEqual([syn.parsed.ip.dst, syn.parsed.ip.l4?.dport], [f.pod, 8080]);
      assert.deepEqual([syn.parsed.eth.dst, syn.parsed.eth.src], [POD_MAC, HOST_MAC], 'addressed to the pod');
      assert.equal(counter(Reason.POD_HAIRPIN) - hairpins, 1n);
      assert.equal(((flowOf(f.pod, 40002, f.vip, 81)?.flags ?? 0) & CtFlag.Snat) !== 0, true);

      // The pod's server answers service:port, which its routes send out to the host.
      const synAck = fromPod(f.pod, f.vip, { proto: 'tcp', sport: 8080, dport: natPort, flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK });
      assert.equal(synAck.retval, TC_ACT_REDIRECT);
      validChecksums(synAck);
      assert.deepEqual([synAck.parsed.ip.src, synAck.parsed.ip.l4?.sport, synAck.parsed.ip.dst, synAck.parsed.ip.l4?.dport], [f.vip, 81, f.pod, 40002]);
      assert.deepEqual([synAck.parsed.eth.dst, synAck.parsed.eth.src], [POD_MAC, HOST_MAC]);

      const ack = fromPod(f.pod, f.vip, { proto: 'tcp', sport: 40002, dport: 81, flags: TCP_FLAGS.ACK });
      assert.equal(ack.retval, TC_ACT_REDIRECT);
      assert.deepEqual([ack.parsed.ip.src, ack.parsed.ip.l4?.sport], [f.vip, natPort], 'later packets keep the port');

      const udp = fromPod(f.pod, f.vip, { proto: 'udp', sport: 40003, dport: 81, payload: Buffer.from('self') });
      assert.equal(udp.retval, TC_ACT_REDIRECT);
      validChecksums(udp);
      assert.deepEqual([udp.parsed.ip.src, udp.parsed.ip.dst, udp.parsed.ip.l4?.dport], [f.vip, f.pod, 5353]);
    });

    test(`${f.name} a service without backends: port unreachable back to the pod, quoting what it sent`, () => {
      const rejects = counter(Reason.REJECT_NO_BACKEND);
      for (const l4 of [
        { proto: 'tcp', sport: 40004, dport: 82, flags: TCP_FLAGS.SYN, seq: 1234, mss: 1460 },
        { proto: 'udp', sport: 40005, dport: 82, payload: Buffer.from('x') },
      ] as const) {
        const sent = buildIp({ src: f.pod, dst: f.vip }, l4);
        const answer = fromPod(f.pod, f.vip, l4);
        assert.equal(answer.retval, TC_ACT_REDIRECT, 'back to the pod');
        validChecksums(answer);
        const { ip } = answer.parsed;
        assert.deepEqual([answer.parsed.eth.dst, answer.parsed.eth.src], [POD_MAC, HOST_MAC]);
        assert.deepEqual([ip.src, ip.dst, ip.proto], [f.vip, f.pod, f.name === 'IPv4' ? IPPROTO.ICMP : IPPROTO.ICMPV6]);
        assert.deepEqual([ip.l4?.icmpType, ip.l4?.icmpCode], f.name === 'IPv4' ? [3, 3] : [1, 4]);
        const quoteLength = (f.name === 'IPv4' ? 20 : 40) + 8;
        assert.equal(ip.l4?.inner?.src, f.pod);
        assert.equal(ip.l4?.inner?.dst, f.vip);
        assert.deepEqual(answer.out.subarray(answer.out.length - quoteLength).toString('hex'), sent.subarray(0, quoteLength).toString('hex'));
      }
      assert.equal(counter(Reason.REJECT_NO_BACKEND) - rejects, 2n);
    });

    test(`${f.name} ClientIP affinity keeps a pod on one backend; internalTrafficPolicy Local keeps it on this node's`, () => {
      for (const [port, expected] of [[84, undefined], [85, f.backends[1]]] as const) {
        const seen = new Set<string>();
        for (let sport = 43000; sport < 43020; sport++) {
          const out = fromPod(f.pod, f.vip, { proto: 'udp', sport, dport: port, payload: Buffer.from('q') });
          assert.equal(out.retval, TC_ACT_OK);
          seen.add(out.parsed.ip.dst);
        }
        assert.equal(seen.size, 1, `port ${port}: ${[...seen].join(', ')}`);
        if (expected) assert.deepEqual([...seen], [expected]);
      }
    });

    test(`${f.name} internalTrafficPolicy Local without a backend on this node: dropped, counted`, () => {
      const drops = counter(Reason.DROP_NO_BACKEND);
      const out = fromPod(f.pod, f.vip, { proto: 'tcp', sport: 40006, dport: 83, flags: TCP_FLAGS.SYN });
      assert.equal(out.retval, TC_ACT_SHOT);
      assert.equal(counter(Reason.DROP_NO_BACKEND) - drops, 1n);
    });

    test(`${f.name} one UDP port asking two services with a backend in common: the second flow's source port is translated`, () => {
      const first = fromPod(f.pod, f.vip, { proto: 'udp', sport: 40007, dport: 54, payload: Buffer.from('a') });
      const second = fromPod(f.pod, VIP_B[f.name], { proto: 'udp', sport: 40007, dport: 54, payload: Buffer.from('b') });
      for (const out of [first, second]) {
        assert.equal(out.retval, TC_ACT_OK);
        validChecksums(out);
        assert.deepEqual([out.parsed.ip.src, out.parsed.ip.dst, out.parsed.ip.l4?.dport], [f.pod, f.backends[0], 5353]);
      }
      assert.equal(first.parsed.ip.l4?.sport, 40007, 'the first flow keeps its port');
      const natPort = second.parsed.ip.l4?.sport ?? 0;
      assert.ok(natPort >= NAT_PORTS.min && natPort <= NAT_PORTS.max, `the second one leaves from port ${natPort}`);
      for (const [dport, service] of [[40007, f.vip], [natPort, VIP_B[f.name]]] as const) {
        const answer = toPod(f.backends[0], f.pod, { proto: 'udp', sport: 5353, dport, payload: Buffer.from('answer') });
        assert.equal(answer.retval, TC_ACT_OK);
        validChecksums(answer);
        assert.deepEqual([answer.parsed.ip.src, answer.parsed.ip.l4?.sport, answer.parsed.ip.dst, answer.parsed.ip.l4?.dport], [service, 54, f.pod, 40007]);
      }
    });

    test(`${f.name} a SYN reopening a closed flow to the same backend takes its place (no port translated)`, () => {
      // One backend, so the new connection gets the old one's (ClusterIPs select at random, not by Maglev).
      const syn = fromPod(f.pod, f.vip, { proto: 'tcp', sport: 40008, dport: 86, flags: TCP_FLAGS.SYN });
      const backend = syn.parsed.ip.dst;
      toPod(backend, f.pod, { proto: 'tcp', sport: 8080, dport: 40008, flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK });
      fromPod(f.pod, f.vip, { proto: 'tcp', sport: 40008, dport: 86, flags: TCP_FLAGS.FIN | TCP_FLAGS.ACK });
      assert.notEqual((flowOf(f.pod, 40008, f.vip, 86)?.flags ?? 0) & CtFlag.Closing, 0);
      const newFlows = counter(Reason.FWD_NEW_FLOW);
      const again = fromPod(f.pod, f.vip, { proto: 'tcp', sport: 40008, dport: 86, flags: TCP_FLAGS.SYN });
      assert.equal(again.retval, TC_ACT_OK);
      assert.equal(counter(Reason.FWD_NEW_FLOW) - newFlows, 1n, 'a new flow');
      assert.deepEqual([again.parsed.ip.src, again.parsed.ip.l4?.sport, again.parsed.ip.dst], [f.pod, 40008, backend], 'the port stays');
      assert.equal(replyEntryOf(backend, 8080, f.pod, 40008)?.service, f.vip);
      assert.equal((flowOf(f.pod, 40008, f.vip, 86)?.flags ?? 0) & (CtFlag.Closing | CtFlag.Snat), 0);
    });

    test(`${f.name} a direct connection taking a closed service flow's tuple gets its replies untranslated`, () => {
      const syn = fromPod(f.pod, f.vip, { proto: 'tcp', sport: 40030, dport: 80, flags: TCP_FLAGS.SYN });
      const backend = syn.parsed.ip.dst;
      toPod(backend, f.pod, { proto: 'tcp', sport: 8080, dport: 40030, flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK });
      fromPod(f.pod, f.vip, { proto: 'tcp', sport: 40030, dport: 80, flags: TCP_FLAGS.FIN | TCP_FLAGS.ACK });
      assert.equal(replyEntryOf(backend, 8080, f.pod, 40030)?.service, f.vip, 'the closing flow still has its reply entry');
      // The pod's kernel reuses port 40030 towards the backend itself: a connection of its own, no service.
      const direct = fromPod(f.pod, backend, { proto: 'tcp', sport: 40030, dport: 8080, flags: TCP_FLAGS.SYN });
      assert.equal(direct.retval, TC_ACT_OK);
      assert.deepEqual([direct.parsed.ip.dst, direct.parsed.ip.l4?.dport], [backend, 8080], 'untouched');
      const synAck = buildFrame({ eth: { src: HOST_MAC, dst: POD_MAC }, ip: { src: backend, dst: f.pod }, l4: { proto: 'tcp', sport: 8080, dport: 40030, flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK } });
      const answer = run('tc_pod_egress', synAck);
      assert.equal(answer.retval, TC_ACT_OK);
      assert.equal(answer.out.toString('hex'), synAck.toString('hex'), 'the backend answers as itself, not as the service');
      assert.equal(expiryOf(TupleKind.SnatReply, backend, 8080, f.pod, 40030), 0, 'the old flow is gone: its reply entry...');
      assert.equal(expiryOf(TupleKind.Flow, f.pod, 40030, f.vip, 80), 0, '...and its flow entry, expired now');
      // A SYN to another backend port, or a later segment on the tuple, leaves service flows alone.
      const live = fromPod(f.pod, f.vip, { proto: 'tcp', sport: 40031, dport: 80, flags: TCP_FLAGS.SYN });
      const liveBackend = live.parsed.ip.dst;
      fromPod(f.pod, liveBackend, { proto: 'tcp', sport: 40031, dport: 9999, flags: TCP_FLAGS.SYN });
      fromPod(f.pod, liveBackend, { proto: 'tcp', sport: 40031, dport: 8080, flags: TCP_FLAGS.ACK });
      assert.notEqual(expiryOf(TupleKind.SnatReply, liveBackend, 8080, f.pod, 40031) ?? 0, 0);
      assert.notEqual(expiryOf(TupleKind.Flow, f.pod, 40031, f.vip, 80) ?? 0, 0);
    });

    test(`${f.name} ICMP errors about a pod's flows reach it quoting what it sent; others pass untouched`, () => {
      const router = f.name === 'IPv4' ? '198.18.99.1' : '2001:db8:99::1';
      const icmpErrors = counter(Reason.FWD_ICMP_ERROR, Direction.EGRESS);
      // UDP to a backend port nobody listens on: the backend answers port unreachable, quoting it whole.
      const datagram = fromPod(f.pod, f.vip, { proto: 'udp', sport: 40020, dport: 53, payload: Buffer.from('query') });
      const backend = datagram.parsed.ip.dst;
      const translated = buildIp({ src: f.pod, dst: backend }, { proto: 'udp', sport: 40020, dport: 5353, payload: Buffer.from('query') });
      const unreachable = f.name === 'IPv4' ? { type: 3, code: 3 } : { type: 1, code: 4 };
      const fromBackend = toPod(backend, f.pod, { proto: 'icmp', ...unreachable, quote: translated });
      assert.equal(fromBackend.retval, TC_ACT_OK);
      validChecksums(fromBackend);
      assert.deepEqual([fromBackend.parsed.ip.src, fromBackend.parsed.ip.dst], [f.vip, f.pod], 'from the service: the backend sent it');
      const quoted = fromBackend.parsed.ip.l4?.inner;
      assert.deepEqual([quoted?.src, quoted?.l4?.sport, quoted?.dst, quoted?.l4?.dport], [f.pod, 40020, f.vip, 53]);
      // TCP through a router with a smaller MTU: its error, quoting 8 bytes of TCP, keeps the router as its source.
      const syn = fromPod(f.pod, f.vip, { proto: 'tcp', sport: 40021, dport: 80, flags: TCP_FLAGS.SYN, seq: 99 });
      const sent = buildIp({ src: f.pod, dst: syn.parsed.ip.dst }, { proto: 'tcp', sport: 40021, dport: 8080, flags: TCP_FLAGS.SYN, seq: 99 });
      const tooBig = f.name === 'IPv4' ? { type: 3, code: 4, mtu: 1400 } : { type: 2, code: 0, mtu: 1400 };
      const fromRouter = toPod(router, f.pod, { proto: 'icmp', ...tooBig, quote: sent.subarray(0, (f.name === 'IPv4' ? 20 : 40) + 8) });
      assert.equal(fromRouter.retval, TC_ACT_OK);
      validChecksums(fromRouter);
      assert.deepEqual([fromRouter.parsed.ip.src, fromRouter.parsed.ip.dst], [router, f.pod]);
      const inner = fromRouter.parsed.ip.l4?.inner;
      assert.deepEqual([inner?.src, inner?.l4?.sport, inner?.dst, inner?.l4?.dport], [f.pod, 40021, f.vip, 80]);
      assert.equal(counter(Reason.FWD_ICMP_ERROR, Direction.EGRESS) - icmpErrors, 2n);
      // About a flow that is none of ours: as it came.
      const unrelated = buildFrame({ eth: { src: HOST_MAC, dst: POD_MAC }, ip: { src: router, dst: f.pod }, l4: { proto: 'icmp', ...unreachable, quote: buildIp({ src: f.pod, dst: f.other }, { proto: 'udp', sport: 40022, dport: 53 }) } });
      const passed = run('tc_pod_egress', unrelated);
      assert.equal(passed.retval, TC_ACT_OK);
      assert.equal(passed.out.toString('hex'), unrelated.toString('hex'));
    });

    test(`${f.name} traffic that is not for a service passes untouched and uncounted`, () => {
      const before = lb.counters();
      for (const frame of [
        buildFrame({ eth: { src: POD_MAC, dst: HOST_MAC }, ip: { src: f.pod, dst: f.other }, l4: { proto: 'tcp', sport: 40009, dport: 80, flags: TCP_FLAGS.SYN } }),
        buildFrame({ eth: { src: POD_MAC, dst: HOST_MAC }, ip: { src: f.pod, dst: f.backends[1] }, l4: { proto: 'udp', sport: 40010, dport: 25000, payload: Buffer.from('p') } }),
      ]) {
        const out = run('tc_pod_ingress', frame);
        assert.equal(out.retval, TC_ACT_OK);
        assert.equal(out.out.toString('hex'), frame.toString('hex'));
      }
      const inbound = buildFrame({ eth: { src: HOST_MAC, dst: POD_MAC }, ip: { src: f.other, dst: f.pod }, l4: { proto: 'tcp', sport: 80, dport: 40009, flags: TCP_FLAGS.ACK } });
      const out = run('tc_pod_egress', inbound);
      assert.equal(out.retval, TC_ACT_OK);
      assert.equal(out.out.toString('hex'), inbound.toString('hex'));
      assert.deepEqual(lb.counters(), before);
    });
  }

  test('IPv4 UDP without a checksum keeps none; a fragmented datagram is translated whole', () => {
    const [f] = families;
    const plain = fromPod(f.pod, f.vip, { proto: 'udp', sport: 42000, dport: 53, payload: Buffer.from('q'), noChecksum: true });
    assert.equal(plain.retval, TC_ACT_OK);
    assert.equal(plain.parsed.ip.l4?.checksum, 0);

    const payload = Buffer.alloc(64, 7);
    const whole = buildIp({ src: f.pod, dst: f.vip }, { proto: 'udp', sport: 42001, dport: 53, payload });
    const l4 = whole.subarray(20); // UDP header + payload: 72 bytes, split after 40
    const first = fromPod(f.pod, f.vip, { proto: 'raw', protocol: IPPROTO.UDP, payload: l4.subarray(0, 40) }, { id: 77, moreFragments: true });
    const later = fromPod(f.pod, f.vip, { proto: 'raw', protocol: IPPROTO.UDP, payload: l4.subarray(40) }, { id: 77, fragmentOffset: 40 });
    assert.equal(first.retval, TC_ACT_OK);
    assert.equal(later.retval, TC_ACT_OK);
    const backend = first.parsed.ip.dst;
    assert.ok((f.backends as readonly string[]).includes(backend));
    assert.equal(later.parsed.ip.dst, backend, 'the later fragment follows its first');
    // Reassembled, the datagram is the backend's with a valid checksum.
    const datagram = Buffer.concat([first.out.subarray(14 + 20), later.out.subarray(14 + 20)]);
    assert.equal(datagram.readUInt16BE(2), 5353);
    assert.deepEqual(checksumErrors(buildFrame({ ip: { src: f.pod, dst: backend }, l4: { proto: 'raw', protocol: IPPROTO.UDP, payload: datagram } })), []);
  });
});
