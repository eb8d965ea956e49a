/**
 * A packet fuzzer for tc_pod (service translation and identity policy) and tc_edt_egress, seeded and
 * bounded. tc_pod: frames of the shapes a pod's veth carries (pod → ClusterIP, backend replies, hairpins,
 * ICMP errors quoting translated packets, IPv6 ND and MLD, fragments, IPv4 options, IPv6 extension
 * headers, VLAN tags), mutated byte by byte, through tc_pod_ingress and tc_pod_egress on a device with
 * no endpoint, with a deny-all endpoint, and with one allowing a single identity and port. The verdict
 * is OK, SHOT or a redirect; what comes out changed parses, keeps its checksums and carries only our
 * translations; under deny-all nothing that opens a connection passes but what policy.h always
 * allows; under the single rule only that rule's connections; every policy drop counted once, with a
 * drop. tc_edt_egress: any bytes, rated or not: no verdict or SHOT, the data untouched, departure times
 * only after now and spaced by the rate. XLB_FUZZ_SEED / XLB_FUZZ_FRAMES reproduce or lengthen a run.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EdtDatapath } from '../../agent/edt-datapath.js';
import { PodDatapath } from '../../agent/pod-datapath.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { LbDatapath } from '../../lb/datapath/lb-datapath.js';
import { PolicyMapWriter } from '../../lb/datapath/policy-writer.js';
import { POLICY_MAPS } from '../../lb/layouts-policy.js';
import { EdtRate, edtKey } from '../../lb/layouts-edt.js';
import { ReservedIdentity, type PolicyRule } from '../../lb/policy/types.js';
import { counterIndex, Direction, Reason } from '../../lb/reasons.js';
import { validateService, type Service } from '../../lb/service.js';
import { IPPROTO, TCP_FLAGS, buildFrame, buildIp, checksumErrors, type FrameSpec, type L4Spec, type ParsedFrame, type ParsedIp } from '../support/packet.js';
import { TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT, TC_ACT_UNSPEC, NAT_PORTS, POD_MAC, HOST_MAC, loadPodHarness } from '../support/pod-harness.js';
import { Fuzz, mutate, safeParse, validChecksums } from '../support/fuzz.js';
import { mulberry32 } from '../support/prng.js';

const SEED = Number(process.env.XLB_FUZZ_SEED ?? 20261203);
const FRAMES = Number(process.env.XLB_FUZZ_FRAMES ?? 4000);
/** Of FRAMES: each of tc_pod's three endpoint cases a quarter, tc_edt_egress the rest. */
const POD_FRAMES = Math.floor(FRAMES / 4);
const ETH_HLEN = 14;
/** The device a test run's skb is on (the loopback): where the endpoint is registered. */
const DEVICE = 1;
const ID = { pod: 256, client: 257, other: 258, backendA: 259, backendB: 260 } as const;

const FAMILIES = {
  v4: { pod: '198.18.20.2', vip: '198.18.30.10', node: '198.18.0.2', client: '198.18.40.2', other: '198.18.40.3', world: '198.18.60.9', router: '198.18.99.1', backends: ['198.18.21.11', '198.18.21.12', '198.18.21.13'] },
  v6: { pod: '2001:db8:20::2', vip: '2001:db8:30::10', node: '2001:db8::2', client: '2001:db8:40::2', other: '2001:db8:40::3', world: '2001:db8:60::9', router: '2001:db8:99::1', backends: ['2001:db8:21::11', '2001:db8:21::12', '2001:db8:21::13'] },
} as const;
type FamilyName = keyof typeof FAMILIES;
type Family = (typeof FAMILIES)[FamilyName];

/** Frontends of each family's service address: protocol, port, backends (address, port). */
const frontendsOf = (f: Family): { proto: number; port: number; backends: { address: string; port: number }[] }[] => [
  { proto: IPPROTO.TCP, port: 80, backends: f.backends.map((address) => ({ address, port: 8080 })) },
  { proto: IPPROTO.UDP, port: 53, backends: f.backends.map((address) => ({ address, port: 5353 })) },
  { proto: IPPROTO.TCP, port: 81, backends: [{ address: f.pod, port: 8080 }] }, // the pod itself: hairpin
  { proto: IPPROTO.UDP, port: 81, backends: [{ address: f.pod, port: 5353 }] },
  { proto: IPPROTO.TCP, port: 82, backends: [] }, // answered with port unreachable
];
const SERVICE_PORTS = [80, 53, 81, 82, 9];

function services(): Map<string, Service> {
  const out = new Map<string, Service>();
  for (const [name, f] of Object.entries(FAMILIES)) {
    for (const fe of frontendsOf(f)) {
      const id = `${name}-${fe.proto}-${fe.port}`;
      const raw = { type: 'ClusterIP', frontend: { address: f.vip, port: fe.port, protocol: fe.proto === IPPROTO.TCP ? 'TCP' : 'UDP' }, backends: fe.backends };
      out.set(id, validateService(raw, id, { defaultMode: 'snat', clusterIP: true }));
    }
  }
  return out;
}

