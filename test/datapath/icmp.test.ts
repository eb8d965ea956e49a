/**
 * xdp_lb as a router under BPF_PROG_TEST_RUN: every packet it sends on takes one hop off its TTL / hop
 * limit, a spent one is answered with time exceeded, and a packet too big for its next hop — on every
 * path, cached next hops included — is answered with fragmentation needed / packet too big quoting it
 * as it came (the MTU less our DSR option when the option made it too big); every ICMP answer under
 * one rate limit.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, beforeEach, describe, test } from 'node:test';
import { Reason } from '../../lb/reasons.js';
import { buildFrame, checksumErrors, parseFrame, TCP_FLAGS, type FrameSpec, type L4Spec } from '../support/packet.js';
import { BACKENDS, CLIENT, LbHarness, NODE, XDP, type RunResult } from '../support/lb-harness.js';

const VIP4 = '198.18.10.10';
const VIP6 = '2001:db8:10::10';
const EMPTY4 = '198.18.10.15';
const UNRESOLVED = '198.18.0.77';
const ETH = 14;

function service(frontend: string, port: number, protocol: string, mode: string): Record<string, unknown> {
  const family = frontend.includes(':') ? 'v6' : 'v4';
  return { frontend: { address: frontend, port, protocol }, mode, backends: BACKENDS.map((b) => ({ address: b[family], port: 8080 })) };
}

const SERVICES = {
  snat4: service(VIP4, 80, 'TCP', 'snat'),
  dsr4: service(VIP4, 443, 'TCP', 'dsr'),
  dsr4udp: service(VIP4, 53, 'UDP', 'dsr'),
  snat6: service(VIP6, 80, 'TCP', 'snat'),
  dsr6: service(VIP6, 443, 'TCP', 'dsr'),
  dsr6udp: service(VIP6, 53, 'UDP', 'dsr'),
  empty4: { frontend: { address: EMPTY4, port: 80, protocol: 'TCP' }, backends: [] },
  ranged: { ...service('198.18.10.12', 80, 'TCP', 'snat'), sourceRanges: ['198.18.0.96/29'] },
  /** A backend on the link with no neighbour entry: its first packets go to tc to resolve it (xfer.h). */
  unresolved: { frontend: { address: '198.18.10.20', port: 80, protocol: 'TCP' }, mode: 'snat', backends: [{ address: UNRESOLVED, port: 8080 }] },
};

function frame(src: string, dst: string, l4: L4Spec, ip: Partial<FrameSpec['ip']> = {}): Buffer {
  return buildFrame({ eth: { src: CLIENT.mac, dst: '02:00:00:00:00:02' }, ip: { src, dst, ...ip }, l4 });
}
const syn = (sport: number, dport: number, payload?: Buffer): L4Spec => ({ proto: 'tcp', sport, dport, flags: TCP_FLAGS.SYN, mss: 1460, ...(payload ? { payload } : {}) });
const ack = (sport: number, dport: number, payload: Buffer = Buffer.from('data')): L4Spec => ({ proto: 'tcp', sport, dport, flags: TCP_FLAGS.ACK, payload });
const udp = (sport: number, dport: number, payload: Buffer = Buffer.from('query')): L4Spec => ({ proto: 'udp', sport, dport, payload });
/** A payload making the IP packet exactly `ipLength` bytes long after `headers` bytes of IP + L4 header. */
const fill = (ipLength: number, headers: number): Buffer => Buffer.alloc(ipLength - headers, 0x5a);
const TCP_SYN_HEADERS = { v4: 20 + 24, v6: 40 + 24 }; // the SYN carries an MSS option
const UDP_HEADERS = { v4: 20 + 8, v6: 40 + 8 };

const ipLength = (frameBytes: Buffer): number => frameBytes.length - ETH;

/** The ICMP error `out` is: sent back to the client's MAC, checksums right, type and code as given. */
function assertIcmpError(out: RunResult, from: string, to: string, type: number, code: number): void {
  assert.equal(out.retval, XDP.TX, 'the answer leaves where the packet came in');
  assert.deepEqual(checksumErrors(out.out), []);
  assert.equal(out.parsed.eth.dst, CLIENT.mac);
  assert.equal(out.parsed.ip.src, from);
  assert.equal(out.parsed.ip.dst, to);
  assert.equal(out.parsed.ip.l4?.icmpType, type);
  assert.equal(out.parsed.ip.l4?.icmpCode, code);
}

/** The quoted bytes of an ICMP error frame: what follows its IP and ICMP headers. */
const quoteOf = (out: RunResult): Buffer => out.out.subarray(out.parsed.ip.headerLength + ETH + 8);

