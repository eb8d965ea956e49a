/**
 * The policy computation as the agent drives it: object changes in, flush() out. What a flush
 * carries (only what changed), identities moving and going, namespace re-labelling, refused policies,
 * and — over long random sequences of changes — that the incremental engine always agrees with a
 * new engine given the same objects, and that its per-endpoint rule changes, followed alone, give
 * the same rules.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PolicyEngine, type PolicyDelta } from '../../lb/policy/engine.js';
import { portRangePrefixes } from '../../lb/policy/ports.js';
import { ReservedIdentity, type NamespaceInfo, type PodInfo, type PolicyRule } from '../../lb/policy/types.js';
import { generateCluster } from '../support/policy-cluster.js';
import { identityOf, networkPolicy, pod, rule, sortRules } from '../support/policy-objects.js';
import { mulberry32 } from '../support/prng.js';

const HOST = rule('ingress', ReservedIdentity.Host);

/** node-a runs web-1, api-1 and db-1 (prod); client-1 runs elsewhere. db accepts api, web accepts frontends. */
function small(): PolicyEngine {
  const engine = new PolicyEngine({ nodeName: 'node-a' });
  engine.upsertNamespace({ name: 'prod', labels: { env: 'prod' } });
  engine.upsertPod(pod('prod', 'web-1', { app: 'web' }, ['198.18.1.10']));
  engine.upsertPod(pod('prod', 'api-1', { app: 'api' }, ['198.18.1.11']));
  engine.upsertPod(pod('prod', 'db-1', { app: 'db' }, ['198.18.1.12']));
  engine.upsertPod(pod('prod', 'client-1', { app: 'client' }, ['198.18.1.20'], { nodeName: 'node-b' }));
  const from = (app: string): Record<string, unknown>[] => [{ from: [{ podSelector: { matchLabels: { app } } }] }];
  engine.upsertPolicy(networkPolicy('prod', 'db-in', { podSelector: { matchLabels: { app: 'db' } }, ingress: from('api'), policyTypes: ['Ingress'] }));
  engine.upsertPolicy(networkPolicy('prod', 'web-in', { podSelector: { matchLabels: { app: 'web' } }, ingress: from('frontend'), policyTypes: ['Ingress'] }));
  return engine;
}

const names = (delta: PolicyDelta): string[] => delta.endpointsSet.map((e) => `${e.namespace}/${e.name}`);

