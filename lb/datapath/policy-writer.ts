/**
 * The identity policy's one impure step: what the policy computation (lb/policy) decided, written to
 * tc_pod's policy maps (bpf/include/policy.h) — the ipcache, and per endpoint (the pod's host-side
 * device, by ifindex) its identity, the directions it enforces and its allow entries.
 *
 * Order, so the datapath never enforces what is not written yet:
 * - setEndpoint (the whole policy) and changeEndpoint (the rules added and removed since the policy
 *   written before): new allow entries first, then the endpoint entry (enforcement starts with its
 *   allow entries in place), then the stale allow entries go;
 * - deleteEndpoint: the endpoint entry first (its device has no policy from then on, and tc_pod tracks
 *   no new connection on it), then its entries, then its tracked connections.
 * The writer keeps a mirror of what the maps hold, read back when it opens, so a restarted agent
 * rewrites only differences, and a write the kernel refused is retried by the next call (the mirror
 * holds only what was written). Connections already tracked (xlb_policy_ct) keep going: a change applies
 * to new connections.
 *
 * A deleted endpoint's connections go with it: tracked by device and tuple, they would otherwise let a
 * new pod given the same device index and address ride them (replies to its predecessor's peers,
 * connections opened before a policy it has) until they expire. Finding them takes a walk over every
 * key of the table (no index by device: the datapath's lookup is by the whole key): one
 * bpf_map_get_next_key per tracked connection — about 3.5 µs each here, so ~0.23 s for a nearly full
 * table of 65,536 (test/datapath/policy.test.ts measures it) — and one delete per connection of the
 * device. Deletes are rare (a pod going), and prune() walks once for all the devices it removes.
 */
import { parseCidr } from '../service.js';
import { AF_INET, AF_INET6 } from '../layouts.js';
import {
  IPCACHE_FAMILY_BITS,
  ipcacheCidr,
  POLICY_ANY_PROTO_BITS,
  POLICY_MAPS,
  POLICY_PROTO_BITS,
  PolicyDirectionCode,
  PolicyEndpoint,
  PolicyEndpointFlag,
  PolicyCtKey,
  PolicyIpcacheKey,
  PolicyIpcacheValue,
  PolicyKey,
} from '../layouts-policy.js';
import type { EndpointPolicy, IpcacheEntry, PolicyDirection, PolicyProtocol, PolicyRule, RulesChange } from '../policy/types.js';
import { BpfError } from './errors.js';
import type { BpfMap } from './map.js';
import type { BpfObject } from './object.js';

/** What an endpoint is written with, and what endpoints() reads back. */
export type PolicyEndpointState = { identity: number } & EndpointPolicy;

/** A write the kernel refused: which map, what was being written, and the errno. */
export class PolicyWriteError extends Error {
  override name = 'PolicyWriteError';

  constructor(
    message: string,
    readonly map: string,
    /** The kernel's errno (e.g. 7 for E2BIG), when the failure came from the kernel. */
    readonly errno: number | undefined,
    options: { cause: unknown },
  ) {
    super(message, options);
  }
}

const ALLOW = Buffer.from([1]);
const PROTOCOLS: readonly PolicyProtocol[] = [0, 6, 17, 132];
const MAX_U32 = 0xffffffff;

interface WrittenEndpoint {
  identity: number;
  flags: number;
}

export class PolicyMapWriter {
  /** What the maps hold: cidr → identity; ifindex → endpoint; ifindex → allow entries by ruleId. */
  private readonly ipcacheMirror: Map<string, number>;
  private readonly endpointMirror = new Map<number, WrittenEndpoint>();
  private readonly rulesMirror = new Map<number, Map<number | string, PolicyRule>>();

