/**
 * Kubernetes objects → xlb's service model (lb/k8s), one case per kube-proxy rule. Inputs are API
 * objects as `kubectl get -o json` shows them; the builders below only fill in the members every such
 * object has (metadata, the defaults the API server writes), so each case states what it is about.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AF_INET, LbService, LbServiceKey, ServiceFlag } from '../../lb/layouts.js';
import { DEFAULT_MAGLEV_SEED, parseMaglevSeed } from '../../lb/maglev/index.js';
import { desiredLbState, type LbNodeConfig } from '../../lb/lbmap/desired.js';
import { IdAllocator } from '../../lb/lbmap/ids.js';
import { kubernetesServices, type KubernetesModel, type KubernetesOptions } from '../../lb/k8s/model.js';
import { nodeInfo, nodePortAddresses, parseNodePortAddresses } from '../../lb/k8s/node.js';
import { problemText, type Problem } from '../../lb/k8s/objects.js';
import { validateService, type Backend, type Service } from '../../lb/service.js';

type Obj = Record<string, unknown>;

let uidCounter = 0;
const uid = (): string => `5f1c${String(++uidCounter).padStart(4, '0')}-2b7e-4d1a-9c3e-8a6f0b2d4e71`;

function metadata(name: string, extra: Obj = {}): Obj {
  return { name, namespace: 'default', uid: uid(), resourceVersion: '48211', creationTimestamp: '2026-12-01T10:00:00Z', ...extra };
}

/** A Service as the API server returns it (type ClusterIP, IPv4 single stack unless `spec` says otherwise). */
function service(name: string, spec: Obj, more: { labels?: Obj; annotations?: Obj; status?: Obj } = {}): Obj {
  const clusterIP = spec.clusterIP ?? '198.19.0.10';
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: metadata(name, {
      ...(more.labels ? { labels: more.labels } : {}),
      ...(more.annotations ? { annotations: more.annotations } : {}),
    }),
    spec: {
      clusterIP,
      clusterIPs: [clusterIP],
      internalTrafficPolicy: 'Cluster',
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      selector: { app: name },
      sessionAffinity: 'None',
      type: 'ClusterIP',
      ...spec,
    },
    status: more.status ?? { loadBalancer: {} },
  };
}

/** An EndpointSlice as the EndpointSlice controller writes it (discovery.k8s.io/v1). */
function slice(name: string, serviceName: string, ports: Obj[], endpoints: Obj[], addressType = 'IPv4'): Obj {
  return {
    addressType,
    apiVersion: 'discovery.k8s.io/v1',
    endpoints,
    kind: 'EndpointSlice',
    metadata: metadata(name, {
      generateName: `${serviceName}-`,
      labels: { 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io', 'kubernetes.io/service-name': serviceName },
      ownerReferences: [{ apiVersion: 'v1', blockOwnerDeletion: true, controller: true, kind: 'Service', name: serviceName, uid: uid() }],
    }),
    ports,
  };
}

/** One endpoint of a v1 slice: a ready pod on `node`. */
function endpoint(address: string, node: string, extra: Obj = {}): Obj {
  const pod = `web-7d9f8b6c5-${address.replace(/[.:]/g, '')}`;
  return {
    addresses: [address],
    conditions: { ready: true, serving: true, terminating: false },
    nodeName: node,
    targetRef: { kind: 'Pod', name: pod, namespace: 'default', uid: uid() },
    ...extra,
  };
}

const terminating = { conditions: { ready: false, serving: true, terminating: true } };
const http = (port = 8080): Obj => ({ name: 'http', port, protocol: 'TCP' });
const unnamed = (port = 8080): Obj => ({ name: '', port, protocol: 'TCP' });

function node(name: string, zone?: string): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      uid: uid(),
      resourceVersion: '50012',
      labels: {
        'kubernetes.io/arch': 'amd64',
        'kubernetes.io/hostname': name,
        'kubernetes.io/os': 'linux',
        ...(zone !== undefined ? { 'topology.kubernetes.io/zone': zone, 'topology.kubernetes.io/region': 'lab' } : {}),
      },
    },
    spec: { podCIDR: '198.18.1.0/24', podCIDRs: ['198.18.1.0/24'] },
    status: {
      addresses: [
        { address: '198.18.0.1', type: 'InternalIP' },
        { address: '2001:db8::1:1', type: 'InternalIP' },
        { address: name, type: 'Hostname' },
        { address: '198.18.0.201', type: 'ExternalIP' },
      ],
    },
  };
}