/** A flow tc_pod translated, as the pod sees it and as the wire does: what replies and ICMP errors are made of. */
interface Translated {
  family: FamilyName;
  proto: number;
  podPort: number;
  backend: string;
  backendPort: number;
  source: string; // the flow's source on the wire: the pod, or the service address (hairpin)
  sourcePort: number;
}

type Program = 'tc_pod_ingress' | 'tc_pod_egress';

/** One frame of a shape the pod's veth carries, before mutation, and the program it goes through. */
function shape(f: Fuzz, recent: Translated[]): { program: Program; spec: FrameSpec } {
  const name: FamilyName = f.chance(0.4) ? 'v6' : 'v4';
  const fam = FAMILIES[name];
  const v6 = name === 'v6';
  const payload = (): Buffer => f.bytes(f.chance(0.1) ? 1000 + f.int(300) : f.int(48));
  const flags = (): number => f.pick([TCP_FLAGS.SYN, TCP_FLAGS.SYN, TCP_FLAGS.ACK, TCP_FLAGS.SYN | TCP_FLAGS.ACK, TCP_FLAGS.FIN | TCP_FLAGS.ACK, TCP_FLAGS.RST, f.int(256)]);
  const ports = (sport: number, dport: number, proto = f.pick(['tcp', 'tcp', 'udp'] as const)): L4Spec =>
    proto === 'tcp' ? { proto, sport, dport, flags: flags(), payload: payload() } : { proto, sport, dport, payload: payload() };
  const ephemeral = (): number => 30000 + f.int(30000);
  const flow = recent.length > 0 && f.chance(0.8) ? recent[f.int(recent.length)] : undefined;
  const matching = flow && flow.family === name ? flow : undefined;
  const protoName = (proto: number): 'tcp' | 'udp' => (proto === IPPROTO.TCP ? 'tcp' : 'udp');
  let program: Program = 'tc_pod_ingress';
  let ip: FrameSpec['ip'] = { src: fam.pod, dst: fam.vip };
  let l4: L4Spec;
  switch (f.int(10)) {
    case 0:
    case 1:
    case 2: // the pod to a service, or to a port no frontend has
      l4 = f.chance(0.1) ? { proto: 'icmp', type: v6 ? 128 : 8, id: ephemeral(), seq: 1 } : ports(ephemeral(), f.pick(SERVICE_PORTS));
      break;
    case 3: // the pod straight to a peer
      ip = { src: fam.pod, dst: f.pick([fam.client, fam.other, fam.world, fam.node, ...fam.backends]) };
      l4 = ports(ephemeral(), f.pick([8080, 5353, 443]));
      break;
    case 4: // a backend's reply to one of the pod's flows (or to no flow), or the pod's server answering a hairpin
      if (matching && matching.source !== fam.pod) {
        ip = { src: fam.pod, dst: fam.vip };
        l4 = ports(matching.backendPort, matching.sourcePort, protoName(matching.proto));
      } else {
        program = 'tc_pod_egress';
        ip = { src: matching?.backend ?? f.pick(fam.backends), dst: fam.pod };
        l4 = ports(matching?.backendPort ?? f.pick([8080, 5353]), matching?.podPort ?? ephemeral(), matching ? protoName(matching.proto) : undefined);
      }
      break;
    case 5: // a peer opening a connection to the pod
      program = 'tc_pod_egress';
      ip = { src: f.pick([fam.client, fam.client, fam.other, fam.world, fam.node, fam.backends[0]]), dst: fam.pod };
      l4 = f.chance(0.1) ? { proto: 'icmp', type: v6 ? 128 : 8, id: ephemeral(), seq: 1 } : ports(ephemeral(), f.pick([8080, 8080, 5353, 22]));
      break;
    case 6:
    case 7: { // an ICMP error to the pod quoting one of its translated flows (or another), from the backend or a router
      program = 'tc_pod_egress';
      const backend = matching?.backend ?? f.pick(fam.backends);
      const quoted = buildIp({ src: matching?.source ?? fam.pod, dst: backend }, ports(matching?.sourcePort ?? ephemeral(), matching?.backendPort ?? 8080, matching ? protoName(matching.proto) : undefined));
      ip = { src: f.chance(0.5) ? backend : fam.router, dst: fam.pod };
      l4 = { proto: 'icmp', type: v6 ? f.pick([1, 2, 3]) : f.pick([3, 11]), code: f.int(5), mtu: 1280 + f.int(200), quote: quoted.subarray(0, f.chance(0.5) ? quoted.length : (v6 ? 40 : 20) + 8 + f.int(12)) };
      break;
    }
    case 8: // IPv6 neighbour discovery and MLD, either way; IPv4: the pod's own ICMP error
      if (v6) {
        program = f.chance(0.5) ? 'tc_pod_egress' : 'tc_pod_ingress';
        ip = program === 'tc_pod_egress' ? { src: f.pick(['fe80::1', fam.node, fam.client]), dst: f.pick([fam.pod, 'ff02::1:ff00:2']) } : { src: fam.pod, dst: f.pick(['ff02::1', 'ff02::16', fam.client]) };
        l4 = { proto: 'icmp', type: f.pick([130, 131, 133, 134, 135, 136, 137, 143]), code: 0, payload: f.bytes(16 + 8 * f.int(3)) };
      } else {
        ip = { src: fam.pod, dst: f.pick([fam.client, fam.backends[1]]) };
        l4 = { proto: 'icmp', type: 3, code: 3, quote: buildIp({ src: ip.dst, dst: fam.pod }, ports(8080, ephemeral())) };
      }
      break;
    default: // the pod's flow to a service again: its later packets
      if (matching && matching.source === fam.pod) l4 = ports(matching.podPort, f.pick(SERVICE_PORTS), protoName(matching.proto));
      else l4 = ports(ephemeral(), f.pick([80, 53, 81]));
      break;
  }
  if (!v6 && f.chance(0.15)) ip.options = f.pick([Buffer.from([1, 1, 1, 0]), Buffer.from([148, 4, 0, 0])]);
  // now and then more extension headers than tc_pod follows (XLB_IPV6_MAX_EXT_HEADERS), which the stack still takes
  if (v6 && f.chance(0.15)) ip.ext = Array.from({ length: f.chance(0.3) ? 1 + f.int(7) : 1 }, () => ({ type: f.pick(['hopopts', 'dstopts'] as const), options: Buffer.from([1, 4, 0, 0, 0, 0]) }));
  if (f.chance(0.1)) {
    const fragment = { id: f.int(1 << 16), offset: f.pick([0, 0, 8, 1024]), more: f.chance(0.6) };
    if (v6) ip.ext = [...(ip.ext ?? []), { type: 'fragment', ...fragment }];
    else Object.assign(ip, { id: fragment.id, moreFragments: fragment.more, fragmentOffset: fragment.offset });
  }
  const eth = program === 'tc_pod_ingress' ? { src: POD_MAC, dst: HOST_MAC } : { src: HOST_MAC, dst: POD_MAC };
  return { program, spec: { eth: { ...eth, ...(f.chance(0.03) ? { vlan: 1 + f.int(4094) } : {}) }, ip, l4 } };
}

