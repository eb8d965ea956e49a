import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { MAX_SERVICE_ID } from '../../lb/lbmap/ids.js';
import { Reason } from '../../lb/reasons.js';
import { buildFrame, buildIp, checksumErrors, IPPROTO, TCP_FLAGS, type FrameSpec, type L4Spec } from '../support/packet.js';
import { BACKENDS, CLIENT, LbHarness, NAT_PORTS, NODE, XDP } from '../support/lb-harness.js';

const VIP4 = '198.18.10.10';
const VIP6 = '2001:db8:10::10';
const backendsOf = (family: 'v4' | 'v6', port = 8080): { address: string; port: number }[] =>
  BACKENDS.map((b) => ({ address: b[family], port }));
const backendV4 = new Set(BACKENDS.map((b) => b.v4));
const backendV6 = new Set(BACKENDS.map((b) => b.v6));

function service(frontend: string, port: number, protocol: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const v6 = frontend.includes(':');
  return { frontend: { address: frontend, port, protocol }, backends: backendsOf(v6 ? 'v6' : 'v4'), ...extra };
}

const SERVICES = {
  snat4: service(VIP4, 80, 'TCP', { mode: 'snat' }),
  dsr4: service(VIP4, 443, 'TCP', { mode: 'dsr' }),
  dsr4udp: service(VIP4, 53, 'UDP', { mode: 'dsr' }),
  hybrid4tcp: service('198.18.10.11', 80, 'TCP', { mode: 'hybrid' }),
  hybrid4udp: service('198.18.10.11', 53, 'UDP', { mode: 'hybrid' }),
  snat6: service(VIP6, 80, 'TCP', { mode: 'snat' }),
  dsr6: service(VIP6, 443, 'TCP', { mode: 'dsr' }),
  dsr6udp: service(VIP6, 53, 'UDP', { mode: 'dsr' }),
  nodeport: service('0.0.0.0', 30080, 'TCP', { type: 'NodePort', mode: 'snat' }),
  nodeport6: service('::', 30080, 'UDP', { type: 'NodePort', mode: 'snat' }),
  ranged: service('198.18.10.12', 80, 'TCP', { mode: 'snat', sourceRanges: ['198.18.0.96/29'] }),
  sticky: service('198.18.10.13', 80, 'TCP', { mode: 'dsr', sessionAffinity: { type: 'ClientIP', timeoutSeconds: 60 } }),
  random: service('198.18.10.14', 80, 'TCP', { mode: 'dsr', algorithm: 'random' }),
  empty4: { frontend: { address: '198.18.10.15', port: 80, protocol: 'TCP' }, backends: [] },
  empty6: { frontend: { address: '2001:db8:10::15', port: 80, protocol: 'UDP' }, backends: [] },
  sctp: service('198.18.10.16', 9000, 'SCTP', { mode: 'dsr', backends: backendsOf('v4', 9000) }),
  sctpSnat: service('198.18.10.16', 9001, 'SCTP', { mode: 'snat' }),
};

