import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import koffi from 'koffi';
import { bytesToIpv4, bytesToIpv6, ipv4ToBytes, ipv6ToBytes } from '../../lb/codec.js';
import { writeDsrTrust } from '../../lb/datapath/dsr-trust.js';
import { BpfObject } from '../../lb/datapath/object.js';
import { inNetns } from '../../lb/datapath/netns.js';
import { attachTc, queryTc, removeClsact } from '../../lb/datapath/tc.js';
import { Topology } from '../../lb/datapath/topology.js';
import { DsrEntry, XlbTuple } from '../../lb/layouts.js';
import { Direction, Reason, counterIndex } from '../../lb/reasons.js';
import { bpfObject } from '../support/paths.js';
import { waitFor } from '../support/wait.js';
import { IPPROTO, TCP_FLAGS, buildFrame, buildIp, checksumErrors, dsrOption4, dsrOptions6, parseFrame, type FrameSpec, type IpSpec } from '../support/packet.js';

const OBJECT = bpfObject('tc/tc_dsr.o');
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const AF_INET = 2;
const AF_INET6 = 10;

const v4 = { client: '198.18.0.1', vip: '198.18.0.10', backend: '198.18.1.2' };
const v6 = { client: '2001:db8::1', vip: '2001:db8::10', backend: '2001:db8:1::2' };