  private constructor(
    private readonly ipcacheMap: BpfMap,
    private readonly endpointMap: BpfMap,
    private readonly policyMap: BpfMap,
    private readonly connectionMap: BpfMap,
  ) {
    this.ipcacheMirror = this.ipcache();
    for (const [key, value] of endpointMap.entries()) this.endpointMirror.set(key.readUInt32LE(0), PolicyEndpoint.decode(value));
    for (const key of policyMap.keys()) {
      const { ifindex, rule } = ruleOfKey(key);
      this.rulesOf(ifindex).set(ruleId(rule), rule);
    }
  }

  /** Over tc_pod's loaded object (PodDatapath.object), its maps as they are. */
  static open(object: BpfObject): PolicyMapWriter {
    return new PolicyMapWriter(object.map(POLICY_MAPS.ipcache), object.map(POLICY_MAPS.endpoint), object.map(POLICY_MAPS.policy), object.map(POLICY_MAPS.conntrack));
  }

  /** Add or change ipcache entries (canonical or not: "198.18.0.5/32"). */
  setIpcache(entries: IpcacheEntry[]): void {
    const keyed = entries.map((entry) => {
      checkIdentity(entry.identity, `ipcache entry ${entry.cidr}: identity`, 1);
      return { ...ipcacheKey(entry.cidr), identity: entry.identity };
    });
    for (const { cidr, key, identity } of keyed) {
      if (this.ipcacheMirror.get(cidr) === identity) continue;
      this.write(this.ipcacheMap, `ipcache entry ${cidr} → identity ${identity}`, () => this.ipcacheMap.update(key, PolicyIpcacheValue.encode({ identity })));
      this.ipcacheMirror.set(cidr, identity);
    }
  }

  deleteIpcache(cidrs: string[]): void {
    for (const { cidr, key } of cidrs.map(ipcacheKey)) {
      if (!this.ipcacheMirror.has(cidr)) continue;
      this.write(this.ipcacheMap, `deletion of ipcache entry ${cidr}`, () => this.ipcacheMap.delete(key));
      this.ipcacheMirror.delete(cidr);
    }
  }

  /** Enforce `endpoint` on the device `ifindex`, writing only what differs from what is there. */
  setEndpoint(ifindex: number, endpoint: PolicyEndpointState): void {
    checkIfindex(ifindex);
    checkIdentity(endpoint.identity, `endpoint of ifindex ${ifindex}: identity`, 1);
    // Every rule checked before anything is written; only the new ones get a key built (an endpoint
    // may hold a thousand rules, and a change of one identity rewrites a few of them).
    const wanted = new Map<number | string, PolicyRule>();
    endpoint.rules.forEach((rule, i) => {
      const normal = normalRule(rule, `endpoint of ifindex ${ifindex}: rules[${i}]`);
      wanted.set(ruleId(normal), normal);
    });
    this.writeRules(ifindex, endpoint, wanted);
    this.writeEndpointEntry(ifindex, endpoint);
    this.deleteRules(ifindex, (id) => !wanted.has(id));
  }

  /**
   * Enforce `endpoint` on the device `ifindex`, where the policy written before (by setEndpoint or
   * changeEndpoint) had endpoint.rules without `change.added` and with `change.removed`: only those
   * rules are checked and written, not the thousand that stay. Should the rules written not come to
   * endpoint.rules' count that way (the caller's premise was wrong), the whole policy is compared as
   * setEndpoint does.
   */
  changeEndpoint(ifindex: number, endpoint: PolicyEndpointState, change: RulesChange): void {
    checkIfindex(ifindex);
    checkIdentity(endpoint.identity, `endpoint of ifindex ${ifindex}: identity`, 1);
    // Checked before anything is written, as setEndpoint does.
    const added = new Map<number | string, PolicyRule>();
    change.added.forEach((rule, i) => {
      const normal = normalRule(rule, `endpoint of ifindex ${ifindex}: added rules[${i}]`);
      added.set(ruleId(normal), normal);
    });
    // A removed rule that normalizes to an added one's entry keeps that entry.
    const removed = change.removed.map((rule, i) => ruleId(normalRule(rule, `endpoint of ifindex ${ifindex}: removed rules[${i}]`))).filter((id) => !added.has(id));
    this.writeRules(ifindex, endpoint, added);
    this.writeEndpointEntry(ifindex, endpoint);
    const written = this.rulesOf(ifindex);
    for (const id of removed) {
      const stale = written.get(id);
      if (stale) this.deleteRule(ifindex, id, stale);
    }
    if (written.size !== endpoint.rules.length) this.setEndpoint(ifindex, endpoint);
  }

