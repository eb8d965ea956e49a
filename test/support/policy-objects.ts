/**
 * Builders for the policy computation's tests and benchmark: NetworkPolicy objects as the API server
 * serves them (metadata filled in, policyTypes defaulted unless the case is about the defaulting) and
 * the PodInfo / NamespaceInfo the agent derives from Pods and Namespaces.
 */
import type { PolicyEngine } from '../../lb/policy/engine.js';
import type { PodInfo, PolicyDirection, PolicyProtocol, PolicyRule } from '../../lb/policy/types.js';

type Obj = Record<string, unknown>;

let uidCounter = 0;

/** A NetworkPolicy; `spec` is used as written (no policyTypes: the API's defaulting applies). */
export function networkPolicy(namespace: string, name: string, spec: Obj): Obj {
  const uid = `7c2e${String(++uidCounter).padStart(4, '0')}-4b1d-4e8a-9f3c-2d6b8a0e1f47`;
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace, uid, resourceVersion: String(50000 + uidCounter), generation: 1, creationTimestamp: '2026-12-01T10:00:00Z' },
    spec,
  };
}

export function pod(namespace: string, name: string, labels: Record<string, string>, ips: string[], more: Partial<PodInfo> = {}): PodInfo {
  return { namespace, name, labels, ips, nodeName: 'node-a', hostNetwork: false, namedPorts: [], ...more };
}

/** A PolicyRule, the wildcards as defaults. */
export function rule(direction: PolicyDirection, identity: number, protocol: PolicyProtocol = 0, port = 0, portPrefixLen = protocol === 0 || port === 0 ? 0 : 16): PolicyRule {
  return { direction, identity, protocol, port, portPrefixLen };
}

/** The identity the engine gave a pod; fails the test when it has none. */
export function identityOf(engine: PolicyEngine, namespace: string, name: string): number {
  const id = engine.podIdentity(namespace, name);
  if (id === undefined) throw new Error(`pod ${namespace}/${name} has no identity`);
  return id;
}

/** The CIDR identity of a prefix. */
export function cidrIdentity(engine: PolicyEngine, cidr: string): number {
  const id = engine.identities().find((i) => i.kind === 'cidr' && i.cidr === cidr)?.id;
  if (id === undefined) throw new Error(`no CIDR identity for ${cidr}`);
  return id;
}

/** Rules sorted as the engine sorts them (direction, identity, protocol, port, prefix length). */
export function sortRules(rules: PolicyRule[]): PolicyRule[] {
  const protocolOrder = [0, 6, 17, 132];
  const order = (r: PolicyRule): number[] => [r.direction === 'ingress' ? 0 : 1, r.identity, protocolOrder.indexOf(r.protocol), r.port, r.portPrefixLen];
  return [...rules].sort((a, b) => {
    const x = order(a);
    const y = order(b);
    for (let i = 0; i < x.length; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
    return 0;
  });
}