function model(services: unknown[], slices: unknown[], options: KubernetesOptions & { node?: Obj } = {}): KubernetesModel {
  const { node: nodeObject, ...rest } = options;
  const result = kubernetesServices({ services, endpointSlices: slices, ...(nodeObject ? { node: nodeObject } : {}) }, { nodeName: 'node-a', ...rest });
  assertValid(result);
  return result;
}

/** Every service the model makes passes the model's gate unchanged (its backends are built valid, not re-checked). */
function assertValid(result: KubernetesModel): void {
  for (const [id, s] of result.services) assert.deepEqual(validateService(JSON.parse(JSON.stringify(s)), '', { clusterIP: true }), s, id);
}

function get(result: KubernetesModel, id: string): Service {
  const found = result.services.get(id);
  assert.ok(found, `no service ${id}; have ${[...result.services.keys()].join(', ')}`);
  return found;
}

/** "address:port state[@node]" per backend, sorted: the endpoints as the model carries them. */
function backends(service: Service): string[] {
  const text = (b: Backend): string => `${b.address.includes(':') ? `[${b.address}]` : b.address}:${b.port} ${b.state}${b.node ? `@${b.node}` : ''}`;
  return service.backends.map(text).sort();
}

function problems(result: KubernetesModel): string[] {
  return result.problems.map(problemText);
}

const M = 251;
const lbNode = (nodeName: string, addresses = ['198.18.0.1', '2001:db8::1:1']): LbNodeConfig => ({
  addresses,
  maglevTableSize: M,
  maglevSeed: parseMaglevSeed(DEFAULT_MAGLEV_SEED),
  defaultMode: 'dsr',
  nodeName,
});

/** Frontend text → its xlb_lb_svc value, from the desired map contents of `result`'s services. */
function desiredFrontends(result: KubernetesModel, config: LbNodeConfig): Map<string, { backendCount: number; flags: number; mode: number; affinityTimeout: number }> {
  const state = desiredLbState(result.services, config, new IdAllocator());
  assert.deepEqual(state.conflicts, []);
  const out = new Map<string, { backendCount: number; flags: number; mode: number; affinityTimeout: number }>();
  for (const entries of state.services.values()) {
    for (const { key, value } of entries.frontends.values()) {
      const k = LbServiceKey.decode(key);
      const proto = k.proto === 6 ? 'TCP' : k.proto === 17 ? 'UDP' : 'SCTP';
      const v = LbService.decode(value);
      out.set(`${k.family === AF_INET ? k.addr : `[${k.addr}]`}:${k.port}/${proto}`, {
        backendCount: v.backendCount,
        flags: v.flags,
        mode: v.mode,
        affinityTimeout: v.affinityTimeout,
      });
    }
  }
  return out;
}

