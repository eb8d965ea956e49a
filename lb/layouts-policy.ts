/**
 * Codecs of the identity policy's maps (bpf/include/policy.h), checked against tc_pod.o's BTF by
 * test/datapath/policy.test.ts.
 */
import { be16, defineStruct, pad, u32, u8 } from './codec.js';
import { decodeXlbAddr, nested, xlbAddr, XlbTuple } from './layouts.js';

export const POLICY_MAPS = {
  ipcache: 'xlb_ipcache',
  endpoint: 'xlb_policy_ep',
  policy: 'xlb_policy',
  conntrack: 'xlb_policy_ct',
} as const;

/** enum xlb_policy_direction: seen from the pod. */
export const PolicyDirectionCode = { ingress: 0, egress: 1 } as const;

/** enum xlb_policy_endpoint_flags: the directions an endpoint enforces. */
export const PolicyEndpointFlag = { Ingress: 1 << PolicyDirectionCode.ingress, Egress: 1 << PolicyDirectionCode.egress } as const;

/** enum xlb_policy_ct_flags */
export const PolicyCtFlag = { Closing: 1 } as const;

/** Bits of the ipcache key before the address (family and pad). */
export const IPCACHE_FAMILY_BITS = 32;
/** Bits of the policy key up to its direction (XLB_POLICY_ANY_PROTO_BITS): an entry of any protocol and port. */
export const POLICY_ANY_PROTO_BITS = 72;
/** Bits up to the protocol: an entry's port prefix comes after them. */
export const POLICY_PROTO_BITS = 80;

/** struct policy_ipcache_key: LPM, prefixlen = IPCACHE_FAMILY_BITS + the CIDR's prefix length. */
const ipcacheKey = defineStruct('policy_ipcache_key', { prefixlen: u32, family: u8, pad: pad(3), addr: xlbAddr });
export const PolicyIpcacheKey = {
  ...ipcacheKey,
  /** The address read by the key's own family, so no IPv6 address is taken for IPv4. */
  decode(buf: Buffer, at = 0): ReturnType<typeof ipcacheKey.decode> {
    const value = ipcacheKey.decode(buf, at);
    return { ...value, addr: decodeXlbAddr(buf, at + ipcacheKey.offsetOf('addr'), value.family) };
  },
};
export const PolicyIpcacheValue = defineStruct('policy_ipcache_value', { identity: u32 });

/** xlb_policy_ep's value; its key is the ifindex of the pod's host-side device (a __u32). */
export const PolicyEndpoint = defineStruct('policy_endpoint', { identity: u32, flags: u8, pad: pad(3) });

/** struct policy_key: LPM over ifindex, identity, direction, then protocol and port. */
export const PolicyKey = defineStruct('policy_key', { prefixlen: u32, ifindex: u32, identity: u32, direction: u8, proto: u8, dport: be16 });

export const PolicyCtKey = defineStruct('policy_ct_key', { tuple: nested(XlbTuple, 4), ifindex: u32, pad: pad(4) });
export const PolicyCtEntry = defineStruct('policy_ct_entry', { expires: u32, flags: u8, opened: u8, pad: pad(2) });

export const policyCodecs = [PolicyIpcacheKey, PolicyIpcacheValue, PolicyEndpoint, PolicyKey, PolicyCtKey, PolicyCtEntry];

/** "198.18.0.0/24" of a decoded ipcache key. */
export function ipcacheCidr(key: ReturnType<typeof PolicyIpcacheKey.decode>): string {
  return `${key.addr}/${key.prefixlen - IPCACHE_FAMILY_BITS}`;
}