describe('tc_dsr with BPF_PROG_TEST_RUN', () => {
  let obj: BpfObject;
  before(() => {
    obj = BpfObject.load(OBJECT);
    writeDsrTrust(obj.map('xlb_dsr_trust'), [`${v4.vip}/32`, '2001:db8::/120']);
  });
  after(() => obj.close());

  const run = (program: 'tc_dsr_ingress' | 'tc_dsr_egress', frame: Buffer): { verdict: number; out: Buffer } => {
    const result = obj.program(program).testRun({ data: frame });
    return { verdict: result.retval, out: result.data };
  };
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  const counter = (reason: number, direction: number): bigint =>
    obj.map('xlb_metrics').sumPerCpuU64(u32(counterIndex(reason, direction)))[0] ?? 0n;
  const flowKey = (ip: IpSpec, proto: number, sport: number, dport: number): Buffer =>
    XlbTuple.encode({ saddr: ip.src, daddr: ip.dst, sport, dport, proto, family: ip.src.includes(':') ? AF_INET6 : AF_INET, kind: 0 });
  const entryOf = (key: Buffer): { service: string; servicePort: number; lastSeen: bigint } | undefined => {
    const value = obj.map('xlb_dsr_ct').lookup(key);
    return value ? DsrEntry.decode(value) : undefined;
  };
  /** Run a frame through ingress and expect exactly `expected` to come out, passed to the stack. */
  const expectIngress = (frame: FrameSpec, expected: FrameSpec): void => {
    const { verdict, out } = run('tc_dsr_ingress', buildFrame(frame));
    assert.equal(verdict, TC_ACT_OK);
    assert.deepEqual(checksumErrors(out), []);
    assert.deepEqual(out.toString('hex'), buildFrame(expected).toString('hex'));
  };

  test('an IPv4 TCP SYN with the option: option stripped, ihl 5, flow recorded with the service', () => {
    const ip: IpSpec = { src: v4.client, dst: v4.backend, id: 7, dontFragment: true };
    const l4 = { proto: 'tcp', sport: 40001, dport: 8080, seq: 1, flags: TCP_FLAGS.SYN, mss: 1460 } as const;
    const received = counter(Reason.DSR_RECEIVED, Direction.INGRESS);
    expectIngress({ ip: { ...ip, options: dsrOption4(v4.vip, 80) }, l4 }, { ip, l4 });
    assert.equal(counter(Reason.DSR_RECEIVED, Direction.INGRESS) - received, 1n);

    const entry = entryOf(flowKey(ip, IPPROTO.TCP, 40001, 8080));
    assert.equal(entry?.service, v4.vip);
    assert.equal(entry?.servicePort, 80);
    assert.ok((entry?.lastSeen ?? 0n) > 0n);
    const out = parseFrame(run('tc_dsr_ingress', buildFrame({ ip: { ...ip, options: dsrOption4(v4.vip, 80) }, l4 })).out);
    assert.equal(out.ip.headerLength, 20);
    assert.equal(out.ip.totalLength, 20 + 24);
  });

  test('an IPv4 option behind others is removed and the others kept in order', () => {
    const routerAlert = Buffer.from([0x94, 0x04, 0x00, 0x00]);
    const nops = Buffer.from([1, 1, 1]);
    const ip: IpSpec = { src: v4.client, dst: v4.backend, ttl: 9 };
    const l4 = { proto: 'udp', sport: 40002, dport: 5353, payload: Buffer.from('query') } as const;
    // router alert, NOP×3, DSR, EOL — 16 bytes; afterwards router alert, NOP×3, EOL — 8 bytes.
    const options = Buffer.concat([routerAlert, nops, dsrOption4(v4.vip, 53), Buffer.from([0])]);
    expectIngress({ ip: { ...ip, options }, l4 }, { ip: { ...ip, options: Buffer.concat([routerAlert, nops, Buffer.from([0])]) }, l4 });
    assert.equal(entryOf(flowKey(ip, IPPROTO.UDP, 40002, 5353))?.servicePort, 53);

    const last = Buffer.concat([nops, Buffer.from([1]), routerAlert, dsrOption4(v4.vip, 54)]); // option at the very end
    expectIngress({ ip: { ...ip, options: last }, l4: { ...l4, sport: 40003 } }, { ip: { ...ip, options: Buffer.concat([nops, Buffer.from([1]), routerAlert]) }, l4: { ...l4, sport: 40003 } });
    assert.equal(entryOf(flowKey(ip, IPPROTO.UDP, 40003, 5353))?.servicePort, 54);
  });

  test('an IPv6 UDP datagram with the destination options header: header stripped, flow recorded', () => {
    const ip: IpSpec = { src: v6.client, dst: v6.backend, ttl: 30 };
    const l4 = { proto: 'udp', sport: 40004, dport: 5353, payload: Buffer.from('hello over v6') } as const;
    const received = counter(Reason.DSR_RECEIVED, Direction.INGRESS);
    expectIngress({ ip: { ...ip, ext: [{ type: 'dstopts', options: dsrOptions6(v6.vip, 53) }] }, l4 }, { ip, l4 });
    assert.equal(counter(Reason.DSR_RECEIVED, Direction.INGRESS) - received, 1n);
    const entry = entryOf(flowKey(ip, IPPROTO.UDP, 40004, 5353));
    assert.equal(entry?.service, v6.vip);
    assert.equal(entry?.servicePort, 53);
  });

  test('an option naming a service address outside --dsr-service-ranges is dropped, counted, and nothing recorded', () => {
    const before = counter(Reason.DROP_DSR_UNTRUSTED, Direction.INGRESS);
    const l4 = { proto: 'tcp' as const, sport: 40900, dport: 8080, flags: TCP_FLAGS.SYN };
    const ip4 = { src: v4.client, dst: v4.backend };
    assert.equal(run('tc_dsr_ingress', buildFrame({ ip: { ...ip4, options: dsrOption4('198.18.0.66', 53) }, l4 })).verdict, TC_ACT_SHOT);
    assert.equal(entryOf(flowKey(ip4, IPPROTO.TCP, 40900, 8080)), undefined);
    const ip6 = { src: v6.client, dst: v6.backend };
    assert.equal(run('tc_dsr_ingress', buildFrame({ ip: { ...ip6, ext: [{ type: 'dstopts', options: dsrOptions6('2001:db8:66::1', 53) }] }, l4 })).verdict, TC_ACT_SHOT);
    // an IPv4 range does not cover the IPv6 address with the same leading bytes
    const mapped = buildFrame({ ip: { ...ip6, ext: [{ type: 'dstopts', options: dsrOptions6('c612:000a::', 53) }] }, l4 });
    assert.equal(run('tc_dsr_ingress', mapped).verdict, TC_ACT_SHOT);
    assert.equal(counter(Reason.DROP_DSR_UNTRUSTED, Direction.INGRESS) - before, 3n);
  });

  test('replies of recorded flows leave with the service address and port, checksums valid', () => {
    const replied = counter(Reason.DSR_REPLY, Direction.EGRESS);
    // IPv4 TCP: the SYN-ACK to the SYN recorded above.
    const synAck = { proto: 'tcp', dport: 40001, seq: 99, ack: 2, flags: TCP_FLAGS.SYN | TCP_FLAGS.ACK, mss: 1460 } as const;
    const tcp = run('tc_dsr_egress', buildFrame({ ip: { src: v4.backend, dst: v4.client, id: 3 }, l4: { ...synAck, sport: 8080 } }));
    assert.equal(tcp.verdict, TC_ACT_OK);
    assert.deepEqual(tcp.out, buildFrame({ ip: { src: v4.vip, dst: v4.client, id: 3 }, l4: { ...synAck, sport: 80 } }));

    // IPv6 UDP, recorded from the destination options header.
    const answer = { proto: 'udp', dport: 40004, payload: Buffer.from('answer') } as const;
    const udp6 = run('tc_dsr_egress', buildFrame({ ip: { src: v6.backend, dst: v6.client }, l4: { ...answer, sport: 5353 } }));
    assert.deepEqual(udp6.out, buildFrame({ ip: { src: v6.vip, dst: v6.client }, l4: { ...answer, sport: 53 } }));

    // IPv4 UDP without a checksum keeps none.
    const noChecksum = { proto: 'udp', dport: 40002, payload: Buffer.from('x'), noChecksum: true } as const;
    const udp4 = run('tc_dsr_egress', buildFrame({ ip: { src: v4.backend, dst: v4.client, ttl: 9 }, l4: { ...noChecksum, sport: 5353 } }));
    assert.deepEqual(udp4.out, buildFrame({ ip: { src: v4.vip, dst: v4.client, ttl: 9 }, l4: { ...noChecksum, sport: 53 } }));
    assert.equal(parseFrame(udp4.out).ip.l4?.checksum, 0);

    assert.equal(counter(Reason.DSR_REPLY, Direction.EGRESS) - replied, 3n);
    for (const { out } of [tcp, udp6, udp4]) assert.deepEqual(checksumErrors(out), []);
  });

  test('a fragmented reply: every fragment leaves with the service address, the first also with its port', () => {
    const replied = counter(Reason.DSR_REPLY, Direction.EGRESS);
    // IPv4 UDP, flow 40002 recorded above (service port 53); the answer is split in two fragments.
    const head = { proto: 'udp', dport: 40002, payload: Buffer.alloc(48, 1) } as const;
    const rest = { proto: 'raw', protocol: IPPROTO.UDP, payload: Buffer.alloc(40, 2) } as const;
    const first4 = run('tc_dsr_egress', buildFrame({ ip: { src: v4.backend, dst: v4.client, id: 4242, moreFragments: true }, l4: { ...head, sport: 5353 } }));
    assert.equal(first4.verdict, TC_ACT_OK);
    assert.deepEqual(first4.out, buildFrame({ ip: { src: v4.vip, dst: v4.client, id: 4242, moreFragments: true }, l4: { ...head, sport: 53 } }));
    const later4 = run('tc_dsr_egress', buildFrame({ ip: { src: v4.backend, dst: v4.client, id: 4242, fragmentOffset: 56 }, l4: rest }));
    assert.equal(later4.verdict, TC_ACT_OK);
    assert.deepEqual(later4.out, buildFrame({ ip: { src: v4.vip, dst: v4.client, id: 4242, fragmentOffset: 56 }, l4: rest }));
    assert.deepEqual(checksumErrors(later4.out), []);

    // IPv6 UDP, flow 40004 (service port 53), fragment headers.
    const head6 = { proto: 'udp', dport: 40004, payload: Buffer.alloc(48, 3) } as const;
    const frag = (offset: number, more: boolean): IpSpec['ext'] => [{ type: 'fragment', id: 77, offset, more }];
    const first6 = run('tc_dsr_egress', buildFrame({ ip: { src: v6.backend, dst: v6.client, ext: frag(0, true) }, l4: { ...head6, sport: 5353 } }));
    assert.deepEqual(first6.out, buildFrame({ ip: { src: v6.vip, dst: v6.client, ext: frag(0, true) }, l4: { ...head6, sport: 53 } }));
    const later6 = run('tc_dsr_egress', buildFrame({ ip: { src: v6.backend, dst: v6.client, ext: frag(56, false) }, l4: rest }));
    assert.deepEqual(later6.out, buildFrame({ ip: { src: v6.vip, dst: v6.client, ext: frag(56, false) }, l4: rest }));
    assert.equal(counter(Reason.DSR_REPLY, Direction.EGRESS) - replied, 4n);

    // A later fragment of a datagram whose first fragment was not a DSR reply leaves untouched.
    const stranger = buildFrame({ ip: { src: v4.backend, dst: v4.client, id: 999, fragmentOffset: 56 }, l4: rest });
    assert.deepEqual(run('tc_dsr_egress', stranger).out, stranger);
  });

  test('a reply refreshes last_seen', () => {
    const key = flowKey({ src: v4.client, dst: v4.backend }, IPPROTO.TCP, 40001, 8080);
    const before = entryOf(key)?.lastSeen ?? 0n;
    run('tc_dsr_egress', buildFrame({ ip: { src: v4.backend, dst: v4.client }, l4: { proto: 'tcp', sport: 8080, dport: 40001, flags: TCP_FLAGS.ACK } }));
    assert.ok((entryOf(key)?.lastSeen ?? 0n) > before);
  });

  test('ICMP errors the backend sends about a DSR flow quote the service and come from it', () => {
    // port unreachable for the IPv4 UDP flow recorded above (client:40002 → backend:5353, service :53)
    const quoted = (dst: string, dport: number, src = v4.client): Buffer =>
      buildIp({ src, dst, ttl: 9 }, { proto: 'udp', sport: 40002, dport, payload: Buffer.from('query') });
    const error = buildFrame({ ip: { src: v4.backend, dst: v4.client }, l4: { proto: 'icmp', type: 3, code: 3, quote: quoted(v4.backend, 5353) } });
    const result = run('tc_dsr_egress', error);
    assert.equal(result.verdict, TC_ACT_OK);
    assert.deepEqual(result.out, buildFrame({ ip: { src: v4.vip, dst: v4.client }, l4: { proto: 'icmp', type: 3, code: 3, quote: quoted(v4.vip, 53) } }));

    const quoted6 = (dst: string, dport: number): Buffer =>
      buildIp({ src: v6.client, dst }, { proto: 'udp', sport: 40004, dport, payload: Buffer.from('hello over v6') });
    const error6 = buildFrame({ ip: { src: v6.backend, dst: v6.client }, l4: { proto: 'icmp', type: 1, code: 4, quote: quoted6(v6.backend, 5353) } });
    const icmp6Errors = counter(Reason.FWD_ICMP_ERROR, Direction.EGRESS);
    const result6 = run('tc_dsr_egress', error6);
    assert.deepEqual(result6.out, buildFrame({ ip: { src: v6.vip, dst: v6.client }, l4: { proto: 'icmp', type: 1, code: 4, quote: quoted6(v6.vip, 53) } }));
    assert.equal(counter(Reason.FWD_ICMP_ERROR, Direction.EGRESS) - icmp6Errors, 1n);
    for (const out of [result.out, result6.out]) assert.deepEqual(checksumErrors(out), []);
  });

  test('traffic that is not DSR passes untouched', () => {
    const frames = [
      buildFrame({ ip: { src: v4.client, dst: v4.backend }, l4: { proto: 'tcp', sport: 1000, dport: 8080 } }),
      buildFrame({ ip: { src: v4.client, dst: v4.backend, options: Buffer.from([0x94, 4, 0, 0]) }, l4: { proto: 'udp', sport: 1000, dport: 53 } }),
      buildFrame({ ip: { src: v6.client, dst: v6.backend, ext: [{ type: 'dstopts', options: Buffer.from([0x1e, 2, 0, 0]) }] }, l4: { proto: 'udp', sport: 1, dport: 2 } }),
      buildFrame({ ip: { src: v6.client, dst: v6.backend }, l4: { proto: 'icmp', type: 128, id: 1, seq: 1 } }),
    ];
    for (const frame of frames) assert.deepEqual(run('tc_dsr_ingress', frame), { verdict: TC_ACT_OK, out: frame });
    const unknownReplies = [
      buildFrame({ ip: { src: v4.backend, dst: v4.client }, l4: { proto: 'tcp', sport: 8080, dport: 40999, flags: TCP_FLAGS.ACK } }),
      buildFrame({ ip: { src: v4.backend, dst: v4.client }, l4: { proto: 'icmp', type: 3, code: 3, quote: buildIp({ src: v4.client, dst: v4.backend }, { proto: 'udp', sport: 9, dport: 9 }) } }),
      buildFrame({ ip: { src: v6.backend, dst: v6.client }, l4: { proto: 'icmp', type: 129, id: 1, seq: 1 } }),
    ];
    for (const frame of unknownReplies) assert.deepEqual(run('tc_dsr_egress', frame), { verdict: TC_ACT_OK, out: frame });
  });

  test('a malformed DSR option is dropped and counted', () => {
    const drops = counter(Reason.DROP_DSR_OPTION, Direction.INGRESS);
    const short4 = Buffer.from([0x9a, 6, 0, 80, 198, 18, 0, 0]); // length 6 instead of 8
    const frame4 = buildFrame({ ip: { src: v4.client, dst: v4.backend, options: short4 }, l4: { proto: 'tcp', sport: 40010, dport: 8080 } });
    assert.equal(run('tc_dsr_ingress', frame4).verdict, TC_ACT_SHOT);
    const frame6 = buildFrame({
      ip: { src: v6.client, dst: v6.backend, ext: [{ type: 'dstopts', options: dsrOptions6(v6.vip, 53, 16) }] },
      l4: { proto: 'udp', sport: 40011, dport: 5353 },
    });
    assert.equal(run('tc_dsr_ingress', frame6).verdict, TC_ACT_SHOT);
    assert.equal(counter(Reason.DROP_DSR_OPTION, Direction.INGRESS) - drops, 2n);
    assert.equal(entryOf(flowKey({ src: v4.client, dst: v4.backend }, IPPROTO.TCP, 40010, 8080)), undefined);
  });

  test('behind an in-band VLAN tag the flow is recorded and the option left for the stack to ignore', () => {
    const frame = buildFrame({ eth: { vlan: 5 }, ip: { src: v4.client, dst: v4.backend, options: dsrOption4(v4.vip, 80) }, l4: { proto: 'tcp', sport: 40020, dport: 8080 } });
    assert.deepEqual(run('tc_dsr_ingress', frame), { verdict: TC_ACT_OK, out: frame });
    assert.equal(entryOf(flowKey({ src: v4.client, dst: v4.backend }, IPPROTO.TCP, 40020, 8080))?.service, v4.vip);
  });
});

