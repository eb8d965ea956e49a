/**
 * The identity policy in tc_pod under BPF_PROG_TEST_RUN: tc_pod loaded over xdp_lb's pins as the agent
 * loads it, services written by the real writer, the policy maps by PolicyMapWriter. A test run's skb
 * is on the loopback device (ifindex 1), so the endpoint under test is registered at ifindex 1.
 * Packets the pod sends go through tc_pod_ingress (its egress policy), packets to it through
 * tc_pod_egress (its ingress policy).
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { PodDatapath } from '../../agent/pod-datapath.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { CONNTRACK_MAPS } from '../../lb/datapath/conntrack.js';
import { readObjectBtf } from '../../lb/datapath/object.js';
import { LbDatapath } from '../../lb/datapath/lb-datapath.js';
import { PolicyMapWriter, PolicyWriteError, type PolicyEndpointState } from '../../lb/datapath/policy-writer.js';
import { RingBufferReader } from '../../lb/datapath/ringbuf.js';
import { bpfObjectPath } from '../../lb/datapath/objects.js';
import { layoutDifferences } from '../../lb/layout-check.js';
import { POLICY_MAPS, PolicyCtEntry, PolicyCtFlag, PolicyCtKey, PolicyDirectionCode, policyCodecs } from '../../lb/layouts-policy.js';
import { CT_WAYS, CtBucket, CtWay, TupleKind, XlbConfig, XlbEvent, XlbTuple } from '../../lb/layouts.js';
import { portRangePrefixes } from '../../lb/policy/ports.js';
import { ReservedIdentity, type PolicyRule } from '../../lb/policy/types.js';
import { counterIndex, Direction, Reason } from '../../lb/reasons.js';
import { validateService, type Service } from '../../lb/service.js';
import { TCP_FLAGS, buildFrame, buildIp, type L4Spec } from '../support/packet.js';
import { TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT, POD_MAC, HOST_MAC, loadPodHarness } from '../support/pod-harness.js';
import { runFrame, type RunResult } from '../support/lb-harness.js';

/** The device a test run's skb is on (the loopback). */
const DEVICE = 1;

const ID = { pod: 256, client: 257, other: 258, backendA: 259, backendB: 260, cidr: 1 << 24, cidrNarrow: (1 << 24) + 1 } as const;

const families = [
  {
    name: 'IPv4',
    pod: '198.18.20.2',
    vip: '198.18.30.10',
    node: '198.18.0.2',
    client: '198.18.40.2',
    other: '198.18.40.3',
    world: '198.18.60.9',
    backends: ['198.18.21.11', '198.18.21.12', '198.18.21.13'],
    cidr: '198.18.50.0/24',
    cidrNarrow: '198.18.50.128/25',
    inCidr: '198.18.50.5',
    inNarrow: '198.18.50.200',
  },
  {
    name: 'IPv6',
    pod: '2001:db8:20::2',
    vip: '2001:db8:30::10',
    node: '2001:db8::2',
    client: '2001:db8:40::2',
    other: '2001:db8:40::3',
    world: '2001:db8:60::9',
    backends: ['2001:db8:21::11', '2001:db8:21::12', '2001:db8:21::13'],
    cidr: '2001:db8:50::/64',
    cidrNarrow: '2001:db8:50:0:8000::/65',
    inCidr: '2001:db8:50::5',
    inNarrow: '2001:db8:50:0:8000::5',
  },
] as const;
type Family = (typeof families)[number];

function servicesFor(f: Family): [string, Service][] {
  const key = f.name === 'IPv4' ? '4' : '6';
  const raw: Record<string, unknown> = {
    [`web${key}`]: { type: 'ClusterIP', frontend: { address: f.vip, port: 80, protocol: 'TCP' }, backends: f.backends.map((address) => ({ address, port: 8080 })) },
    [`self${key}`]: { type: 'ClusterIP', frontend: { address: f.vip, port: 81, protocol: 'TCP' }, backends: [{ address: f.pod, port: 8080 }] },
  };
  return Object.entries(raw).map(([id, service]) => [id, validateService(service, id, { defaultMode: 'snat', clusterIP: true })]);
}

const tcp = (sport: number, dport: number, flags: number = TCP_FLAGS.SYN): L4Spec => ({ proto: 'tcp', sport, dport, flags });
const udp = (sport: number, dport: number): L4Spec => ({ proto: 'udp', sport, dport, payload: Buffer.from('q') });
const rule = (direction: PolicyRule['direction'], identity: number, protocol: PolicyRule['protocol'], port = 0, portPrefixLen = protocol === 0 ? 0 : 16): PolicyRule => ({
  direction,
  identity,
  protocol,
  port,
  portPrefixLen,
});