function frame(src: string, dst: string, l4: L4Spec, extra: Partial<FrameSpec['ip']> = {}, vlan?: number): Buffer {
  return buildFrame({ eth: { src: CLIENT.mac, dst: '02:00:00:00:00:02', ...(vlan ? { vlan } : {}) }, ip: { src, dst, ...extra }, l4 });
}
const syn = (sport: number, dport: number): L4Spec => ({ proto: 'tcp', sport, dport, flags: TCP_FLAGS.SYN, mss: 1460 });
const ack = (sport: number, dport: number): L4Spec => ({ proto: 'tcp', sport, dport, flags: TCP_FLAGS.ACK, payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') });
const udp = (sport: number, dport: number): L4Spec => ({ proto: 'udp', sport, dport, payload: Buffer.from('query') });

describe('xdp_lb under BPF_PROG_TEST_RUN', () => {
  let h: LbHarness;
  before(() => {
    h = LbHarness.create('xdp');
    h.install(SERVICES);
  });
  after(() => h.destroy());
  beforeEach(() => h.flushFlows());

  const assertToBackend = (out: ReturnType<LbHarness['run']>, family: 'v4' | 'v6'): void => {
    assert.equal(out.retval, XDP.TX, 'sent back out of the device it came in on');
    assert.deepEqual(checksumErrors(out.out), []);
    const backend = BACKENDS.find((b) => b[family] === out.parsed.ip.dst);
    assert.ok(backend, `destination ${out.parsed.ip.dst} is a backend`);
    assert.equal(out.parsed.eth.dst, backend.mac);
    assert.equal(out.parsed.eth.src, h.deviceMac);
    assert.equal(out.parsed.ip.l4?.dport, 8080);
  };

  test('a packet for no service passes to the stack untouched, and is counted', () => {
    const input = frame(CLIENT.v4, '198.18.10.99', syn(40001, 80));
    const before = h.counter(Reason.PASS_NOT_SERVICE);
    const out = h.run(input);
    assert.equal(out.retval, XDP.PASS);
    assert.deepEqual(out.out, input);
    assert.equal(h.counter(Reason.PASS_NOT_SERVICE) - before, 1n);
  });

  test('malformed packets are dropped with a counted reason, never forwarded', () => {
    const good = frame(CLIENT.v4, VIP4, syn(40002, 80));
    const truncated = good.subarray(0, 14 + 12);
    const lying = Buffer.from(good);
    lying.writeUInt16BE(1400, 14 + 2); // total length beyond the frame
    const before = h.counter(Reason.DROP_MALFORMED);
    for (const input of [truncated, lying]) assert.equal(h.run(input).retval, XDP.DROP);
    assert.equal(h.counter(Reason.DROP_MALFORMED) - before, 2n);
  });

  test('SNAT, IPv4 TCP: to a backend from a node port, and the reply back from the VIP', () => {
    const out = h.run(frame(CLIENT.v4, VIP4, syn(40003, 80)));
    assertToBackend(out, 'v4');
    assert.equal(out.parsed.ip.src, NODE.v4);
    const natPort = out.parsed.ip.l4?.sport ?? 0;
    assert.ok(natPort >= NAT_PORTS.min && natPort <= NAT_PORTS.max, `SNAT port ${natPort}`);
    assert.equal(out.parsed.ip.options.length, 0, 'no DSR option in SNAT mode');

    const reply = h.run(frame(out.parsed.ip.dst, NODE.v4, { proto: 'tcp', sport: 8080, dport: natPort, flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK }));
    assert.equal(reply.retval, XDP.TX);
    assert.deepEqual(checksumErrors(reply.out), []);
    assert.equal(reply.parsed.ip.src, VIP4);
    assert.equal(reply.parsed.ip.l4?.sport, 80);
    assert.equal(reply.parsed.ip.dst, CLIENT.v4);
    assert.equal(reply.parsed.ip.l4?.dport, 40003);
    assert.equal(reply.parsed.eth.dst, CLIENT.mac);
  });

  test('SNAT, IPv6 TCP and NodePort over IPv6 UDP', () => {
    const out = h.run(frame(CLIENT.v6, VIP6, syn(40004, 80)));
    assertToBackend(out, 'v6');
    assert.equal(out.parsed.ip.src, NODE.v6);
    const nodePort = h.run(frame(CLIENT.v6, NODE.v6, udp(40005, 30080)));
    assertToBackend(nodePort, 'v6');
    assert.equal(nodePort.parsed.ip.src, NODE.v6);
  });

  test('NodePort over IPv4 on the node address', () => {
    const out = h.run(frame(CLIENT.v4, NODE.v4, syn(40006, 30080)));
    assertToBackend(out, 'v4');
    assert.equal(out.parsed.ip.src, NODE.v4);
  });

  test('DSR, IPv4 TCP: the SYN carries option 0x9A {port, VIP}; later packets go plain to the same backend', () => {
    const out = h.run(frame(CLIENT.v4, VIP4, syn(40007, 443)));
    assertToBackend(out, 'v4');
    assert.equal(out.parsed.ip.src, CLIENT.v4, 'DSR keeps the client as source');
    assert.equal(out.parsed.ip.headerLength, 28);
    assert.deepEqual([...out.parsed.ip.options], [0x9a, 8, 0x01, 0xbb, 198, 18, 10, 10]);
    assert.equal(out.parsed.ip.l4?.sport, 40007);

    const later = h.run(frame(CLIENT.v4, VIP4, ack(40007, 443)));
    assertToBackend(later, 'v4');
    assert.equal(later.parsed.ip.dst, out.parsed.ip.dst);
    assert.equal(later.parsed.ip.options.length, 0);
    assert.equal(later.parsed.ip.l4?.payload.toString(), 'GET / HTTP/1.1\r\n\r\n');
  });

  test('DSR, IPv6 UDP: every datagram carries a destination options header with {VIP, port}, to the same backend', () => {
    const out = h.run(frame(CLIENT.v6, VIP6, udp(40008, 53)));
    assertToBackend(out, 'v6');
    assert.equal(out.parsed.ip.src, CLIENT.v6);
    const [doh] = out.parsed.ip.ext;
    assert.equal(doh?.type, IPPROTO.DSTOPTS);
    const expected = Buffer.concat([Buffer.from([IPPROTO.UDP, 2, 0x1b, 18]), Buffer.from('20010db8001000000000000000000010', 'hex'), Buffer.from([0, 53, 0, 0])]);
    assert.deepEqual(doh?.bytes, expected);
    assert.equal(out.parsed.ip.l4?.payload.toString(), 'query');

    // A lost first datagram, or an entry the backend side evicted, must not leave the backend answering
    // from its own address: later datagrams carry the service too.
    const second = h.run(frame(CLIENT.v6, VIP6, udp(40008, 53)));
    assertToBackend(second, 'v6');
    assert.deepEqual(second.parsed.ip.ext[0]?.bytes, expected);
    assert.equal(second.parsed.ip.dst, out.parsed.ip.dst);
    assert.equal(h.counter(Reason.FWD_ESTABLISHED) > 0n, true);
    const four = h.run(frame(CLIENT.v4, VIP4, udp(40011, 53)));
    const fourAgain = h.run(frame(CLIENT.v4, VIP4, udp(40011, 53)));
    assert.deepEqual([...fourAgain.parsed.ip.options.subarray(0, 4)], [0x9a, 8, 0, 53]);
    assert.equal(fourAgain.parsed.ip.dst, four.parsed.ip.dst);
    assert.deepEqual(checksumErrors(fourAgain.out), []);
  });

  test('DSR, IPv6 TCP SYN and IPv4 UDP', () => {
    const six = h.run(frame(CLIENT.v6, VIP6, syn(40009, 443)));
    assertToBackend(six, 'v6');
    assert.equal(six.parsed.ip.ext[0]?.type, IPPROTO.DSTOPTS);
    const four = h.run(frame(CLIENT.v4, VIP4, udp(40010, 53)));
    assertToBackend(four, 'v4');
    assert.deepEqual([...four.parsed.ip.options.subarray(0, 4)], [0x9a, 8, 0, 53]);
  });

  test('hybrid: DSR for TCP, SNAT for UDP', () => {
    const tcp = h.run(frame(CLIENT.v4, '198.18.10.11', syn(40011, 80)));
    assertToBackend(tcp, 'v4');
    assert.equal(tcp.parsed.ip.src, CLIENT.v4);
    assert.equal(tcp.parsed.ip.options[0], 0x9a);
    const dgram = h.run(frame(CLIENT.v4, '198.18.10.11', udp(40012, 53)));
    assertToBackend(dgram, 'v4');
    assert.equal(dgram.parsed.ip.src, NODE.v4);
    assert.equal(dgram.parsed.ip.options.length, 0);
  });

  test('loadBalancerSourceRanges: an allowed client passes, another is dropped and counted', () => {
    assertToBackend(h.run(frame('198.18.0.100', '198.18.10.12', syn(40013, 80))), 'v4');
    const before = h.counter(Reason.DROP_SOURCE_RANGE);
    const denied = h.run(frame('198.18.0.50', '198.18.10.12', syn(40014, 80)));
    assert.equal(denied.retval, XDP.DROP);
    assert.equal(h.counter(Reason.DROP_SOURCE_RANGE) - before, 1n);
  });

  test('a service without backends answers ICMP port unreachable, quoting the packet (IPv4 and IPv6)', () => {
    const input = frame(CLIENT.v4, '198.18.10.15', syn(40015, 80));
    const out = h.run(input);
    assert.equal(out.retval, XDP.TX);
    assert.deepEqual(checksumErrors(out.out), []);
    assert.equal(out.parsed.eth.dst, CLIENT.mac);
    assert.equal(out.parsed.ip.src, '198.18.10.15');
    assert.equal(out.parsed.ip.dst, CLIENT.v4);
    assert.equal(out.parsed.ip.l4?.icmpType, 3);
    assert.equal(out.parsed.ip.l4?.icmpCode, 3);
    assert.equal(out.parsed.ip.l4?.inner?.src, CLIENT.v4);
    assert.equal(out.parsed.ip.l4?.inner?.l4?.sport, 40015);
    assert.deepEqual(out.out.subarray(42), input.subarray(14, 14 + 28));

    const six = h.run(frame(CLIENT.v6, '2001:db8:10::15', udp(40016, 80)));
    assert.equal(six.retval, XDP.TX);
    assert.deepEqual(checksumErrors(six.out), []);
    assert.equal(six.parsed.ip.l4?.icmpType, 1);
    assert.equal(six.parsed.ip.l4?.icmpCode, 4);
    assert.equal(six.parsed.ip.dst, CLIENT.v6);
    assert.ok(h.counter(Reason.REJECT_NO_BACKEND) >= 2n);
  });

  test('Maglev spreads new flows over every backend, and a flow always gets the same one', () => {
    // The tables are an array of maps indexed by service id: as many slots as the allocator has ids.
    assert.equal(h.lb.map('xlb_lb_maglev').maxEntries, MAX_SERVICE_ID + 1);
    const seen = new Map<number, string>();
    for (let port = 41000; port < 41090; port++) seen.set(port, h.run(frame(CLIENT.v4, VIP4, syn(port, 443))).parsed.ip.dst);
    assert.deepEqual(new Set(seen.values()), backendV4);
    h.flushFlows();
    for (const [port, dst] of seen) assert.equal(h.run(frame(CLIENT.v4, VIP4, syn(port, 443))).parsed.ip.dst, dst);
  });

  test('random selection also reaches every backend', () => {
    const seen = new Set<string>();
    for (let port = 42000; port < 42060; port++) seen.add(h.run(frame(CLIENT.v4, '198.18.10.14', syn(port, 80))).parsed.ip.dst);
    assert.deepEqual(seen, backendV4);
  });

  test('ClientIP affinity: new connections from one client stay on one backend', () => {
    const first = h.run(frame(CLIENT.v4, '198.18.10.13', syn(43000, 80))).parsed.ip.dst;
    for (let port = 43001; port < 43020; port++) assert.equal(h.run(frame(CLIENT.v4, '198.18.10.13', syn(port, 80))).parsed.ip.dst, first);
  });

  test('conntrack: an established flow keeps its backend when backends are added', () => {
    const flows = new Map<number, string>();
    for (let port = 44000; port < 44030; port++) flows.set(port, h.run(frame(CLIENT.v4, VIP4, syn(port, 443))).parsed.ip.dst);
    h.install({ ...SERVICES, dsr4: service(VIP4, 443, 'TCP', { mode: 'dsr', backends: [...backendsOf('v4'), { address: '198.18.0.14', port: 8080 }] }) });
    try {
      for (const [port, dst] of flows) assert.equal(h.run(frame(CLIENT.v4, VIP4, ack(port, 443))).parsed.ip.dst, dst);
    } finally {
      h.install(SERVICES);
    }
  });

  test('a removed backend: its UDP flows move to a live backend at once, its conntrack entries are purged', () => {
    const before = h.run(frame(CLIENT.v4, VIP4, udp(45000, 53)));
    const gone = before.parsed.ip.dst;
    const rest = backendsOf('v4').filter((b) => b.address !== gone);
    const tracked = (): boolean => h.flows().some((f) => f.tuple.sport === 45000 && f.tuple.proto === IPPROTO.UDP);
    assert.ok(tracked(), 'the flow is tracked');
    h.install({ ...SERVICES, dsr4udp: service(VIP4, 53, 'UDP', { mode: 'dsr', backends: rest }) });
    try {
      assert.ok(!tracked(), 'the flow to the removed backend was purged');
      const after = h.run(frame(CLIENT.v4, VIP4, udp(45000, 53)));
      assertToBackend(after, 'v4');
      assert.notEqual(after.parsed.ip.dst, gone);
    } finally {
      h.install(SERVICES);
    }
  });

  test('externalTrafficPolicy Local: new flows only to this node\'s backends; with none here, dropped and counted', () => {
    const [local, remote] = [BACKENDS[0], BACKENDS[1]];
    assert.ok(local && remote);
    const policy = (backends: { address: string; port: number; node: string }[]): Record<string, unknown> =>
      service('198.18.10.18', 80, 'TCP', { mode: 'dsr', externalTrafficPolicy: 'Local', backends });
    try {
      h.install({ ...SERVICES, local: policy([{ address: local.v4, port: 8080, node: NODE.name }, { address: remote.v4, port: 8080, node: 'elsewhere' }]) });
      for (let port = 49000; port < 49020; port++) {
        const out = h.run(frame(CLIENT.v4, '198.18.10.18', syn(port, 80)));
        assertToBackend(out, 'v4');
        assert.equal(out.parsed.ip.dst, local.v4, `flow ${port} went to the local backend`);
      }
      h.install({ ...SERVICES, local: policy([{ address: remote.v4, port: 8080, node: 'elsewhere' }]) });
      const dropped = h.counter(Reason.DROP_NO_BACKEND);
      const rejected = h.counter(Reason.REJECT_NO_BACKEND);
      assert.equal(h.run(frame(CLIENT.v4, '198.18.10.18', syn(49100, 80))).retval, XDP.DROP);
      assert.equal(h.counter(Reason.DROP_NO_BACKEND) - dropped, 1n);
      assert.equal(h.counter(Reason.REJECT_NO_BACKEND), rejected, 'no ICMP reject, as kube-proxy drops');
    } finally {
      h.install(SERVICES);
    }
  });

  test('service changes reach new flows at once, through the datapath\'s cached service lookups', () => {
    const vip = '198.18.10.17';
    const stranger = h.run(frame(CLIENT.v4, vip, syn(48000, 443)));
    assert.equal(stranger.retval, XDP.PASS, 'no service there yet (the answer is cached too)');
    try {
      h.install({ ...SERVICES, moving: service(vip, 443, 'TCP', { mode: 'dsr' }) });
      const dsr = h.run(frame(CLIENT.v4, vip, syn(48001, 443)));
      assertToBackend(dsr, 'v4');
      assert.equal(dsr.parsed.ip.src, CLIENT.v4, 'DSR keeps the client as source');
      h.install({ ...SERVICES, moving: service(vip, 443, 'TCP', { mode: 'snat' }) });
      const snat = h.run(frame(CLIENT.v4, vip, syn(48002, 443)));
      assertToBackend(snat, 'v4');
      assert.equal(snat.parsed.ip.src, NODE.v4, 'the new mode applies to the next new flow');
    } finally {
      h.install(SERVICES);
    }
    assert.equal(h.run(frame(CLIENT.v4, vip, syn(48003, 443))).retval, XDP.PASS, 'removed: new flows pass again');
  });

  test('fragments follow their first fragment; unknown later fragments go to the stack', () => {
    const payload = Buffer.alloc(64, 7);
    const first = h.run(frame(CLIENT.v4, VIP4, { proto: 'udp', sport: 46000, dport: 53, payload }, { id: 777, moreFragments: true }));
    assertToBackend(first, 'v4');
    const later = h.run(frame(CLIENT.v4, VIP4, { proto: 'raw', protocol: IPPROTO.UDP, payload: Buffer.alloc(32, 8) }, { id: 777, fragmentOffset: 80 }));
    assert.equal(later.retval, XDP.TX);
    assert.equal(later.parsed.ip.dst, first.parsed.ip.dst);
    assert.equal(later.parsed.ip.fragmentOffset, 80);
    assert.deepEqual(checksumErrors(later.out), []);
    const stranger = h.run(frame(CLIENT.v4, VIP4, { proto: 'raw', protocol: IPPROTO.UDP, payload: Buffer.alloc(32) }, { id: 999, fragmentOffset: 80 }));
    assert.equal(stranger.retval, XDP.PASS);
  });

  test('802.1Q-tagged frames go to the stack, counted (a tag would leave on whatever device the FIB picks); IPv6 extension headers are parsed', () => {
    const input = frame(CLIENT.v4, VIP4, syn(47000, 80), {}, 100);
    const before = h.counter(Reason.PASS_UNPARSED);
    const tagged = h.run(input);
    assert.equal(tagged.retval, XDP.PASS);
    assert.deepEqual(tagged.out, input);
    assert.equal(h.counter(Reason.PASS_UNPARSED) - before, 1n);
    const withExt = h.run(frame(CLIENT.v6, VIP6, syn(47001, 80), { ext: [{ type: 'dstopts', options: Buffer.from([1, 2, 0, 0]) }] }));
    assert.equal(withExt.retval, XDP.TX);
    assert.ok(backendV6.has(withExt.parsed.ip.dst));
    assert.deepEqual(checksumErrors(withExt.out), []);
  });

  test('SCTP is balanced when its ports stay (DSR); a port rewrite its CRC32c would not survive is refused, counted', () => {
    const same = h.run(frame(CLIENT.v4, '198.18.10.16', { proto: 'sctp', sport: 48000, dport: 9000 }));
    assert.equal(same.retval, XDP.TX);
    assert.deepEqual(checksumErrors(same.out), []);
    assert.ok(backendV4.has(same.parsed.ip.dst));
    const before = h.counter(Reason.DROP_UNSUPPORTED);
    assert.equal(h.run(frame(CLIENT.v4, '198.18.10.16', { proto: 'sctp', sport: 48001, dport: 9001 })).retval, XDP.DROP);
    assert.equal(h.counter(Reason.DROP_UNSUPPORTED) - before, 1n);
  });

  /** What a router quotes: the IP header and the first 8 bytes of L4. */
  const quote = (src: string, dst: string, l4: L4Spec): Buffer => {
    const ip = buildIp({ src, dst }, l4);
    return ip.subarray(0, (src.includes(':') ? 40 : 20) + 8);
  };
  const ROUTER = { v4: '198.18.0.77', v6: '2001:db8::77' };

  test('ICMP frag-needed about a SNAT flow reaches the client, quoting client → VIP', () => {
    const out = h.run(frame(CLIENT.v4, VIP4, syn(50100, 80)));
    const natPort = out.parsed.ip.l4?.sport ?? 0;
    const backend = out.parsed.ip.dst;
    const error = frame(ROUTER.v4, NODE.v4, { proto: 'icmp', type: 3, code: 4, mtu: 1400, quote: quote(NODE.v4, backend, { proto: 'tcp', sport: natPort, dport: 8080 }) });
    const before = h.counter(Reason.FWD_ICMP_ERROR);
    const translated = h.run(error);
    assert.equal(translated.retval, XDP.TX);
    assert.deepEqual(checksumErrors(translated.out), []);
    assert.equal(translated.parsed.ip.src, ROUTER.v4);
    assert.equal(translated.parsed.ip.dst, CLIENT.v4);
    assert.equal(translated.parsed.eth.dst, CLIENT.mac);
    const inner = translated.parsed.ip.l4?.inner;
    assert.equal(inner?.src, CLIENT.v4);
    assert.equal(inner?.dst, VIP4);
    assert.equal(inner?.l4?.sport, 50100);
    assert.equal(inner?.l4?.dport, 80);
    assert.equal(h.counter(Reason.FWD_ICMP_ERROR) - before, 1n);
  });

  test('ICMP errors about replies reach the flow’s backend, quoting what the backend sent (DSR IPv4, SNAT IPv6)', () => {
    const dsr = h.run(frame(CLIENT.v4, VIP4, syn(50101, 443)));
    const toBackend = h.run(frame(ROUTER.v4, VIP4, { proto: 'icmp', type: 3, code: 4, mtu: 1300, quote: quote(VIP4, CLIENT.v4, { proto: 'tcp', sport: 443, dport: 50101 }) }));
    assert.equal(toBackend.retval, XDP.TX);
    assert.deepEqual(checksumErrors(toBackend.out), []);
    assert.equal(toBackend.parsed.ip.dst, dsr.parsed.ip.dst);
    assert.equal(toBackend.parsed.ip.l4?.inner?.src, dsr.parsed.ip.dst);
    assert.equal(toBackend.parsed.ip.l4?.inner?.l4?.sport, 8080);
    assert.equal(toBackend.parsed.ip.l4?.inner?.dst, CLIENT.v4);

    const snat6 = h.run(frame(CLIENT.v6, VIP6, syn(50102, 80)));
    const natPort = snat6.parsed.ip.l4?.sport ?? 0;
    const tooBig = h.run(frame(ROUTER.v6, VIP6, { proto: 'icmp', type: 2, mtu: 1280, quote: quote(VIP6, CLIENT.v6, { proto: 'tcp', sport: 80, dport: 50102 }) }));
    assert.equal(tooBig.retval, XDP.TX);
    assert.deepEqual(checksumErrors(tooBig.out), []);
    assert.equal(tooBig.parsed.ip.dst, snat6.parsed.ip.dst);
    assert.equal(tooBig.parsed.ip.l4?.inner?.src, snat6.parsed.ip.dst);
    assert.equal(tooBig.parsed.ip.l4?.inner?.dst, NODE.v6);
    assert.equal(tooBig.parsed.ip.l4?.inner?.l4?.dport, natPort);
  });

  test('an ICMP error about no flow of ours goes to the stack untouched', () => {
    const input = frame(ROUTER.v4, NODE.v4, { proto: 'icmp', type: 3, code: 3, quote: quote(NODE.v4, '198.18.0.99', { proto: 'udp', sport: 1234, dport: 53 }) });
    const out = h.run(input);
    assert.equal(out.retval, XDP.PASS);
    assert.deepEqual(out.out, input);
  });

  test('new flows and established packets are counted separately', () => {
    const newBefore = h.counter(Reason.FWD_NEW_FLOW);
    const estBefore = h.counter(Reason.FWD_ESTABLISHED);
    h.run(frame(CLIENT.v4, VIP4, syn(49000, 443)));
    h.run(frame(CLIENT.v4, VIP4, ack(49000, 443)));
    h.run(frame(CLIENT.v4, VIP4, ack(49000, 443)));
    assert.equal(h.counter(Reason.FWD_NEW_FLOW) - newBefore, 1n);
    assert.equal(h.counter(Reason.FWD_ESTABLISHED) - estBefore, 2n);
  });
});