/**
 * A UDP socket made in a network namespace through libc, because Node's dgram cannot set IP options:
 * IP_OPTIONS / IPV6_DSTOPTS (root may set unknown option types) put the DSR option on every datagram,
 * as the load balancer would on a flow's first one.
 */
const libc = koffi.load('libc.so.6');
const sys = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  setsockopt: libc.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t len)'),
  sendto: libc.func('long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)'),
  recvfrom: libc.func('long recvfrom(int fd, void *buf, size_t len, int flags, void *addr, _Inout_ uint32_t *addrlen)'),
  close: libc.func('int close(int fd)'),
};
const SOCK_DGRAM = 2;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const IPPROTO_IP = 0;
const IP_OPTIONS = 4;
const IPPROTO_IPV6 = 41;
const IPV6_DSTOPTS = 59;

function sockaddr(address: string, port: number): Buffer {
  const v6 = address.includes(':');
  const sa = Buffer.alloc(v6 ? 28 : 16);
  sa.writeUInt16LE(v6 ? AF_INET6 : AF_INET, 0);
  sa.writeUInt16BE(port, 2);
  (v6 ? ipv6ToBytes(address) : ipv4ToBytes(address)).copy(sa, v6 ? 8 : 4);
  return sa;
}

function check(result: number, what: string): number {
  if (result < 0) throw new Error(`${what} failed: errno ${koffi.errno()}`);
  return result;
}

