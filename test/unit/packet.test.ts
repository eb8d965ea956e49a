import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  IPPROTO, TCP_FLAGS, buildFrame, buildIp, checksumErrors, checksumsValid, crc32c, internetChecksum, parseFrame,
} from '../support/packet.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('internet checksum and CRC32c match published vectors', () => {
  // The IPv4 header of Wikipedia's "IPv4 header checksum" example, checksum field zeroed: 0xb861.
  assert.equal(internetChecksum(hex('4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7')), 0xb861);
  // RFC 3720 / iSCSI check value of CRC32c over "123456789".
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  // Odd length: the last byte is padded with a zero on the right.
  assert.equal(internetChecksum(hex('0001 02')), ~(0x0001 + 0x0200) & 0xffff);
});

test('an IPv4 UDP frame is byte-exact, with hand-computed IPv4 and UDP checksums', () => {
  const frame = buildFrame({
    ip: { src: '198.18.0.1', dst: '198.18.0.2', id: 1, dontFragment: true },
    l4: { proto: 'udp', sport: 1234, dport: 80, payload: Buffer.from('hi') },
  });
  assert.deepEqual(frame, hex(
    '020000000002 020000000001 0800' +
    '4500 001e 0001 4000 4011 aea6 c612 0001 c612 0002' + // ip checksum 0xaea6
    '04d2 0050 000a 0627 6869', // udp checksum over the pseudo-header: 0x0627
  ));
  assert.deepEqual(checksumErrors(frame), []);
  const parsed = parseFrame(frame);
  assert.equal(parsed.ip.version, 4);
  assert.equal(parsed.ip.src, '198.18.0.1');
  assert.equal(parsed.ip.dontFragment, true);
  assert.equal(parsed.ip.l4?.proto, IPPROTO.UDP);
  assert.equal(parsed.ip.l4?.dport, 80);
  assert.equal(parsed.ip.l4?.payload.toString(), 'hi');
});

test('an IPv6 TCP SYN with MSS and an ICMPv6 echo carry the hand-computed checksums', () => {
  const syn = buildFrame({
    ip: { src: '2001:db8::1', dst: '2001:db8::2' },
    l4: { proto: 'tcp', sport: 40000, dport: 443, seq: 1000, flags: TCP_FLAGS.SYN, mss: 1460 },
  });
  const tcp = parseFrame(syn).ip.l4;
  assert.equal(tcp?.checksum, 0x9fdd);
  assert.equal(tcp?.mss, 1460);
  assert.equal(tcp?.tcpFlags, TCP_FLAGS.SYN);
  assert.equal(tcp?.seq, 1000);
  const echo = buildFrame({ ip: { src: '2001:db8::1', dst: '2001:db8::2' }, l4: { proto: 'icmp', type: 128, id: 7, seq: 1, payload: Buffer.from('ping') } });
  const icmp = parseFrame(echo).ip.l4;
  assert.equal(icmp?.proto, IPPROTO.ICMPV6);
  assert.equal(icmp?.checksum, 0x456b);
  assert.equal(icmp?.echoId, 7);
  assert.ok(checksumsValid(syn) && checksumsValid(echo));
});

test('IPv4 options, VLAN tag, fragment fields and SCTP round-trip', () => {
  const option = hex('9a08 0050 c612 000a'); // the DSR option: type 0x9A, len 8, port 80, 198.18.0.10
  const frame = buildFrame({
    eth: { vlan: 42, src: '02:aa:00:00:00:01' },
    ip: { src: '198.18.0.1', dst: '198.18.1.2', ttl: 7, id: 0x1234, moreFragments: true, options: option },
    l4: { proto: 'sctp', sport: 5000, dport: 6000, tag: 0xdeadbeef, payload: hex('0100000c 00000000 00000000') },
  });
  const parsed = parseFrame(frame);
  assert.equal(parsed.vlan, 42);
  assert.equal(parsed.eth.src, '02:aa:00:00:00:01');
  assert.equal(parsed.ip.headerLength, 28);
  assert.deepEqual(parsed.ip.options, option);
  assert.equal(parsed.ip.ttl, 7);
  assert.equal(parsed.ip.id, 0x1234);
  assert.equal(parsed.ip.moreFragments, true);
  assert.equal(parsed.ip.l4?.sctpTag, 0xdeadbeef);
  assert.equal(parsed.ip.l4?.sport, 5000);
  assert.deepEqual(checksumErrors(frame), []);

  const later = buildFrame({ ip: { src: '198.18.0.1', dst: '198.18.1.2', fragmentOffset: 1480 }, l4: { proto: 'raw', protocol: IPPROTO.UDP, payload: Buffer.alloc(16) } });
  assert.equal(parseFrame(later).ip.fragmentOffset, 1480);
  assert.equal(parseFrame(later).ip.l4, undefined);
  assert.ok(checksumsValid(later));
  assert.throws(() => buildIp({ src: '198.18.0.1', dst: '198.18.0.2', options: Buffer.alloc(3) }, { proto: 'udp', sport: 1, dport: 2 }), /4n/);
});