describe('flush', () => {
  test('the first flush gives everything, the next nothing; a resent policy or pod changes nothing', () => {
    const engine = small();
    const first = engine.flush();
    assert.deepEqual(names(first), ['prod/api-1', 'prod/db-1', 'prod/web-1']);
    assert.deepEqual(first.ipcacheSet.map((e) => e.cidr), ['0.0.0.0/0', '198.18.1.10/32', '198.18.1.11/32', '198.18.1.12/32', '198.18.1.20/32', '::/0']);
    assert.deepEqual(engine.flush(), { ipcacheSet: [], ipcacheDeleted: [], endpointsSet: [], endpointsDeleted: [], endpointsChanged: [] });

    const from = [{ from: [{ podSelector: { matchLabels: { app: 'api' } } }] }];
    assert.deepEqual(engine.upsertPolicy(networkPolicy('prod', 'db-in', { podSelector: { matchLabels: { app: 'db' } }, ingress: from, policyTypes: ['Ingress'] })), []);
    engine.upsertPod(pod('prod', 'api-1', { app: 'api' }, ['198.18.1.11']));
    assert.deepEqual(engine.flush(), { ipcacheSet: [], ipcacheDeleted: [], endpointsSet: [], endpointsDeleted: [], endpointsChanged: [] });
  });

  test('a label change moves the pod to another identity; only the endpoints whose rules change are in the flush', () => {
    const engine = small();
    engine.flush();
    const api = identityOf(engine, 'prod', 'api-1');
    const client = identityOf(engine, 'prod', 'client-1');

    // client-1 becomes an api pod: the identity of api-1 (same namespace and labels); its own is released.
    engine.upsertPod(pod('prod', 'client-1', { app: 'api' }, ['198.18.1.20'], { nodeName: 'node-b' }));
    let delta = engine.flush();
    assert.equal(identityOf(engine, 'prod', 'client-1'), api);
    assert.deepEqual(delta.ipcacheSet, [{ cidr: '198.18.1.20/32', identity: api }]);
    assert.deepEqual(names(delta), [], 'db-1 already allowed that identity');
    assert.ok(!engine.identities().some((i) => i.id === client), 'the identity no pod has any more is released');

    // client-1 becomes a frontend: a new identity (not the released number), which web-1 now allows.
    engine.upsertPod(pod('prod', 'client-1', { app: 'frontend' }, ['198.18.1.20'], { nodeName: 'node-b' }));
    delta = engine.flush();
    const frontend = identityOf(engine, 'prod', 'client-1');
    assert.ok(frontend > client, 'numbers are not reused at once');
    assert.deepEqual(delta.ipcacheSet, [{ cidr: '198.18.1.20/32', identity: frontend }]);
    assert.deepEqual(names(delta), ['prod/web-1']);
    assert.deepEqual(delta.endpointsSet[0]?.rules, sortRules([rule('ingress', frontend), HOST]));

    // A local pod's own label change: its endpoint has a new identity, which db-1 allows instead of the
    // released one (app=api still matches); web-1 is untouched.
    engine.upsertPod(pod('prod', 'api-1', { app: 'api', debug: 'true' }, ['198.18.1.11']));
    delta = engine.flush();
    assert.deepEqual(names(delta), ['prod/api-1', 'prod/db-1']);
    const debugApi = identityOf(engine, 'prod', 'api-1');
    assert.notEqual(debugApi, api);
    assert.equal(delta.endpointsSet[0]?.identity, debugApi);
    assert.deepEqual(engine.endpoint('prod', 'db-1')?.rules, sortRules([rule('ingress', debugApi), HOST]));
  });

  test('a namespace label change re-evaluates namespaceSelectors, not identities', () => {
    const engine = small();
    engine.upsertNamespace({ name: 'tools', labels: {} });
    engine.upsertPod(pod('tools', 'scraper-1', { app: 'scraper' }, ['198.18.2.10'], { nodeName: 'node-b' }));
    engine.upsertPolicy(
      networkPolicy('prod', 'web-in', {
        podSelector: { matchLabels: { app: 'web' } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { purpose: 'monitoring' } } }] }],
        policyTypes: ['Ingress'],
      }),
    );
    engine.flush();
    assert.deepEqual(engine.endpoint('prod', 'web-1')?.rules, [HOST]);
    const scraper = identityOf(engine, 'tools', 'scraper-1');

    engine.upsertNamespace({ name: 'tools', labels: { purpose: 'monitoring' } });
    let delta = engine.flush();
    assert.deepEqual(names(delta), ['prod/web-1']);
    assert.deepEqual(delta.ipcacheSet, [], 'pods keep their identities');
    assert.equal(identityOf(engine, 'tools', 'scraper-1'), scraper);
    assert.deepEqual(engine.endpoint('prod', 'web-1')?.rules, sortRules([rule('ingress', scraper), HOST]));

    engine.deleteNamespace('tools');
    delta = engine.flush();
    assert.deepEqual(names(delta), ['prod/web-1']);
    assert.deepEqual(engine.endpoint('prod', 'web-1')?.rules, [HOST]);

    // The name label is there even when the API server does not set it (before 1.22).
    engine.upsertPolicy(
      networkPolicy('prod', 'web-in', {
        podSelector: { matchLabels: { app: 'web' } },
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'tools' } } }] }],
        policyTypes: ['Ingress'],
      }),
    );
    engine.flush();
    assert.deepEqual(engine.endpoint('prod', 'web-1')?.rules, sortRules([rule('ingress', scraper), HOST]));
  });

  test('pod deletion releases its identity and ipcache entry; a local pod leaving is an endpoint deleted', () => {
    const engine = small();
    engine.flush();
    const api = identityOf(engine, 'prod', 'api-1');
    engine.deletePod('prod', 'api-1');
    engine.upsertPod(pod('prod', 'web-1', { app: 'web' }, ['198.18.1.10'], { nodeName: 'node-b' }));
    const delta = engine.flush();
    assert.deepEqual(delta.ipcacheDeleted, ['198.18.1.11/32']);
    assert.deepEqual(delta.endpointsDeleted, [{ namespace: 'prod', name: 'api-1' }, { namespace: 'prod', name: 'web-1' }]);
    assert.deepEqual(names(delta), ['prod/db-1'], 'db-1 no longer has an api peer');
    assert.deepEqual(delta.endpointsSet[0]?.rules, [HOST]);
    assert.ok(!engine.identities().some((i) => i.id === api));
    assert.equal(engine.endpoint('prod', 'api-1'), undefined);
    assert.deepEqual(engine.selectingPolicies('prod', 'api-1'), { ingress: [], egress: [] });
  });

  test('two pods with one address: the one written last wins, the other takes over when it goes', () => {
    const engine = new PolicyEngine({ nodeName: 'node-a' });
    engine.upsertPod(pod('prod', 'old', { app: 'old' }, ['198.18.1.10'], { nodeName: 'node-b' }));
    engine.upsertPod(pod('prod', 'new', { app: 'new' }, ['198.18.1.10'], { nodeName: 'node-b' }));
    engine.flush();
    engine.deletePod('prod', 'new');
    assert.deepEqual(engine.flush().ipcacheSet, [{ cidr: '198.18.1.10/32', identity: identityOf(engine, 'prod', 'old') }]);
  });

  test('a deleted policy: its endpoints are no longer enforced; its CIDR identities are released', () => {
    const engine = small();
    engine.upsertPolicy(networkPolicy('prod', 'out', { podSelector: { matchLabels: { app: 'web' } }, egress: [{ to: [{ ipBlock: { cidr: '198.19.0.0/16' } }] }], policyTypes: ['Egress'] }));
    engine.flush();
    assert.equal(engine.identities().filter((i) => i.kind === 'cidr').length, 1);
    engine.deletePolicy('prod', 'out');
    engine.deletePolicy('prod', 'web-in');
    const delta = engine.flush();
    assert.deepEqual(delta.ipcacheDeleted, ['198.19.0.0/16']);
    assert.deepEqual(names(delta), ['prod/web-1']);
    assert.deepEqual(delta.endpointsSet.map((e) => [e.ingressEnforced, e.egressEnforced, e.rules]), [[false, false, []]]);
    assert.equal(engine.identities().filter((i) => i.kind === 'cidr').length, 0);
  });
});

