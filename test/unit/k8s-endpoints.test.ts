/**
 * EndpointSlices → backends (lb/k8s/endpoints.ts, topology.ts): merging, named ports, conditions and
 * the terminating fallback, topology hints, traffic policies, and the v1beta1 shape, each asserted
 * on the model and, where the rule lives in the maps, on the desired map contents.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LbService, LbSlot, ServiceFlag } from '../../lb/layouts.js';
import { DEFAULT_MAGLEV_SEED, parseMaglevSeed } from '../../lb/maglev/index.js';
import { desiredLbState, type LbNodeConfig } from '../../lb/lbmap/desired.js';
import { IdAllocator } from '../../lb/lbmap/ids.js';
import { kubernetesServices, type KubernetesModel, type KubernetesOptions } from '../../lb/k8s/model.js';
import { healthCheckResponse } from '../../lb/k8s/health.js';
import { problemText } from '../../lb/k8s/objects.js';
import { validateService, type Backend, type Service } from '../../lb/service.js';

type Obj = Record<string, unknown>;

function service(name: string, spec: Obj): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default', uid: `0d2a9e61-${name}`, resourceVersion: '7001' },
    spec: {
      clusterIP: '198.19.0.10',
      clusterIPs: ['198.19.0.10'],
      internalTrafficPolicy: 'Cluster',
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 'http' }],
      selector: { app: name },
      sessionAffinity: 'None',
      type: 'ClusterIP',
      ...spec,
    },
    status: { loadBalancer: {} },
  };
}

const nodePortWeb = (extra: Obj = {}): Obj =>
  service('web', { type: 'NodePort', externalTrafficPolicy: 'Cluster', ports: [{ name: 'http', nodePort: 30080, port: 80, protocol: 'TCP', targetPort: 'http' }], ...extra });

function slice(name: string, endpoints: Obj[], ports: Obj[] = [{ name: 'http', port: 8080, protocol: 'TCP' }], apiVersion = 'discovery.k8s.io/v1'): Obj {
  return {
    addressType: 'IPv4',
    apiVersion,
    endpoints,
    kind: 'EndpointSlice',
    metadata: {
      name,
      namespace: 'default',
      generateName: 'web-',
      labels: { 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io', 'kubernetes.io/service-name': 'web' },
      resourceVersion: '7002',
    },
    ports,
  };
}

type Conditions = { ready?: boolean; serving?: boolean; terminating?: boolean };
const READY: Conditions = { ready: true, serving: true, terminating: false };
const TERMINATING: Conditions = { ready: false, serving: true, terminating: true };

function endpoint(last: number, node: string, conditions: Conditions = READY, extra: Obj = {}): Obj {
  return {
    addresses: [`198.18.1.${last}`],
    conditions,
    nodeName: node,
    targetRef: { kind: 'Pod', name: `web-5c7f9-${last}`, namespace: 'default', uid: `7a41c0de-${last}` },
    ...extra,
  };
}

function node(name: string, zone?: string): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, ...(zone !== undefined ? { 'topology.kubernetes.io/zone': zone } : {}) } },
    status: { addresses: [{ address: '198.18.0.1', type: 'InternalIP' }] },
  };
}

function model(services: Obj[], slices: Obj[], options: KubernetesOptions & { node?: Obj } = {}): KubernetesModel {
  const { node: nodeObject, ...rest } = options;
  const result = kubernetesServices({ services, endpointSlices: slices, ...(nodeObject ? { node: nodeObject } : {}) }, { nodeName: 'node-a', ...rest });
  assert.deepEqual(result.problems.map(problemText), []);
  for (const [id, s] of result.services) assert.deepEqual(validateService(JSON.parse(JSON.stringify(s)), '', { clusterIP: true }), s, id);
  return result;
}

function get(result: KubernetesModel, id: string): Service {
  const found = result.services.get(id);
  assert.ok(found, `no service ${id}; have ${[...result.services.keys()].join(', ')}`);
  return found;
}

const CLUSTER_IP = 'default/web:http@198.19.0.10';
const NODE_PORT = 'default/web:http@0.0.0.0';

/** "address:port state[@node]" per backend, sorted. */
function backends(service: Service): string[] {
  const text = (b: Backend): string => `${b.address}:${b.port} ${b.state}${b.node ? `@${b.node}` : ''}`;
  return service.backends.map(text).sort();
}