/** Bytes changed the way a broken or hostile sender changes them. */
/** BPF_PROG_TEST_RUN refuses an IP frame shorter than its IP header (it pulls that much first). */
function refusedByTestRun(frame: Buffer): boolean {
  const type = frame.readUInt16BE(12);
  return (type === 0x0800 && frame.length < ETH_HLEN + 20) || (type === 0x86dd && frame.length < ETH_HLEN + 40);
}

const isIcmpError = (ip: ParsedIp): boolean =>
  ip.l4?.icmpType !== undefined && (ip.version === 4 ? ip.proto === IPPROTO.ICMP && [3, 11, 12].includes(ip.l4.icmpType) : ip.proto === IPPROTO.ICMPV6 && ip.l4.icmpType >= 1 && ip.l4.icmpType <= 4);
/** IPv6 neighbour discovery and MLD (policy_is_link_control). */
const isLinkControl = (ip: ParsedIp): boolean => ip.version === 6 && ip.proto === IPPROTO.ICMPV6 && ip.l4?.icmpType !== undefined && ((ip.l4.icmpType >= 130 && ip.l4.icmpType <= 137) || ip.l4.icmpType === 143);

/**
 * An IP packet the stack would take whole: right after the Ethernet header, its L4 header complete, not
 * a later fragment (those follow their first). The frames whose policy is known.
 */
function wellFormed(parsed: ParsedFrame | undefined): ParsedIp | undefined {
  if (!parsed || parsed.vlan !== undefined) return undefined;
  const { ip } = parsed;
  const l4 = ip.l4;
  if (!l4 || (ip.version === 4 && ip.headerLength < 20)) return undefined;
  const end = ip.offset + ip.totalLength;
  const headerLength = ip.proto === IPPROTO.TCP ? 20 : [IPPROTO.UDP, IPPROTO.SCTP, IPPROTO.ICMP, IPPROTO.ICMPV6].includes(ip.proto as 17) ? 8 : 0;
  return l4.offset + headerLength <= end ? ip : undefined;
}

