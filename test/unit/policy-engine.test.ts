/**
 * The identity policy computation (lb/policy/engine.ts), one case per NetworkPolicy rule kind: real
 * NetworkPolicy JSON in, the local endpoint's PolicyRule list out. Every endpoint that is ingress
 * enforced also allows ingress from Host (Kubernetes: a pod cannot block its own node); the cases
 * state that rule with `HOST` so what each case is about stays visible.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PolicyEngine, type LocalEndpoint } from '../../lb/policy/engine.js';
import { ReservedIdentity, type PolicyRule } from '../../lb/policy/types.js';
import { cidrIdentity, identityOf, networkPolicy, pod, rule, sortRules } from '../support/policy-objects.js';

const HOST = rule('ingress', ReservedIdentity.Host);
const TCP = 6;
const UDP = 17;
const SCTP = 132;

/** The cluster most cases use: namespaces prod (team=shop) and staging (team=shop), monitoring (team=ops). */
function cluster(): PolicyEngine {
  const engine = new PolicyEngine({ nodeName: 'node-a' });
  engine.upsertNamespace({ name: 'prod', labels: { team: 'shop', env: 'prod' } });
  engine.upsertNamespace({ name: 'staging', labels: { team: 'shop', env: 'staging' } });
  engine.upsertNamespace({ name: 'monitoring', labels: { team: 'ops' } });
  engine.upsertPod(pod('prod', 'web-1', { app: 'web', tier: 'front' }, ['198.18.1.10']));
  engine.upsertPod(pod('prod', 'api-1', { app: 'api', tier: 'back' }, ['198.18.1.11'], { nodeName: 'node-b' }));
  engine.upsertPod(pod('prod', 'db-1', { app: 'db', tier: 'back' }, ['198.18.1.12'], { nodeName: 'node-b' }));
  engine.upsertPod(pod('staging', 'web-1', { app: 'web', tier: 'front' }, ['198.18.2.10'], { nodeName: 'node-b' }));
  engine.upsertPod(pod('staging', 'api-1', { app: 'api', tier: 'back' }, ['198.18.2.11'], { nodeName: 'node-b' }));
  engine.upsertPod(pod('monitoring', 'prometheus-0', { app: 'prometheus' }, ['198.18.3.10'], { nodeName: 'node-b' }));
  return engine;
}

function apply(engine: PolicyEngine, ...policies: Record<string, unknown>[]): void {
  for (const policy of policies) assert.deepEqual(engine.upsertPolicy(policy), []);
  engine.flush();
}

function endpointOf(engine: PolicyEngine, namespace: string, name: string): LocalEndpoint {
  const endpoint = engine.endpoint(namespace, name);
  assert.ok(endpoint, `${namespace}/${name} is a local endpoint`);
  return endpoint;
}

function assertRules(engine: PolicyEngine, namespace: string, name: string, expected: PolicyRule[]): void {
  assert.deepEqual(endpointOf(engine, namespace, name).rules, sortRules(expected));
}

const webSelector = { matchLabels: { app: 'web' } };

