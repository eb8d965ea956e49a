/**
 * What xdp_lb refuses to take at face value: L4 headers outside the IP packet's own length, IPv6
 * extension chains it does not follow (the stack's, not a drop), and DSR information a client put in
 * itself. Byte level, under BPF_PROG_TEST_RUN.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { Reason } from '../../lb/reasons.js';
import { buildFrame, buildIp, internetChecksum, dsrOption4, dsrOptions6, TCP_FLAGS, type FrameSpec, type L4Spec } from '../support/packet.js';
import { BACKENDS, CLIENT, LbHarness, NODE, XDP } from '../support/lb-harness.js';

const VIP4 = '198.18.10.40';
const VIP6 = '2001:db8:10::40';
const SERVICES = {
  dsr4: { frontend: { address: VIP4, port: 80, protocol: 'TCP' }, mode: 'dsr', backends: BACKENDS.map((b) => ({ address: b.v4, port: 8080 })) },
  snat4: { frontend: { address: VIP4, port: 81, protocol: 'TCP' }, mode: 'snat', backends: BACKENDS.map((b) => ({ address: b.v4, port: 8080 })) },
  dsr6: { frontend: { address: VIP6, port: 80, protocol: 'TCP' }, mode: 'dsr', backends: BACKENDS.map((b) => ({ address: b.v6, port: 8080 })) },
};

const syn = (sport: number, dport: number): L4Spec => ({ proto: 'tcp', sport, dport, flags: TCP_FLAGS.SYN, mss: 1460 });
function frame(src: string, dst: string, l4: L4Spec, extra: Partial<FrameSpec['ip']> = {}): Buffer {
  return buildFrame({ eth: { src: CLIENT.mac, dst: '02:00:00:00:00:02' }, ip: { src, dst, ...extra }, l4 });
}
describe('xdp_lb: headers it does not take at face value', () => {
  let h: LbHarness;
  before(() => {
    h = LbHarness.create('guard');
    h.install(SERVICES);
  });
  after(() => h.destroy());
  beforeEach(() => h.flushFlows());

  test('a TCP header after the end IPv4 total length gives the packet is malformed: not balanced, no port claimed', () => {
    const input = frame(CLIENT.v4, VIP4, syn(41000, 81));
    input.writeUInt16BE(20, 14 + 2); // tot_len: the IPv4 header alone
    input.writeUInt16BE(0, 14 + 10);
    let sum = 0;
    for (let i = 14; i < 34; i += 2) sum += input.readUInt16BE(i);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    input.writeUInt16BE(~sum & 0xffff, 14 + 10);
    const before = h.counter(Reason.DROP_MALFORMED);
    assert.equal(h.run(input).retval, XDP.DROP);
    assert.equal(h.counter(Reason.DROP_MALFORMED) - before, 1n);
    assert.equal(h.flows().length + h.snatReplies().length, 0, 'no flow (and no SNAT port) for it');
  });

  test('the same for IPv6: a TCP header past payload_len is malformed', () => {
    const input = frame(CLIENT.v6, VIP6, syn(41001, 80));
    input.writeUInt16BE(0, 14 + 4);
    assert.equal(h.run(input).retval, XDP.DROP);
  });

  test('IPv6 extension chains xdp_lb does not follow are the stack\'s, counted, not dropped', () => {
    const pad = Buffer.alloc(6);
    const five = frame(CLIENT.v6, '2001:db8:10::99', syn(41002, 80), { ext: Array.from({ length: 5 }, () => ({ type: 'dstopts' as const, options: pad })) });
    const before = h.counter(Reason.PASS_UNPARSED);
    const out = h.run(five);
    assert.equal(out.retval, XDP.PASS);
    assert.deepEqual(out.out, five);
    // 530 bytes of PadN options (at most 255 bytes of padding each): a 536-byte hop-by-hop header
    const padN = Buffer.concat([255, 255, 14].map((n) => Buffer.concat([Buffer.from([1, n]), Buffer.alloc(n)])));
    const bigHopByHop = frame(CLIENT.v6, '2001:db8:10::99', syn(41003, 80), { ext: [{ type: 'hopopts', options: padN }] });
    assert.equal(h.run(bigHopByHop).retval, XDP.PASS);
    assert.equal(h.counter(Reason.PASS_UNPARSED) - before, 2n);
  });

  test('a client\'s own IPv4 DSR option is refused, counted; other IPv4 options still pass through balancing', () => {
    const spoofed = frame(CLIENT.v4, VIP4, syn(41004, 80), { options: dsrOption4('198.18.0.66', 53) });
    const before = h.counter(Reason.DROP_DSR_SPOOFED);
    assert.equal(h.run(spoofed).retval, XDP.DROP);
    // behind a NOP, on an established flow's later packet too
    const behindNop = frame(CLIENT.v4, VIP4, syn(41005, 81), { options: Buffer.concat([Buffer.from([1, 1, 1, 1]), dsrOption4('198.18.0.66', 53)]) });
    assert.equal(h.run(behindNop).retval, XDP.DROP);
    assert.equal(h.counter(Reason.DROP_DSR_SPOOFED) - before, 2n);
    const established = h.run(frame(CLIENT.v4, VIP4, syn(41006, 80)));
    assert.equal(established.retval, XDP.TX);
    const later = frame(CLIENT.v4, VIP4, { proto: 'tcp', sport: 41006, dport: 80, flags: TCP_FLAGS.ACK }, { options: dsrOption4('198.18.0.66', 53) });
    assert.equal(h.run(later).retval, XDP.DROP);
    // (SNAT: adding the DSR option to a SYN that has options already is refused on its own)
    const nops = h.run(frame(CLIENT.v4, VIP4, syn(41007, 81), { options: Buffer.from([1, 1, 1, 0]) }));
    assert.equal(nops.retval, XDP.TX, 'options that are not ours are no reason to refuse');
  });

  test('a client\'s own IPv6 DSR destination option is refused, counted; other destination options pass', () => {
    const before = h.counter(Reason.DROP_DSR_SPOOFED);
    const spoofed = frame(CLIENT.v6, VIP6, syn(41008, 80), { ext: [{ type: 'dstopts', options: dsrOptions6('2001:db8::66', 53) }] });
    assert.equal(h.run(spoofed).retval, XDP.DROP);
    assert.equal(h.counter(Reason.DROP_DSR_SPOOFED) - before, 1n);
    const other = h.run(frame(CLIENT.v6, VIP6, syn(41009, 80), { ext: [{ type: 'dstopts', options: Buffer.from([1, 2, 0, 0, 0, 0]) }] }));
    assert.equal(other.retval, XDP.TX);
  });

  test('an ICMP error whose quote lies past the outer packet\'s length is not translated: left to the stack untouched', () => {
    const out = h.run(frame(CLIENT.v4, VIP4, syn(41010, 81)));
    assert.equal(out.retval, XDP.TX);
    const natPort = out.parsed.ip.l4?.sport ?? 0;
    const quoted = buildIp({ src: NODE.v4, dst: out.parsed.ip.dst }, { proto: 'tcp', sport: natPort, dport: 8080 }).subarray(0, 28);
    const error = frame('198.18.0.77', NODE.v4, { proto: 'icmp', type: 3, code: 4, mtu: 1400, quote: quoted });
    assert.equal(h.run(Buffer.from(error)).retval, XDP.TX, 'whole, it is translated');
    const cut = Buffer.from(error);
    cut.writeUInt16BE(20 + 8, 14 + 2); // the outer packet ends after the ICMP header: the quote is trailing bytes
    cut.writeUInt16BE(0, 14 + 10);
    cut.writeUInt16BE(internetChecksum(cut, 14, 34), 14 + 10);
    const left = h.run(cut);
    assert.equal(left.retval, XDP.PASS);
    assert.deepEqual(left.out, cut);
  });
});