/** A connection's key seen from the pod (policy_ct_key): pod:port → peer:port. */
const connectionKey = (ip: ParsedIp, fromPod: boolean): string => {
  const ports = [ip.l4?.sport ?? 0, ip.l4?.dport ?? 0];
  const echo = ip.l4?.echoId !== undefined && (ip.proto === IPPROTO.ICMP || ip.proto === IPPROTO.ICMPV6) ? [ip.l4.echoId, ip.l4.echoId] : ports;
  const [sport, dport] = echo;
  return fromPod ? `${ip.proto} ${ip.src}:${sport} > ${ip.dst}:${dport}` : `${ip.proto} ${ip.dst}:${dport} > ${ip.src}:${sport}`;
};

/** The frame with what a translation may change zeroed: addresses, ports, checksums (an ICMP error's quote too), and the Ethernet addresses of a frame sent back. */
function translatable(frame: Buffer, ip: ParsedIp, redirected: boolean): Buffer {
  const out = Buffer.from(frame);
  if (redirected) out.fill(0, 0, 12);
  const zero = (from: number, to: number): void => {
    out.fill(0, Math.min(from, out.length), Math.min(to, out.length));
  };
  const ipFields = (at: ParsedIp): void => (at.version === 4 ? zero(at.offset + 10, at.offset + 20) : zero(at.offset + 8, at.offset + 40));
  ipFields(ip);
  const l4 = ip.l4;
  if (!l4) return out;
  zero(l4.offset, l4.offset + 4); // ports (ICMP: type, code, checksum)
  if (l4.proto === IPPROTO.TCP) zero(l4.offset + 16, l4.offset + 18);
  if (l4.proto === IPPROTO.UDP) zero(l4.offset + 6, l4.offset + 8);
  if (l4.inner) {
    ipFields(l4.inner);
    zero(l4.inner.offset + l4.inner.headerLength, l4.inner.offset + l4.inner.headerLength + 8);
  }
  return out;
}

const rule = (direction: PolicyRule['direction'], identity: number, protocol: PolicyRule['protocol'], port: number): PolicyRule => ({ direction, identity, protocol, port, portPrefixLen: 16 });
const CASES = [
  { name: '(a) no endpoint on the device', endpoint: undefined },
  { name: '(b) an endpoint denying everything both ways', endpoint: { identity: ID.pod, ingressEnforced: true, egressEnforced: true, rules: [] } },
  {
    name: '(c) an endpoint allowing one identity and port each way',
    endpoint: { identity: ID.pod, ingressEnforced: true, egressEnforced: true, rules: [rule('ingress', ID.client, 6, 8080), rule('egress', ID.backendA, 6, 8080)] },
  },
] as const;