const lbNode = (nodeName: string): LbNodeConfig => ({
  addresses: ['198.18.0.1'],
  maglevTableSize: 251,
  maglevSeed: parseMaglevSeed(DEFAULT_MAGLEV_SEED),
  defaultMode: 'dsr',
  nodeName,
});

/** What the maps give one xlb service on node `nodeName`: its flags and the backends in its slots. */
function desired(result: KubernetesModel, id: string, nodeName: string): { flags: number; slots: string[] } {
  const service = get(result, id);
  const ids = new IdAllocator();
  const state = desiredLbState(new Map([[id, service]]), lbNode(nodeName), ids);
  const serviceId = ids.serviceId(id);
  assert.ok(serviceId !== undefined);
  const entries = state.services.get(serviceId);
  assert.ok(entries);
  const [frontend] = [...entries.frontends.values()];
  assert.ok(frontend);
  const value = LbService.decode(frontend.value);
  const slots = [...entries.slots.values()].map(({ value: v }) => {
    const { backend } = LbSlot.decode(v);
    return `${backend.addr}:${backend.port}`;
  });
  assert.equal(value.backendCount, slots.length);
  return { flags: value.flags, slots: slots.sort() };
}

describe('EndpointSlices → backends', () => {
  test('several slices of one service are merged; an endpoint in two slices counts once (the local copy if any)', () => {
    const slices = [
      slice('web-b', [endpoint(12, 'node-b'), endpoint(11, 'node-b', { ready: false, serving: false, terminating: false })]),
      slice('web-a', [endpoint(10, 'node-b'), endpoint(11, 'node-b')]),
      slice('web-c', [endpoint(13, 'node-c'), endpoint(12, 'node-a')]),
    ];
    const web = get(model([service('web', {})], slices), CLUSTER_IP);
    // 11: first by slice name (web-a: ready); 12: the copy on this node wins, as kube-proxy prefers it.
    assert.deepEqual(backends(web), ['198.18.1.10:8080 active@node-b', '198.18.1.11:8080 active@node-b', '198.18.1.12:8080 active@node-a', '198.18.1.13:8080 active@node-c']);
  });

  test('a named targetPort resolves per endpoint: each slice gives the number for the port name', () => {
    const slices = [
      slice('web-v1', [endpoint(10, 'node-a'), endpoint(11, 'node-b')], [{ name: 'http', port: 8080, protocol: 'TCP' }]),
      slice('web-v2', [endpoint(12, 'node-b')], [{ name: 'http', port: 9090, protocol: 'TCP' }, { name: 'metrics', port: 9100, protocol: 'TCP' }]),
      slice('web-x', [endpoint(13, 'node-b')], [{ name: 'grpc', port: 7070, protocol: 'TCP' }]),
    ];
    const web = get(model([service('web', {})], slices), CLUSTER_IP);
    assert.deepEqual(backends(web), ['198.18.1.10:8080 active@node-a', '198.18.1.11:8080 active@node-b', '198.18.1.12:9090 active@node-b']);
  });

  test('conditions: ready → active, serving+terminating → terminating, the rest maintenance; absent conditions are ready', () => {
    const slices = [
      slice('web-1', [
        endpoint(10, 'node-a', READY),
        endpoint(11, 'node-b', TERMINATING),
        endpoint(12, 'node-b', { ready: false, serving: false, terminating: false }),
        endpoint(13, 'node-b', { ready: false, serving: false, terminating: true }),
        endpoint(14, 'node-b', {}),
      ]),
    ];
    const web = get(model([service('web', {})], slices), CLUSTER_IP);
    assert.deepEqual(backends(web), [
      '198.18.1.10:8080 active@node-a',
      '198.18.1.11:8080 terminating@node-b',
      '198.18.1.12:8080 maintenance@node-b',
      '198.18.1.13:8080 maintenance@node-b',
      '198.18.1.14:8080 active@node-b',
    ]);
    // New flows: the ready ones only.
    assert.deepEqual(desired(model([service('web', {})], slices), CLUSTER_IP, 'node-a').slots, ['198.18.1.10:8080', '198.18.1.14:8080']);
  });

  test('terminating fallback: serving terminating endpoints get new flows only when no endpoint is ready', () => {
    const draining = [slice('web-1', [endpoint(10, 'node-a', TERMINATING), endpoint(11, 'node-b', TERMINATING), endpoint(12, 'node-b', { ready: false, serving: false, terminating: true })])];
    assert.deepEqual(desired(model([service('web', {})], draining), CLUSTER_IP, 'node-a').slots, ['198.18.1.10:8080', '198.18.1.11:8080']);

    const oneReady = [slice('web-1', [endpoint(10, 'node-a', TERMINATING), endpoint(11, 'node-b', TERMINATING), endpoint(12, 'node-b')])];
    assert.deepEqual(desired(model([service('web', {})], oneReady), CLUSTER_IP, 'node-a').slots, ['198.18.1.12:8080']);

    const dead = [slice('web-1', [endpoint(10, 'node-a', { ready: false, serving: false, terminating: true })])];
    assert.deepEqual(desired(model([service('web', {})], dead), CLUSTER_IP, 'node-a').slots, []);
  });
});