/** Send one datagram carrying the DSR option for vip:port to `to`, and wait ≤ 2 s for the answer. */
function exchangeWithDsrOption(ns: string, to: { address: string; port: number }, vip: { address: string; port: number }, payload: Buffer): { from: string; port: number; data: string } {
  const v6 = to.address.includes(':');
  const fd = inNetns(ns, () => check(sys.socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0) as number, 'socket'));
  try {
    const option = v6 ? Buffer.concat([Buffer.from([0, 2]), dsrOptions6(vip.address, vip.port)]) : dsrOption4(vip.address, vip.port);
    check(sys.setsockopt(fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_DSTOPTS : IP_OPTIONS, option, option.length) as number, 'setsockopt(DSR option)');
    const timeout = Buffer.alloc(16);
    timeout.writeBigInt64LE(2n, 0);
    check(sys.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, timeout, timeout.length) as number, 'setsockopt(SO_RCVTIMEO)');
    const target = sockaddr(to.address, to.port);
    check(sys.sendto(fd, payload, payload.length, 0, target, target.length) as number, 'sendto');
    const buf = Buffer.alloc(2048);
    const from = Buffer.alloc(28);
    const length = check(sys.recvfrom(fd, buf, buf.length, 0, from, [from.length]) as number, 'recvfrom');
    return {
      from: v6 ? bytesToIpv6(from, 8) : bytesToIpv4(from, 4),
      port: from.readUInt16BE(2),
      data: buf.subarray(0, length).toString(),
    };
  } finally {
    sys.close(fd);
  }
}

