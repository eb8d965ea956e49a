/**
 * A generated cluster for the policy computation's benchmark and its randomized tests: namespaces of
 * teams and environments, apps of several replicas with 3–5 labels and named ports, spread over
 * nodes, and NetworkPolicies mixing every rule kind the way clusters use them — default deny, allow
 * from a tier on a named port, from the monitoring namespace, from an app in the team's namespaces
 * (namespace and pod selector in one peer), DNS egress, ipBlock egress with except, endPort ranges.
 * Deterministic for a seed (mulberry32). Addresses: pods in 198.18.0.0/16, nodes in 198.19.255.0/24,
 * ipBlocks in 198.19.0.0/16 and 2001:db8::/32.
 */
import type { NamespaceInfo, PodInfo } from '../../lb/policy/types.js';
import { networkPolicy } from './policy-objects.js';
import { mulberry32 } from './prng.js';

export interface GeneratedCluster {
  namespaces: NamespaceInfo[];
  pods: PodInfo[];
  nodes: { name: string; addresses: string[] }[];
  policies: Record<string, unknown>[];
  /** The node whose pods are the local endpoints. */
  nodeName: string;
}

export interface ClusterSize {
  pods: number;
  policies: number;
  namespaces?: number;
  nodes?: number;
  seed?: number;
}

const TEAMS = ['shop', 'payments', 'search', 'ads', 'data', 'identity', 'media', 'infra'];
const ENVS = ['prod', 'staging', 'dev'];
const TIERS = ['front', 'back', 'data'];
const APP_NAMES = ['web', 'api', 'cart', 'checkout', 'catalog', 'auth', 'worker', 'cache', 'db', 'queue', 'search', 'render'];

interface App {
  namespace: string;
  labels: Record<string, string>;
  replicas: number;
  namedPorts: PodInfo['namedPorts'];
}