describe('Kubernetes → service model: services and frontends', () => {
  test('ClusterIP: one xlb service per frontend, id namespace/name:port@address, origin kubernetes, backends from the slice', () => {
    // As `kubectl get service,endpointslice -o json` shows them.
    const web = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'shop', uid: 'a1b2c3d4-0000-4000-8000-000000000001', resourceVersion: '1200', creationTimestamp: '2026-12-01T10:00:00Z' },
      spec: {
        clusterIP: '198.19.0.10',
        clusterIPs: ['198.19.0.10'],
        internalTrafficPolicy: 'Cluster',
        ipFamilies: ['IPv4'],
        ipFamilyPolicy: 'SingleStack',
        ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 'http' }],
        selector: { app: 'web' },
        sessionAffinity: 'None',
        type: 'ClusterIP',
      },
      status: { loadBalancer: {} },
    };
    const webSlice = {
      addressType: 'IPv4',
      apiVersion: 'discovery.k8s.io/v1',
      endpoints: [
        {
          addresses: ['198.18.1.11'],
          conditions: { ready: true, serving: true, terminating: false },
          nodeName: 'node-a',
          targetRef: { kind: 'Pod', name: 'web-7d9f8b6c5-x2x9q', namespace: 'shop', uid: 'a1b2c3d4-0000-4000-8000-000000000011' },
          zone: 'zone-a',
        },
        {
          addresses: ['198.18.2.12'],
          conditions: { ready: true, serving: true, terminating: false },
          nodeName: 'node-b',
          targetRef: { kind: 'Pod', name: 'web-7d9f8b6c5-k8v4m', namespace: 'shop', uid: 'a1b2c3d4-0000-4000-8000-000000000012' },
          zone: 'zone-b',
        },
      ],
      kind: 'EndpointSlice',
      metadata: {
        generateName: 'web-',
        labels: { 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io', 'kubernetes.io/service-name': 'web' },
        name: 'web-7k2pq',
        namespace: 'shop',
        ownerReferences: [{ apiVersion: 'v1', blockOwnerDeletion: true, controller: true, kind: 'Service', name: 'web', uid: 'a1b2c3d4-0000-4000-8000-000000000001' }],
        resourceVersion: '1250',
        uid: 'a1b2c3d4-0000-4000-8000-000000000002',
      },
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    };
    const result = kubernetesServices({ services: [web], endpointSlices: [webSlice] }, { nodeName: 'node-a' });
    assertValid(result);
    assert.deepEqual(result.problems, []);
    assert.deepEqual(result.entries, [
      {
        id: 'shop/web:http@198.19.0.10',
        origin: 'kubernetes',
        servicePort: 'shop/web:http',
        service: {
          frontend: { address: '198.19.0.10', port: 80, protocol: 'TCP' },
          type: 'ClusterIP',
          algorithm: 'maglev',
          sessionAffinity: { type: 'None' },
          sourceRanges: [],
          backends: [
            { address: '198.18.1.11', port: 8080, weight: 100, state: 'active', node: 'node-a' },
            { address: '198.18.2.12', port: 8080, weight: 100, state: 'active', node: 'node-b' },
          ],
        },
      },
    ]);
    assert.deepEqual([...result.services.keys()], ['shop/web:http@198.19.0.10']);

    // Desired maps: a ClusterIP frontend gets a LoadBalancer's entry and both backends, no Maglev (east-west).
    const frontends = desiredFrontends(result, lbNode('node-a'));
    assert.deepEqual([...frontends.keys()], ['198.19.0.10:80/TCP']);
    assert.equal(frontends.get('198.19.0.10:80/TCP')?.backendCount, 2);
    assert.equal(frontends.get('198.19.0.10:80/TCP')?.flags, 0);
  });

  test('an unnamed port is named by its number in the id; ids stay put while endpoints change', () => {
    const svc = service('api', { ports: [{ port: 443, protocol: 'TCP', targetPort: 8443 }] });
    const one = model([svc], [slice('api-abc12', 'api', [unnamed(8443)], [endpoint('198.18.1.20', 'node-a')])]);
    const two = model([svc], [slice('api-abc12', 'api', [unnamed(8443)], [endpoint('198.18.1.21', 'node-b'), endpoint('198.18.1.22', 'node-c')])]);
    const none = model([svc], []);
    for (const result of [one, two, none]) assert.deepEqual([...result.services.keys()], ['default/api:443@198.19.0.10']);
    assert.deepEqual(backends(get(two, 'default/api:443@198.19.0.10')), ['198.18.1.21:8443 active@node-b', '198.18.1.22:8443 active@node-c']);
    assert.deepEqual(get(none, 'default/api:443@198.19.0.10').backends, [], 'no slice yet: a service without backends');
  });

  test('dual stack: clusterIPs give one service per family, each with the endpoints of its family', () => {
    const svc = service('web', {
      clusterIP: '198.19.0.10',
      clusterIPs: ['198.19.0.10', '2001:db8:96::a'],
      ipFamilies: ['IPv4', 'IPv6'],
      ipFamilyPolicy: 'PreferDualStack',
      ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }],
    });
    const result = model(
      [svc],
      [
        slice('web-v4', 'web', [http()], [endpoint('198.18.1.11', 'node-a')]),
        slice('web-v6', 'web', [http()], [endpoint('2001:db8:1::11', 'node-a')], 'IPv6'),
      ],
    );
    assert.deepEqual([...result.services.keys()], ['default/web:http@198.19.0.10', 'default/web:http@2001:db8:96::a']);
    assert.deepEqual(backends(get(result, 'default/web:http@198.19.0.10')), ['198.18.1.11:8080 active@node-a']);
    assert.deepEqual(backends(get(result, 'default/web:http@2001:db8:96::a')), ['[2001:db8:1::11]:8080 active@node-a']);
    assert.deepEqual(result.problems, []);
  });

  test('NodePort: a family-wide frontend at the nodePort beside the ClusterIP; NodePort addresses from the node or --nodeport-addresses', () => {
    const svc = service('web', { type: 'NodePort', externalTrafficPolicy: 'Cluster', ports: [{ name: 'http', nodePort: 30080, port: 80, protocol: 'TCP', targetPort: 8080 }] });
    const result = model([svc], [slice('web-1', 'web', [http()], [endpoint('198.18.1.11', 'node-b')])]);
    assert.deepEqual([...result.services.keys()], ['default/web:http@0.0.0.0', 'default/web:http@198.19.0.10']);
    const nodePort = get(result, 'default/web:http@0.0.0.0');
    assert.equal(nodePort.type, 'NodePort');
    assert.deepEqual(nodePort.frontend, { address: '0.0.0.0', port: 30080, protocol: 'TCP' });
    assert.deepEqual(backends(nodePort), ['198.18.1.11:8080 active@node-b']);

    // The node's addresses: InternalIP then ExternalIP; --nodeport-addresses narrows them.
    const info = nodeInfo(node('node-a', 'zone-a'), []);
    assert.deepEqual(info, { name: 'node-a', zone: 'zone-a', addresses: ['198.18.0.1', '2001:db8::1:1', '198.18.0.201'] });
    const candidates = info?.addresses ?? [];
    const spec = (values: string[]) => {
      const parsed = parseNodePortAddresses(values);
      assert.ok(typeof parsed !== 'string', String(parsed));
      return parsed;
    };
    assert.deepEqual(nodePortAddresses(candidates, spec([])), ['198.18.0.1', '2001:db8::1:1', '198.18.0.201']);
    assert.deepEqual(nodePortAddresses(candidates, spec(['198.18.0.200/29'])), ['198.18.0.201']);
    assert.deepEqual(nodePortAddresses(candidates, spec(['198.18.0.0/24', '2001:db8::/32'])), ['198.18.0.1', '2001:db8::1:1', '198.18.0.201']);
    assert.deepEqual(nodePortAddresses(candidates, spec(['primary'])), ['198.18.0.1', '2001:db8::1:1']);
    assert.match(String(parseNodePortAddresses(['primary', '198.18.0.0/24'])), /cannot be combined/);
    assert.match(String(parseNodePortAddresses(['198.18.0.0/33'])), /not a CIDR/);

    // Desired maps: the NodePort listens on each selected node address of its family.
    const frontends = desiredFrontends(result, lbNode('node-a', nodePortAddresses(candidates, spec(['198.18.0.0/24']))));
    assert.deepEqual([...frontends.keys()].sort(), ['198.18.0.1:30080/TCP', '198.18.0.201:30080/TCP', '198.19.0.10:80/TCP']);
    assert.equal(frontends.get('198.18.0.1:30080/TCP')?.flags, ServiceFlag.Maglev | ServiceFlag.NodePort);
  });

  test('LoadBalancer: ingress IPs (not hostnames, not ipMode Proxy) with loadBalancerSourceRanges; NodePort beside them', () => {
    const svc = service(
      'web',
      {
        type: 'LoadBalancer',
        allocateLoadBalancerNodePorts: true,
        externalTrafficPolicy: 'Cluster',
        clusterIPs: ['198.19.0.10', '2001:db8:96::a'],
        ipFamilies: ['IPv4', 'IPv6'],
        ipFamilyPolicy: 'RequireDualStack',
        loadBalancerSourceRanges: ['198.18.50.7/24', '2001:db8:50::/48'],
        ports: [{ name: 'http', nodePort: 31080, port: 80, protocol: 'TCP', targetPort: 8080 }],
      },
      {
        status: {
          loadBalancer: {
            ingress: [
              { ip: '198.18.100.10', ipMode: 'VIP' },
              { hostname: 'web.lb.example' },
              { ip: '198.18.100.11', ipMode: 'Proxy' },
              { ip: '2001:db8:100::10' },
            ],
          },
        },
      },
    );
    const result = model([svc], [slice('web-1', 'web', [http()], [endpoint('198.18.1.11', 'node-b')])]);
    assert.deepEqual(result.problems, []);
    assert.deepEqual(
      [...result.services.keys()],
      ['default/web:http@0.0.0.0', 'default/web:http@198.18.100.10', 'default/web:http@198.19.0.10', 'default/web:http@2001:db8:100::10', 'default/web:http@2001:db8:96::a', 'default/web:http@::'],
    );
    const lb = get(result, 'default/web:http@198.18.100.10');
    assert.equal(lb.type, 'LoadBalancer');
    assert.deepEqual(lb.frontend, { address: '198.18.100.10', port: 80, protocol: 'TCP' });
    assert.deepEqual(lb.sourceRanges, ['198.18.50.0/24'], 'host bits cleared, IPv4 ranges only');
    assert.deepEqual(get(result, 'default/web:http@2001:db8:100::10').sourceRanges, ['2001:db8:50::/48']);
    assert.deepEqual(get(result, 'default/web:http@0.0.0.0').sourceRanges, [], 'source ranges guard the load balancer IPs only, as kube-proxy');
    assert.deepEqual(get(result, 'default/web:http@198.19.0.10').sourceRanges, []);
    assert.deepEqual(get(result, 'default/web:http@2001:db8:96::a').backends, [], 'no IPv6 slice: no IPv6 backends');

    // The annotation stands in when the field is empty; a malformed entry is a problem, the rest apply.
    const annotated = service(
      'web',
      { type: 'LoadBalancer', ports: [{ name: 'http', nodePort: 31080, port: 80, protocol: 'TCP' }] },
      {
        annotations: { 'service.beta.kubernetes.io/load-balancer-source-ranges': '198.18.60.0/24, 198.18.61.0/33' },
        status: { loadBalancer: { ingress: [{ ip: '198.18.100.10' }] } },
      },
    );
    const viaAnnotation = model([annotated], []);
    assert.deepEqual(get(viaAnnotation, 'default/web:http@198.18.100.10').sourceRanges, ['198.18.60.0/24']);
    assert.deepEqual(problems(viaAnnotation), [
      'Service default/web: metadata.annotations["service.beta.kubernetes.io/load-balancer-source-ranges"]: "198.18.61.0/33" is not a CIDR (address/prefix-length, e.g. 198.18.0.0/24 or 2001:db8::/64)',
    ]);

    // A LoadBalancer without nodePorts (allocateLoadBalancerNodePorts false) has no NodePort frontend.
    const noNodePorts = service(
      'web',
      { type: 'LoadBalancer', allocateLoadBalancerNodePorts: false, ports: [{ name: 'http', port: 80, protocol: 'TCP' }] },
      { status: { loadBalancer: { ingress: [{ ip: '198.18.100.10' }] } } },
    );
    assert.deepEqual([...model([noNodePorts], []).services.keys()], ['default/web:http@198.18.100.10', 'default/web:http@198.19.0.10']);
  });

  test('externalIPs: a frontend each, on any service type; an address of a family the service lacks is a problem', () => {
    const svc = service('web', { externalIPs: ['198.18.100.20', '2001:db8:100::20', '198.18.100.20'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] });
    const result = model([svc], [slice('web-1', 'web', [http()], [endpoint('198.18.1.11', 'node-b')])]);
    assert.deepEqual([...result.services.keys()], ['default/web:http@198.18.100.20', 'default/web:http@198.19.0.10']);
    const external = get(result, 'default/web:http@198.18.100.20');
    assert.equal(external.type, 'ExternalIP');
    assert.deepEqual(backends(external), ['198.18.1.11:8080 active@node-b']);
    assert.deepEqual(problems(result), ['Service default/web: spec.externalIPs[1]: 2001:db8:100::20: the service has no IPv6 cluster address']);
  });

  test('an address that is both an ingress IP and an external IP is one frontend (the LoadBalancer one)', () => {
    const svc = service(
      'web',
      { type: 'LoadBalancer', externalIPs: ['198.18.100.10'], ports: [{ name: 'http', nodePort: 31080, port: 80, protocol: 'TCP' }] },
      { status: { loadBalancer: { ingress: [{ ip: '198.18.100.10' }] } } },
    );
    const result = model([svc], []);
    assert.equal(get(result, 'default/web:http@198.18.100.10').type, 'LoadBalancer');
    assert.equal(result.services.size, 3);
  });

  test('TCP, UDP and SCTP: each port its own services; slice ports match by name and protocol', () => {
    const dns = service('dns', {
      ports: [
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 },
        { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 53 },
        { name: 'sig', port: 2905, protocol: 'SCTP', targetPort: 2905 },
      ],
    });
    const slices = [
      slice(
        'dns-1',
        'dns',
        [
          { name: 'dns', port: 1053, protocol: 'UDP' },
          { name: 'dns-tcp', port: 1054, protocol: 'TCP' },
          { name: 'sig', port: 2905, protocol: 'SCTP' },
          { name: 'dns', port: 9999, protocol: 'TCP' },
        ],
        [endpoint('198.18.1.53', 'node-b')],
      ),
    ];
    const result = model([dns], slices);
    assert.deepEqual([...result.services.keys()], ['default/dns:dns-tcp@198.19.0.10', 'default/dns:dns@198.19.0.10', 'default/dns:sig@198.19.0.10']);
    assert.deepEqual(get(result, 'default/dns:dns@198.19.0.10').frontend, { address: '198.19.0.10', port: 53, protocol: 'UDP' });
    assert.deepEqual(backends(get(result, 'default/dns:dns@198.19.0.10')), ['198.18.1.53:1053 active@node-b']);
    assert.deepEqual(backends(get(result, 'default/dns:dns-tcp@198.19.0.10')), ['198.18.1.53:1054 active@node-b']);
    assert.equal(get(result, 'default/dns:sig@198.19.0.10').frontend.protocol, 'SCTP');
    const frontends = desiredFrontends(result, lbNode('node-a'));
    assert.deepEqual([...frontends.keys()].sort(), ['198.19.0.10:2905/SCTP', '198.19.0.10:53/TCP', '198.19.0.10:53/UDP']);
  });

  test('headless, ExternalName and not-yet-allocated services are ignored, silently', () => {
    const headless = service('db', { clusterIP: 'None', clusterIPs: ['None'], ports: [{ name: 'pg', port: 5432, protocol: 'TCP' }] });
    const external = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: metadata('mail'),
      spec: { externalName: 'mail.example.org', sessionAffinity: 'None', type: 'ExternalName' },
      status: { loadBalancer: {} },
    };
    const pending = service('new', { clusterIP: '', clusterIPs: [], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] });
    const slices = [slice('db-1', 'db', [{ name: 'pg', port: 5432, protocol: 'TCP' }], [endpoint('198.18.1.30', 'node-a')])];
    const result = model([headless, external, pending], slices);
    assert.deepEqual(result.entries, []);
    assert.deepEqual(result.problems, []);
  });

  test('service.kubernetes.io/service-proxy-name: a service naming a proxy is not ours, unless it names ours', () => {
    const ports = [{ name: 'http', port: 80, protocol: 'TCP' }];
    const plain = service('plain', { ports, clusterIP: '198.19.0.11' });
    const other = service('other', { ports, clusterIP: '198.19.0.12' }, { labels: { 'service.kubernetes.io/service-proxy-name': 'some-other-proxy' } });
    const ours = service('ours', { ports, clusterIP: '198.19.0.13' }, { labels: { 'service.kubernetes.io/service-proxy-name': 'xlb' } });
    const headlessLabel = service('hl', { ports, clusterIP: '198.19.0.14' }, { labels: { 'service.kubernetes.io/headless': '' } });
    const all = [plain, other, ours, headlessLabel];
    assert.deepEqual([...model(all, []).services.keys()], ['default/plain:http@198.19.0.11']);
    assert.deepEqual([...model(all, [], { serviceProxyName: 'xlb' }).services.keys()], ['default/ours:http@198.19.0.13']);
  });

  test('services without selectors: EndpointSlices written by hand serve them the same', () => {
    const svc = service('legacy', { selector: undefined, ports: [{ name: 'http', port: 80, protocol: 'TCP' }] });
    const handWritten = {
      addressType: 'IPv4',
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'legacy-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'legacy', 'endpointslice.kubernetes.io/managed-by': 'staff' } },
      ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
      endpoints: [{ addresses: ['198.18.5.5'] }],
    };
    const result = model([svc], [handWritten]);
    assert.deepEqual(get(result, 'default/legacy:http@198.19.0.10').backends, [{ address: '198.18.5.5', port: 80, weight: 100, state: 'active' }]);
    assert.deepEqual(result.problems, []);
  });

  test('absent and null members take the API\'s defaults: protocol TCP, type ClusterIP, an empty slice (endpoints: null)', () => {
    const svc = service('web', { type: null, ports: [{ name: 'http', port: 80, targetPort: 8080 }] });
    const empty = { ...slice('web-1', 'web', [{ name: 'http', port: 8080 }], []), endpoints: null };
    const result = model([svc], [empty]);
    assert.deepEqual(result.problems, []);
    assert.deepEqual(get(result, 'default/web:http@198.19.0.10').frontend, { address: '198.19.0.10', port: 80, protocol: 'TCP' });
    assert.deepEqual(get(result, 'default/web:http@198.19.0.10').backends, []);
  });
});

