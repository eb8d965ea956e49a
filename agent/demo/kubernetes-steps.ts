/**
 * The steps of `xlb demo --kubernetes`: the services come from a real kube-apiserver. The demo writes
 * Services, their LoadBalancer status and EndpointSlices through the apiserver (as kubectl, a cloud's
 * LB controller and the EndpointSlice controller would), the agents watch them, and real traffic from
 * the client goes through the LB node: LoadBalancer TCP in DSR (a per-Service annotation), UDP in
 * SNAT, a NodePort; then a backend scaled away through the apiserver, and `xlb status`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { apiRequest } from '../cli/api-client.js';
import type { KubernetesStatus } from '../kubernetes-status.js';
import { ANNOTATION_CILIUM_FORWARDING_MODE, ANNOTATION_FORWARDING_MODE } from '../../lb/k8s/objects.js';
import { endpointSlice, service, type EndpointSlice, type EndpointSliceEndpoint, type Service } from '../lab/kube-apiserver.js';
import type { ClientReport, HeldAnswer } from '../lab/processes.js';
import type { DemoCluster } from './cluster.js';
import { check, shareRows, shares, stepResult, type Check } from './report.js';
import { answeredText, dsrReplies, everyBackendServed, judgeRemoval, probe, since, snapshot, sumBackends, xlbOnLb, type DemoContext, type DemoStep } from './steps.js';
import { runXlb } from './xlb-cli.js';

export const K8S_VIP = '198.18.10.10';
export const NODE_PORT = 30080;
const NAMESPACE = 'default';
const HTTP_REQUESTS = 60;
const UDP_REQUESTS = 30;
const NODEPORT_REQUESTS = 30;
const HELD_REQUESTS = 20;
const HELD_INTERVAL_MS = 100;
const FRESH_REQUESTS = 30;
/** How long the agents get to serve what was written to the apiserver (they take milliseconds). */
const CONVERGE_TIMEOUT_MS = 20_000;

/** The ids the agents give the Services' frontends (namespace/name:port@address). */
export const WEB_ID = `${NAMESPACE}/web:http@${K8S_VIP}`;
export const DNS_ID = `${NAMESPACE}/dns:dns@${K8S_VIP}`;
export const NODEPORT_ID = `${NAMESPACE}/web-nodeport:http@0.0.0.0`;

interface ServiceEntry {
  id: string;
  origin: string;
  service: { type?: string; mode?: string; frontend: { address: string; port: number; protocol: string }; backends: { address: string; node?: string }[] };
}

// ---- The objects, as a user (and the controllers) would write them ----