describe('identity policy in tc_pod (BPF_PROG_TEST_RUN)', () => {
  let bpffs: TempBpffs;
  let lb: LbDatapath;
  let pods: PodDatapath;
  let writer: PolicyMapWriter;
  let reader: RingBufferReader;
  const events: ReturnType<typeof XlbEvent.decode>[] = [];

  before(() => {
    ({ bpffs, lb, pods } = loadPodHarness('policy', { v4: families[0].node, v6: families[1].node }, new Map<string, Service>(families.flatMap(servicesFor))));
    writer = PolicyMapWriter.open(pods.object);
    writer.setIpcache(
      families.flatMap((f) => [
        { cidr: `${f.pod}/${f.name === 'IPv4' ? 32 : 128}`, identity: ID.pod },
        { cidr: `${f.client}/${f.name === 'IPv4' ? 32 : 128}`, identity: ID.client },
        { cidr: `${f.other}/${f.name === 'IPv4' ? 32 : 128}`, identity: ID.other },
        { cidr: `${f.node}/${f.name === 'IPv4' ? 32 : 128}`, identity: ReservedIdentity.Host },
        { cidr: `${f.backends[0]}/${f.name === 'IPv4' ? 32 : 128}`, identity: ID.backendA },
        { cidr: `${f.backends[1]}/${f.name === 'IPv4' ? 32 : 128}`, identity: ID.backendB },
        { cidr: `${f.backends[2]}/${f.name === 'IPv4' ? 32 : 128}`, identity: ID.backendB },
        { cidr: f.cidr, identity: ID.cidr },
        { cidr: f.cidrNarrow, identity: ID.cidrNarrow },
      ]),
    );
    reader = new RingBufferReader(lb.map('xlb_events'), (record) => events.push(XlbEvent.decode(record)));
  });

  after(async () => {
    await reader?.close();
    await pods?.close();
    lb?.close();
    bpffs?.remove();
  });

  beforeEach(() => {
    writer.prune(new Set());
    lb.conntrack.flush();
    const connections = pods.object.map(POLICY_MAPS.conntrack);
    for (const key of [...connections.keys()]) connections.delete(key);
    setClock(0);
    reader.drain();
    events.length = 0;
  });

  const run = (program: 'tc_pod_ingress' | 'tc_pod_egress', frame: Buffer): RunResult => runFrame(pods.object.program(program), frame);
  const frameFromPod = (src: string, dst: string, l4: L4Spec): Buffer => buildFrame({ eth: { src: POD_MAC, dst: HOST_MAC }, ip: { src, dst }, l4 });
  const frameToPod = (src: string, dst: string, l4: L4Spec): Buffer => buildFrame({ eth: { src: HOST_MAC, dst: POD_MAC }, ip: { src, dst }, l4 });
  /** What the pod sends (its egress), through tc_pod_ingress. */
  const fromPod = (src: string, dst: string, l4: L4Spec): RunResult => run('tc_pod_ingress', frameFromPod(src, dst, l4));
  /** What is sent to the pod (its ingress), through tc_pod_egress. */
  const toPod = (src: string, dst: string, l4: L4Spec): RunResult => run('tc_pod_egress', frameToPod(src, dst, l4));
  const counter = (reason: number, direction: number): bigint => {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(counterIndex(reason, direction));
    return lb.map('xlb_metrics').sumPerCpuU64(key)[0] ?? 0n;
  };
  /** Counts of both policy drops, by the hook that counts them (the pod's egress at tc ingress). */
  const policyDrops = (): { egress: bigint; ingress: bigint } => ({
    egress: counter(Reason.DROP_POLICY_EGRESS, Direction.INGRESS),
    ingress: counter(Reason.DROP_POLICY_INGRESS, Direction.EGRESS),
  });
  const dropEvents = (): ReturnType<typeof XlbEvent.decode>[] => {
    reader.drain();
    return events.splice(0).filter((e) => e.reason === Reason.DROP_POLICY_EGRESS || e.reason === Reason.DROP_POLICY_INGRESS);
  };
  const endpoint = (state: Partial<PolicyEndpointState>): void =>
    writer.setEndpoint(DEVICE, { identity: ID.pod, ingressEnforced: false, egressEnforced: false, rules: [], ...state });
  const setClock = (seconds: number): void => {
    const map = lb.map('xlb_config');
    const key = Buffer.alloc(4);
    const current = map.lookup(key);
    assert.ok(current, 'xlb_config written');
    map.update(key, XlbConfig.encode({ ...XlbConfig.decode(current), clockOffset: seconds }));
  };
  const connections = (): { key: ReturnType<typeof PolicyCtKey.decode>; entry: ReturnType<typeof PolicyCtEntry.decode> }[] =>
    [...pods.object.map(POLICY_MAPS.conntrack).entries()].map(([key, value]) => ({ key: PolicyCtKey.decode(key), entry: PolicyCtEntry.decode(value) }));
  const connectionOf = (podPort: number, peer: string, peerPort: number): ReturnType<typeof PolicyCtEntry.decode> | undefined =>
    connections().find((c) => c.key.tuple.sport === podPort && c.key.tuple.daddr === peer && c.key.tuple.dport === peerPort)?.entry;
  /** tc_pod's conntrack entries of this key: whether each is live (its expiry not zeroed). */
  const tcPodEntries = (kind: number, src: string, sport: number, dst: string, dport: number): { live: boolean }[] => {
    const out: { live: boolean }[] = [];
    for (const [, bucket] of lb.map(CONNTRACK_MAPS.table).entries()) {
      for (let way = 0; way < CT_WAYS; way++) {
        const key = XlbTuple.decode(bucket.subarray(CtBucket.offsetOf('way') + way * CtWay.size));
        const held = bucket.readUInt32LE(CtBucket.offsetOf('tag') + 4 * way) !== 0;
        if (held && key.kind === kind && key.saddr === src && key.sport === sport && key.daddr === dst && key.dport === dport) {
          out.push({ live: bucket.readUInt32LE(CtBucket.offsetOf('expires') + 4 * way) !== 0 });
        }
      }
    }
    return out;
  };
  const flowKept = (sport: number, f: Family, dport: number): boolean => tcPodEntries(TupleKind.Flow, f.pod, sport, f.vip, dport).some((e) => e.live);

  test('the policy structs match tc_pod.o’s BTF', () => {
    const btf = readObjectBtf(bpfObjectPath('tc/tc_pod.o'));
    for (const codec of policyCodecs) {
      const struct = btf.struct(codec.cName);
      assert.ok(struct, `${codec.cName} in tc_pod.o`);
      assert.deepEqual(layoutDifferences(codec, struct), [], codec.cName);
    }
  });

  for (const f of families) {
    test(`${f.name} a device without an endpoint: untouched, uncounted, untracked`, () => {
      const before = lb.counters();
      for (const [program, frame] of [
        ['tc_pod_egress', frameToPod(f.client, f.pod, tcp(50000, 8080))],
        ['tc_pod_ingress', frameFromPod(f.pod, f.other, udp(50001, 53))],
      ] as const) {
        const out = run(program, frame);
        assert.equal(out.retval, TC_ACT_OK);
        assert.equal(out.out.toString('hex'), frame.toString('hex'));
      }
      assert.deepEqual(lb.counters(), before);
      assert.deepEqual(connections(), []);
    });

    test(`${f.name} enforced ingress: the allowed identity and port pass; another port or identity is dropped, counted, reported with both identities`, () => {
      endpoint({ ingressEnforced: true, rules: [rule('ingress', ID.client, 6, 8080)] });
      const drops = policyDrops();
      const allowed = toPod(f.client, f.pod, tcp(50010, 8080));
      assert.equal(allowed.retval, TC_ACT_OK);
      assert.equal(connectionOf(8080, f.client, 50010)?.opened, PolicyDirectionCode.ingress, 'tracked, seen from the pod');
      assert.equal(toPod(f.client, f.pod, tcp(50011, 9090)).retval, TC_ACT_SHOT, 'another port');
      assert.equal(toPod(f.other, f.pod, tcp(50012, 8080)).retval, TC_ACT_SHOT, 'another identity');
      assert.equal(toPod(f.client, f.pod, udp(50013, 8080)).retval, TC_ACT_SHOT, 'another protocol');
      assert.equal(toPod(f.world, f.pod, tcp(50014, 8080)).retval, TC_ACT_SHOT, 'an address the ipcache does not know (World)');
      assert.equal(policyDrops().ingress - drops.ingress, 4n);
      const reported = dropEvents();
      assert.deepEqual(
        reported.map((e) => [e.reason, e.direction, e.srcIdentity, e.dstIdentity, e.tuple.saddr, e.tuple.dport, e.ifindex]),
        [
          [Reason.DROP_POLICY_INGRESS, Direction.EGRESS, ID.client, ID.pod, f.client, 9090, DEVICE],
          [Reason.DROP_POLICY_INGRESS, Direction.EGRESS, ID.other, ID.pod, f.other, 8080, DEVICE],
          [Reason.DROP_POLICY_INGRESS, Direction.EGRESS, ID.client, ID.pod, f.client, 8080, DEVICE],
          [Reason.DROP_POLICY_INGRESS, Direction.EGRESS, ReservedIdentity.World, ID.pod, f.world, 8080, DEVICE],
        ],
      );
      assert.equal(connectionOf(9090, f.client, 50011), undefined, 'denied connections are not tracked');
      // Egress is not enforced: the pod opens what it likes.
      assert.equal(fromPod(f.pod, f.other, tcp(50015, 443)).retval, TC_ACT_OK);
    });

    test(`${f.name} an any-identity rule and an any-protocol rule`, () => {
      endpoint({ ingressEnforced: true, rules: [rule('ingress', ReservedIdentity.Any, 17, 53), rule('ingress', ID.other, 0)] });
      assert.equal(toPod(f.world, f.pod, udp(50020, 53)).retval, TC_ACT_OK, 'any identity, UDP 53');
      assert.equal(toPod(f.client, f.pod, udp(50021, 53)).retval, TC_ACT_OK);
      assert.equal(toPod(f.client, f.pod, tcp(50022, 53)).retval, TC_ACT_SHOT, 'not TCP 53');
      const echo: L4Spec = { proto: 'icmp', type: f.name === 'IPv4' ? 8 : 128, id: 7, seq: 1 };
      for (const l4 of [tcp(50023, 1), udp(50024, 65535), echo]) assert.equal(toPod(f.other, f.pod, l4).retval, TC_ACT_OK, `any protocol: ${l4.proto}`);
      assert.equal(toPod(f.client, f.pod, echo).retval, TC_ACT_SHOT, 'ICMP matches only rules of any protocol');
    });

    test(`${f.name} a port range as prefixes: both edges in, both neighbours out`, () => {
      const prefixes = portRangePrefixes(7990, 8010);
      assert.ok(prefixes.length > 1, 'the range needs several prefixes');
      endpoint({ ingressEnforced: true, rules: prefixes.map((p) => rule('ingress', ID.client, 6, p.port, p.prefixLen)) });
      for (const [port, verdict] of [[7989, TC_ACT_SHOT], [7990, TC_ACT_OK], [8000, TC_ACT_OK], [8010, TC_ACT_OK], [8011, TC_ACT_SHOT]] as const) {
        assert.equal(toPod(f.client, f.pod, tcp(50030, port)).retval, verdict, `port ${port}`);
      }
    });

    test(`${f.name} CIDR identities from the ipcache: the longest prefix wins`, () => {
      endpoint({ ingressEnforced: true, rules: [rule('ingress', ID.cidr, 6, 8080)] });
      assert.equal(toPod(f.inCidr, f.pod, tcp(50040, 8080)).retval, TC_ACT_OK, `${f.inCidr} is in ${f.cidr}`);
      assert.equal(toPod(f.inNarrow, f.pod, tcp(50041, 8080)).retval, TC_ACT_SHOT, `${f.inNarrow} is ${f.cidrNarrow}'s`);
      assert.deepEqual(dropEvents().map((e) => e.srcIdentity), [ID.cidrNarrow]);
      endpoint({ ingressEnforced: true, rules: [rule('ingress', ID.cidr, 6, 8080), rule('ingress', ID.cidrNarrow, 6, 8080)] });
      assert.equal(toPod(f.inNarrow, f.pod, tcp(50042, 8080)).retval, TC_ACT_OK);
    });

    test(`${f.name} egress to a service is decided for the backend chosen, before its state is kept`, () => {
      endpoint({ egressEnforced: true, rules: [rule('egress', ID.backendA, 6, 8080), rule('egress', ReservedIdentity.Any, 6, 80)] });
      const drops = policyDrops();
      const seen = new Map<string, number>();
      for (let sport = 51000; sport < 51030; sport++) {
        const out = fromPod(f.pod, f.vip, tcp(sport, 80));
        if (out.retval === TC_ACT_OK) {
          assert.equal(out.parsed.ip.dst, f.backends[0], 'only backend A is allowed');
          assert.ok(flowKept(sport, f, 80), 'its flow is kept');
          seen.set('allowed', (seen.get('allowed') ?? 0) + 1);
        } else {
          assert.equal(out.retval, TC_ACT_SHOT);
          assert.equal(flowKept(sport, f, 80), false, 'no flow entry');
          const replies = f.backends.flatMap((b) => tcPodEntries(TupleKind.SnatReply, b, 8080, f.pod, sport));
          assert.deepEqual(replies.filter((r) => r.live), [], 'the reply entry stored for it is released');
          seen.set('denied', (seen.get('denied') ?? 0) + 1);
        }
      }
      assert.ok((seen.get('allowed') ?? 0) > 0 && (seen.get('denied') ?? 0) > 0, JSON.stringify([...seen]));
      assert.equal(policyDrops().egress - drops.egress, BigInt(seen.get('denied') ?? 0), 'counted at tc ingress (the pod’s egress)');
      const reported = dropEvents();
      assert.equal(reported.length, seen.get('denied'));
      for (const e of reported) {
        assert.deepEqual([e.reason, e.direction, e.srcIdentity, e.dstIdentity, e.tuple.daddr, e.tuple.dport], [Reason.DROP_POLICY_EGRESS, Direction.INGRESS, ID.pod, ID.backendB, f.vip, 80]);
        assert.notEqual(e.serviceId, 0);
        assert.notEqual(e.backendId, 0);
      }
    });

    test(`${f.name} replies of allowed connections pass while the other direction denies everything`, () => {
      // Egress allows client:8080 only, ingress enforced without a rule.
      endpoint({ ingressEnforced: true, egressEnforced: true, rules: [rule('egress', ID.client, 6, 8080)] });
      assert.equal(fromPod(f.pod, f.client, tcp(52000, 8080)).retval, TC_ACT_OK);
      assert.equal(toPod(f.client, f.pod, tcp(8080, 52000, TCP_FLAGS.SYN | TCP_FLAGS.ACK)).retval, TC_ACT_OK, 'the reply');
      assert.equal(fromPod(f.pod, f.client, tcp(52000, 8080, TCP_FLAGS.ACK)).retval, TC_ACT_OK);
      assert.equal(toPod(f.client, f.pod, tcp(8080, 52001)).retval, TC_ACT_SHOT, 'but not a connection of the client’s');
      // The other way round: ingress allows the client to 8080, egress allows nothing.
      endpoint({ ingressEnforced: true, egressEnforced: true, rules: [rule('ingress', ID.client, 6, 8080)] });
      assert.equal(toPod(f.client, f.pod, tcp(52002, 8080)).retval, TC_ACT_OK);
      assert.equal(fromPod(f.pod, f.client, tcp(8080, 52002, TCP_FLAGS.SYN | TCP_FLAGS.ACK)).retval, TC_ACT_OK, 'the pod answers');
      assert.equal(fromPod(f.pod, f.client, tcp(8080, 52003)).retval, TC_ACT_SHOT, 'it opens nothing');
      // A service flow's replies come back translated by tc_pod's own conntrack.
      endpoint({ ingressEnforced: true, egressEnforced: true, rules: [rule('egress', ReservedIdentity.Any, 6, 8080)] });
      const syn = fromPod(f.pod, f.vip, tcp(52004, 80));
      assert.equal(syn.retval, TC_ACT_OK);
      const synAck = toPod(syn.parsed.ip.dst, f.pod, tcp(8080, 52004, TCP_FLAGS.SYN | TCP_FLAGS.ACK));
      assert.equal(synAck.retval, TC_ACT_OK);
      assert.deepEqual([synAck.parsed.ip.src, synAck.parsed.ip.l4?.sport], [f.vip, 80]);
    });

    test(`${f.name} connections opened before a direction was enforced keep their replies`, () => {
      endpoint({});
      assert.equal(fromPod(f.pod, f.other, udp(52010, 9000)).retval, TC_ACT_OK);
      assert.equal(connectionOf(52010, f.other, 9000)?.opened, PolicyDirectionCode.egress, 'tracked though nothing is enforced');
      endpoint({ ingressEnforced: true, egressEnforced: true });
      assert.equal(toPod(f.other, f.pod, udp(9000, 52010)).retval, TC_ACT_OK);
      assert.equal(fromPod(f.pod, f.other, udp(52010, 9000)).retval, TC_ACT_OK);
      assert.equal(fromPod(f.pod, f.other, udp(52011, 9000)).retval, TC_ACT_SHOT);
    });

    test(`${f.name} the Host and ICMP errors always pass; a connection ends with its lifetime`, () => {
      endpoint({ ingressEnforced: true, egressEnforced: true });
      assert.equal(toPod(f.node, f.pod, tcp(52020, 8080)).retval, TC_ACT_OK, 'kubelet probes from the node');
      const unreachable = f.name === 'IPv4' ? { type: 3, code: 1 } : { type: 1, code: 3 };
      const quote = buildIp({ src: f.pod, dst: f.other }, udp(52021, 53));
      assert.equal(toPod(f.world, f.pod, { proto: 'icmp', ...unreachable, quote }).retval, TC_ACT_OK, 'an ICMP error');
      if (f.name === 'IPv6') {
        // Neighbour solicitation and advertisement: IPv6's ARP, never a policy's business, never tracked.
        assert.equal(toPod(f.world, f.pod, { proto: 'icmp', type: 135, payload: Buffer.alloc(20) }).retval, TC_ACT_OK);
        assert.equal(fromPod(f.pod, f.world, { proto: 'icmp', type: 136, payload: Buffer.alloc(20) }).retval, TC_ACT_OK);
        assert.equal(connections().length, 1, 'only the probe’s connection is tracked');
      }
      // UDP lives 60 s past its last packet.
      endpoint({ ingressEnforced: true, rules: [rule('ingress', ID.client, 17, 53)] });
      assert.equal(toPod(f.client, f.pod, udp(52022, 53)).retval, TC_ACT_OK);
      endpoint({ ingressEnforced: true });
      setClock(30);
      assert.equal(toPod(f.client, f.pod, udp(52022, 53)).retval, TC_ACT_OK, 'alive at 30 s, pushed back');
      setClock(85);
      assert.equal(toPod(f.client, f.pod, udp(52022, 53)).retval, TC_ACT_OK, 'alive 55 s after its last packet');
      setClock(160);
      assert.equal(toPod(f.client, f.pod, udp(52022, 53)).retval, TC_ACT_SHOT, 'gone 75 s after it: decided again, denied');
    });

    test(`${f.name} a removed rule denies new connections at once; established ones go on until they close`, () => {
      endpoint({ ingressEnforced: true, rules: [rule('ingress', ID.client, 6, 8080)] });
      assert.equal(toPod(f.client, f.pod, tcp(52030, 8080)).retval, TC_ACT_OK);
      endpoint({ ingressEnforced: true, rules: [] });
      assert.deepEqual(writer.endpoints().get(DEVICE)?.rules, []);
      assert.equal(toPod(f.client, f.pod, tcp(52031, 8080)).retval, TC_ACT_SHOT, 'a new connection');
      assert.equal(toPod(f.client, f.pod, tcp(52030, 8080, TCP_FLAGS.ACK)).retval, TC_ACT_OK, 'the established one');
      assert.equal(toPod(f.client, f.pod, tcp(52030, 8080, TCP_FLAGS.FIN | TCP_FLAGS.ACK)).retval, TC_ACT_OK);
      assert.equal((connectionOf(8080, f.client, 52030)?.flags ?? 0) & PolicyCtFlag.Closing, PolicyCtFlag.Closing);
      assert.equal(toPod(f.client, f.pod, tcp(52030, 8080)).retval, TC_ACT_SHOT, 'a SYN on the closing tuple is a new connection');
    });

    test(`${f.name} a hairpin through a service needs the pod's egress and its ingress`, () => {
      endpoint({ ingressEnforced: true, egressEnforced: true, rules: [rule('egress', ID.pod, 6, 8080)] });
      const drops = policyDrops();
      const ingressHalf = counter(Reason.DROP_POLICY_INGRESS, Direction.INGRESS);
      assert.equal(fromPod(f.pod, f.vip, tcp(52040, 81)).retval, TC_ACT_SHOT, 'its ingress allows nothing');
      assert.equal(policyDrops().egress, drops.egress);
      assert.equal(counter(Reason.DROP_POLICY_INGRESS, Direction.INGRESS) - ingressHalf, 1n, 'the ingress half refused it (counted where it was decided)');
      assert.deepEqual(dropEvents().map((e) => [e.srcIdentity, e.dstIdentity]), [[ID.pod, ID.pod]]);
      assert.equal(flowKept(52040, f, 81), false);

      endpoint({ ingressEnforced: true, egressEnforced: true, rules: [rule('egress', ID.pod, 6, 8080), rule('ingress', ID.pod, 6, 8080)] });
      const syn = fromPod(f.pod, f.vip, tcp(52041, 81));
      assert.equal(syn.retval, TC_ACT_REDIRECT, 'back into the pod');
      const natPort = syn.parsed.ip.l4?.sport ?? 0;
      // Redirected into the pod, it passes tc_pod_egress from the service address: tracked, not decided again.
      assert.equal(run('tc_pod_egress', syn.out).retval, TC_ACT_OK);
      const answer = fromPod(f.pod, f.vip, tcp(8080, natPort, TCP_FLAGS.SYN | TCP_FLAGS.ACK));
      assert.equal(answer.retval, TC_ACT_REDIRECT);
      assert.equal(run('tc_pod_egress', answer.out).retval, TC_ACT_OK);
      assert.deepEqual(dropEvents(), []);
    });
  }

  test('the writer reads back what it wrote and rewrites only differences; refusals name the map and the errno', () => {
    const state: PolicyEndpointState = {
      identity: ID.pod,
      ingressEnforced: true,
      egressEnforced: false,
      rules: [rule('ingress', ID.client, 6, 8080), rule('ingress', ReservedIdentity.Any, 0), rule('egress', ID.other, 17, 7990, 15)],
    };
    writer.setEndpoint(DEVICE, state);
    writer.setEndpoint(7, { ...state, egressEnforced: true, rules: [] });
    const reopened = PolicyMapWriter.open(pods.object);
    const read = reopened.endpoints();
    assert.deepEqual(read.get(7), { ...state, egressEnforced: true, rules: [] });
    const sorted = (rules: PolicyRule[] | undefined): string[] => (rules ?? []).map((r) => JSON.stringify(r)).sort();
    assert.deepEqual({ ...read.get(DEVICE), rules: sorted(read.get(DEVICE)?.rules) }, { ...state, rules: sorted(state.rules) });
    assert.equal(reopened.ipcache().get(families[1].cidrNarrow), ID.cidrNarrow, 'IPv6 CIDRs read back as IPv6');
    assert.equal(reopened.ipcache().get(families[0].cidr), ID.cidr);
    // What is there already is not written again: maps that refuse every write see none.
    const policyMap = pods.object.map(POLICY_MAPS.policy);
    const endpointMap = pods.object.map(POLICY_MAPS.endpoint);
    const ipcacheMap = pods.object.map(POLICY_MAPS.ipcache);
    const updates = [policyMap.update.bind(policyMap), endpointMap.update.bind(endpointMap), ipcacheMap.update.bind(ipcacheMap)] as const;
    const refuse = (): never => {
      throw new Error('no write expected');
    };
    policyMap.update = refuse;
    endpointMap.update = refuse;
    ipcacheMap.update = refuse;
    try {
      reopened.setEndpoint(DEVICE, state);
      // Every entry as read back (IPv6 too), as a restarted agent's first sync writes them.
      reopened.setIpcache([...reopened.ipcache()].map(([cidr, identity]) => ({ cidr, identity })));
      assert.throws(() => reopened.setEndpoint(DEVICE, { ...state, rules: [...state.rules, rule('ingress', ID.other, 6, 1)] }), (error: unknown) => {
        assert.ok(error instanceof PolicyWriteError);
        assert.equal(error.map, POLICY_MAPS.policy);
        assert.match(error.message, /allow entry of the endpoint of ifindex 1 \(identity 256\) to map xlb_policy failed/);
        return true;
      });
    } finally {
      [policyMap.update, endpointMap.update, ipcacheMap.update] = updates;
    }
    assert.deepEqual(reopened.prune(new Set([DEVICE])), [7]);
    assert.deepEqual([...writer.endpoints().keys()], [DEVICE]);
    assert.throws(() => writer.setEndpoint(DEVICE, { ...state, rules: [rule('ingress', 1, 6, 70000)] }), /rules\[0\]\.port: 70000/);
    assert.throws(() => writer.setIpcache([{ cidr: '198.18.0.1/24', identity: 9 }]), /host bits set/);
  });

  test('a deleted endpoint’s tracked connections go with it: a new pod on its device and address rides none; other devices keep theirs', (t) => {
    const f = families[0];
    const table = pods.object.map(POLICY_MAPS.conntrack);
    const ifindexAt = PolicyCtKey.offsetOf('ifindex');
    const onDevice = (ifindex: number): number => [...table.keys()].filter((key) => key.readUInt32LE(ifindexAt) === ifindex).length;
    endpoint({ ingressEnforced: true, rules: [rule('ingress', ID.client, 6, 8080)] });
    assert.equal(toPod(f.client, f.pod, tcp(53000, 8080)).retval, TC_ACT_OK);
    // Another device's connections: the same tuples at ifindex 7.
    const other = 7;
    writer.setEndpoint(other, { identity: ID.other, ingressEnforced: false, egressEnforced: false, rules: [] });
    for (const key of [...table.keys()]) {
      const moved = Buffer.from(key);
      moved.writeUInt32LE(other, ifindexAt);
      table.update(moved, table.lookup(key) ?? assert.fail('the entry'));
    }
    assert.deepEqual([onDevice(DEVICE), onDevice(other)], [1, 1]);

    writer.deleteEndpoint(DEVICE);
    assert.deepEqual([onDevice(DEVICE), onDevice(other)], [0, 1], "only the deleted device's connections go");
    // A new pod given the device and the address, under a policy allowing nothing: the old connection's next packet is a new one, denied.
    endpoint({ ingressEnforced: true, rules: [] });
    assert.equal(toPod(f.client, f.pod, tcp(53000, 8080, TCP_FLAGS.ACK)).retval, TC_ACT_SHOT);

    assert.deepEqual(writer.prune(new Set([DEVICE])), [other]);
    assert.equal(onDevice(other), 0, 'prune forgets the connections of the devices it removes');

    // The cost: a walk over the whole table. Measured with it nearly full (other devices' connections).
    const keys: Buffer[] = [];
    const values: Buffer[] = [];
    const template = PolicyCtEntry.encode({ expires: 1 << 30, flags: 0, opened: PolicyDirectionCode.ingress });
    for (let i = 0; keys.length < table.maxEntries - 1024; i++) {
      const key = Buffer.alloc(PolicyCtKey.size);
      key.writeUInt32LE(i, 0);
      key.writeUInt32LE(100 + (i % 64), ifindexAt);
      keys.push(key);
      values.push(template);
    }
    try {
      table.updateBatch(keys, values);
      writer.setEndpoint(100, { identity: ID.other, ingressEnforced: false, egressEnforced: false, rules: [] });
      const held = onDevice(100);
      assert.ok(held > 0);
      const started = performance.now();
      writer.deleteEndpoint(100);
      const ms = performance.now() - started;
      t.diagnostic(`deleteEndpoint over ${keys.length} tracked connections (${held} of its device): ${ms.toFixed(1)} ms`);
      assert.equal(onDevice(100), 0);
      assert.equal(onDevice(101), keys.filter((k) => k.readUInt32LE(ifindexAt) === 101).length, 'other devices keep theirs');
    } finally {
      for (let at = 0; at < keys.length; at += 4096) {
        const present = keys.slice(at, at + 4096).filter((k) => table.lookup(k) !== undefined);
        table.deleteBatch(present);
      }
    }
  });

  test('the kernel’s refusal carries the errno and its meaning', () => {
    const full = PolicyMapWriter.open(pods.object);
    const ep = pods.object.map(POLICY_MAPS.endpoint);
    const rules = Array.from({ length: 3 }, (_, i) => rule('ingress', 1000 + i, 6, 80));
    full.setEndpoint(DEVICE, { identity: ID.pod, ingressEnforced: true, egressEnforced: false, rules });
    // The map holds maxEntries endpoints; one more is refused with E2BIG.
    try {
      for (let ifindex = 100; ifindex < 100 + ep.maxEntries; ifindex++) {
        full.setEndpoint(ifindex, { identity: ID.pod, ingressEnforced: false, egressEnforced: false, rules: [] });
      }
      assert.fail('the map should be full');
    } catch (error) {
      assert.ok(error instanceof PolicyWriteError, String(error));
      assert.equal(error.map, POLICY_MAPS.endpoint);
      assert.equal(error.errno, 7);
      assert.match(error.message, /E2BIG \(map is full or value too large\)/);
    } finally {
      full.prune(new Set());
    }
    assert.equal([...ep.keys()].length, 0);
  });
});