describe('topology hints (trafficDistribution PreferClose, topology-mode Auto)', () => {
  const zoned = (last: number, nodeName: string, zone: string, hint: string | undefined, conditions: Conditions = READY): Obj =>
    endpoint(last, nodeName, conditions, { zone, ...(hint !== undefined ? { hints: { forZones: [{ name: hint }] } } : {}) });
  const preferClose = service('web', { trafficDistribution: 'PreferClose' });

  test('every ready endpoint hinted and one for this zone: new flows only to this zone\'s hinted endpoints', () => {
    const slices = [slice('web-1', [zoned(10, 'node-a', 'zone-a', 'zone-a'), zoned(11, 'node-b', 'zone-b', 'zone-b'), zoned(12, 'node-c', 'zone-a', 'zone-a')])];
    const result = model([preferClose], slices, { node: node('node-a', 'zone-a') });
    assert.deepEqual(backends(get(result, CLUSTER_IP)), ['198.18.1.10:8080 active@node-a', '198.18.1.11:8080 maintenance@node-b', '198.18.1.12:8080 active@node-c']);
    assert.deepEqual(desired(result, CLUSTER_IP, 'node-a').slots, ['198.18.1.10:8080', '198.18.1.12:8080']);
    // From zone-b, the other way round.
    const fromB = model([preferClose], slices, { node: node('node-b', 'zone-b'), nodeName: 'node-b' });
    assert.deepEqual(desired(fromB, CLUSTER_IP, 'node-b').slots, ['198.18.1.11:8080']);
  });

  test('incomplete hints fall back to every endpoint, as kube-proxy: a ready endpoint without a hint, no hint for this zone, no zone label', () => {
    const all = ['198.18.1.10:8080 active@node-a', '198.18.1.11:8080 active@node-b'];
    const missing = [slice('web-1', [zoned(10, 'node-a', 'zone-a', 'zone-a'), zoned(11, 'node-b', 'zone-b', undefined)])];
    assert.deepEqual(backends(get(model([preferClose], missing, { node: node('node-a', 'zone-a') }), CLUSTER_IP)), all);

    const elsewhere = [slice('web-1', [zoned(10, 'node-a', 'zone-a', 'zone-a'), zoned(11, 'node-b', 'zone-b', 'zone-b')])];
    assert.deepEqual(backends(get(model([preferClose], elsewhere, { node: node('node-c', 'zone-c'), nodeName: 'node-c' }), CLUSTER_IP)), all);
    assert.deepEqual(backends(get(model([preferClose], elsewhere, { node: node('node-a') }), CLUSTER_IP)), all, 'Node without a zone label');
    assert.deepEqual(backends(get(model([preferClose], elsewhere), CLUSTER_IP)), all, 'Node not known yet');

    // Only ready endpoints count: an unhinted terminating one does not spoil the hints.
    const withTerminating = [slice('web-1', [zoned(10, 'node-a', 'zone-a', 'zone-a'), zoned(11, 'node-b', 'zone-b', 'zone-b'), zoned(12, 'node-b', 'zone-b', undefined, TERMINATING)])];
    assert.deepEqual(desired(model([preferClose], withTerminating, { node: node('node-a', 'zone-a') }), CLUSTER_IP, 'node-a').slots, ['198.18.1.10:8080']);
  });

  test('node hints (PreferSameNode) before zone hints', () => {
    const hinted = (last: number, nodeName: string): Obj =>
      endpoint(last, nodeName, READY, { zone: 'zone-a', hints: { forNodes: [{ name: nodeName }], forZones: [{ name: 'zone-a' }] } });
    const slices = [slice('web-1', [hinted(10, 'node-a'), hinted(11, 'node-b')])];
    const result = model([service('web', { trafficDistribution: 'PreferSameNode' })], slices, { node: node('node-a', 'zone-a') });
    assert.deepEqual(desired(result, CLUSTER_IP, 'node-a').slots, ['198.18.1.10:8080']);
  });

  test('topology does not apply to Local traffic policy', () => {
    const slices = [slice('web-1', [zoned(10, 'node-a', 'zone-b', 'zone-b'), zoned(11, 'node-b', 'zone-a', 'zone-a')])];
    const result = model([nodePortWeb({ externalTrafficPolicy: 'Local' })], slices, { node: node('node-a', 'zone-a') });
    assert.deepEqual(backends(get(result, NODE_PORT)), ['198.18.1.10:8080 active@node-a', '198.18.1.11:8080 active@node-b']);
    assert.deepEqual(desired(result, NODE_PORT, 'node-a').slots, ['198.18.1.10:8080']);
    assert.deepEqual(backends(get(result, CLUSTER_IP)), ['198.18.1.10:8080 maintenance@node-a', '198.18.1.11:8080 active@node-b'], 'the ClusterIP (Cluster policy) follows the hints');
  });
});