describe('NetworkPolicy → endpoint rules', () => {
  test('no policy selects the pod: nothing enforced, no rules', () => {
    const engine = cluster();
    engine.flush();
    const endpoint = endpointOf(engine, 'prod', 'web-1');
    assert.equal(endpoint.ingressEnforced, false);
    assert.equal(endpoint.egressEnforced, false);
    assert.deepEqual(endpoint.rules, []);
    assert.equal(endpoint.identity, identityOf(engine, 'prod', 'web-1'));
    assert.deepEqual(endpoint.ips, ['198.18.1.10']);
  });

  test('default deny ingress: ingress enforced, only Host allowed; without allowHostIngress nothing', () => {
    const denyAll = networkPolicy('prod', 'default-deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] });
    const engine = cluster();
    apply(engine, denyAll);
    const endpoint = endpointOf(engine, 'prod', 'web-1');
    assert.equal(endpoint.ingressEnforced, true);
    assert.equal(endpoint.egressEnforced, false);
    assert.deepEqual(endpoint.rules, [HOST]);

    const strict = new PolicyEngine({ nodeName: 'node-a', allowHostIngress: false });
    strict.upsertPod(pod('prod', 'web-1', { app: 'web' }, ['198.18.1.10']));
    apply(strict, denyAll);
    assert.deepEqual(endpointOf(strict, 'prod', 'web-1').rules, []);
    assert.equal(endpointOf(strict, 'prod', 'web-1').ingressEnforced, true);
  });

  test('allow all: ingress [{}] allows any identity, any protocol; `ingress: []` allows nothing', () => {
    const engine = cluster();
    apply(engine, networkPolicy('prod', 'allow-all', { podSelector: webSelector, ingress: [{}], policyTypes: ['Ingress'] }));
    assertRules(engine, 'prod', 'web-1', [rule('ingress', ReservedIdentity.Any), HOST]);

    apply(engine, networkPolicy('prod', 'allow-all', { podSelector: webSelector, ingress: [], policyTypes: ['Ingress'] }));
    assertRules(engine, 'prod', 'web-1', [HOST]);
  });

  test('podSelector peer: pods of the policy namespace only', () => {
    const engine = cluster();
    apply(
      engine,
      networkPolicy('prod', 'web-from-api', {
        podSelector: webSelector,
        ingress: [{ from: [{ podSelector: { matchLabels: { app: 'api' } } }], ports: [{ protocol: 'TCP', port: 80 }] }],
        policyTypes: ['Ingress'],
      }),
    );
    // staging/api-1 has the same labels, in another namespace: another identity, not selected.
    assert.notEqual(identityOf(engine, 'staging', 'api-1'), identityOf(engine, 'prod', 'api-1'));
    assertRules(engine, 'prod', 'web-1', [rule('ingress', identityOf(engine, 'prod', 'api-1'), TCP, 80), HOST]);
  });

  test('namespaceSelector peer: every pod of the matching namespaces', () => {
    const engine = cluster();
    apply(
      engine,
      networkPolicy('prod', 'web-from-ops', {
        podSelector: webSelector,
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'ops' } } }], ports: [{ port: 9090 }] }],
        policyTypes: ['Ingress'],
      }),
    );
    assertRules(engine, 'prod', 'web-1', [rule('ingress', identityOf(engine, 'monitoring', 'prometheus-0'), TCP, 9090), HOST]);
  });

  test('namespaceSelector + podSelector in one peer (both) differs from two peers (either)', () => {
    const peerBoth = { namespaceSelector: { matchLabels: { team: 'shop' } }, podSelector: { matchLabels: { app: 'api' } } };
    const engine = cluster();
    apply(engine, networkPolicy('prod', 'web-in', { podSelector: webSelector, ingress: [{ from: [peerBoth] }], policyTypes: ['Ingress'] }));
    const prodApi = identityOf(engine, 'prod', 'api-1');
    const stagingApi = identityOf(engine, 'staging', 'api-1');
    // api pods of the team=shop namespaces (prod and staging), nothing else.
    assertRules(engine, 'prod', 'web-1', [rule('ingress', prodApi), rule('ingress', stagingApi), HOST]);

    const twoPeers = [{ namespaceSelector: peerBoth.namespaceSelector }, { podSelector: peerBoth.podSelector }];
    apply(engine, networkPolicy('prod', 'web-in', { podSelector: webSelector, ingress: [{ from: twoPeers }], policyTypes: ['Ingress'] }));
    // Every pod of prod and staging (web, db too), or an api pod of prod.
    const everyShopPod = ['prod/web-1', 'prod/api-1', 'prod/db-1', 'staging/web-1', 'staging/api-1'].map((key) => {
      const [namespace = '', name = ''] = key.split('/');
      return rule('ingress', identityOf(engine, namespace, name));
    });
    assertRules(engine, 'prod', 'web-1', [...everyShopPod, HOST]);
  });

  test('matchExpressions: In, NotIn, Exists, DoesNotExist', () => {
    const engine = cluster();
    engine.upsertPod(pod('prod', 'canary-1', { app: 'api', tier: 'back', track: 'canary' }, ['198.18.1.13'], { nodeName: 'node-b' }));
    const from = (expressions: unknown[]): Record<string, unknown> =>
      networkPolicy('prod', 'web-in', { podSelector: webSelector, ingress: [{ from: [{ podSelector: { matchExpressions: expressions } }] }], policyTypes: ['Ingress'] });
    const ids = (...names: string[]): PolicyRule[] => [...names.map((n) => rule('ingress', identityOf(engine, 'prod', n))), HOST];

    apply(engine, from([{ key: 'app', operator: 'In', values: ['api', 'db'] }]));
    assertRules(engine, 'prod', 'web-1', ids('api-1', 'db-1', 'canary-1'));
    apply(engine, from([{ key: 'app', operator: 'NotIn', values: ['api', 'db'] }]));
    assertRules(engine, 'prod', 'web-1', ids('web-1'));
    apply(engine, from([{ key: 'track', operator: 'Exists' }]));
    assertRules(engine, 'prod', 'web-1', ids('canary-1'));
    apply(engine, from([{ key: 'app', operator: 'In', values: ['api'] }, { key: 'track', operator: 'DoesNotExist' }]));
    assertRules(engine, 'prod', 'web-1', ids('api-1'));
  });

  test('ipBlock with except, beside nested and overlapping blocks of another policy', () => {
    const engine = cluster();
    apply(
      engine,
      networkPolicy('prod', 'web-egress', {
        podSelector: webSelector,
        egress: [{ to: [{ ipBlock: { cidr: '198.18.0.0/15', except: ['198.18.128.0/17'] } }], ports: [{ protocol: 'TCP', port: 443 }] }],
        policyTypes: ['Egress'],
      }),
      // Another endpoint's policy: prefixes inside the first one's cidr, inside and across its except.
      networkPolicy('prod', 'api-egress', {
        podSelector: { matchLabels: { app: 'api' } },
        egress: [{ to: [{ ipBlock: { cidr: '198.18.64.0/18' } }, { ipBlock: { cidr: '198.18.128.0/18' } }, { ipBlock: { cidr: '198.18.0.0/16', except: ['198.18.200.0/24'] } }] }],
        policyTypes: ['Egress'],
      }),
    );
    const id = (cidr: string): number => cidrIdentity(engine, cidr);
    // An address of 198.18.64.0/18 is that prefix's identity in the ipcache: the broader rule must still allow it.
    // 198.18.128.0/18 lies in the except, and 198.18.200.0/24 too: not allowed. 198.18.0.0/16 is inside the /15, not in the except.
    assertRules(engine, 'prod', 'web-1', [
      rule('egress', id('198.18.0.0/15'), TCP, 443),
      rule('egress', id('198.18.0.0/16'), TCP, 443),
      rule('egress', id('198.18.64.0/18'), TCP, 443),
    ]);
    assert.equal(endpointOf(engine, 'prod', 'web-1').ingressEnforced, false);

    const fresh = cluster();
    fresh.upsertPolicy(networkPolicy('prod', 'web-egress', { podSelector: webSelector, egress: [{ to: [{ ipBlock: { cidr: '198.18.0.0/15', except: ['198.18.128.0/17'] } }] }], policyTypes: ['Egress'] }));
    const entries = new Map(fresh.flush().ipcacheSet.map((e) => [e.cidr, e.identity]));
    assert.equal(entries.get('198.18.0.0/15'), cidrIdentity(fresh, '198.18.0.0/15'));
    assert.equal(entries.get('198.18.128.0/17'), cidrIdentity(fresh, '198.18.128.0/17'));
    assert.equal(entries.get('0.0.0.0/0'), ReservedIdentity.World);
    assert.equal(entries.get('::/0'), ReservedIdentity.World);
    assert.equal(entries.get('198.18.1.10/32'), identityOf(fresh, 'prod', 'web-1'), 'pod addresses keep their pod identity inside an ipBlock');
  });

  test('ipBlock 0.0.0.0/0 with except: World and every prefix outside the except', () => {
    const engine = cluster();
    apply(
      engine,
      networkPolicy('prod', 'web-egress', {
        podSelector: webSelector,
        egress: [{ to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['198.18.0.0/16'] } }] }],
        policyTypes: ['Egress'],
      }),
      networkPolicy('prod', 'other', {
        podSelector: { matchLabels: { app: 'db' } },
        egress: [{ to: [{ ipBlock: { cidr: '198.19.0.0/16' } }, { ipBlock: { cidr: '198.18.0.0/15' } }, { ipBlock: { cidr: '198.18.7.0/24' } }, { ipBlock: { cidr: '2001:db8::/32' } }] }],
        policyTypes: ['Egress'],
      }),
    );
    const id = (cidr: string): number => cidrIdentity(engine, cidr);
    assertRules(engine, 'prod', 'web-1', [
      rule('egress', ReservedIdentity.World),
      rule('egress', id('198.18.0.0/15')),
      rule('egress', id('198.19.0.0/16')),
    ]);
  });

  test('named ports: ingress against the selected pod own ports, egress against each peer', () => {
    const engine = new PolicyEngine({ nodeName: 'node-a' });
    const http = (port: number): PodInfoPorts => [{ name: 'http', port, protocol: 'TCP' }];
    engine.upsertPod(pod('prod', 'web-1', { app: 'web' }, ['198.18.1.10'], { namedPorts: http(8080) }));
    engine.upsertPod(pod('prod', 'web-2', { app: 'web' }, ['198.18.1.11'], { namedPorts: http(8081) }));
    engine.upsertPod(pod('prod', 'client-1', { app: 'client' }, ['198.18.1.20']));
    engine.upsertPod(pod('prod', 'shop-1', { app: 'shop', v: '1' }, ['198.18.1.30'], { nodeName: 'node-b', namedPorts: http(8443) }));
    engine.upsertPod(pod('prod', 'shop-2', { app: 'shop', v: '2' }, ['198.18.1.31'], { nodeName: 'node-b', namedPorts: [{ name: 'http', port: 9443, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }] }));
    engine.upsertPod(pod('prod', 'shop-3', { app: 'shop', v: '3' }, ['198.18.1.32'], { nodeName: 'node-b' }));
    apply(
      engine,
      networkPolicy('prod', 'web-in', {
        podSelector: webSelector,
        ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }], ports: [{ protocol: 'TCP', port: 'http' }, { protocol: 'TCP', port: 'metrics' }] }],
        policyTypes: ['Ingress'],
      }),
      networkPolicy('prod', 'client-out', {
        podSelector: { matchLabels: { app: 'client' } },
        egress: [
          { to: [{ podSelector: { matchLabels: { app: 'shop' } } }], ports: [{ port: 'http' }, { protocol: 'UDP', port: 'http' }] },
          { ports: [{ protocol: 'UDP', port: 'dns' }] },
        ],
        policyTypes: ['Egress'],
      }),
    );
    const client = identityOf(engine, 'prod', 'client-1');
    // Each web replica: its own port named http; no pod names a port "metrics": nothing for it.
    assertRules(engine, 'prod', 'web-1', [rule('ingress', client, TCP, 8080), HOST]);
    assertRules(engine, 'prod', 'web-2', [rule('ingress', client, TCP, 8081), HOST]);
    // Egress: each shop identity with the port its pods name http (TCP; none name a UDP http); shop-3 names none.
    // An empty `to` with a named port: every port any pod gives that name.
    assertRules(engine, 'prod', 'client-1', [
      rule('egress', ReservedIdentity.Any, UDP, 53),
      rule('egress', identityOf(engine, 'prod', 'shop-1'), TCP, 8443),
      rule('egress', identityOf(engine, 'prod', 'shop-2'), TCP, 9443),
    ]);

    // A peer's named port changing reaches the endpoints whose egress names it.
    engine.upsertPod(pod('prod', 'shop-3', { app: 'shop', v: '3' }, ['198.18.1.32'], { nodeName: 'node-b', namedPorts: http(7000) }));
    const delta = engine.flush();
    assert.deepEqual(delta.endpointsSet.map((e) => e.name), ['client-1']);
    assert.ok(endpointOf(engine, 'prod', 'client-1').rules.some((r) => r.identity === identityOf(engine, 'prod', 'shop-3') && r.port === 7000));
  });

  test('endPort: a range becomes its exact minimal cover of port prefixes', () => {
    const engine = cluster();
    apply(
      engine,
      networkPolicy('prod', 'web-in', {
        podSelector: webSelector,
        ingress: [{ ports: [{ protocol: 'TCP', port: 32000, endPort: 32768 }, { protocol: 'SCTP', port: 5000, endPort: 5000 }, { protocol: 'UDP' }] }],
        policyTypes: ['Ingress'],
      }),
    );
    assertRules(engine, 'prod', 'web-1', [
      { direction: 'ingress', identity: 0, protocol: TCP, port: 32000, portPrefixLen: 8 }, // 32000–32255
      { direction: 'ingress', identity: 0, protocol: TCP, port: 32256, portPrefixLen: 7 }, // 32256–32767
      { direction: 'ingress', identity: 0, protocol: TCP, port: 32768, portPrefixLen: 16 },
      { direction: 'ingress', identity: 0, protocol: UDP, port: 0, portPrefixLen: 0 }, // every UDP port
      { direction: 'ingress', identity: 0, protocol: SCTP, port: 5000, portPrefixLen: 16 },
      HOST,
    ]);
  });

  test('policyTypes defaulting: Ingress always, Egress when there are egress rules; a type not listed is not enforced', () => {
    const engine = cluster();
    const egress = [{ to: [{ podSelector: { matchLabels: { app: 'api' } } }] }];
    apply(engine, networkPolicy('prod', 'p', { podSelector: webSelector, egress }));
    let endpoint = endpointOf(engine, 'prod', 'web-1');
    assert.deepEqual([endpoint.ingressEnforced, endpoint.egressEnforced], [true, true]);
    assert.deepEqual(endpoint.rules, sortRules([HOST, rule('egress', identityOf(engine, 'prod', 'api-1'))]));

    apply(engine, networkPolicy('prod', 'p', { podSelector: webSelector }));
    endpoint = endpointOf(engine, 'prod', 'web-1');
    assert.deepEqual([endpoint.ingressEnforced, endpoint.egressEnforced], [true, false]);

    // Ingress rules in a policy that is of type Egress only: ignored.
    apply(engine, networkPolicy('prod', 'p', { podSelector: webSelector, ingress: [{}], egress, policyTypes: ['Egress'] }));
    endpoint = endpointOf(engine, 'prod', 'web-1');
    assert.deepEqual([endpoint.ingressEnforced, endpoint.egressEnforced], [false, true]);
    assert.deepEqual(endpoint.rules, [rule('egress', identityOf(engine, 'prod', 'api-1'))]);
  });

  test('an egress-only policy leaves ingress unenforced', () => {
    const engine = cluster();
    apply(engine, networkPolicy('prod', 'deny-egress', { podSelector: {}, policyTypes: ['Egress'] }));
    const endpoint = endpointOf(engine, 'prod', 'web-1');
    assert.equal(endpoint.ingressEnforced, false);
    assert.equal(endpoint.egressEnforced, true);
    assert.deepEqual(endpoint.rules, []);
    assert.deepEqual(engine.selectingPolicies('prod', 'web-1'), { ingress: [], egress: ['prod/deny-egress'] });
  });

  test('two policies selecting one pod are additive; duplicates appear once', () => {
    const engine = cluster();
    const api = { podSelector: { matchLabels: { app: 'api' } } };
    apply(
      engine,
      networkPolicy('prod', 'a', { podSelector: webSelector, ingress: [{ from: [api], ports: [{ port: 80 }] }], policyTypes: ['Ingress'] }),
      networkPolicy('prod', 'b', { podSelector: { matchLabels: { tier: 'front' } }, ingress: [{ from: [api], ports: [{ port: 80 }, { port: 443 }] }], policyTypes: ['Ingress'] }),
    );
    const apiId = identityOf(engine, 'prod', 'api-1');
    assertRules(engine, 'prod', 'web-1', [rule('ingress', apiId, TCP, 80), rule('ingress', apiId, TCP, 443), HOST]);
    assert.deepEqual(engine.selectingPolicies('prod', 'web-1'), { ingress: ['prod/a', 'prod/b'], egress: [] });
  });

  test('node addresses: this node Host, other nodes RemoteNode; a deleted node leaves the ipcache', () => {
    const engine = new PolicyEngine({ nodeName: 'node-a' });
    engine.upsertNode('node-a', ['198.18.0.1', '2001:db8::1', 'node-a.example']);
    engine.upsertNode('node-b', ['198.18.0.2']);
    const first = engine.flush();
    assert.deepEqual(first.ipcacheSet, [
      { cidr: '0.0.0.0/0', identity: ReservedIdentity.World },
      { cidr: '198.18.0.1/32', identity: ReservedIdentity.Host },
      { cidr: '198.18.0.2/32', identity: ReservedIdentity.RemoteNode },
      { cidr: '2001:db8::1/128', identity: ReservedIdentity.Host },
      { cidr: '::/0', identity: ReservedIdentity.World },
    ]);
    engine.deleteNode('node-b');
    engine.upsertNode('node-a', ['198.18.0.1']);
    assert.deepEqual(engine.flush(), { ipcacheSet: [], ipcacheDeleted: ['198.18.0.2/32', '2001:db8::1/128'], endpointsSet: [], endpointsDeleted: [], endpointsChanged: [] });
    assert.deepEqual(
      engine.identities().filter((i) => i.kind === 'reserved').map((i) => i.id),
      [ReservedIdentity.Host, ReservedIdentity.World, ReservedIdentity.Unmanaged, ReservedIdentity.RemoteNode],
    );
  });

  test('local endpoints: this node pods with addresses, not hostNetwork', () => {
    const engine = new PolicyEngine({ nodeName: 'node-a' });
    engine.upsertPod(pod('prod', 'here', { app: 'x' }, ['198.18.1.1', '2001:db8::1:1']));
    engine.upsertPod(pod('prod', 'pending', { app: 'x' }, []));
    engine.upsertPod(pod('prod', 'host', { app: 'x' }, ['198.18.0.1'], { hostNetwork: true }));
    engine.upsertPod(pod('prod', 'there', { app: 'x' }, ['198.18.1.2'], { nodeName: 'node-b' }));
    const delta = engine.flush();
    assert.deepEqual(delta.endpointsSet.map((e) => [e.name, e.ips]), [['here', ['198.18.1.1', '2001:db8::1:1']]]);
    assert.deepEqual(
      delta.ipcacheSet.filter((e) => e.identity >= 256).map((e) => e.cidr),
      ['198.18.1.1/32', '198.18.1.2/32', '2001:db8::1:1/128'],
      'the hostNetwork pod address is its node: no pod identity for it',
    );
  });
});

type PodInfoPorts = { name: string; port: number; protocol: 'TCP' | 'UDP' | 'SCTP' }[];