  /** No policy on the device `ifindex` any more (its pod is gone), and none of its connections tracked. */
  deleteEndpoint(ifindex: number): void {
    checkIfindex(ifindex);
    this.removeEndpoint(ifindex);
    this.forgetConnections(new Set([ifindex]));
  }

  /** Remove the endpoints of every device not in `keep` (left by an earlier agent); their ifindexes. */
  prune(keep: Set<number>): number[] {
    const stale = [...new Set([...this.endpointMirror.keys(), ...this.rulesMirror.keys()])].filter((ifindex) => !keep.has(ifindex));
    for (const ifindex of stale) this.removeEndpoint(ifindex);
    if (stale.length > 0) this.forgetConnections(new Set(stale));
    return stale;
  }

  /** The endpoints as the maps hold them, read back. */
  endpoints(): Map<number, PolicyEndpointState> {
    const rules = new Map<number, PolicyRule[]>();
    for (const key of this.policyMap.keys()) {
      const { ifindex, rule } = ruleOfKey(key);
      rules.set(ifindex, [...(rules.get(ifindex) ?? []), rule]);
    }
    const out = new Map<number, PolicyEndpointState>();
    for (const [key, value] of this.endpointMap.entries()) {
      const ifindex = key.readUInt32LE(0);
      const { identity, flags } = PolicyEndpoint.decode(value);
      out.set(ifindex, {
        identity,
        ingressEnforced: (flags & PolicyEndpointFlag.Ingress) !== 0,
        egressEnforced: (flags & PolicyEndpointFlag.Egress) !== 0,
        rules: rules.get(ifindex) ?? [],
      });
    }
    return out;
  }