describe('invalid policies', () => {
  const base = (spec: Record<string, unknown>): Record<string, unknown> => networkPolicy('prod', 'db-in', { podSelector: { matchLabels: { app: 'db' } }, ...spec });
  const ingressPort = (port: Record<string, unknown>): Record<string, unknown> => base({ ingress: [{ ports: [port] }] });
  const ingressPeer = (peer: unknown): Record<string, unknown> => base({ ingress: [{}, { from: [{ podSelector: {} }, peer] }] });
  const cases: [string, Record<string, unknown>, string][] = [
    ['unknown operator', base({ ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'app', operator: 'Matches', values: ['x'] }] } }] }] }), 'spec.ingress[0].from[0].podSelector.matchExpressions[0].operator'],
    ['In without values', base({ podSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: [] }] } }), 'spec.podSelector.matchExpressions[0].values'],
    ['Exists with values', base({ podSelector: { matchExpressions: [{ key: 'app', operator: 'Exists', values: ['x'] }] } }), 'spec.podSelector.matchExpressions[0].values'],
    ['bad CIDR', ingressPeer({ ipBlock: { cidr: '198.18.0.0/33' } }), 'spec.ingress[1].from[1].ipBlock.cidr'],
    ['except outside cidr', ingressPeer({ ipBlock: { cidr: '198.18.0.0/16', except: ['198.18.1.0/24', '198.19.1.0/24'] } }), 'spec.ingress[1].from[1].ipBlock.except[1]'],
    ['except equal to cidr', ingressPeer({ ipBlock: { cidr: '198.18.0.0/16', except: ['198.18.0.0/16'] } }), 'spec.ingress[1].from[1].ipBlock.except[0]'],
    ['ipBlock with a selector', ingressPeer({ ipBlock: { cidr: '198.18.0.0/16' }, podSelector: {} }), 'spec.ingress[1].from[1].ipBlock'],
    ['empty peer', ingressPeer({}), 'spec.ingress[1].from[1]'],
    ['endPort below port', ingressPort({ port: 8080, endPort: 8000 }), 'spec.ingress[0].ports[0].endPort'],
    ['endPort with a named port', ingressPort({ port: 'http', endPort: 8000 }), 'spec.ingress[0].ports[0].endPort'],
    ['endPort without port', ingressPort({ endPort: 8000 }), 'spec.ingress[0].ports[0].endPort'],
    ['protocol ICMP', ingressPort({ protocol: 'ICMP', port: 1 }), 'spec.ingress[0].ports[0].protocol'],
    ['port out of range', ingressPort({ port: 70000 }), 'spec.ingress[0].ports[0].port'],
    ['port zero', ingressPort({ port: 0 }), 'spec.ingress[0].ports[0].port'],
    ['numeric string port', ingressPort({ port: '80' }), 'spec.ingress[0].ports[0].port'],
    ['unknown policy type', base({ policyTypes: ['Ingress', 'Both'] }), 'spec.policyTypes[1]'],
    ['no spec', { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: 'prod', name: 'db-in' } }, 'spec'],
  ];
  for (const [what, object, field] of cases) {
    test(`${what}: a problem naming ${field}; the previous version stays in force`, () => {
      const engine = small();
      engine.flush();
      const before = engine.endpoint('prod', 'db-1');
      const problems = engine.upsertPolicy(object);
      assert.ok(problems.length > 0, 'refused');
      assert.deepEqual(problems.map((p) => [p.namespace, p.name, p.field]), [['prod', 'db-in', field]], JSON.stringify(problems));
      assert.deepEqual(engine.flush(), { ipcacheSet: [], ipcacheDeleted: [], endpointsSet: [], endpointsDeleted: [], endpointsChanged: [] });
      assert.deepEqual(engine.endpoint('prod', 'db-1'), before);
      assert.equal(engine.identities().filter((i) => i.kind === 'cidr').length, 0, 'no CIDR identity of the refused version');
    });
  }

  test('an object without metadata names what is missing', () => {
    const problems = new PolicyEngine({ nodeName: 'node-a' }).upsertPolicy({ spec: { podSelector: {} } });
    assert.deepEqual(problems.map((p) => p.field), ['metadata.name', 'metadata.namespace']);
  });
});

