/**
 * The policy's API and CLI: GET /v1/identities and GET /v1/policy/{namespace}/{pod} (409 standalone,
 * 404 naming the pod, the views as the schema serializes them), monitor lines of policy drops with
 * their identities' labels, and the CLI's text for each.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { EndpointPolicyView, IdentityView, PolicySource } from '../../agent/api/policy.js';
import { monitorLine } from '../../agent/api/monitor.js';
import { buildApiServer } from '../../agent/api/server.js';
import { UsageError } from '../../agent/cli/command.js';
import { formatMonitorEvent } from '../../agent/cli/monitor.js';
import { formatEndpointPolicy, formatIdentities, podArgument } from '../../agent/cli/policy.js';
import { memoryLogger } from '../../agent/log.js';
import { AgentMetrics } from '../../agent/metrics.js';
import { ServiceStore } from '../../agent/store.js';
import { Reason } from '../../lb/reasons.js';
import { FakeDatapath, fakeEvent } from '../support/fake-datapath.js';

const SERVER_VIEW: EndpointPolicyView = {
  namespace: 'shop',
  pod: 'server',
  ips: ['198.18.82.2', '2001:db8:82::2'],
  identity: { id: 257, labels: { 'io.kubernetes.pod.namespace': 'shop', app: 'server' } },
  device: 'lxc-server',
  ifindex: 12,
  ingress: {
    enforced: true,
    policies: ['shop/allow-client', 'shop/deny'],
    rules: [
      { identity: 1, labels: { reserved: 'host' }, protocol: 'any' },
      { identity: 256, labels: { 'io.kubernetes.pod.namespace': 'shop', app: 'client' }, protocol: 'TCP', port: 8080 },
      { identity: 16777216, labels: { cidr: '198.18.90.0/24' }, cidr: '198.18.90.0/24', protocol: 'UDP', port: 5000, endPort: 5007 },
    ],
  },
  egress: { enforced: false, policies: [], rules: [] },
};

const IDENTITIES: IdentityView[] = [
  { id: 1, kind: 'reserved', labels: { reserved: 'host' }, pods: 0 },
  { id: 256, kind: 'labels', namespace: 'shop', labels: { app: 'client' }, pods: 2 },
  { id: 16777216, kind: 'cidr', labels: { cidr: '198.18.90.0/24' }, cidr: '198.18.90.0/24', pods: 0 },
];

const source: PolicySource = {
  identities: () => IDENTITIES,
  endpoint: (namespace, pod) => (namespace === 'shop' && pod === 'server' ? SERVER_VIEW : { missing: `no pod ${namespace}/${pod} in the cluster` }),
  identityLabels: (id) => (id === 256 ? { app: 'client' } : id === 257 ? { app: 'server' } : undefined),
};

describe('the policy routes', () => {
  let dir = '';
  let store: ServiceStore;
  let metrics: AgentMetrics;
  const apps: FastifyInstance[] = [];

  const app = async (policy?: PolicySource): Promise<FastifyInstance> => {
    const datapath = new FakeDatapath();
    const built = await buildApiServer({ store, datapath, metrics, log: memoryLogger(), version: '0.0.0-test', startedAt: Date.now(), ...(policy ? { policy } : {}) });
    apps.push(built);
    return built;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'xlb-policy-api-'));
    const datapath = new FakeDatapath();
    store = new ServiceStore({ datapath, stateFile: join(dir, 'state.json'), log: memoryLogger() });
    await store.start(new Map());
    metrics = new AgentMetrics({ datapath, store, processMetrics: false });
  });

  after(async () => {
    await Promise.all(apps.map((a) => a.close()));
    await store.idle();
    metrics.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('standalone: 409, policy needs Kubernetes mode', async () => {
    const standalone = await app();
    for (const url of ['/v1/identities', '/v1/policy/shop/server']) {
      const answer = await standalone.inject({ method: 'GET', url });
      assert.equal(answer.statusCode, 409, url);
      assert.match((answer.json() as { error: string }).error, /network policy needs Kubernetes mode/);
    }
  });

  test('Kubernetes mode: the identities, a pod\'s policy as the schema writes it, 404 naming a missing pod', async () => {
    const k8s = await app(source);
    const identities = await k8s.inject({ method: 'GET', url: '/v1/identities' });
    assert.equal(identities.statusCode, 200);
    assert.deepEqual(identities.json(), { identities: IDENTITIES });
    const policy = await k8s.inject({ method: 'GET', url: '/v1/policy/shop/server' });
    assert.equal(policy.statusCode, 200);
    assert.deepEqual(policy.json(), SERVER_VIEW, 'every member survives the serializer');
    const missing = await k8s.inject({ method: 'GET', url: '/v1/policy/shop/nobody' });
    assert.equal(missing.statusCode, 404);
    assert.deepEqual(missing.json(), { error: 'no pod shop/nobody in the cluster', issues: [] });
  });
});

describe('monitor lines of policy drops', () => {
  test('both identities and, when known, their labels; other events as before', () => {
    const datapath = new FakeDatapath();
    const drop = JSON.parse(monitorLine(fakeEvent({ reason: Reason.DROP_POLICY_INGRESS, srcIdentity: 256, dstIdentity: 257, serviceId: 0 }), datapath, source.identityLabels)) as Record<string, unknown>;
    assert.equal(drop.reasonLabel, 'policy_ingress');
    assert.deepEqual([drop.srcIdentity, drop.dstIdentity, drop.srcLabels, drop.dstLabels], [256, 257, { app: 'client' }, { app: 'server' }]);
    assert.match(formatMonitorEvent(drop), /^xx drop \(policy_ingress\) 198\.18\.0\.9:41000 -> 198\.18\.0\.10:80 tcp identity 256 \(app=client\) -> 257 \(app=server\)$/);

    const world = JSON.parse(monitorLine(fakeEvent({ reason: Reason.DROP_POLICY_EGRESS, direction: 1, srcIdentity: 256, dstIdentity: 2, serviceId: 0 }), datapath, source.identityLabels)) as Record<string, unknown>;
    assert.equal(world.dstLabels, undefined, 'an identity not known has no labels');
    assert.match(formatMonitorEvent(world), /tcp identity 256 \(app=client\) -> 2 egress$/);

    const plain = JSON.parse(monitorLine(fakeEvent({ serviceId: 0 }), datapath, source.identityLabels)) as Record<string, unknown>;
    assert.equal('srcIdentity' in plain, false);
    assert.doesNotMatch(formatMonitorEvent(plain), /identity/);
  });
});

describe('xlb policy get / xlb identity list text', () => {
  test("a pod's policy: identity, devices, each direction with its policies and rules", () => {
    assert.equal(
      formatEndpointPolicy(SERVER_VIEW),
      [
        'Pod shop/server 198.18.82.2, 2001:db8:82::2, device lxc-server (ifindex 12)',
        'Identity 257: app=server, io.kubernetes.pod.namespace=shop',
        'Ingress: enforced by shop/allow-client, shop/deny',
        '  allow from identity 1 (reserved=host): any protocol, any port',
        '  allow from identity 256 (app=client, io.kubernetes.pod.namespace=shop): TCP 8080',
        '  allow from identity 16777216 (cidr 198.18.90.0/24): UDP 5000-5007',
        'Egress: not enforced (no policy selects the pod for egress): everything allowed',
        '',
      ].join('\n'),
    );
    const denied = formatEndpointPolicy({ ...SERVER_VIEW, device: undefined, ifindex: undefined, egress: { enforced: true, policies: ['shop/deny-out'], rules: [] } } as EndpointPolicyView);
    assert.match(denied, /device not found yet/);
    assert.match(denied, /^Egress: enforced by shop\/deny-out: everything denied$/m);
  });

  test('the identities as a table; NAMESPACE/POD arguments', () => {
    const lines = formatIdentities(IDENTITIES).trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^\s*ID\s+KIND\s+NAMESPACE\s+LABELS\s+PODS$/);
    assert.match(lines[2] ?? '', /^\s+1\s+reserved\s+-\s+reserved=host\s+0$/);
    assert.match(lines[3] ?? '', /^\s+256\s+labels\s+shop\s+app=client\s+2$/);
    assert.match(lines[4] ?? '', /^16777216\s+cidr\s+-\s+cidr 198\.18\.90\.0\/24\s+0$/);
    assert.deepEqual(podArgument('shop/web-0'), { namespace: 'shop', pod: 'web-0' });
    assert.throws(() => podArgument('web-0'), (e: unknown) => e instanceof UsageError && /expected NAMESPACE\/POD/.test(e.message));
    assert.throws(() => podArgument(undefined), UsageError);
  });
});