describe('Kubernetes → service model: per-service choices', () => {
  test('sessionAffinity ClientIP with timeoutSeconds (default 10800) on every frontend; a bad timeout is a problem and the default', () => {
    const ports = [{ name: 'http', nodePort: 30080, port: 80, protocol: 'TCP' }];
    const sticky = service('web', { type: 'NodePort', ports, sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } } });
    const result = model([sticky], []);
    for (const s of result.services.values()) assert.deepEqual(s.sessionAffinity, { type: 'ClientIP', timeoutSeconds: 600 });
    assert.equal(desiredFrontends(result, lbNode('node-a')).get('198.19.0.10:80/TCP')?.affinityTimeout, 600);

    const defaulted = model([service('web', { ports, sessionAffinity: 'ClientIP' })], []);
    assert.deepEqual(get(defaulted, 'default/web:http@198.19.0.10').sessionAffinity, { type: 'ClientIP', timeoutSeconds: 10800 });

    const bad = model([service('web', { ports, sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } } })], []);
    assert.deepEqual(get(bad, 'default/web:http@198.19.0.10').sessionAffinity, { type: 'ClientIP', timeoutSeconds: 10800 });
    assert.deepEqual(problems(bad), ['Service default/web: spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 is not an integer in 1..86400']);
  });

  test('forwarding mode and algorithm annotations: xlb.io/…, or Cilium\'s service.cilium.io/…; xlb\'s decides; malformed → problem, default', () => {
    const ports = [{ name: 'http', port: 80, protocol: 'TCP' }];
    const of = (annotations: Obj): KubernetesModel => model([service('web', { ports }, { annotations })], []);
    const id = 'default/web:http@198.19.0.10';

    const xlb = get(of({ 'xlb.io/forwarding-mode': 'snat', 'xlb.io/lb-algorithm': 'random' }), id);
    assert.equal(xlb.mode, 'snat');
    assert.equal(xlb.algorithm, 'random');

    const cilium = get(of({ 'service.cilium.io/forwarding-mode': 'dsr', 'service.cilium.io/lb-algorithm': 'random' }), id);
    assert.equal(cilium.mode, 'dsr');
    assert.equal(cilium.algorithm, 'random');

    const both = get(of({ 'xlb.io/forwarding-mode': 'hybrid', 'service.cilium.io/forwarding-mode': 'dsr' }), id);
    assert.equal(both.mode, 'hybrid');

    const none = get(of({}), id);
    assert.equal('mode' in none, false, "no annotation: the agent's --mode applies");
    assert.equal(none.algorithm, 'maglev');

    const malformed = of({ 'xlb.io/forwarding-mode': 'DSR!', 'service.cilium.io/lb-algorithm': 'round-robin' });
    assert.equal('mode' in get(malformed, id), false);
    assert.equal(get(malformed, id).algorithm, 'maglev');
    assert.deepEqual(problems(malformed), [
      'Service default/web: metadata.annotations["xlb.io/forwarding-mode"]: "DSR!" is not one of snat, dsr, hybrid; the default applies',
      'Service default/web: metadata.annotations["service.cilium.io/lb-algorithm"]: "round-robin" is not one of maglev, random; the default applies',
    ]);

    // Desired maps: the annotation's mode, else the agent's.
    const modes = desiredFrontends(of({ 'xlb.io/forwarding-mode': 'snat' }), lbNode('node-a'));
    const agentDefault = desiredFrontends(of({}), lbNode('node-a'));
    assert.notEqual(modes.get('198.19.0.10:80/TCP')?.mode, agentDefault.get('198.19.0.10:80/TCP')?.mode);
  });
});