describe('xdp_lb takes a hop off every packet it sends on, and answers spent ones', () => {
  let h: LbHarness;
  before(() => {
    h = LbHarness.create('icmp');
    h.install(SERVICES);
  });
  after(() => h.destroy());
  beforeEach(() => h.flushFlows());

  test('TTL 64 in, 63 out, with a valid IPv4 header checksum: new and established flows, SNAT, DSR and replies', () => {
    const first = h.run(frame(CLIENT.v4, VIP4, syn(45001, 80), { ttl: 64 }));
    assert.equal(first.retval, XDP.TX);
    assert.equal(first.parsed.ip.ttl, 63);
    assert.deepEqual(checksumErrors(first.out), []);
    const established = h.run(frame(CLIENT.v4, VIP4, ack(45001, 80), { ttl: 64 }));
    assert.equal(established.retval, XDP.TX);
    assert.equal(established.parsed.ip.ttl, 63, 'the cached next hop (fast path) takes the hop too');
    assert.deepEqual(checksumErrors(established.out), []);

    const natPort = first.parsed.ip.l4?.sport ?? 0;
    const reply = h.run(frame(first.parsed.ip.dst, NODE.v4, { proto: 'tcp', sport: 8080, dport: natPort, flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK }, { ttl: 64 }));
    assert.equal(reply.retval, XDP.TX);
    assert.equal(reply.parsed.ip.dst, CLIENT.v4);
    assert.equal(reply.parsed.ip.ttl, 63);
    assert.deepEqual(checksumErrors(reply.out), []);

    const dsr = h.run(frame(CLIENT.v4, VIP4, syn(45002, 443), { ttl: 2 }));
    assert.equal(dsr.retval, XDP.TX);
    assert.equal(dsr.parsed.ip.headerLength, 28, 'the DSR option is in');
    assert.equal(dsr.parsed.ip.ttl, 1);
    assert.deepEqual(checksumErrors(dsr.out), []);

    // Every TTL value's checksum, the carry included (the TTL is the high byte of its header word).
    for (const ttl of [255, 128, 3]) {
      const out = h.run(frame(CLIENT.v4, VIP4, ack(45001, 80), { ttl, id: 0xffff - ttl }));
      assert.equal(out.parsed.ip.ttl, ttl - 1);
      assert.deepEqual(checksumErrors(out.out), [], `TTL ${ttl}`);
    }
  });

  test('a packet handed to tc while its next hop resolves has taken its hop too', () => {
    const out = h.run(frame(CLIENT.v4, '198.18.10.20', syn(45003, 80), { ttl: 64 }));
    assert.equal(out.retval, XDP.PASS, 'marked for tc, which resolves the neighbour');
    const packet = out.out.subarray(8); // the test run hands the XDP metadata (struct xlb_xfer) back in front
    assert.equal(out.out.readUInt32LE(0), 0x786c6231, 'the mark tc looks for');
    const parsed = parseFrame(packet);
    assert.equal(parsed.ip.dst, UNRESOLVED);
    assert.equal(parsed.ip.ttl, 63);
    assert.deepEqual(checksumErrors(packet), []);
  });

  test('IPv6: hop limit 64 in, 63 out, new and established flows', () => {
    const first = h.run(frame(CLIENT.v6, VIP6, syn(45011, 80), { ttl: 64 }));
    assert.equal(first.retval, XDP.TX);
    assert.equal(first.parsed.ip.ttl, 63);
    assert.deepEqual(checksumErrors(first.out), []);
    const established = h.run(frame(CLIENT.v6, VIP6, ack(45011, 80), { ttl: 64 }));
    assert.equal(established.parsed.ip.ttl, 63);
    const dsr = h.run(frame(CLIENT.v6, VIP6, udp(45012, 53), { ttl: 64 }));
    assert.equal(dsr.retval, XDP.TX);
    assert.equal(dsr.parsed.ip.ttl, 63);
    assert.deepEqual(checksumErrors(dsr.out), []);
  });

  test('TTL 1 or 0 is never sent on: ICMP time exceeded from the VIP quotes the packet as it came, counted, nothing tracked', () => {
    for (const ttl of [1, 0]) {
      const before = h.counter(Reason.DROP_TTL_EXCEEDED);
      const input = frame(CLIENT.v4, VIP4, syn(45021 + ttl, 80), { ttl });
      const out = h.run(input);
      assertIcmpError(out, VIP4, CLIENT.v4, 11, 0);
      assert.deepEqual(quoteOf(out), input.subarray(ETH, ETH + 28), 'IP header and 8 bytes of TCP, untranslated');
      assert.equal(out.parsed.ip.l4?.inner?.l4?.sport, 45021 + ttl);
      assert.equal(h.counter(Reason.DROP_TTL_EXCEEDED) - before, 1n);
    }
    assert.deepEqual(h.flows(), [], 'a packet answered is not a flow');

    // An established flow: its cached next hop does not carry a spent packet either.
    assert.equal(h.run(frame(CLIENT.v4, VIP4, syn(45023, 443))).retval, XDP.TX);
    const input = frame(CLIENT.v4, VIP4, ack(45023, 443), { ttl: 1 });
    const out = h.run(input);
    assertIcmpError(out, VIP4, CLIENT.v4, 11, 0);
    assert.deepEqual(quoteOf(out), input.subarray(ETH, ETH + 28));
  });

  test('a spent TTL from a source outside the service\'s source ranges is dropped as any packet from there, unanswered', () => {
    const before = h.counter(Reason.DROP_SOURCE_RANGE);
    assert.equal(h.run(frame('198.18.0.200', '198.18.10.12', syn(45025, 80), { ttl: 1 })).retval, XDP.DROP);
    assert.equal(h.counter(Reason.DROP_SOURCE_RANGE) - before, 1n);
    assertIcmpError(h.run(frame(CLIENT.v4, '198.18.10.12', syn(45026, 80), { ttl: 1 })), '198.18.10.12', CLIENT.v4, 11, 0);
  });

  test('a SNAT reply with TTL 1 is answered to the backend, from the node address', () => {
    const first = h.run(frame(CLIENT.v4, VIP4, syn(45031, 80)));
    const backend = first.parsed.ip.dst;
    const natPort = first.parsed.ip.l4?.sport ?? 0;
    const input = frame(backend, NODE.v4, { proto: 'tcp', sport: 8080, dport: natPort, flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK }, { ttl: 1 });
    const out = h.run(input);
    assertIcmpError(out, NODE.v4, backend, 11, 0);
    assert.deepEqual(quoteOf(out), input.subarray(ETH, ETH + 28));
  });

  test('IPv6 hop limit 1: ICMPv6 time exceeded quoting the packet, counted', () => {
    const before = h.counter(Reason.DROP_TTL_EXCEEDED);
    const input = frame(CLIENT.v6, VIP6, udp(45041, 53), { ttl: 1 });
    const out = h.run(input);
    assertIcmpError(out, VIP6, CLIENT.v6, 3, 0);
    assert.deepEqual(quoteOf(out), input.subarray(ETH, ETH + 48));
    assert.equal(h.counter(Reason.DROP_TTL_EXCEEDED) - before, 1n);
  });

  test('a first DSR packet the option makes too big: fragmentation needed with the MTU less 8, quoting the packet as sent', () => {
    const before = h.counter(Reason.DROP_FRAG_NEEDED);
    // The device's MTU is 1500: 1493..1500-byte first datagrams no longer fit with the option's 8 bytes.
    for (const length of [1493, 1500]) {
      const input = frame(CLIENT.v4, VIP4, udp(45051, 53, fill(length, UDP_HEADERS.v4)), { dontFragment: true });
      assert.equal(ipLength(input), length);
      const out = h.run(input);
      assertIcmpError(out, VIP4, CLIENT.v4, 3, 4);
      assert.equal(out.out.readUInt16BE(ETH + 20 + 6), 1492, 'next-hop MTU: 1500 less the option');
      assert.deepEqual(quoteOf(out), input.subarray(ETH, ETH + 28), 'IP header and 8 bytes of UDP as the client sent them');
    }
    assert.equal(h.counter(Reason.DROP_FRAG_NEEDED) - before, 2n);
    assert.deepEqual(h.flows(), [], 'a refused first packet opens no flow');
    const fits = h.run(frame(CLIENT.v4, VIP4, udp(45051, 53, fill(1492, UDP_HEADERS.v4)), { dontFragment: true }));
    assert.equal(fits.retval, XDP.TX);
    assert.equal(fits.parsed.ip.totalLength, 1500);
    assert.equal(fits.parsed.ip.headerLength, 28, 'the retried datagram carries the option');

    // A full-size TCP Fast Open SYN.
    const tfo = frame(CLIENT.v4, VIP4, syn(45052, 443, fill(1500, TCP_SYN_HEADERS.v4)));
    const out = h.run(tfo);
    assertIcmpError(out, VIP4, CLIENT.v4, 3, 4);
    assert.equal(out.out.readUInt16BE(ETH + 20 + 6), 1492);
    assert.deepEqual(quoteOf(out), tfo.subarray(ETH, ETH + 28));
  });

  test('IPv6: packet too big with the MTU less the 24-byte destination options header', () => {
    const before = h.counter(Reason.DROP_FRAG_NEEDED);
    const input = frame(CLIENT.v6, VIP6, udp(45061, 53, fill(1500, UDP_HEADERS.v6)));
    const out = h.run(input);
    assertIcmpError(out, VIP6, CLIENT.v6, 2, 0);
    assert.equal(out.out.readUInt32BE(ETH + 40 + 4), 1476);
    assert.deepEqual(quoteOf(out), input.subarray(ETH, ETH + 48));
    assert.equal(h.counter(Reason.DROP_FRAG_NEEDED) - before, 1n);
    const fits = h.run(frame(CLIENT.v6, VIP6, udp(45061, 53, fill(1476, UDP_HEADERS.v6))));
    assert.equal(fits.retval, XDP.TX);
    assert.equal(fits.parsed.ip.totalLength, 1500);
  });

  // Last: it empties the bucket the other answers draw from.
  test('ICMP answers share one rate limit: past its burst they are suppressed, and counted', () => {
    const sent = { tx: 0, dropped: 0 };
    const limitedBefore = h.counter(Reason.DROP_ICMP_RATE_LIMITED);
    const start = process.hrtime.bigint();
    for (let i = 0; i < 300; i++) {
      const out = h.run(frame(CLIENT.v4, VIP4, syn(46000 + i, 80), { ttl: 1 }));
      if (out.retval === XDP.TX) sent.tx++;
      else if (out.retval === XDP.DROP) sent.dropped++;
    }
    // Port unreachable draws from the same bucket.
    let rejectsLimited = 0;
    for (let i = 0; i < 20; i++) if (h.run(frame(CLIENT.v4, EMPTY4, syn(46400 + i, 80))).retval === XDP.DROP) rejectsLimited++;
    const elapsedMs = Number(process.hrtime.bigint() - start) / 1e6;
    // Burst 50, then 1000 a second.
    assert.ok(sent.tx >= 50, `the burst goes out (${sent.tx} sent)`);
    assert.ok(sent.tx <= 50 + Math.ceil(elapsedMs) + 1, `${sent.tx} answers in ${elapsedMs.toFixed(1)} ms`);
    assert.equal(sent.tx + sent.dropped, 300);
    assert.ok(sent.dropped > 0);
    assert.ok(rejectsLimited > 0, 'port unreachable is limited too');
    assert.equal(h.counter(Reason.DROP_ICMP_RATE_LIMITED) - limitedBefore, BigInt(sent.dropped + rejectsLimited));
  });
});