describe('traffic policies', () => {
  const slices = [slice('web-1', [endpoint(10, 'node-a'), endpoint(11, 'node-b'), endpoint(12, 'node-a')])];

  test('externalTrafficPolicy Local: NodePort, LoadBalancer and ExternalIP frontends send new flows to this node\'s endpoints; none here → drop', () => {
    const svc = service('web', {
      type: 'LoadBalancer',
      externalTrafficPolicy: 'Local',
      healthCheckNodePort: 32000,
      externalIPs: ['198.18.100.20'],
      ports: [{ name: 'http', nodePort: 30080, port: 80, protocol: 'TCP', targetPort: 'http' }],
    });
    const lb = { ...svc, status: { loadBalancer: { ingress: [{ ip: '198.18.100.10', ipMode: 'VIP' }] } } };
    const result = model([lb], slices);
    for (const id of [NODE_PORT, 'default/web:http@198.18.100.10', 'default/web:http@198.18.100.20']) {
      assert.equal(get(result, id).externalTrafficPolicy, 'Local', id);
      assert.deepEqual(desired(result, id, 'node-a'), { flags: ServiceFlag.Maglev | ServiceFlag.Local | (id === NODE_PORT ? ServiceFlag.NodePort : 0), slots: ['198.18.1.10:8080', '198.18.1.12:8080'] });
      assert.deepEqual(desired(result, id, 'node-c').slots, [], `${id}: no endpoint on node-c: no backend, the datapath drops (Local flag)`);
    }
    const clusterIP = get(result, CLUSTER_IP);
    assert.equal('externalTrafficPolicy' in clusterIP || 'internalTrafficPolicy' in clusterIP, false, 'the ClusterIP follows internalTrafficPolicy (Cluster)');
    assert.deepEqual(desired(result, CLUSTER_IP, 'node-c').slots, ['198.18.1.10:8080', '198.18.1.11:8080', '198.18.1.12:8080']);
  });

  test('healthCheckNodePort (LoadBalancer, externalTrafficPolicy Local): ready endpoints here, kube-proxy\'s answer 200/503', () => {
    const lb = (extra: Obj): Obj => ({
      ...service('web', {
        type: 'LoadBalancer',
        externalTrafficPolicy: 'Local',
        healthCheckNodePort: 32000,
        ports: [
          { name: 'http', nodePort: 30080, port: 80, protocol: 'TCP', targetPort: 'http' },
          { name: 'https', nodePort: 30443, port: 443, protocol: 'TCP', targetPort: 'https' },
        ],
        ...extra,
      }),
    });
    const both = [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'https', port: 8443, protocol: 'TCP' }];
    const twoPorts = [slice('web-1', [endpoint(10, 'node-a'), endpoint(11, 'node-b'), endpoint(12, 'node-a', TERMINATING)], both)];
    const [check] = model([lb({})], twoPorts).healthChecks;
    assert.deepEqual(check, { nodePort: 32000, namespace: 'default', name: 'web', localEndpoints: 2 }, 'one ready pod here, counted per port as kube-proxy');
    assert.ok(check);
    assert.deepEqual(healthCheckResponse(check), {
      status: 200,
      headers: { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff', 'X-Load-Balancing-Endpoint-Weight': '2' },
      body: { service: { namespace: 'default', name: 'web' }, localEndpoints: 2, serviceProxyHealthy: true },
    });
    assert.equal(healthCheckResponse(check, false).status, 503, 'an unhealthy proxy answers 503');

    const [elsewhere] = model([lb({})], twoPorts, { nodeName: 'node-c' }).healthChecks;
    assert.ok(elsewhere);
    assert.equal(elsewhere.localEndpoints, 0);
    assert.equal(healthCheckResponse(elsewhere).status, 503);

    assert.deepEqual(model([lb({ externalTrafficPolicy: 'Cluster' })], twoPorts).healthChecks, [], 'Cluster policy: none');
  });

  test('Local with only terminating endpoints here uses them, even while ready ones run elsewhere (kube-proxy\'s local fallback)', () => {
    const mixed = [slice('web-1', [endpoint(10, 'node-a', TERMINATING), endpoint(11, 'node-b')])];
    const result = model([nodePortWeb({ externalTrafficPolicy: 'Local' })], mixed);
    assert.deepEqual(desired(result, NODE_PORT, 'node-a').slots, ['198.18.1.10:8080']);
    assert.deepEqual(desired(result, CLUSTER_IP, 'node-a').slots, ['198.18.1.11:8080'], 'Cluster: the ready one');
  });

  test('internalTrafficPolicy Local: the ClusterIP frontend sends new flows to this node\'s endpoints; NodePort frontends keep Cluster', () => {
    const result = model([nodePortWeb({ internalTrafficPolicy: 'Local' })], slices);
    assert.equal(get(result, CLUSTER_IP).internalTrafficPolicy, 'Local');
    assert.deepEqual(desired(result, CLUSTER_IP, 'node-b'), { flags: ServiceFlag.Local, slots: ['198.18.1.11:8080'] });
    assert.deepEqual(desired(result, CLUSTER_IP, 'node-c').slots, [], 'none here: dropped');
    assert.equal('externalTrafficPolicy' in get(result, NODE_PORT), false);
    assert.deepEqual(desired(result, NODE_PORT, 'node-c').slots, ['198.18.1.10:8080', '198.18.1.11:8080', '198.18.1.12:8080']);
  });

  test('this node is --node-name, else the Node object\'s name', () => {
    const hinted = (last: number, nodeName: string): Obj => endpoint(last, nodeName, READY, { hints: { forNodes: [{ name: nodeName }] } });
    const objects = { services: [service('web', {})], endpointSlices: [slice('web-1', [hinted(10, 'node-a'), hinted(11, 'node-b')])], node: node('node-b') };
    const byNodeObject = kubernetesServices(objects);
    assert.deepEqual(byNodeObject.problems, []);
    assert.deepEqual(backends(get(byNodeObject, CLUSTER_IP)), ['198.18.1.10:8080 maintenance@node-a', '198.18.1.11:8080 active@node-b']);
    const byFlag = kubernetesServices(objects, { nodeName: 'node-a' });
    assert.deepEqual(backends(get(byFlag, CLUSTER_IP)), ['198.18.1.10:8080 active@node-a', '198.18.1.11:8080 maintenance@node-b']);
  });
});