  /** The ipcache as the map holds it, read back: cidr (canonical, as the policy computation writes it) → identity. */
  ipcache(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [key, value] of this.ipcacheMap.entries()) {
      const cidr = ipcacheCidr(PolicyIpcacheKey.decode(key));
      const canonical = parseCidr(cidr);
      out.set(typeof canonical === 'string' ? cidr : canonical.text, PolicyIpcacheValue.decode(value).identity);
    }
    return out;
  }

  /** The allow entries of `wanted` not written yet (keyed by ruleId). */
  private writeRules(ifindex: number, endpoint: PolicyEndpointState, wanted: ReadonlyMap<number | string, PolicyRule>): void {
    const written = this.rulesOf(ifindex);
    for (const [id, rule] of wanted) {
      if (written.has(id)) continue;
      this.write(this.policyMap, `an allow entry of the endpoint of ifindex ${ifindex} (identity ${endpoint.identity})`, () => this.policyMap.update(policyKey(ifindex, rule), ALLOW));
      written.set(id, rule);
    }
  }

  /** The endpoint entry: its identity and the directions it enforces, when they changed. */
  private writeEndpointEntry(ifindex: number, endpoint: PolicyEndpointState): void {
    const flags = (endpoint.ingressEnforced ? PolicyEndpointFlag.Ingress : 0) | (endpoint.egressEnforced ? PolicyEndpointFlag.Egress : 0);
    const current = this.endpointMirror.get(ifindex);
    if (current?.identity === endpoint.identity && current.flags === flags) return;
    const value = PolicyEndpoint.encode({ identity: endpoint.identity, flags });
    this.write(this.endpointMap, `the endpoint of ifindex ${ifindex} (identity ${endpoint.identity})`, () => this.endpointMap.update(endpointKey(ifindex), value));
    this.endpointMirror.set(ifindex, { identity: endpoint.identity, flags });
  }

  private rulesOf(ifindex: number): Map<number | string, PolicyRule> {
    let rules = this.rulesMirror.get(ifindex);
    if (!rules) {
      rules = new Map();
      this.rulesMirror.set(ifindex, rules);
    }
    return rules;
  }

  private removeEndpoint(ifindex: number): void {
    if (this.endpointMirror.has(ifindex)) {
      this.write(this.endpointMap, `deletion of the endpoint of ifindex ${ifindex}`, () => this.endpointMap.delete(endpointKey(ifindex)));
      this.endpointMirror.delete(ifindex);
    }
    this.deleteRules(ifindex, () => true);
    this.rulesMirror.delete(ifindex);
  }

  /** Delete the tracked connections of these devices (see the file comment for the cost). */
  private forgetConnections(ifindexes: ReadonlySet<number>): void {
    const ifindexAt = PolicyCtKey.offsetOf('ifindex');
    const what = `deletion of the tracked connections of ifindex ${[...ifindexes].join(', ')}`;
    // Keys first, deletes after: a walk whose previous key was deleted starts over. One the LRU
    // evicts under it does too, so the walk is bounded by twice the table.
    const keys = this.write(this.connectionMap, what, () => {
      const found: Buffer[] = [];
      let walked = 0;
      for (const key of this.connectionMap.keys()) {
        if (ifindexes.has(key.readUInt32LE(ifindexAt))) found.push(key);
        if (++walked >= 2 * this.connectionMap.maxEntries) break;
      }
      return found;
    });
    // An entry the LRU evicted meanwhile is gone already: delete answers false, not an error.
    for (const key of keys) this.write(this.connectionMap, what, () => this.connectionMap.delete(key));
  }

  private deleteRules(ifindex: number, stale: (id: number | string) => boolean): void {
    for (const [id, rule] of [...this.rulesOf(ifindex)].filter(([id]) => stale(id))) this.deleteRule(ifindex, id, rule);
  }

  private deleteRule(ifindex: number, id: number | string, rule: PolicyRule): void {
    this.write(this.policyMap, `deletion of an allow entry of the endpoint of ifindex ${ifindex}`, () => this.policyMap.delete(policyKey(ifindex, rule)));
    this.rulesOf(ifindex).delete(id);
  }

  /** `operation` on `map` (or a walk it needs); a failure names the map, what was being written and the errno. */
  private write<T>(map: BpfMap, what: string, operation: () => T): T {
    try {
      return operation();
    } catch (error) {
      const errno = error instanceof BpfError ? error.errno : undefined;
      const cause = error instanceof Error ? error.message : String(error);
      throw new PolicyWriteError(`writing ${what} to map ${map.name} failed: ${cause}`, map.name, errno, { cause: error });
    }
  }
}

function endpointKey(ifindex: number): Buffer {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(ifindex);
  return key;
}

function ipcacheKey(text: string): { cidr: string; key: Buffer } {
  const cidr = parseCidr(text);
  if (typeof cidr === 'string') throw new Error(`ipcache entry: ${cidr}`);
  const key = PolicyIpcacheKey.encode({
    prefixlen: IPCACHE_FAMILY_BITS + cidr.prefix,
    family: cidr.family === 4 ? AF_INET : AF_INET6,
    addr: cidr.network,
  });
  return { cidr: cidr.text, key };
}