describe('xdp_lb applies the route MTU on every path', () => {
  let h: LbHarness;
  const ROUTE_MTU = 1400;
  before(() => {
    h = LbHarness.create('icmp-mtu');
    h.install(SERVICES);
    for (const b of BACKENDS) {
      // The FIB gives forwarded packets a route's MTU only when it is locked (the kernel's forwarding too).
      execFileSync('ip', ['netns', 'exec', h.ns, 'ip', 'route', 'add', `${b.v4}/32`, 'dev', 'v0', 'mtu', 'lock', String(ROUTE_MTU)]);
      execFileSync('ip', ['netns', 'exec', h.ns, 'ip', '-6', 'route', 'add', `${b.v6}/128`, 'dev', 'v0', 'mtu', 'lock', String(ROUTE_MTU)]);
    }
    execFileSync('ip', ['netns', 'exec', h.ns, 'ip', 'route', 'add', `${CLIENT.v4}/32`, 'dev', 'v0', 'mtu', 'lock', String(ROUTE_MTU)]);
  });
  after(() => h.destroy());
  beforeEach(() => h.flushFlows());

  test('a 1450-byte DF segment of an established SNAT flow is answered with the route MTU while its next hop is cached, quoting it as it came', () => {
    for (const [family, client, vip] of [['v4', CLIENT.v4, VIP4], ['v6', CLIENT.v6, VIP6]] as const) {
      const sport = family === 'v4' ? 45101 : 45102;
      const ipHeaders = (family === 'v4' ? 20 : 40) + 20;
      const df = family === 'v4' ? { dontFragment: true } : {}; // IPv6 routers never fragment
      assert.equal(h.run(frame(client, vip, syn(sport, 80))).retval, XDP.TX, `${family}: the SYN fits`);
      const before = h.counter(Reason.DROP_FRAG_NEEDED);
      const big = frame(client, vip, ack(sport, 80, fill(1450, ipHeaders)), df);
      assert.equal(ipLength(big), 1450);
      const out = h.run(big);
      if (family === 'v4') {
        assertIcmpError(out, VIP4, CLIENT.v4, 3, 4);
        assert.equal(out.out.readUInt16BE(ETH + 20 + 6), ROUTE_MTU);
        assert.deepEqual(quoteOf(out), big.subarray(ETH, ETH + 28), 'the segment as the client sent it, not as translated');
      } else {
        assertIcmpError(out, VIP6, CLIENT.v6, 2, 0);
        assert.equal(out.out.readUInt32BE(ETH + 40 + 4), ROUTE_MTU);
        assert.deepEqual(quoteOf(out), big.subarray(ETH, ETH + 48));
      }
      assert.equal(h.counter(Reason.DROP_FRAG_NEEDED) - before, 1n);
      const fits = h.run(frame(client, vip, ack(sport, 80, fill(ROUTE_MTU, ipHeaders)), df));
      assert.equal(fits.retval, XDP.TX, `${family}: a packet of the route's MTU still goes`);
      assert.equal(fits.parsed.ip.totalLength, ROUTE_MTU);
    }
    // IPv4 without DF: a router would fragment it; XDP cannot, so it is dropped, counted, unanswered.
    const before = h.counter(Reason.DROP_FRAG_NEEDED);
    assert.equal(h.run(frame(CLIENT.v4, VIP4, ack(45101, 80, fill(1450, 40)))).retval, XDP.DROP);
    assert.equal(h.counter(Reason.DROP_FRAG_NEEDED) - before, 1n);
  });

  test('a new flow whose first packet is too big is answered with the FIB\'s MTU, quoting it untranslated (SNAT TCP, DSR UDP)', () => {
    const input = frame(CLIENT.v4, VIP4, syn(45105, 80, fill(1450, TCP_SYN_HEADERS.v4)), { dontFragment: true });
    const out = h.run(input);
    assertIcmpError(out, VIP4, CLIENT.v4, 3, 4);
    assert.equal(out.out.readUInt16BE(ETH + 20 + 6), ROUTE_MTU);
    assert.deepEqual(quoteOf(out), input.subarray(ETH, ETH + 28));
    const udp6 = frame(CLIENT.v6, VIP6, udp(45106, 53, fill(1450, UDP_HEADERS.v6)));
    const six = h.run(udp6);
    assertIcmpError(six, VIP6, CLIENT.v6, 2, 0);
    assert.equal(six.out.readUInt32BE(ETH + 40 + 4), ROUTE_MTU - 24, 'a DSR datagram: the MTU less the option');
    assert.deepEqual(quoteOf(six), udp6.subarray(ETH, ETH + 48), 'UDP checksum included');
  });

  test('a SNAT reply too big for the way to the client is answered to the backend, from the node address', () => {
    const first = h.run(frame(CLIENT.v4, VIP4, syn(45107, 80)));
    const backend = first.parsed.ip.dst;
    const natPort = first.parsed.ip.l4?.sport ?? 0;
    const reply = frame(backend, NODE.v4, { proto: 'tcp', sport: 8080, dport: natPort, flags: TCP_FLAGS.ACK, payload: fill(1450, 40) }, { dontFragment: true });
    const out = h.run(reply);
    assertIcmpError(out, NODE.v4, backend, 3, 4);
    assert.equal(out.out.readUInt16BE(ETH + 20 + 6), ROUTE_MTU);
    assert.deepEqual(quoteOf(out), reply.subarray(ETH, ETH + 28));
  });

  test('a first DSR packet is told the route MTU less the option, from the FIB or from a cached next hop', () => {
    for (let i = 0; i < 2; i++) {
      // the first run asks the FIB; the second finds the backend's next hop cached by the first's SYN
      h.run(frame(CLIENT.v4, VIP4, syn(45110 + i, 443)));
      const input = frame(CLIENT.v4, VIP4, syn(45120 + i, 443, fill(ROUTE_MTU, TCP_SYN_HEADERS.v4)));
      const out = h.run(input);
      assertIcmpError(out, VIP4, CLIENT.v4, 3, 4);
      assert.equal(out.out.readUInt16BE(ETH + 20 + 6), ROUTE_MTU - 8);
      assert.deepEqual(quoteOf(out), input.subarray(ETH, ETH + 28));
    }
  });
});