describe('port ranges', () => {
  test('the prefixes cover the range exactly, and no two could be one', () => {
    const random = mulberry32(7);
    const ranges: [number, number][] = [[1, 65535], [0, 65535], [80, 80], [32000, 32768], [1024, 2047], [65535, 65535]];
    for (let i = 0; i < 300; i++) {
      const a = Math.floor(random() * 65536);
      const b = a + Math.floor(random() * Math.min(65536 - a, random() < 0.5 ? 300 : 65536));
      ranges.push([a, Math.min(b, 65535)]);
    }
    for (const [first, last] of ranges) {
      const prefixes = portRangePrefixes(first, last);
      let next = first;
      for (const { port, prefixLen } of prefixes) {
        const size = 2 ** (16 - prefixLen);
        assert.equal(port, next, `${first}..${last}: contiguous`);
        assert.equal(port % size, 0, `${first}..${last}: ${port}/${prefixLen} aligned`);
        next = port + size;
      }
      assert.equal(next, last + 1, `${first}..${last}: ends at the range's end`);
      // Minimal: two neighbours of one size that form an aligned block of twice the size would be one prefix.
      for (let i = 1; i < prefixes.length; i++) {
        const a = prefixes[i - 1];
        const b = prefixes[i];
        if (a && b && a.prefixLen === b.prefixLen) assert.notEqual(a.port % 2 ** (17 - a.prefixLen), 0, `${first}..${last}: ${a.port}/${a.prefixLen} and its neighbour merge`);
      }
    }
    assert.deepEqual(portRangePrefixes(32000, 32768), [{ port: 32000, prefixLen: 8 }, { port: 32256, prefixLen: 7 }, { port: 32768, prefixLen: 16 }]);
    assert.deepEqual(portRangePrefixes(0, 65535), [{ port: 0, prefixLen: 0 }]);
  });
});

