/**
 * A packet fuzzer for xdp_lb, seeded and bounded: frames built from the shapes the datapath meets
 * (client → VIP, backend → SNAT port, ICMP errors, fragments, IPv4 options, IPv6 extension headers,
 * spoofed DSR information), then mutated byte by byte. Whatever xdp_lb transmits must parse, carry
 * valid checksums when the input did, go to a backend or to the client, never carry DSR information
 * the load balancer did not add, fit the device's MTU, and have taken one hop off the TTL when forwarded. XLB_FUZZ_SEED / XLB_FUZZ_FRAMES reproduce
 * or lengthen a run.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BACKENDS, CLIENT, LbHarness, NODE, NAT_PORTS, XDP } from '../support/lb-harness.js';
import { IPPROTO, TCP_FLAGS, buildFrame, checksumErrors, dsrOption4, dsrOptions6, type FrameSpec, type Ipv6Ext, type L4Spec, type ParsedFrame } from '../support/packet.js';
import { Fuzz, mutate, safeParse, validChecksums } from '../support/fuzz.js';
import { mulberry32 } from '../support/prng.js';

const SEED = Number(process.env.XLB_FUZZ_SEED ?? 20261203);
const FRAMES = Number(process.env.XLB_FUZZ_FRAMES ?? 6000);
const DEVICE_MTU = 1500;
const ETH_HLEN = 14;

const VIP4 = '198.18.10.60';
const VIP6 = '2001:db8:10::60';
const ROUTER = { v4: '198.18.0.77', v6: '2001:db8::77' };
const backendsOf = (family: 'v4' | 'v6', port: number): { address: string; port: number }[] => BACKENDS.map((b) => ({ address: b[family], port }));
const SERVICES = {
  snat4: { frontend: { address: VIP4, port: 80, protocol: 'TCP' }, mode: 'snat', backends: backendsOf('v4', 8080) },
  dsr4: { frontend: { address: VIP4, port: 443, protocol: 'TCP' }, mode: 'dsr', backends: backendsOf('v4', 8443) },
  udp4: { frontend: { address: VIP4, port: 53, protocol: 'UDP' }, mode: 'snat', backends: backendsOf('v4', 5353) },
  udpdsr4: { frontend: { address: VIP4, port: 54, protocol: 'UDP' }, mode: 'dsr', backends: backendsOf('v4', 5353) },
  snat6: { frontend: { address: VIP6, port: 80, protocol: 'TCP' }, mode: 'snat', backends: backendsOf('v6', 8080) },
  dsr6: { frontend: { address: VIP6, port: 443, protocol: 'TCP' }, mode: 'dsr', backends: backendsOf('v6', 8443) },
  udp6: { frontend: { address: VIP6, port: 53, protocol: 'UDP' }, mode: 'hybrid', backends: backendsOf('v6', 5353) },
  nodeport: { frontend: { address: '0.0.0.0', port: 30080, protocol: 'TCP' }, type: 'NodePort', mode: 'dsr', backends: backendsOf('v4', 8080) },
  empty: { frontend: { address: VIP4, port: 81, protocol: 'TCP' }, backends: [] },
};
const PORTS = { v4: [80, 443, 53, 54, 81, 30080, 8080, 9], v6: [80, 443, 53, 9] };


/** One frame of a shape the datapath meets, before mutation. */
function shape(f: Fuzz): FrameSpec {
  const v6 = f.chance(0.4);
  const family = v6 ? 'v6' : 'v4';
  const backend = f.pick(BACKENDS);
  const l4 = (): L4Spec => {
    const sport = 1024 + f.int(64000);
    const dport = f.pick(PORTS[family]);
    // now and then as big as the MTU allows, or nearly: what the DSR option must still fit beside
    const payload = f.bytes(f.chance(0.1) ? 1380 + f.int(80) : f.int(64));
    switch (f.int(4)) {
      case 0:
        return { proto: 'udp', sport, dport, payload };
      case 1:
        return { proto: 'icmp', type: v6 ? 128 : 8, id: sport, seq: 1 };
      default:
        return { proto: 'tcp', sport, dport, flags: f.pick([TCP_FLAGS.SYN, TCP_FLAGS.ACK, TCP_FLAGS.SYN | TCP_FLAGS.ACK, TCP_FLAGS.FIN | TCP_FLAGS.ACK, TCP_FLAGS.RST, f.int(256)]), payload };
    }
  };
  const vip = v6 ? VIP6 : f.pick([VIP4, VIP4, NODE.v4]);
  const ip: FrameSpec['ip'] = { src: CLIENT[family], dst: vip, ttl: f.pick([64, 1, 0, 255]) };
  let body = l4();
  switch (f.int(5)) {
    case 0: // a backend's reply to one of our SNAT ports
      ip.src = backend[family];
      ip.dst = NODE[family];
      body = { proto: f.pick(['tcp', 'udp'] as const), sport: f.pick([8080, 8443, 5353]), dport: NAT_PORTS.min + f.int(NAT_PORTS.max - NAT_PORTS.min + 1), payload: f.bytes(f.int(40)) } as L4Spec;
      break;
    case 1: { // an ICMP error from a router, quoting a flow either way
      const quoted = buildFrame({ ip: f.chance(0.5) ? { src: CLIENT[family], dst: vip } : { src: backend[family], dst: NODE[family] }, l4: l4() }).subarray(ETH_HLEN);
      ip.src = ROUTER[family];
      ip.dst = f.chance(0.5) ? vip : NODE[family];
      body = { proto: 'icmp', type: v6 ? f.pick([1, 2, 3]) : f.pick([3, 11]), code: f.int(5), mtu: 1280 + f.int(300), quote: quoted.subarray(0, f.chance(0.5) ? quoted.length : 28 + f.int(40)) };
      break;
    }
    default:
      break;
  }
  if (!v6 && f.chance(0.2)) ip.options = f.chance(0.5) ? dsrOption4(f.pick([VIP4, ROUTER.v4]), f.int(65536)) : Buffer.from([1, 1, 1, 0]);
  if (v6 && f.chance(0.2)) {
    const ext: Ipv6Ext[] = [f.chance(0.5) ? { type: 'dstopts', options: dsrOptions6(f.pick([VIP6, ROUTER.v6]), f.int(65536)) } : { type: 'hopopts', options: Buffer.from([1, 4, 0, 0, 0, 0]) }];
    ip.ext = ext;
  }
  if (f.chance(0.1)) Object.assign(ip, v6 ? { ext: [...(ip.ext ?? []), { type: 'fragment', id: f.int(1 << 16), offset: f.pick([0, 8, 1024]), more: f.chance(0.5) }] } : { id: f.int(1 << 16), moreFragments: f.chance(0.5), fragmentOffset: f.pick([0, 8, 1024]) });
  return { eth: { src: CLIENT.mac, dst: '02:00:00:00:00:02', ...(f.chance(0.03) ? { vlan: 1 + f.int(4094) } : {}) }, ip, l4: body };
}