test('IPv6 extension headers are built padded to 8 bytes and parsed raw', () => {
  const dsrOption = Buffer.concat([hex('1b12'), hex('20010db8000000000000000000000010'), hex('0050 0000')]);
  const frame = buildFrame({
    ip: {
      src: '2001:db8::1', dst: '2001:db8:1::2',
      ext: [{ type: 'hopopts', options: hex('0502 0000') }, { type: 'dstopts', options: dsrOption }, { type: 'fragment', id: 99, more: true }],
    },
    l4: { proto: 'udp', sport: 53, dport: 5353, payload: Buffer.from('q') },
  });
  const ip = parseFrame(frame).ip;
  assert.deepEqual(ip.ext.map((e) => [e.type, e.bytes.length]), [[IPPROTO.HOPOPTS, 8], [IPPROTO.DSTOPTS, 24], [IPPROTO.FRAGMENT, 8]]);
  // The DSR destination options header is exactly 24 bytes with hdrlen 2 and no padding added.
  assert.deepEqual(ip.ext[1]?.bytes, Buffer.concat([hex('2c02'), dsrOption]));
  assert.deepEqual(ip.ext[0]?.bytes, hex('3c00 0502 0000 0100')); // PadN of 2 bytes
  assert.equal(ip.id, 99);
  assert.equal(ip.moreFragments, true);
  assert.equal(ip.proto, IPPROTO.UDP);
  assert.equal(ip.l4?.dport, 5353);
  assert.equal(ip.headerLength, 80);
});

test('ICMP errors quote an inner packet that is parsed and verified too', () => {
  const inner = buildIp({ src: '198.18.0.1', dst: '198.18.1.2' }, { proto: 'udp', sport: 40000, dport: 53, payload: Buffer.from('query') });
  const error = buildFrame({ ip: { src: '198.18.1.2', dst: '198.18.0.1' }, l4: { proto: 'icmp', type: 3, code: 3, quote: inner } });
  const l4 = parseFrame(error).ip.l4;
  assert.equal(l4?.icmpType, 3);
  assert.equal(l4?.inner?.dst, '198.18.1.2');
  assert.equal(l4?.inner?.l4?.sport, 40000);
  assert.deepEqual(checksumErrors(error), []);

  const truncated = buildFrame({ ip: { src: '198.18.1.2', dst: '198.18.0.1' }, l4: { proto: 'icmp', type: 3, code: 4, mtu: 1400, quote: inner.subarray(0, 28) } });
  const quoted = parseFrame(truncated).ip.l4?.inner;
  assert.equal(quoted?.truncated, true);
  assert.equal(quoted?.l4?.dport, 53);
  assert.ok(checksumsValid(truncated));

  const inner6 = buildIp({ src: '2001:db8::1', dst: '2001:db8::2' }, { proto: 'tcp', sport: 1, dport: 2 });
  const tooBig = buildFrame({ ip: { src: '2001:db8::ff', dst: '2001:db8::1' }, l4: { proto: 'icmp', type: 2, mtu: 1280, quote: inner6 } });
  assert.equal(parseFrame(tooBig).ip.l4?.inner?.l4?.tcpFlags, TCP_FLAGS.SYN);
  assert.ok(checksumsValid(tooBig));
});

test('checksumErrors names every checksum that a corruption breaks', () => {
  const frame = buildFrame({ ip: { src: '198.18.0.1', dst: '198.18.0.2' }, l4: { proto: 'tcp', sport: 1, dport: 2, payload: Buffer.from('x') } });
  const badAddress = Buffer.from(frame);
  badAddress[14 + 15] = 3; // destination address: breaks the IPv4 header and the TCP pseudo-header
  assert.deepEqual(checksumErrors(badAddress).map((e) => e.replace(/ 0x\w+/, '')), ['frame IPv4 header checksum is wrong', 'frame TCP checksum is wrong']);

  const inner = buildIp({ src: '198.18.0.1', dst: '198.18.1.2' }, { proto: 'udp', sport: 1, dport: 2 });
  const error = buildFrame({ ip: { src: '198.18.1.2', dst: '198.18.0.1' }, l4: { proto: 'icmp', type: 3, code: 3, quote: inner } });
  error.writeUInt8(error.readUInt8(error.length - 1) ^ 0xff, error.length - 1); // last byte of the quoted UDP header: the checksum (and the ICMP one)
  assert.deepEqual(checksumErrors(error).map((e) => e.replace(/ 0x\w+/, '')), ['frame ICMP checksum is wrong', 'frame quoted UDP checksum is wrong']);

  const udpNoChecksum = buildFrame({ ip: { src: '198.18.0.1', dst: '198.18.0.2' }, l4: { proto: 'udp', sport: 1, dport: 2, noChecksum: true } });
  assert.equal(parseFrame(udpNoChecksum).ip.l4?.checksum, 0);
  assert.ok(checksumsValid(udpNoChecksum), 'IPv4 UDP checksum 0 means none');
  assert.throws(() => buildIp({ src: '2001:db8::1', dst: '2001:db8::2' }, { proto: 'udp', sport: 1, dport: 2, noChecksum: true }));
});