describe('incremental = computed anew', () => {
  /** An engine's state with identity numbers replaced by what they name, comparable between engines. */
  function snapshot(engine: PolicyEngine, ipcache: Map<string, number>, pods: Iterable<PodInfo>): unknown {
    const names = new Map(engine.identities().map((i) => [i.id, i.kind === 'labels' ? `${i.namespace} ${JSON.stringify(Object.entries(i.labels).sort())}` : i.kind === 'cidr' ? `cidr ${i.cidr}` : `reserved ${i.id}`]));
    const name = (id: number): string => (id === 0 ? 'any' : names.get(id) ?? `unknown ${id}`);
    const endpoints = [...pods].flatMap((p) => {
      const e = engine.endpoint(p.namespace, p.name);
      if (!e) return [];
      const rules = e.rules.map((r) => `${r.direction} ${name(r.identity)} ${r.protocol} ${r.port}/${r.portPrefixLen}`).sort();
      return [{ pod: `${p.namespace}/${p.name}`, identity: name(e.identity), ips: e.ips, in: e.ingressEnforced, out: e.egressEnforced, rules, policies: engine.selectingPolicies(p.namespace, p.name) }];
    });
    return { endpoints, ipcache: [...ipcache].map(([cidr, id]) => `${cidr} ${name(id)}`).sort() };
  }

  function applyDelta(ipcache: Map<string, number>, delta: PolicyDelta, endpoints?: Map<string, Set<string>>): void {
    for (const cidr of delta.ipcacheDeleted) assert.ok(ipcache.delete(cidr), `deleted ${cidr} was set`);
    for (const { cidr, identity } of delta.ipcacheSet) ipcache.set(cidr, identity);
    if (endpoints) applyEndpoints(endpoints, delta);
  }

  const ruleText = (rule: PolicyRule): string => `${rule.direction} ${rule.identity} ${rule.protocol} ${rule.port}/${rule.portPrefixLen}`;

  /**
   * The endpoints' rules as a writer following only the changes holds them: an endpoint the previous
   * flush gave has a change, and that change applied to its previous rules gives its rules.
   */
  function applyEndpoints(endpoints: Map<string, Set<string>>, delta: PolicyDelta): void {
    const changes = new Map(delta.endpointsChanged.map((c) => [`${c.namespace}/${c.name}`, c]));
    assert.equal(changes.size, delta.endpointsChanged.length, 'one change per endpoint');
    for (const { namespace, name } of delta.endpointsDeleted) endpoints.delete(`${namespace}/${name}`);
    for (const endpoint of delta.endpointsSet) {
      const key = `${endpoint.namespace}/${endpoint.name}`;
      const held = endpoints.get(key);
      const change = changes.get(key);
      changes.delete(key);
      if (!held) {
        assert.equal(change, undefined, `${key}: a change for an endpoint not given before`);
        endpoints.set(key, new Set(endpoint.rules.map(ruleText)));
        continue;
      }
      assert.ok(change, `${key}: given before, and no change`);
      for (const rule of change.removed) assert.ok(held.delete(ruleText(rule)), `${key}: removed ${ruleText(rule)} was not held`);
      for (const rule of change.added) {
        assert.ok(!held.has(ruleText(rule)), `${key}: added ${ruleText(rule)} was held`);
        held.add(ruleText(rule));
      }
      assert.deepEqual([...held].sort(), endpoint.rules.map(ruleText).sort(), `${key}: the change gives the rules`);
    }
    assert.deepEqual([...changes.keys()], [], 'every change is of an endpoint set');
  }

  test('random changes of pods, namespaces, policies and nodes, each flush compared with a new engine', () => {
    const cluster = generateCluster({ pods: 300, policies: 80, namespaces: 8, nodes: 3, seed: 4 });
    const random = mulberry32(99);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const pods = new Map(cluster.pods.map((p) => [`${p.namespace}/${p.name}`, p]));
    const namespaces = new Map<string, NamespaceInfo>(cluster.namespaces.map((n) => [n.name, n]));
    const policies = new Map(cluster.policies.map((p) => [`${(p.metadata as { namespace: string }).namespace}/${(p.metadata as { name: string }).name}`, p]));
    const nodes = new Map(cluster.nodes.map((n) => [n.name, n.addresses]));

    const engine = new PolicyEngine({ nodeName: cluster.nodeName });
    const ipcache = new Map<string, number>();
    const endpoints = new Map<string, Set<string>>();
    const feedAll = (target: PolicyEngine): void => {
      for (const n of namespaces.values()) target.upsertNamespace(n);
      for (const [name, addresses] of nodes) target.upsertNode(name, addresses);
      for (const p of pods.values()) target.upsertPod(p);
      for (const p of policies.values()) assert.deepEqual(target.upsertPolicy(p), []);
    };
    feedAll(engine);
    applyDelta(ipcache, engine.flush(), endpoints);

    const policyList = [...policies.values()];
    for (let step = 0; step < 300; step++) {
      const r = random();
      if (r < 0.35) {
        const p = pick([...pods.values()]);
        const labels = { ...p.labels };
        const key = pick(['debug', 'tier', 'version']);
        if (labels[key] === undefined) labels[key] = pick(['front', 'back', 'v2', 'true']);
        else delete labels[key];
        const next = { ...p, labels };
        pods.set(`${p.namespace}/${p.name}`, next);
        engine.upsertPod(next);
      } else if (r < 0.45) {
        const p = pick([...pods.values()]);
        const next: PodInfo = random() < 0.5 ? { ...p, nodeName: pick([...nodes.keys()]) } : { ...p, ips: p.ips.length > 0 && random() < 0.3 ? [] : [`198.18.200.${Math.floor(random() * 250)}`], namedPorts: random() < 0.3 ? [] : [{ name: pick(['http', 'grpc']), port: 7000 + Math.floor(random() * 3), protocol: 'TCP' }] };
        pods.set(`${p.namespace}/${p.name}`, next);
        engine.upsertPod(next);
      } else if (r < 0.5) {
        const p = pick([...pods.values()]);
        pods.delete(`${p.namespace}/${p.name}`);
        engine.deletePod(p.namespace, p.name);
      } else if (r < 0.6) {
        const name = pick(cluster.namespaces).name;
        const n = namespaces.get(name) ?? { name, labels: {} };
        const next = { name: n.name, labels: { ...n.labels, ...(random() < 0.5 ? { env: pick(['prod', 'dev']) } : { team: pick(['shop', 'infra']) }) } };
        if (random() < 0.2) {
          namespaces.delete(n.name);
          engine.deleteNamespace(n.name);
        } else {
          namespaces.set(n.name, next);
          engine.upsertNamespace(next);
        }
      } else if (r < 0.8) {
        // A policy of the generated set comes, goes or takes another's spec.
        const p = pick(policyList);
        const meta = p.metadata as { namespace: string; name: string };
        const key = `${meta.namespace}/${meta.name}`;
        if (policies.has(key) && random() < 0.4) {
          policies.delete(key);
          engine.deletePolicy(meta.namespace, meta.name);
        } else {
          const next = random() < 0.5 ? p : { ...p, spec: pick(policyList).spec };
          policies.set(key, next);
          assert.deepEqual(engine.upsertPolicy(next), []);
        }
      } else {
        const name = pick([...nodes.keys()]);
        const addresses = [`198.19.255.${Math.floor(random() * 250)}`];
        nodes.set(name, addresses);
        engine.upsertNode(name, addresses);
      }
      // Mostly one change per flush (a change whose effects were missed is not hidden by others'), sometimes several.
      if (random() < 0.7) {
        applyDelta(ipcache, engine.flush(), endpoints);
        const fresh = new PolicyEngine({ nodeName: cluster.nodeName });
        feedAll(fresh);
        const freshIpcache = new Map<string, number>();
        applyDelta(freshIpcache, fresh.flush());
        assert.deepEqual(snapshot(engine, ipcache, pods.values()), snapshot(fresh, freshIpcache, pods.values()), `step ${step}`);
        const flushed = [...pods.values()].flatMap((p) => {
          const e = engine.endpoint(p.namespace, p.name);
          return e ? [[`${p.namespace}/${p.name}`, e.rules.map(ruleText).sort()]] : [];
        });
        assert.deepEqual([...endpoints].map(([key, rules]) => [key, [...rules].sort()]).sort(), flushed.sort(), `step ${step}: the changes followed give every endpoint's rules`);
      }
    }
  });

  test('the generated cluster of the benchmark: every policy accepted, endpoints with rules', () => {
    const cluster = generateCluster({ pods: 1000, policies: 200 });
    const engine = new PolicyEngine({ nodeName: cluster.nodeName });
    for (const n of cluster.namespaces) engine.upsertNamespace(n);
    for (const p of cluster.pods) engine.upsertPod(p);
    for (const p of cluster.policies) assert.deepEqual(engine.upsertPolicy(p), []);
    const delta = engine.flush();
    assert.ok(delta.endpointsSet.length > 20);
    assert.ok(delta.endpointsSet.filter((e) => e.rules.length > 10).length > 5);
  });
});