/** Bytes changed the way a broken or hostile sender changes them. */
/** DSR information in a frame: {address, port} of each IPv4 0x9A option or IPv6 0x1B destination option. */
function dsrInfo(parsed: ParsedFrame): { address: string; port: number }[] {
  const found: { address: string; port: number }[] = [];
  const options = parsed.ip.options;
  for (let i = 0; i < options.length;) {
    const type = options[i] ?? 0;
    if (type === 0) break;
    if (type === 1) {
      i += 1;
      continue;
    }
    const length = options[i + 1] ?? 0;
    if (type === 0x9a && length === 8 && i + 8 <= options.length) found.push({ address: [...options.subarray(i + 4, i + 8)].join('.'), port: options.readUInt16BE(i + 2) });
    if (length < 2) break;
    i += length;
  }
  for (const ext of parsed.ip.ext) {
    if (ext.type === IPPROTO.DSTOPTS && ext.bytes[2] === 0x1b && ext.bytes.length >= 22) {
      const words = Array.from({ length: 8 }, (_, w) => ext.bytes.readUInt16BE(4 + 2 * w).toString(16));
      found.push({ address: words.join(':'), port: ext.bytes.readUInt16BE(20) });
    }
  }
  return found;
}

describe('xdp_lb under a packet fuzzer', () => {
  let h: LbHarness;
  before(() => {
    h = LbHarness.create('fuzz');
    h.install(SERVICES);
  });
  after(() => h.destroy());

  test(`${FRAMES} frames (seed ${SEED}): everything transmitted parses, checks, goes to a backend or the client, carries only DSR information xdp_lb added, and fits the MTU`, () => {
    const f = new Fuzz(mulberry32(SEED));
    // Backends, and every address a frame came from: a client (a sender with a mutated source is one too).
    const destinations = new Set([CLIENT.v4, CLIENT.v6, ...BACKENDS.flatMap((b) => [b.v4, b.v6])]);
    const canonical = (address: string): string => (address.includes(':') ? new URL(`http://[${address}]`).hostname.slice(1, -1) : address);
    const problems: string[] = [];
    const verdicts = new Map<number, number>();
    for (let n = 0; n < FRAMES && problems.length < 5; n++) {
      const built = buildFrame(shape(f));
      const input = f.chance(0.6) ? mutate(f, built) : built;
      if (input.length > ETH_HLEN + DEVICE_MTU) continue; // no device receives it
      const result = h.run(input);
      const sender = safeParse(input)?.ip.src;
      if (sender !== undefined) destinations.add(canonical(sender));
      verdicts.set(result.retval, (verdicts.get(result.retval) ?? 0) + 1);
      if (result.retval !== XDP.TX && result.retval !== XDP.REDIRECT) continue;
      const what = `frame ${n} (${process.env.XLB_FUZZ_VERBOSE ? input.toString('hex') : `${input.length} bytes`})`;
      const out = safeParse(result.out);
      if (!out) {
        problems.push(`${what}: transmitted a frame that does not parse: ${result.out.toString('hex')}`);
        continue;
      }
      if (result.out.length > ETH_HLEN + (out.vlan === undefined ? 0 : 4) + DEVICE_MTU) problems.push(`${what}: transmitted ${result.out.length} bytes, over the MTU`);
      if (!destinations.has(canonical(out.ip.dst))) problems.push(`${what}: transmitted to ${out.ip.dst}, neither a backend nor the client`);
      if (validChecksums(input) && !validChecksums(result.out)) problems.push(`${what}: checksums broken on the way: ${checksumErrors(result.out).join('; ')}`);
      const added = dsrInfo(out);
      const inputInfo = safeParse(input);
      const answered = inputInfo !== undefined && canonical(out.ip.dst) === canonical(inputInfo.ip.src);
      if (inputInfo && !answered && out.ip.ttl !== inputInfo.ip.ttl - 1) problems.push(`${what}: forwarded with TTL ${out.ip.ttl}, in with ${inputInfo.ip.ttl}`);
      if (added.length > 0) {
        const had = inputInfo ? dsrInfo(inputInfo) : [{ address: '?', port: 0 }];
        const own = added.length === 1 && inputInfo && canonical(added[0]?.address ?? '') === canonical(inputInfo.ip.dst) && added[0]?.port === inputInfo.ip.l4?.dport;
        if (had.length > 0 || !own) problems.push(`${what}: transmitted DSR information it did not add: ${JSON.stringify(added)}`);
      }
    }
    assert.deepEqual(problems, []);
    // The run exercised the transmit paths, not only refusals.
    assert.ok((verdicts.get(XDP.TX) ?? 0) > FRAMES / 20, `verdicts: ${JSON.stringify([...verdicts])}`);
  });
});