/** The rule as its allow entry holds it, checked: any protocol has no port; a port prefix's other bits are zero. */
function normalRule(rule: PolicyRule, what: string): PolicyRule {
  checkIdentity(rule.identity, `${what}.identity`, 0);
  if (!(rule.direction in PolicyDirectionCode)) throw new Error(`${what}.direction: ${JSON.stringify(rule.direction)} is not ingress or egress`);
  if (!PROTOCOLS.includes(rule.protocol)) throw new Error(`${what}.protocol: ${JSON.stringify(rule.protocol)} is not one of ${PROTOCOLS.join(', ')}`);
  if (!Number.isInteger(rule.port) || rule.port < 0 || rule.port > 0xffff) throw new Error(`${what}.port: ${rule.port} is not a port (0-65535)`);
  if (!Number.isInteger(rule.portPrefixLen) || rule.portPrefixLen < 0 || rule.portPrefixLen > 16) {
    throw new Error(`${what}.portPrefixLen: ${rule.portPrefixLen} is not a prefix length of a port (0-16)`);
  }
  if (rule.protocol === 0) return { direction: rule.direction, identity: rule.identity, protocol: 0, port: 0, portPrefixLen: 0 };
  const mask = (0xffff << (16 - rule.portPrefixLen)) & 0xffff;
  return { direction: rule.direction, identity: rule.identity, protocol: rule.protocol, port: rule.port & mask, portPrefixLen: rule.portPrefixLen };
}

const PROTOCOL_INDEX: Readonly<Record<PolicyProtocol, number>> = { 0: 0, 6: 1, 17: 2, 132: 3 };
/** Identities below this pack with the rest of a rule into one exact number (2^29 · 2^24 = 2^53). */
const PACKED_IDENTITY_LIMIT = 2 ** 29;

/**
 * One allow entry of an endpoint (a normal rule) as a key of the writer's mirror: a number packing
 * identity, direction, protocol, port and prefix length — an endpoint may hold a thousand rules, each
 * compared at every write of it — or, for an identity too large to pack exactly, a string.
 */
function ruleId(rule: PolicyRule): number | string {
  const rest = (((rule.direction === 'egress' ? 1 : 0) * 4 + PROTOCOL_INDEX[rule.protocol]) * 0x10000 + rule.port) * 32 + rule.portPrefixLen;
  return rule.identity < PACKED_IDENTITY_LIMIT ? rule.identity * 2 ** 24 + rest : `${rule.identity} ${rest}`;
}

/** An allow entry's LPM key (a normal rule): any protocol stops before the protocol; otherwise the protocol and the first portPrefixLen bits of the port. */
function policyKey(ifindex: number, rule: PolicyRule): Buffer {
  const base = { ifindex, identity: rule.identity, direction: PolicyDirectionCode[rule.direction] };
  if (rule.protocol === 0) return PolicyKey.encode({ ...base, prefixlen: POLICY_ANY_PROTO_BITS, proto: 0, dport: 0 });
  return PolicyKey.encode({ ...base, prefixlen: POLICY_PROTO_BITS + rule.portPrefixLen, proto: rule.protocol, dport: rule.port });
}

function ruleOfKey(key: Buffer): { ifindex: number; rule: PolicyRule } {
  const { prefixlen, ifindex, identity, direction, proto, dport } = PolicyKey.decode(key);
  const anyProtocol = prefixlen < POLICY_PROTO_BITS;
  const rule: PolicyRule = {
    direction: (direction === PolicyDirectionCode.egress ? 'egress' : 'ingress') satisfies PolicyDirection,
    identity,
    protocol: anyProtocol ? 0 : (proto as PolicyProtocol),
    port: anyProtocol ? 0 : dport,
    portPrefixLen: anyProtocol ? 0 : prefixlen - POLICY_PROTO_BITS,
  };
  return { ifindex, rule };
}

function checkIfindex(ifindex: number): void {
  if (!Number.isInteger(ifindex) || ifindex < 1 || ifindex > MAX_U32) throw new Error(`ifindex ${ifindex} is not a device index (1-${MAX_U32})`);
}

function checkIdentity(identity: number, what: string, min: number): void {
  if (!Number.isInteger(identity) || identity < min || identity > MAX_U32) throw new Error(`${what}: ${identity} is not an identity (${min}-${MAX_U32})`);
}