describe('tc_pod and tc_edt_egress under a packet fuzzer', () => {
  let bpffs: TempBpffs;
  let lb: LbDatapath;
  let pods: PodDatapath;
  let writer: PolicyMapWriter;

  before(() => {
    ({ bpffs, lb, pods } = loadPodHarness('fuzz-pod', { v4: FAMILIES.v4.node, v6: FAMILIES.v6.node }, services()));
    writer = PolicyMapWriter.open(pods.object);
    const host = (address: string): string => `${address}/${address.includes(':') ? 128 : 32}`;
    writer.setIpcache(
      Object.values(FAMILIES).flatMap((f) => [
        { cidr: host(f.pod), identity: ID.pod },
        { cidr: host(f.client), identity: ID.client },
        { cidr: host(f.other), identity: ID.other },
        { cidr: host(f.node), identity: ReservedIdentity.Host },
        { cidr: host(f.backends[0]), identity: ID.backendA },
        { cidr: host(f.backends[1]), identity: ID.backendB },
        { cidr: host(f.backends[2]), identity: ID.backendB },
      ]),
    );
  });

  after(async () => {
    await pods?.close();
    lb?.close();
    bpffs?.remove();
  });

  /** Every flow forgotten (tc_pod's conntrack, fragments, the policy's connections): each case starts clean. */
  const forgetFlows = (): void => {
    lb.conntrack.flush();
    const frags = lb.map('xlb_frag');
    frags.deleteBatch([...frags.keys()]);
    const connections = pods.object.map(POLICY_MAPS.conntrack);
    for (const key of [...connections.keys()]) connections.delete(key);
  };
  const counter = (reason: number, direction: number): bigint => {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(counterIndex(reason, direction));
    return lb.map('xlb_metrics').sumPerCpuU64(key)[0] ?? 0n;
  };
  /** Policy drops counted by each hook, both reasons (a hairpin denied by the pod's ingress is counted at tc ingress). */
  const policyDrops = (): { tc_pod_ingress: bigint; tc_pod_egress: bigint } => {
    const both = (direction: number): bigint => counter(Reason.DROP_POLICY_EGRESS, direction) + counter(Reason.DROP_POLICY_INGRESS, direction);
    return { tc_pod_ingress: both(Direction.INGRESS), tc_pod_egress: both(Direction.EGRESS) };
  };

  /** Whether out is one of tc_pod's translations of input (parsed both), and nothing else changed. */
  const translationProblem = (program: Program, input: ParsedIp, out: ParsedIp, inBytes: Buffer, outBytes: Buffer, redirected: boolean): string | undefined => {
    const fam = FAMILIES[input.version === 4 ? 'v4' : 'v6'];
    const frontends = frontendsOf(fam);
    const serves = (backend: string, port: number, proto: number): { port: number } | undefined => frontends.find((fe) => fe.proto === proto && fe.backends.some((b) => b.address === backend && b.port === port));
    const o = out.l4;
    const i = input.l4;
    if (!o || !i) return 'no L4 header';
    if (isIcmpError(out) && !isIcmpError(input)) {
      // a service without backends answered: port unreachable from the service, back to the pod
      const fe = frontends.find((e) => e.proto === input.proto && e.port === i.dport);
      if (program !== 'tc_pod_ingress' || input.dst !== fam.vip || fe?.backends.length !== 0) return 'an ICMP error made for what is not a service without backends';
      return out.src === input.dst && out.dst === input.src && out.l4?.inner?.src === input.src ? undefined : `reject from ${out.src} to ${out.dst}`;
    }
    if (outBytes.length !== inBytes.length) return `length ${inBytes.length} → ${outBytes.length}`;
    // a frame sent back into the pod (hairpin) is addressed to it: the Ethernet addresses swapped
    const swapped = Buffer.concat([inBytes.subarray(6, 12), inBytes.subarray(0, 6)]);
    if (redirected && !outBytes.subarray(0, 12).equals(swapped)) return 'sent back with Ethernet addresses not swapped';
    if (!translatable(inBytes, input, redirected).equals(translatable(outBytes, out, redirected))) return `bytes other than addresses, ports and checksums changed: ${inBytes.toString('hex')} → ${outBytes.toString('hex')}`;
    if (out.proto !== input.proto) return 'protocol changed';
    if (isIcmpError(input)) {
      // its quote turned back into what the pod sent; from the service when the backend sent it
      const quote = out.l4?.inner;
      const was = i.inner;
      if (program !== 'tc_pod_egress' || out.dst !== input.dst || !quote || !was) return 'an ICMP error rewritten on the wrong way';
      if (out.src !== input.src && out.src !== fam.vip) return `ICMP error source ${input.src} → ${out.src}`;
      // ports the quote's own length leaves out (or a later IPv4 fragment's payload) are still taken for its ports
      const laterFragment = was.fragmentOffset !== 0 || (was.l4?.sport ?? 0) + (was.l4?.dport ?? 0) === 0;
      const fe = frontends.find((e) => e.proto === was.proto && e.backends.some((b) => b.address === was.dst && (laterFragment || b.port === was.l4?.dport)));
      if (quote.src !== input.dst || quote.dst !== fam.vip || !fe || (!laterFragment && quote.l4?.dport !== fe.port)) return `quote ${was.src}:${was.l4?.sport} > ${was.dst}:${was.l4?.dport} → ${quote.src}:${quote.l4?.sport} > ${quote.dst}:${quote.l4?.dport}`;
      return undefined;
    }
    const tuple = `${input.src}:${i.sport} > ${input.dst}:${i.dport} → ${out.src}:${o.sport} > ${out.dst}:${o.dport}`;
    if (program === 'tc_pod_ingress') {
      const frontend = frontends.find((fe) => fe.proto === input.proto && fe.port === i.dport && input.dst === fam.vip);
      const toBackend = frontend?.backends.some((b) => b.address === out.dst && b.port === o.dport);
      const sourceKept = out.src === input.src && o.sport === i.sport;
      const sourceService = out.src === fam.vip && o.sport >= NAT_PORTS.min && o.sport <= NAT_PORTS.max && out.dst === fam.pod;
      if (toBackend && (sourceKept || sourceService)) return undefined;
      // the pod answering its own hairpin: from the service it asked, to the port it asked from
      const answered = serves(input.src, i.sport, input.proto);
      if (input.dst === fam.vip && out.src === fam.vip && answered && o.sport === answered.port && out.dst === fam.pod) return undefined;
      return `not a translation of ours: ${tuple}`;
    }
    const replied = serves(input.src, i.sport, input.proto);
    if (replied && out.src === fam.vip && o.sport === replied.port && out.dst === input.dst && o.dport === i.dport) return undefined;
    return `not a reply translation of ours: ${tuple}`;
  };

  CASES.forEach((fuzzCase, index) => {
    test(`tc_pod, ${fuzzCase.name}: ${POD_FRAMES} frames (seed ${SEED + index}) keep verdicts, translations, checksums and policy`, () => {
      writer.prune(new Set());
      forgetFlows();
      if (fuzzCase.endpoint) writer.setEndpoint(DEVICE, { ...fuzzCase.endpoint, rules: [...fuzzCase.endpoint.rules] });
      const f = new Fuzz(mulberry32(SEED + index));
      const recent: Translated[] = [];
      /** Connections the policy let open (case c), by their key seen from the pod. */
      const opened = new Set<string>();
      let policyDenied = 0;
      const problems: string[] = [];
      const verdicts = new Map<string, number>();
      try {
        for (let n = 0; n < POD_FRAMES && problems.length < 5; n++) {
          const { program, spec } = shape(f, recent);
          const built = buildFrame(spec);
          const input = f.chance(0.5) ? mutate(f, built, 1) : built;
          if (refusedByTestRun(input)) continue;
          const what = `frame ${n} through ${program} (${process.env.XLB_FUZZ_VERBOSE ? input.toString('hex') : `${input.length} bytes`})`;
          const drops = policyDrops();
          let result: { retval: number; data: Buffer };
          try {
            result = pods.object.program(program).testRun({ data: input });
          } catch (error) {
            problems.push(`${what}: the run failed: ${(error as Error).message}`);
            continue;
          }
          const { retval } = result;
          const out = result.data;
          verdicts.set(`${program} ${retval}`, (verdicts.get(`${program} ${retval}`) ?? 0) + 1);
          if (retval !== TC_ACT_OK && retval !== TC_ACT_SHOT && retval !== TC_ACT_REDIRECT) problems.push(`${what}: verdict ${retval}`);
          const dropped = policyDrops();
          const other: Program = program === 'tc_pod_ingress' ? 'tc_pod_egress' : 'tc_pod_ingress';
          const counted = dropped[program] - drops[program];
          if (dropped[other] !== drops[other] || counted > 1n || (counted === 1n && retval !== TC_ACT_SHOT)) problems.push(`${what}: policy drops counted ${counted} (${other}: ${dropped[other] - drops[other]}) for verdict ${retval}`);
          if (!fuzzCase.endpoint && counted !== 0n) problems.push(`${what}: a policy drop without an endpoint`);

          const parsedIn = safeParse(input);
          const parsedOut = safeParse(out);
          const changed = !out.equals(input);
          if (retval !== TC_ACT_SHOT && changed && parsedIn) {
            if (!parsedOut) problems.push(`${what}: changed into a frame that does not parse: ${out.toString('hex')}`);
            else {
              // a quoted TCP checksum covers bytes past the quote's first 8: left as it was (receivers ignore it)
              const broken = validChecksums(input) ? checksumErrors(out).filter((e) => !e.includes('quoted TCP')) : [];
              if (broken.length > 0) problems.push(`${what}: checksums broken on the way: ${broken.join('; ')}`);
              const wrong = translationProblem(program, parsedIn.ip, parsedOut.ip, input, out, retval === TC_ACT_REDIRECT);
              if (wrong) problems.push(`${what}: ${wrong}`);
            }
          }
          // what tc_pod translated: the flows later shapes reply to and quote
          if (retval !== TC_ACT_SHOT && changed && program === 'tc_pod_ingress' && parsedIn?.ip.l4 && parsedOut?.ip.l4 && !isIcmpError(parsedOut.ip) && parsedIn.ip.dst === FAMILIES[parsedIn.ip.version === 4 ? 'v4' : 'v6'].vip) {
            recent.push({ family: parsedIn.ip.version === 4 ? 'v4' : 'v6', proto: parsedOut.ip.proto, podPort: parsedIn.ip.l4.sport, backend: parsedOut.ip.dst, backendPort: parsedOut.ip.l4.dport, source: parsedOut.ip.src, sourcePort: parsedOut.ip.l4.sport });
            if (recent.length > 32) recent.shift();
          }

          // Policy: what a well-formed frame that passed must have been allowed by.
          const ip = wellFormed(parsedIn);
          if (!fuzzCase.endpoint || !ip) continue;
          const fromPod = program === 'tc_pod_ingress';
          const fam = FAMILIES[ip.version === 4 ? 'v4' : 'v6'];
          const alwaysAllowed = (!fromPod && ip.src === fam.node) || isIcmpError(ip) || isLinkControl(ip);
          const rejected = retval !== TC_ACT_SHOT && parsedOut !== undefined && changed && isIcmpError(parsedOut.ip) && !isIcmpError(ip);
          if (alwaysAllowed || rejected) continue;
          if (retval === TC_ACT_SHOT) {
            // deny-all: every connection is new and refused, by the policy and counted as its drop
            if (fuzzCase.endpoint.rules.length === 0 && counted !== 1n) problems.push(`${what}: dropped under ${fuzzCase.name}, ${counted} policy drops counted`);
            if (counted === 1n) policyDenied++;
            continue;
          }
          const onWire = parsedOut?.ip ?? ip; // from the pod, the policy decides for the backend chosen
          const keys = [connectionKey(ip, fromPod), connectionKey(onWire, fromPod)];
          const allowedNew = fuzzCase.endpoint.rules.length > 0 && onWire.proto === IPPROTO.TCP && (fromPod ? onWire.dst === fam.backends[0] && onWire.l4?.dport === 8080 : ip.src === fam.client && ip.l4?.dport === 8080);
          if (allowedNew || keys.some((k) => opened.has(k))) {
            for (const k of keys) opened.add(k);
            continue;
          }
          problems.push(`${what}: passed (${retval}) under ${fuzzCase.name}: ${connectionKey(onWire, fromPod)}${changed ? ' (translated)' : ''}`);
        }
      } finally {
        writer.prune(new Set());
        forgetFlows();
      }
      assert.deepEqual(problems, []);
      // the run exercised translation and, with an endpoint, its drops
      const count = (program: Program, retval: number): number => verdicts.get(`${program} ${retval}`) ?? 0;
      assert.ok(count('tc_pod_ingress', TC_ACT_OK) + count('tc_pod_egress', TC_ACT_OK) > POD_FRAMES / 10, `verdicts: ${JSON.stringify([...verdicts])}`);
      if (fuzzCase.endpoint) {
        assert.ok(count('tc_pod_ingress', TC_ACT_SHOT) > POD_FRAMES / 20 && count('tc_pod_egress', TC_ACT_SHOT) > POD_FRAMES / 20, `verdicts: ${JSON.stringify([...verdicts])}`);
        assert.ok(policyDenied > POD_FRAMES / 5, `${policyDenied} well-formed frames denied by the policy`);
        if (fuzzCase.endpoint.rules.length > 0) assert.ok(opened.size > 0, 'the rule let connections open');
      }
      else assert.ok(count('tc_pod_ingress', TC_ACT_REDIRECT) > 0, `hairpins and rejects: ${JSON.stringify([...verdicts])}`);
    });
  });

  test('IPv6 with more extension headers than tc_pod follows is decided by the policy, as a packet of no known protocol', () => {
    const fam = FAMILIES.v6;
    const ext = Array.from({ length: 5 }, () => ({ type: 'dstopts' as const, options: Buffer.from([1, 4, 0, 0, 0, 0]) }));
    const syn = (src: string, dst: string, eth: { src: string; dst: string }): Buffer => buildFrame({ eth, ip: { src, dst, ext }, l4: { proto: 'tcp', sport: 40000, dport: 8080, flags: TCP_FLAGS.SYN } });
    const out = syn(fam.pod, fam.client, { src: POD_MAC, dst: HOST_MAC });
    const into = syn(fam.client, fam.pod, { src: HOST_MAC, dst: POD_MAC });
    const run = (program: Program, frame: Buffer): { retval: number; data: Buffer } => pods.object.program(program).testRun({ data: frame });
    try {
      writer.prune(new Set());
      for (const [program, frame] of [['tc_pod_ingress', out], ['tc_pod_egress', into]] as const) {
        const passed = run(program, frame);
        assert.deepEqual([passed.retval, passed.data.equals(frame)], [TC_ACT_OK, true], `${program}: no endpoint, untouched`);
      }
      writer.setEndpoint(DEVICE, { identity: ID.pod, ingressEnforced: true, egressEnforced: true, rules: [] });
      const drops = policyDrops();
      assert.equal(run('tc_pod_ingress', out).retval, TC_ACT_SHOT, 'the pod opens nothing past a deny-all egress');
      assert.equal(run('tc_pod_egress', into).retval, TC_ACT_SHOT, 'nothing opens to it past a deny-all ingress');
      assert.deepEqual(policyDrops(), { tc_pod_ingress: drops.tc_pod_ingress + 1n, tc_pod_egress: drops.tc_pod_egress + 1n });
      // a rule of any protocol for the peer allows it; one for TCP 8080 does not: its protocol is not known
      writer.setEndpoint(DEVICE, { identity: ID.pod, ingressEnforced: true, egressEnforced: true, rules: [rule('egress', ID.client, 6, 8080), { direction: 'ingress', identity: ID.client, protocol: 0, port: 0, portPrefixLen: 0 }] });
      assert.equal(run('tc_pod_ingress', out).retval, TC_ACT_SHOT);
      assert.equal(run('tc_pod_egress', into).retval, TC_ACT_OK);
    } finally {
      writer.prune(new Set());
      forgetFlows();
    }
  });

  test(`tc_edt_egress: ${FRAMES - 3 * POD_FRAMES} frames of any bytes (seed ${SEED}), rated or not: no verdict or SHOT, data untouched, departures after now, spaced by the rate`, () => {
    /** struct __sk_buff: its size, and where ingress_ifindex and tstamp are (see edt.test.ts). */
    const SKB_CTX_SIZE = 192;
    const INGRESS_IFINDEX = 36;
    const TSTAMP = 152;
    const HORIZON = 50_000_000n;
    const RATED = new Map([[5, 2_000_000], [20005, 1_000_000]]); // one in the array, one in the hash
    const UNRATED = [6, 20006];
    const edt = EdtDatapath.load({ pinDir: `${bpffs.dir}/edt`, devices: [], horizonNs: Number(HORIZON), nodeSetup: false, log: () => undefined });
    const f = new Fuzz(mulberry32(SEED));
    const problems: string[] = [];
    const verdicts = new Map<string, number>();
    const tLast = (ifindex: number): bigint => {
      const value = ((ifindex < 16384 ? edt.object.map('xlb_edt') : edt.object.map('xlb_edt_far')).lookup(edtKey(ifindex)));
      return value ? EdtRate.decode(value).tLast : -1n;
    };
    try {
      for (const [ifindex, rate] of RATED) edt.setRate(ifindex, rate);
      for (let n = 0; n < FRAMES - 3 * POD_FRAMES && problems.length < 5; n++) {
        const ifindex = f.chance(0.75) ? f.pick([...RATED.keys()]) : f.pick(UNRATED);
        const data = f.bytes(ETH_HLEN + f.int(1500));
        if (f.chance(0.7)) data.writeUInt16BE(f.pick([0x0800, 0x86dd]), 12);
        const ip = [0x0800, 0x86dd].includes(data.readUInt16BE(12));
        if (refusedByTestRun(data)) continue;
        const now = process.hrtime.bigint(); // bpf_ktime_get_ns and hrtime share CLOCK_MONOTONIC
        const tstamp = f.pick([0n, 0n, 0n, now + BigInt(f.int(Number(HORIZON / 2n))), now - 1_000_000_000n]);
        const ctx = Buffer.alloc(SKB_CTX_SIZE);
        ctx.writeUInt32LE(ifindex, INGRESS_IFINDEX);
        ctx.writeBigUInt64LE(tstamp, TSTAMP);
        const before = RATED.has(ifindex) ? tLast(ifindex) : 0n;
        const what = `frame ${n} (${data.length} bytes from ifindex ${ifindex}, tstamp ${tstamp === 0n ? 0 : tstamp - now} from now)`;
        let result: { retval: number; data: Buffer; ctx: Buffer };
        const start = process.hrtime.bigint();
        try {
          result = edt.object.program('tc_edt_egress').testRun({ data, ctx, ctxOutSize: SKB_CTX_SIZE });
        } catch (error) {
          problems.push(`${what}: the run failed: ${(error as Error).message}`);
          continue;
        }
        const end = process.hrtime.bigint();
        const departure = result.ctx.readBigUInt64LE(TSTAMP);
        verdicts.set(`${RATED.has(ifindex) ? 'rated' : 'unrated'} ${result.retval}`, (verdicts.get(`${RATED.has(ifindex) ? 'rated' : 'unrated'} ${result.retval}`) ?? 0) + 1);
        if (!result.data.equals(data)) problems.push(`${what}: data modified`);
        if (result.retval !== TC_ACT_UNSPEC && result.retval !== TC_ACT_SHOT) problems.push(`${what}: verdict ${result.retval}`);
        const rate = RATED.get(ifindex);
        if (rate === undefined) {
          if (result.retval !== TC_ACT_UNSPEC || departure !== tstamp) problems.push(`${what}: without a rate, verdict ${result.retval} and tstamp ${departure}`);
          continue;
        }
        const delay = (BigInt(data.length) * 1_000_000_000n) / BigInt(rate);
        const latest = tLast(ifindex);
        if (result.retval === TC_ACT_SHOT) {
          if (latest !== before || before + delay < start + HORIZON) problems.push(`${what}: dropped with the schedule at ${before - start} from now (+${delay}), now ${latest - start}`);
        } else if (!ip) {
          // bpf_skb_set_tstamp refuses what is not IP: such a frame leaves at once (its time charged to the schedule)
          if (departure !== tstamp || (latest !== before && latest < before + delay)) problems.push(`${what}: not IP, tstamp ${departure}, schedule ${before - start} + ${delay} → ${latest - start} from now`);
        } else if (departure !== tstamp) {
          if (departure !== before + delay || latest !== departure || departure < start || departure >= end + HORIZON) problems.push(`${what}: departure ${departure - start} from now, schedule ${before - start} + ${delay}`);
        } else if (latest < before + delay || (latest !== tstamp && (latest < start || latest > end))) {
          problems.push(`${what}: left at once, schedule ${before - start} + ${delay} → ${latest - start} from now`);
        }
      }
    } finally {
      edt.close();
    }
    assert.deepEqual(problems, []);
    const count = (key: string): number => verdicts.get(key) ?? 0;
    assert.ok(count(`rated ${TC_ACT_UNSPEC}`) > 0 && count(`rated ${TC_ACT_SHOT}`) > 0 && count(`unrated ${TC_ACT_UNSPEC}`) > 0, `verdicts: ${JSON.stringify([...verdicts])}`);
  });
});