export function generateCluster(size: ClusterSize): GeneratedCluster {
  const random = mulberry32(size.seed ?? 21);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const namespaceCount = size.namespaces ?? 50;
  const nodeCount = size.nodes ?? 20;

  const namespaces: NamespaceInfo[] = [
    { name: 'kube-system', labels: {} },
    { name: 'monitoring', labels: { team: 'infra', purpose: 'monitoring' } },
  ];
  for (let i = 0; namespaces.length < namespaceCount; i++) {
    namespaces.push({ name: `ns-${String(i).padStart(2, '0')}`, labels: { team: TEAMS[i % TEAMS.length] ?? 'shop', env: ENVS[i % ENVS.length] ?? 'prod' } });
  }
  const workloadNamespaces = namespaces.slice(2);

  // Apps until the pods are there: kube-dns and prometheus first, the rest spread over namespaces.
  const apps: App[] = [
    { namespace: 'kube-system', labels: { 'k8s-app': 'kube-dns' }, replicas: 2, namedPorts: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }] },
    { namespace: 'monitoring', labels: { app: 'prometheus', component: 'server' }, replicas: 2, namedPorts: [{ name: 'web', port: 9090, protocol: 'TCP' }] },
  ];
  let total = apps.reduce((n, a) => n + a.replicas, 0);
  for (let i = 0; total < size.pods; i++) {
    const namespace = workloadNamespaces[i % workloadNamespaces.length]?.name ?? 'default';
    const name = `${pick(APP_NAMES)}-${i}`;
    const labels: Record<string, string> = { app: name, tier: pick(TIERS), version: pick(['v1', 'v2']) };
    if (random() < 0.5) labels['app.kubernetes.io/part-of'] = pick(APP_NAMES);
    if (random() < 0.5) labels['pod-template-hash'] = Math.floor(random() * 0xffffffff).toString(16);
    const replicas = Math.min(size.pods - total, 2 + Math.floor(random() * 5));
    const namedPorts: PodInfo['namedPorts'] = [{ name: 'http', port: pick([8080, 8000, 3000, 9000]), protocol: 'TCP' }, { name: 'metrics', port: 9102, protocol: 'TCP' }];
    if (random() < 0.3) namedPorts.push({ name: 'grpc', port: 50051, protocol: 'TCP' });
    apps.push({ namespace, labels, replicas, namedPorts });
    total += replicas;
  }

  const nodes = Array.from({ length: nodeCount }, (_, i) => ({ name: `node-${String(i).padStart(2, '0')}`, addresses: [`198.19.255.${i + 1}`] }));
  const pods: PodInfo[] = [];
  for (const app of apps) {
    for (let r = 0; r < app.replicas; r++) {
      const n = pods.length + 1;
      pods.push({
        namespace: app.namespace,
        name: `${app.labels.app ?? app.labels['k8s-app'] ?? 'pod'}-${r}`,
        labels: { ...app.labels },
        ips: [`198.18.${n >> 8}.${n & 0xff}`],
        nodeName: nodes[Math.floor(random() * nodes.length)]?.name ?? 'node-00',
        hostNetwork: false,
        namedPorts: app.namedPorts,
      });
    }
  }

  const policies: Record<string, unknown>[] = [];
  const workloadApps = apps.slice(2);
  for (let i = 0; policies.length < size.policies; i++) {
    const app = workloadApps[i % workloadApps.length];
    if (!app) break;
    const namespace = app.namespace;
    const selectApp = { matchLabels: { app: app.labels.app } };
    const team = namespaces.find((n) => n.name === namespace)?.labels.team ?? 'shop';
    const kind = i % 8;
    const name = `p-${i}`;
    if (kind === 0) {
      policies.push(networkPolicy(namespace, `default-deny-${i}`, { podSelector: {}, policyTypes: ['Ingress'] }));
    } else if (kind === 1) {
      // From the front tier on the named http port, and from monitoring on metrics.
      policies.push(networkPolicy(namespace, name, {
        podSelector: selectApp,
        ingress: [
          { from: [{ podSelector: { matchLabels: { tier: 'front' } } }], ports: [{ protocol: 'TCP', port: 'http' }] },
          { from: [{ namespaceSelector: { matchLabels: { purpose: 'monitoring' } } }], ports: [{ protocol: 'TCP', port: 'metrics' }] },
        ],
        policyTypes: ['Ingress'],
      }));
    } else if (kind === 2) {
      // Callers of this app in any of the team's namespaces (both selectors in one peer).
      policies.push(networkPolicy(namespace, name, {
        podSelector: selectApp,
        ingress: [{
          from: [{ namespaceSelector: { matchLabels: { team } }, podSelector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['front', 'back'] }] } }],
          ports: [{ protocol: 'TCP', port: 8080 }, { protocol: 'TCP', port: 9000, endPort: 9100 }],
        }],
        policyTypes: ['Ingress'],
      }));
    } else if (kind === 3) {
      // Egress: DNS, the team's back tier by named port, an external range with an except.
      const block = 16 + (i % 64);
      policies.push(networkPolicy(namespace, name, {
        podSelector: selectApp,
        egress: [
          { to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } }, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }], ports: [{ protocol: 'UDP', port: 53 }, { protocol: 'TCP', port: 53 }] },
          { to: [{ podSelector: { matchLabels: { tier: 'back' } } }], ports: [{ protocol: 'TCP', port: 'http' }, { protocol: 'TCP', port: 'grpc' }] },
          { to: [{ ipBlock: { cidr: `198.19.${block}.0/24`, except: [`198.19.${block}.128/25`] } }], ports: [{ protocol: 'TCP', port: 443 }] },
          // Any peer on the port any pod names grpc.
          { ports: [{ protocol: 'TCP', port: 'grpc' }] },
        ],
        policyTypes: ['Egress'],
      }));
    } else if (kind === 4) {
      policies.push(networkPolicy(namespace, name, {
        podSelector: { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['data'] }, { key: 'version', operator: 'Exists' }] },
        ingress: [{ from: [{ podSelector: {} }] }],
        policyTypes: ['Ingress'],
      }));
    } else if (kind === 5) {
      policies.push(networkPolicy(namespace, name, {
        podSelector: selectApp,
        egress: [
          { to: [{ ipBlock: { cidr: '198.19.0.0/16', except: [`198.19.${i % 250}.0/24`] } }, { ipBlock: { cidr: '2001:db8::/32', except: ['2001:db8:ff::/48'] } }], ports: [{ protocol: 'TCP', port: 30000, endPort: 32767 }] },
          { to: [{ namespaceSelector: { matchLabels: { env: 'prod' } } }], ports: [{ protocol: 'TCP', port: 'http' }] },
        ],
        policyTypes: ['Egress'],
      }));
    } else if (kind === 6) {
      policies.push(networkPolicy(namespace, name, {
        podSelector: selectApp,
        ingress: [{ from: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['198.18.0.0/15'] } }], ports: [{ protocol: 'TCP', port: 443 }, { protocol: 'UDP', port: 443 }] }],
        egress: [{}],
      }));
    } else {
      policies.push(networkPolicy(namespace, name, {
        podSelector: { matchLabels: { tier: app.labels.tier } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { team, env: 'prod' } } }, { podSelector: { matchLabels: { version: 'v2' } } }] }],
        policyTypes: ['Ingress'],
      }));
    }
  }
  return { namespaces, pods, nodes, policies, nodeName: 'node-00' };
}