/** A UDP echo server on the backend (a child process, so the test's blocking recvfrom cannot starve it). */
function startEchoServer(ns: string, addresses: string[], port: number): { child: ChildProcess; ready: () => boolean } {
  const script = `
    const dgram = require('node:dgram');
    let bound = 0;
    for (const address of ${JSON.stringify(addresses)}) {
      const s = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4');
      s.on('message', (m, r) => s.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address));
      s.bind(${port}, address, () => { if (++bound === ${addresses.length}) console.log('ready'); });
    }
    setTimeout(() => process.exit(0), 60000).unref();`;
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let ready = false;
  child.stdout?.on('data', (chunk: Buffer) => {
    if (chunk.toString().includes('ready')) ready = true;
  });
  return { child, ready: () => ready };
}

describe('tc_dsr attached in network namespaces', () => {
  const topology = new Topology('dsr');
  const client = { v4: '198.18.2.1', v6: '2001:db8:2::1' };
  const backend = { v4: '198.18.2.2', v6: '2001:db8:2::2' };
  const service = { v4: '198.18.3.10', v6: '2001:db8:3::10', port: 80 };
  let clientNs = '';
  let backendNs = '';
  let obj: BpfObject | undefined;
  let server: ChildProcess | undefined;

  before(async () => {
    clientNs = topology.namespace('client');
    backendNs = topology.namespace('backend');
    topology.veth({ ns: clientNs, name: 'dsrc0' }, { ns: backendNs, name: 'dsrb0' });
    topology.address(clientNs, 'dsrc0', `${client.v4}/24`);
    topology.address(clientNs, 'dsrc0', `${client.v6}/64`);
    topology.address(backendNs, 'dsrb0', `${backend.v4}/24`);
    topology.address(backendNs, 'dsrb0', `${backend.v6}/64`);
    // The service addresses live on the load balancer; the client reaches them over its link.
    topology.exec(clientNs, 'ip', ['route', 'add', `${service.v4}/32`, 'dev', 'dsrc0']);
    topology.exec(clientNs, 'ip', ['route', 'add', `${service.v6}/128`, 'dev', 'dsrc0']);
    obj = BpfObject.load(OBJECT);
    const loaded = obj;
    writeDsrTrust(loaded.map('xlb_dsr_trust'), [`${service.v4}/32`, `${service.v6}/128`]);
    inNetns(backendNs, () => {
      attachTc('dsrb0', 'ingress', loaded.program('tc_dsr_ingress'));
      attachTc('dsrb0', 'egress', loaded.program('tc_dsr_egress'));
    });
    const echo = startEchoServer(backendNs, [backend.v4, backend.v6], 7000);
    server = echo.child;
    await waitFor(echo.ready, 10000, 'the echo server in the backend namespace');
  });

  after(() => {
    server?.kill();
    obj?.close();
    topology.destroy();
  });

  test('ordinary traffic passes: ping both ways over IPv4 and IPv6', () => {
    for (const address of [backend.v4, backend.v6]) {
      const out = topology.exec(clientNs, 'ping', ['-c', '2', '-i', '0.05', '-W', '1', address]);
      assert.match(out, /2 received/);
    }
    assert.match(topology.exec(backendNs, 'ping', ['-c', '1', '-W', '1', client.v4]), /1 received/);
  });

  // Software checksums first (the client verifies them), then offloaded (CHECKSUM_PARTIAL) ones.
  for (const offload of ['off', 'on'] as const) {
    test(`a datagram with the DSR option is answered from the service address (tx checksum offload ${offload})`, () => {
      topology.exec(backendNs, 'ethtool', ['-K', 'dsrb0', 'tx', offload]);
      const loaded = obj ?? assert.fail('object not loaded');
      const metrics = loaded.map('xlb_metrics');
      const count = (reason: number, direction: number): bigint => {
        const key = Buffer.alloc(4);
        key.writeUInt32LE(counterIndex(reason, direction));
        return metrics.sumPerCpuU64(key)[0] ?? 0n;
      };
      const received = count(Reason.DSR_RECEIVED, Direction.INGRESS);
      const replied = count(Reason.DSR_REPLY, Direction.EGRESS);
      for (const [to, vip] of [[backend.v4, service.v4], [backend.v6, service.v6]] as const) {
        const answer = exchangeWithDsrOption(clientNs, { address: to, port: 7000 }, { address: vip, port: service.port }, Buffer.from(`hi ${offload}`));
        assert.deepEqual(answer, { from: vip, port: service.port, data: `echo:hi ${offload}` });
      }
      assert.equal(count(Reason.DSR_RECEIVED, Direction.INGRESS) - received, 2n);
      assert.equal(count(Reason.DSR_REPLY, Direction.EGRESS) - replied, 2n);
      assert.equal(count(Reason.DROP_UNSUPPORTED, Direction.INGRESS) + count(Reason.DROP_UNSUPPORTED, Direction.EGRESS), 0n);
      const flows = [...loaded.map('xlb_dsr_ct').entries()].map(([k, v]) => ({ ...XlbTuple.decode(k), ...DsrEntry.decode(v) }));
      for (const [from, to, vip] of [[client.v4, backend.v4, service.v4], [client.v6, backend.v6, service.v6]] as const) {
        assert.ok(flows.some((f) => f.saddr === from && f.daddr === to && f.dport === 7000 && f.service === vip), `flow ${from} → ${to}:7000 recorded`);
      }
      const snmp = topology.exec(clientNs, 'cat', ['/proc/net/snmp']);
      const [names = '', values = ''] = snmp.split('\n').filter((l) => l.startsWith('Udp:'));
      const csumErrors = Number(values.split(/\s+/)[names.split(/\s+/).indexOf('InCsumErrors')]);
      assert.equal(csumErrors, 0, 'the client saw no UDP checksum errors');
    });
  }

  test('the programs detach and leave nothing behind', () => {
    inNetns(backendNs, () => {
      removeClsact('dsrb0');
      assert.equal(queryTc('dsrb0', 'ingress'), 0);
      assert.equal(queryTc('dsrb0', 'egress'), 0);
    });
    assert.doesNotMatch(topology.exec(backendNs, 'tc', ['qdisc', 'show', 'dev', 'dsrb0']), /clsact/);
    assert.match(topology.exec(clientNs, 'ping', ['-c', '1', '-W', '1', backend.v4]), /1 received/);
  });
});