describe('Kubernetes → service model: malformed input', () => {
  test('a malformed object or field is a problem naming the object and field; the rest, and every other service, still served', () => {
    const good = service('good', { clusterIP: '198.19.0.20', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] });
    const badPort = service('half', {
      clusterIP: '198.19.0.21',
      ports: [
        { name: 'http', port: 80, protocol: 'TCP' },
        { name: 'admin', port: 70000, protocol: 'TCP' },
        { name: 'quic', port: 443, protocol: 'QUIC' },
      ],
    });
    const badClusterIP = service('broken', { clusterIP: '198.19.0.300', clusterIPs: ['198.19.0.300'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] });
    const badType = service('odd', { clusterIP: '198.19.0.22', type: 'Bogus', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] });
    const noName = { apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'default' }, spec: {} };
    const slices = [
      slice('good-1', 'good', [http()], [endpoint('198.18.1.11', 'node-a'), endpoint('not-an-ip', 'node-a'), endpoint('127.0.0.1', 'node-a'), endpoint('198.18.1.12', 'Node_B')]),
      slice('half-1', 'half', [http(), { name: 'admin', protocol: 'TCP' }], [endpoint('198.18.1.13', 'node-a')]),
      { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'good-2', namespace: 'default', labels: { 'kubernetes.io/service-name': 'good' } }, addressType: 'IPv5', endpoints: [] },
      'garbage',
    ];
    const result = model([good, badPort, badClusterIP, badType, noName, null], slices);
    assert.deepEqual([...result.services.keys()], ['default/good:http@198.19.0.20', 'default/half:http@198.19.0.21']);
    assert.deepEqual(backends(get(result, 'default/good:http@198.19.0.20')), ['198.18.1.11:8080 active@node-a', '198.18.1.12:8080 active']);
    assert.deepEqual(backends(get(result, 'default/half:http@198.19.0.21')), ['198.18.1.13:8080 active@node-a']);
    assert.deepEqual(problems(result).sort(), [
      'EndpointSlice (unnamed): "garbage" is not an object',
      'EndpointSlice default/good-1: endpoints[1].addresses[0]: "not-an-ip" is not an IPv4 or IPv6 address',
      'EndpointSlice default/good-1: endpoints[2].addresses[0]: 127.0.0.1 is a loopback address (127.0.0.0/8), not a host address a service can use',
      'EndpointSlice default/good-1: endpoints[3].nodeName: "Node_B" is not a node name; the endpoint counts as on another node',
      'EndpointSlice default/good-2: addressType: "IPv5" is not one of IPv4, IPv6, FQDN',
      'EndpointSlice default/half-1: ports[1].port: absent: a proxy needs the port number',
      'Service (unnamed): null is not an object',
      'Service default/(unnamed): metadata.name: required',
      'Service default/broken: spec.clusterIPs[0]: "198.19.0.300" is not an IPv4 or IPv6 address',
      'Service default/half: spec.ports[1].port: 70000 is not an integer in 1..65535',
      'Service default/half: spec.ports[2].protocol: "QUIC" is not one of TCP, UDP, SCTP',
      'Service default/odd: spec.type: "Bogus" is not one of ClusterIP, NodePort, LoadBalancer, ExternalName',
    ]);
    const first: Problem | undefined = result.problems.find((p) => p.object.name === 'half');
    assert.deepEqual(first?.object, { kind: 'Service', namespace: 'default', name: 'half' }, 'structured, for an event');
  });

  test('an endpoint at its own frontend\'s address is left out of that frontend only, with a problem', () => {
    // A hostNetwork pod on a node whose address is also an external IP of the service.
    const svc = service('web', { externalIPs: ['198.18.0.1'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] });
    const result = model([svc], [slice('web-1', 'web', [http()], [endpoint('198.18.0.1', 'node-a'), endpoint('198.18.1.11', 'node-b')])]);
    assert.deepEqual(backends(get(result, 'default/web:http@198.18.0.1')), ['198.18.1.11:8080 active@node-b']);
    assert.deepEqual(backends(get(result, 'default/web:http@198.19.0.10')), ['198.18.0.1:8080 active@node-a', '198.18.1.11:8080 active@node-b']);
    assert.deepEqual(problems(result), [
      'EndpointSlice default/web-1: endpoints[0].addresses[0]: 198.18.0.1 is the address of frontend default/web:http@198.18.0.1: left out of it (it would loop)',
    ]);
  });
});