describe('discovery.k8s.io/v1beta1 EndpointSlices (Kubernetes 1.20)', () => {
  test('node and zone from topology, conditions.ready only (never terminating), hints if present', () => {
    const beta = slice(
      'web-beta',
      [
        { addresses: ['198.18.1.10'], conditions: { ready: true }, topology: { 'kubernetes.io/hostname': 'node-a', 'topology.kubernetes.io/zone': 'zone-a' }, targetRef: { kind: 'Pod', name: 'web-1', namespace: 'default' } },
        { addresses: ['198.18.1.11'], conditions: { ready: false }, topology: { 'kubernetes.io/hostname': 'node-a', 'topology.kubernetes.io/zone': 'zone-a' } },
        { addresses: ['198.18.1.12'], conditions: { ready: true }, topology: { 'kubernetes.io/hostname': 'node-b', 'topology.kubernetes.io/zone': 'zone-b' } },
        { addresses: ['198.18.1.13'], conditions: {}, topology: { 'kubernetes.io/hostname': 'node-b' } },
      ],
      [{ name: 'http', port: 8080, protocol: 'TCP' }],
      'discovery.k8s.io/v1beta1',
    );
    const result = model([nodePortWeb({ externalTrafficPolicy: 'Local' })], [beta]);
    assert.deepEqual(backends(get(result, CLUSTER_IP)), [
      '198.18.1.10:8080 active@node-a',
      '198.18.1.11:8080 maintenance@node-a',
      '198.18.1.12:8080 active@node-b',
      '198.18.1.13:8080 active@node-b',
    ]);
    assert.deepEqual(desired(result, NODE_PORT, 'node-a').slots, ['198.18.1.10:8080']);
    assert.deepEqual(desired(result, NODE_PORT, 'node-b').slots, ['198.18.1.12:8080', '198.18.1.13:8080']);

    // 1.21's v1beta1 carries zone hints too.
    const hinted = slice(
      'web-beta',
      [
        { addresses: ['198.18.1.10'], conditions: { ready: true }, topology: { 'kubernetes.io/hostname': 'node-a', 'topology.kubernetes.io/zone': 'zone-a' }, hints: { forZones: [{ name: 'zone-a' }] } },
        { addresses: ['198.18.1.12'], conditions: { ready: true }, topology: { 'kubernetes.io/hostname': 'node-b', 'topology.kubernetes.io/zone': 'zone-b' }, hints: { forZones: [{ name: 'zone-b' }] } },
      ],
      [{ name: 'http', port: 8080, protocol: 'TCP' }],
      'discovery.k8s.io/v1beta1',
    );
    assert.deepEqual(desired(model([service('web', {})], [hinted], { node: node('node-c', 'zone-b'), nodeName: 'node-c' }), CLUSTER_IP, 'node-c').slots, ['198.18.1.12:8080']);
  });
});