const webService = (): Service => ({
  ...service(NAMESPACE, 'web', { type: 'LoadBalancer', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], selector: { app: 'web' } }),
  // Cilium's name for it; xlb's own, xlb.io/forwarding-mode, does the same and wins when both are set.
  metadata: { name: 'web', namespace: NAMESPACE, annotations: { [ANNOTATION_CILIUM_FORWARDING_MODE]: 'dsr' } },
});
const dnsService = (): Service => service(NAMESPACE, 'dns', { type: 'LoadBalancer', ports: [{ name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' }], selector: { app: 'dns' } });
const nodePortService = (): Service =>
  service(NAMESPACE, 'web-nodeport', { type: 'NodePort', ports: [{ name: 'http', port: 8080, targetPort: 8080, nodePort: NODE_PORT, protocol: 'TCP' }], selector: { app: 'web' } });

/** The backends' endpoints; 1.20 drops nodeName, so the node is the topology label its controller wrote. */
function endpoints(cluster: DemoCluster, except?: string): EndpointSliceEndpoint[] {
  return cluster.backends
    .filter((b) => b.name !== except)
    .map((b) => ({ addresses: [b.host.v4], conditions: { ready: true }, topology: { 'kubernetes.io/hostname': b.name } }));
}

function slices(cluster: DemoCluster): EndpointSlice[] {
  const all = endpoints(cluster);
  return [
    endpointSlice(NAMESPACE, 'web-1', 'web', all, [{ name: 'http', port: 8080, protocol: 'TCP' }]),
    endpointSlice(NAMESPACE, 'dns-1', 'dns', all, [{ name: 'dns', port: 5353, protocol: 'UDP' }]),
    endpointSlice(NAMESPACE, 'web-nodeport-1', 'web-nodeport', all, [{ name: 'http', port: 8080, protocol: 'TCP' }]),
  ];
}

/** One value in YAML's flow style: {a: 1, b: [x, y]}. */
function flow(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(flow).join(', ')}]`;
  if (typeof value === 'object' && value !== null) return `{${Object.entries(value).map(([k, v]) => `${k}: ${flow(v)}`).join(', ')}}`;
  return String(value);
}

/** An object as short YAML: a line per top-level field, a list of objects one item a line. */
function yamlish(object: object): string[] {
  return Object.entries(object).flatMap(([key, value]) =>
    Array.isArray(value) && value.every((v) => typeof v === 'object' && v !== null)
      ? [`${key}:`, ...value.map((v) => `  - ${flow(v)}`)]
      : [`${key}: ${flow(value)}`],
  );
}

// ---- Reading what the agents serve ----

async function kubernetesServices(socket: string): Promise<ServiceEntry[]> {
  const response = await apiRequest(socket, 'GET', '/v1/services');
  if (response.status !== 200) throw new Error(`GET /v1/services answered ${response.status}`);
  return ((response.body as { services?: ServiceEntry[] }).services ?? []).filter((s) => s.origin === 'kubernetes');
}

/**
 * Waits until the agent on `socket` serves each id with exactly these backend addresses; resolves
 * with the milliseconds it took. Throws naming what it saw at the deadline.
 */
async function waitServed(socket: string, want: Record<string, string[]>): Promise<number> {
  const started = Date.now();
  const matches = (entries: ServiceEntry[]): boolean =>
    Object.entries(want).every(([id, addresses]) => {
      const served = entries.find((e) => e.id === id)?.service.backends.map((b) => b.address).sort();
      return JSON.stringify(served) === JSON.stringify([...addresses].sort());
    });
  let last: ServiceEntry[] = [];
  while (Date.now() - started < CONVERGE_TIMEOUT_MS) {
    last = await kubernetesServices(socket);
    if (matches(last)) return Date.now() - started;
    await sleep(25);
  }
  const seen = Object.keys(want).map((id) => `${id}: ${last.find((e) => e.id === id)?.service.backends.map((b) => b.address).join(',') ?? 'not served'}`);
  throw new Error(`the agent did not serve what the apiserver holds within ${CONVERGE_TIMEOUT_MS / 1000} s (${seen.join('; ')})`);
}

function addressesOf(cluster: DemoCluster, except?: string): string[] {
  return cluster.backends.filter((b) => b.name !== except).map((b) => b.host.v4);
}

// ---- The steps ----

const servicesStep: DemoStep = {
  name: 'Services from the apiserver',
  expected: '3 Services served by every agent, origin kubernetes, read-only',
  title:
    'Services and EndpointSlices written to the apiserver, as a user and the controllers would. Every node\'s\n' +
    'agent watches them and turns them into services; nobody calls the agents\' API.',
  async run(ctx) {
    const { cluster, out } = ctx;
    const rest = cluster.kube.rest;
    const [webSlice, ...otherSlices] = slices(cluster);
    if (!webSlice) throw new Error('no EndpointSlice');
    out.line('  $ kubectl apply -f web.yaml   # (no kubectl here: the demo POSTs the same objects to the apiserver)');
    out.block([...yamlish(webService()), '---', ...yamlish(webSlice)].join('\n'), '    ');
    out.line('  and the same way: Service dns (LoadBalancer, 53/UDP → 5353; no annotation, so the agents\' --mode snat)');
    out.line(`  and Service web-nodeport (NodePort ${NODE_PORT} → 8080), each with an EndpointSlice naming b1, b2, b3.`);
    out.line('  A LoadBalancer Service gets its address from a cloud\'s controller; here the demo writes its status:');
    out.line(`  $ kubectl patch service web --subresource=status -p '{"status":{"loadBalancer":{"ingress":[{"ip":"${K8S_VIP}"}]}}}'   # and dns`);
    await rest.createService(webService());
    await rest.createService(dnsService());
    await rest.createService(nodePortService());
    for (const name of ['web', 'dns']) await rest.updateServiceStatus(NAMESPACE, name, { loadBalancer: { ingress: [{ ip: K8S_VIP }] } });
    for (const slice of [webSlice, ...otherSlices]) await rest.createEndpointSlice(slice);

    const all = addressesOf(cluster);
    const want = { [WEB_ID]: all, [DNS_ID]: all, [NODEPORT_ID]: all };
    const waits = await Promise.all([cluster.lb, ...cluster.backends].map((n) => waitServed(n.agent.socket, want)));
    const lbMs = waits[0] ?? 0;
    out.line(`  the LB node's agent served them ${lbMs} ms after the last write; every agent did within ${Math.max(...waits)} ms`);
    const listing = await xlbOnLb(ctx, ['service', 'list', '--origin', 'kubernetes']);
    const entries = await kubernetesServices(cluster.lb.agent.socket);
    const web = entries.find((e) => e.id === WEB_ID);
    out.line('  (each Service port is a frontend per address: its ClusterIP, its LoadBalancer ingress, and NodePorts');
    out.line('  on the node addresses, which LoadBalancer Services get too; default/kubernetes is the apiserver\'s own');
    out.line('  Service, without endpoints here: it listens on 127.0.0.1, which an endpoint cannot name)');

    out.line(`  $ xlb service delete ${WEB_ID} --api-socket $LB`);
    const deleted = await runXlb(['service', 'delete', WEB_ID, '--api-socket', cluster.lb.agent.socket]);
    out.block((deleted.err || deleted.out).trim(), '    ');
    out.line(`    (exit ${String(deleted.code)})`);

    const names = cluster.backends.map((b) => b.name);
    const checks: Check[] = [
      check(entries.some((e) => e.id === WEB_ID) && entries.some((e) => e.id === DNS_ID) && entries.some((e) => e.id === NODEPORT_ID),
        `${WEB_ID}, ${DNS_ID} and ${NODEPORT_ID} served`, entries.map((e) => e.id).join(', ') || 'none'),
      check(web?.service.mode === 'dsr', 'web in DSR mode (its annotation)', web?.service.mode ?? 'not served'),
      check(JSON.stringify(web?.service.backends.map((b) => b.node).sort()) === JSON.stringify(names), `web's backends on nodes ${names.join(', ')}`,
        web?.service.backends.map((b) => b.node ?? '?').join(', ') ?? 'not served'),
      check(new RegExp(`${WEB_ID.replace(/[./]/g, '\\$&')}\\s+kubernetes`).test(listing), 'xlb service list shows origin kubernetes', listing.split('\n')[1] ?? listing),
      check(deleted.code === 1, 'xlb service delete refused (exit 1)', `exit ${String(deleted.code)}: ${(deleted.err || deleted.out).trim().split('\n')[0] ?? ''}`),
    ];
    const ours = entries.filter((e) => /^default\/(web|dns|web-nodeport):/.test(e.id)).length;
    const seen = `${ours} frontends; served after ${lbMs} ms; read-only`;
    return stepResult(this.name, { expected: this.expected, seen }, checks, {
      kubernetesFrontends: entries.length,
      frontendsOfTheServices: ours,
      servedAfterMs: lbMs,
      everyAgentServedAfterMs: Math.max(...waits),
      webMode: web?.service.mode ?? '',
      deleteExitCode: deleted.code ?? -1,
    });
  },
};

/** LoadBalancer TCP (DSR), LoadBalancer UDP (SNAT), NodePort (SNAT): traffic spread over the backends. */
function trafficStep(spec: { name: string; title: string; kind: 'http' | 'udp'; target: (c: DemoCluster) => string; requests: number; dsr: boolean }): DemoStep {
  const expected = `${spec.requests}/${spec.requests} answered, 3 backends, ${spec.dsr ? '0 replies via LB' : 'replies via LB'}`;
  return {
    name: spec.name,
    expected,
    title: spec.title,
    async run(ctx) {
      const { cluster, out } = ctx;
      const names = cluster.backends.map((b) => b.name);
      const target = spec.target(cluster);
      const what = spec.kind === 'http' ? 'HTTP requests' : 'UDP datagrams';
      await probe(ctx, spec.kind, target);
      const before = await snapshot(ctx);
      out.line(`  ${spec.requests} ${what} from the client (${cluster.lab.client.v4}) to ${target}, each ${spec.kind === 'http' ? 'on a new TCP connection' : 'from a new source port'}:`);
      const report: ClientReport = await out.during(() => `${what} under way`, cluster.processes.client(spec.kind, target, spec.requests));
      const delta = since(await snapshot(ctx), before);
      const lbNewFlows = delta.lb.get('FWD_NEW_FLOW', 'INGRESS');
      const lbReplies = delta.lb.get('FWD_REPLY', 'INGRESS');
      const totalDsr = sumBackends(delta, dsrReplies);
      out.table(['backend', 'answered', 'share'], shareRows(report.byBackend, names));
      out.table(['node', 'counter', 'packets'], [
        ['LB', `new flows forwarded${spec.dsr ? '' : ', source rewritten to the LB node'} (FWD_NEW_FLOW)`, lbNewFlows],
        ['LB', 'replies translated back through the LB node (FWD_REPLY)', lbReplies],
        ['b1-b3', 'replies sent straight to the client from the service address (DSR_REPLY)', totalDsr],
      ]);
      const checks = [
        check(report.answered === spec.requests, `${spec.requests}/${spec.requests} answered`, answeredText(report)),
        check(everyBackendServed(report, names), 'every backend answered some', shares(report.byBackend, names)),
        check(lbNewFlows >= spec.requests, `≥ ${spec.requests} new flows forwarded by the LB`, `${lbNewFlows}`),
        spec.dsr
          ? check(lbReplies === 0 && totalDsr >= spec.requests, `0 replies through the LB, ≥ ${spec.requests} DSR replies`, `${lbReplies} via LB, ${totalDsr} DSR`)
          : check(lbReplies >= spec.requests && totalDsr === 0, `≥ ${spec.requests} replies through the LB, 0 DSR replies`, `${lbReplies} via LB, ${totalDsr} DSR`),
      ];
      const seen = `${report.answered}/${report.sent}; ${shares(report.byBackend, names)}; ${lbReplies} via LB`;
      return stepResult(spec.name, { expected, seen }, checks, {
        requests: report.sent,
        answered: report.answered,
        byBackend: report.byBackend,
        lbNewFlows,
        lbReplies,
        dsrReplies: totalDsr,
      });
    },
  };
}

const scaleDownStep: DemoStep = {
  name: 'scale down through the apiserver',
  expected: 'held conn. keeps its backend; none to the removed',
  title:
    'A backend goes away the Kubernetes way: its endpoint leaves the EndpointSlice. One connection to web\n' +
    'stays open meanwhile, on ANOTHER backend: it keeps it; new connections avoid the removed one.',
  async run(ctx) {
    const { cluster, out } = ctx;
    const names = cluster.backends.map((b) => b.name);
    const target = `${K8S_VIP}:80`;
    await probe(ctx, 'http', target);
    out.line(`  the client opens one TCP connection to ${target} and sends a request on it every ${HELD_INTERVAL_MS} ms`);
    const held = cluster.processes.hold(target, HELD_REQUESTS, HELD_INTERVAL_MS);
    const first: HeldAnswer = await held.next();
    const kept = first.backend ?? '';
    const removed = [...names].reverse().find((n) => n !== kept);
    if (first.error !== undefined || removed === undefined) {
      const rest = await held.rest();
      throw new Error(`the held connection's first request failed: ${first.error ?? `answered by ${kept}`} (${rest.length} more)`);
    }
    const removedAddress = cluster.backends.find((b) => b.name === removed)?.host.v4 ?? '';
    out.line(`  its first request was answered by ${kept}; now the pod on ${removed} goes away, and the EndpointSlice`);
    out.line(`  controller writes the slice without it (here the demo does: PUT .../endpointslices/web-1):`);
    out.line(`  $ kubectl scale deployment web --replicas=2   # what a user would type, in a cluster with controllers`);
    await cluster.kube.rest.updateEndpointSlice(NAMESPACE, 'web-1', (slice) => ({ ...slice, endpoints: endpoints(cluster, removed) }));
    const servedMs = await waitServed(cluster.lb.agent.socket, { [WEB_ID]: addressesOf(cluster, removed) });
    out.line(`  the LB node's agent served web without ${removedAddress} ${servedMs} ms after the write`);
    out.line(`  meanwhile, ${FRESH_REQUESTS} new connections from the client:`);
    const fresh = await out.during(() => 'requests under way', cluster.processes.client('http', target, FRESH_REQUESTS));
    const rest = await out.during(() => 'the held connection is still sending', held.rest());
    const judged = judgeRemoval(out, { first, rest, fresh, kept, removed, names, heldRequests: HELD_REQUESTS, freshRequests: FRESH_REQUESTS });
    return stepResult(this.name, { expected: this.expected, seen: judged.seen }, judged.checks, { ...judged.details, servedAfterMs: servedMs });
  },
};

const statusStep: DemoStep = {
  name: 'xlb status',
  expected: 'connected to the apiserver, v1beta1 slices, no problems',
  title: 'What an operator checks on a node: `xlb status`, its Kubernetes section (the rest is as standalone).',
  async run(ctx) {
    const { cluster, out } = ctx;
    const socket = cluster.lb.agent.socket;
    out.line('  $ xlb status --api-socket $LB');
    const text = (await runXlb(['status', '--api-socket', socket])).out;
    const lines = text.split('\n');
    const from = lines.findIndex((l) => l.startsWith('kubernetes:'));
    const to = lines.findIndex((l, i) => i > from && l.trim() === '');
    const excerpt = [...lines.filter((l) => /^(xlb-agent|services:)/.test(l)), '…', ...lines.slice(from, to === -1 ? undefined : to)];
    out.block(excerpt.join('\n'), '    ');
    const response = await apiRequest(socket, 'GET', '/v1/status');
    const kubernetes = (response.body as { kubernetes?: KubernetesStatus }).kubernetes;
    const served = (await kubernetesServices(socket)).length;
    const checks = [
      check(from >= 0, 'a kubernetes: section in xlb status', from >= 0 ? 'present' : 'absent'),
      check(kubernetes?.connection === 'connected', 'connection connected', kubernetes?.connection ?? 'no Kubernetes status'),
      check(kubernetes?.endpointSliceVersion === 'v1beta1', 'EndpointSlices discovery.k8s.io/v1beta1 (the apiserver is 1.20)', kubernetes?.endpointSliceVersion ?? 'not known'),
      check(kubernetes?.nodeName === 'lb', 'node lb', kubernetes?.nodeName ?? '?'),
      check(kubernetes?.services === served, `services served = the ${served} listed`, String(kubernetes?.services)),
      check(kubernetes?.problems === 0, 'no problems', String(kubernetes?.problems)),
    ];
    const seen = `${kubernetes?.connection ?? '?'}, ${kubernetes?.endpointSliceVersion ?? '?'}, ${String(kubernetes?.services)} services, ${String(kubernetes?.problems)} problems`;
    return stepResult(this.name, { expected: this.expected, seen }, checks, {
      connection: kubernetes?.connection ?? '',
      endpointSliceVersion: kubernetes?.endpointSliceVersion ?? '',
      servicesServed: kubernetes?.services ?? -1,
      problems: kubernetes?.problems ?? -1,
    });
  },
};

export const KUBERNETES_STEPS: DemoStep[] = [
  servicesStep,
  trafficStep({
    name: 'LoadBalancer TCP, DSR',
    title:
      `The Service web (LoadBalancer ${K8S_VIP}:80, annotated ${ANNOTATION_CILIUM_FORWARDING_MODE}: dsr — or\n` +
      `${ANNOTATION_FORWARDING_MODE}): the backends answer the client directly, from the service address.`,
    kind: 'http',
    target: () => `${K8S_VIP}:80`,
    requests: HTTP_REQUESTS,
    dsr: true,
  }),
  trafficStep({
    name: 'LoadBalancer UDP, SNAT',
    title: `The Service dns (LoadBalancer ${K8S_VIP}:53/UDP, no annotation: SNAT): replies come back through the LB node.`,
    kind: 'udp',
    target: () => `${K8S_VIP}:53`,
    requests: UDP_REQUESTS,
    dsr: false,
  }),
  trafficStep({
    name: 'NodePort',
    title: `The Service web-nodeport: port ${NODE_PORT} on the LB node's own address, picked up in XDP like the rest.`,
    kind: 'http',
    target: (c) => `${c.lb.host.v4}:${NODE_PORT}`,
    requests: NODEPORT_REQUESTS,
    dsr: false,
  }),
  scaleDownStep,
  statusStep,
];
