/**
 * Identities that survive an agent restart (lb/policy/identities.ts, the engine's identityHints): an
 * engine given the ipcache an earlier engine flushed gives every label set and ipBlock prefix the
 * number it had, whatever order the cluster's objects arrive in; a number hinted for two label sets
 * goes to one of them by a fixed rule; numbers out of their kind's range are ignored; fresh numbers
 * start above the highest hint.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PolicyEngine, type IdentityInfo, type PolicyDelta } from '../../lb/policy/engine.js';
import { FIRST_CIDR_IDENTITY, FIRST_LABEL_IDENTITY, type PodInfo } from '../../lb/policy/types.js';
import { generateCluster, type GeneratedCluster } from '../support/policy-cluster.js';
import { cidrIdentity, identityOf, networkPolicy, pod } from '../support/policy-objects.js';
import { mulberry32 } from '../support/prng.js';

type Hints = ReadonlyMap<string, number>;

/** The ipcache a first flush writes, as the pinned map would hold it. */
function ipcacheOf(delta: PolicyDelta): Map<string, number> {
  return new Map(delta.ipcacheSet.map((e) => [e.cidr, e.identity]));
}

/** Feeds a generated cluster in the order `order` gives each list; the first flush. */
function feed(engine: PolicyEngine, cluster: GeneratedCluster, order: <T>(items: T[]) => T[] = (items) => items): PolicyDelta {
  for (const n of order([...cluster.namespaces])) engine.upsertNamespace(n);
  for (const n of order([...cluster.nodes])) engine.upsertNode(n.name, n.addresses);
  for (const p of order([...cluster.pods])) engine.upsertPod(p);
  for (const p of order([...cluster.policies])) assert.deepEqual(engine.upsertPolicy(p), []);
  return engine.flush();
}

function shuffled<T>(items: T[]): T[] {
  const random = mulberry32(5);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/** What each identity names, by number. */
const named = (identities: IdentityInfo[]): string[] => identities.map((i) => `${i.id} ${i.kind} ${i.namespace ?? ''} ${JSON.stringify(i.labels)}`);

const engineWith = (identityHints?: Hints): PolicyEngine => new PolicyEngine({ nodeName: 'node-a', ...(identityHints ? { identityHints } : {}) });

describe('identity hints: numbers kept across a restart', () => {
  test('a cluster fed in another order, with the first engine’s ipcache as hints, gets the same numbers and writes the same ipcache', () => {
    const cluster = generateCluster({ pods: 400, policies: 120, namespaces: 10, nodes: 4, seed: 11 });
    const first = engineWith();
    const ipcache = ipcacheOf(feed(first, cluster));
    assert.ok([...ipcache.values()].some((id) => id >= FIRST_CIDR_IDENTITY), 'the cluster has ipBlock prefixes');

    const unhinted = engineWith();
    feed(unhinted, cluster, shuffled);
    assert.notDeepEqual(named(unhinted.identities()), named(first.identities()), 'without hints the order decides the numbers');

    const restarted = engineWith(ipcache);
    const delta = feed(restarted, cluster, shuffled);
    assert.deepEqual(named(restarted.identities()), named(first.identities()));
    assert.deepEqual(ipcacheOf(delta), ipcache);
    for (const p of cluster.pods.filter((p) => p.nodeName === cluster.nodeName)) {
      assert.deepEqual(restarted.endpoint(p.namespace, p.name), first.endpoint(p.namespace, p.name), `${p.namespace}/${p.name}`);
    }
    // After the first flush the engine is the incremental one it always was.
    assert.deepEqual(restarted.flush(), { ipcacheSet: [], ipcacheDeleted: [], endpointsSet: [], endpointsDeleted: [], endpointsChanged: [] });
  });

  test('IPv6 addresses hint as IPv4 ones do; a pod given and deleted before the first flush takes nothing', () => {
    const hints = new Map([
      ['2001:db8:1::a/128', 700],
      ['198.18.1.11/32', 701],
    ]);
    const engine = engineWith(hints);
    engine.upsertPod(pod('prod', 'web-1', { app: 'web' }, ['2001:db8:1:0:0:0:0:a']));
    engine.upsertPod(pod('prod', 'api-1', { app: 'api' }, ['198.18.1.11']));
    engine.deletePod('prod', 'api-1');
    assert.equal(engine.podIdentity('prod', 'web-1'), undefined, 'identities are settled at the first flush');
    const delta = engine.flush();
    assert.equal(identityOf(engine, 'prod', 'web-1'), 700);
    assert.deepEqual(delta.ipcacheSet.filter((e) => e.identity >= FIRST_LABEL_IDENTITY), [{ cidr: '2001:db8:1::a/128', identity: 700 }]);
    engine.upsertPod(pod('prod', 'api-1', { app: 'api' }, ['198.18.1.11']));
    engine.flush();
    assert.equal(identityOf(engine, 'prod', 'api-1'), 702, 'after the first flush a new set takes a fresh number, above every hint');
  });

  test('a number hinted for two label sets: the set with more addresses hinting it keeps it, whatever the order; the other takes a fresh one', () => {
    // Before the restart web-1..3 were app=web (300), db-1 app=db (301); web-3 was relabelled meanwhile.
    const hints = new Map([
      ['198.18.1.1/32', 300],
      ['198.18.1.2/32', 300],
      ['198.18.1.3/32', 300],
      ['198.18.1.9/32', 301],
    ]);
    const pods: PodInfo[] = [
      pod('prod', 'web-3', { app: 'canary' }, ['198.18.1.3']),
      pod('prod', 'web-1', { app: 'web' }, ['198.18.1.1']),
      pod('prod', 'web-2', { app: 'web' }, ['198.18.1.2']),
      pod('prod', 'db-1', { app: 'db' }, ['198.18.1.9']),
    ];
    for (const order of [pods, [...pods].reverse()]) {
      const engine = engineWith(hints);
      for (const p of order) engine.upsertPod(p);
      engine.flush();
      assert.equal(identityOf(engine, 'prod', 'web-1'), 300);
      assert.equal(identityOf(engine, 'prod', 'web-2'), 300);
      assert.equal(identityOf(engine, 'prod', 'db-1'), 301);
      assert.equal(identityOf(engine, 'prod', 'web-3'), 302, 'not a number hinted for another set');
    }
  });

  test('a tie between two sets is decided by namespace and labels, not by arrival; the loser takes its next hint if it has one', () => {
    const hints = new Map([
      ['198.18.2.1/32', 400],
      ['198.18.2.2/32', 400],
      ['2001:db8:2::2/128', 401],
    ]);
    const pods: PodInfo[] = [
      pod('prod', 'b', { app: 'beta' }, ['198.18.2.2', '2001:db8:2::2']),
      pod('prod', 'a', { app: 'alpha' }, ['198.18.2.1']),
    ];
    for (const order of [pods, [...pods].reverse()]) {
      const engine = engineWith(hints);
      for (const p of order) engine.upsertPod(p);
      engine.flush();
      assert.equal(identityOf(engine, 'prod', 'a'), 400, 'app=alpha sorts first');
      assert.equal(identityOf(engine, 'prod', 'b'), 401, "its other address's number");
    }
  });

  test('hints out of their range are ignored: reserved or CIDR numbers for a pod, label numbers for a prefix', () => {
    const hints = new Map([
      ['198.18.3.1/32', 2],
      ['198.18.3.2/32', FIRST_CIDR_IDENTITY + 5],
      ['198.18.3.3/32', FIRST_LABEL_IDENTITY - 1],
      ['198.19.9.0/24', 500],
      ['198.19.8.0/24', 2 * FIRST_CIDR_IDENTITY],
    ]);
    const engine = engineWith(hints);
    engine.upsertPod(pod('prod', 'a', { app: 'a' }, ['198.18.3.1']));
    engine.upsertPod(pod('prod', 'b', { app: 'b' }, ['198.18.3.2']));
    engine.upsertPod(pod('prod', 'c', { app: 'c' }, ['198.18.3.3']));
    const egress = (cidr: string): Record<string, unknown> => ({ podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr } }] }] });
    assert.deepEqual(engine.upsertPolicy(networkPolicy('prod', 'out-9', egress('198.19.9.0/24'))), []);
    assert.deepEqual(engine.upsertPolicy(networkPolicy('prod', 'out-8', egress('198.19.8.0/24'))), []);
    engine.flush();
    assert.deepEqual(['a', 'b', 'c'].map((name) => identityOf(engine, 'prod', name)).sort(), [256, 257, 258]);
    // Fresh CIDR numbers start above the one 198.18.3.2/32 had (a /32 entry may be an ipBlock's).
    assert.deepEqual([cidrIdentity(engine, '198.19.9.0/24'), cidrIdentity(engine, '198.19.8.0/24')], [FIRST_CIDR_IDENTITY + 6, FIRST_CIDR_IDENTITY + 7]);
  });

  test('CIDR identities keep their prefix’s number; two prefixes hinted one number: the first named keeps it; new prefixes start above the hints', () => {
    const base = FIRST_CIDR_IDENTITY;
    const hints = new Map([
      ['198.19.1.0/24', base + 7],
      ['198.19.1.128/25', base + 3],
      ['2001:db8:f::/48', base + 3],
      ['0.0.0.0/0', 2],
    ]);
    const engine = engineWith(hints);
    const policy = networkPolicy('prod', 'out', {
      podSelector: {},
      policyTypes: ['Egress'],
      egress: [{ to: [{ ipBlock: { cidr: '198.19.1.0/24', except: ['198.19.1.128/25'] } }, { ipBlock: { cidr: '2001:db8:f::/48' } }, { ipBlock: { cidr: '198.19.2.0/24' } }] }],
    });
    assert.deepEqual(engine.upsertPolicy(policy), []);
    engine.upsertPod(pod('prod', 'web-1', { app: 'web' }, ['198.18.1.10']));
    const delta = engine.flush();
    assert.equal(cidrIdentity(engine, '198.19.1.0/24'), base + 7);
    assert.equal(cidrIdentity(engine, '198.19.1.128/25'), base + 3);
    assert.equal(cidrIdentity(engine, '2001:db8:f::/48'), base + 8, 'its number was taken: a fresh one, above the hints');
    assert.equal(cidrIdentity(engine, '198.19.2.0/24'), base + 9);
    assert.deepEqual(
      delta.endpointsSet[0]?.rules.filter((r) => r.direction === 'egress').map((r) => r.identity),
      [base + 7, base + 8, base + 9],
      'the ipBlock allows its prefixes, not the except',
    );
    // Hints end at the first flush: a prefix named later takes a fresh number.
    engine.deletePolicy('prod', 'out');
    engine.flush();
    assert.deepEqual(engine.upsertPolicy(policy), []);
    engine.flush();
    assert.equal(cidrIdentity(engine, '198.19.1.0/24'), base + 10);
  });

  test('hints from a cluster that changed while the agent was down: the result means what a new engine computes', () => {
    const cluster = generateCluster({ pods: 300, policies: 80, namespaces: 8, nodes: 3, seed: 23 });
    const ipcache = ipcacheOf(feed(engineWith(), cluster));
    // Meanwhile: a fifth of the pods relabelled, some gone, new ones (some on addresses of gone ones).
    const random = mulberry32(3);
    const pods = cluster.pods.flatMap((p, i): PodInfo[] => {
      const r = random();
      if (r < 0.2) return [{ ...p, labels: { ...p.labels, version: 'v2' } }];
      if (r < 0.3) return [];
      if (r < 0.35) return [p, { ...p, name: `${p.name}-new`, ips: [`198.18.250.${i & 0xff}`] }];
      return [p];
    });
    const changed = { ...cluster, pods };
    const restarted = engineWith(ipcache);
    const restartedIpcache = ipcacheOf(feed(restarted, changed, shuffled));
    const fresh = engineWith();
    const freshIpcache = ipcacheOf(feed(fresh, changed));

    const names = (engine: PolicyEngine): Map<number, string> =>
      new Map(engine.identities().map((i) => [i.id, i.kind === 'labels' ? `${i.namespace} ${JSON.stringify(Object.entries(i.labels).sort())}` : `${i.kind} ${JSON.stringify(i.labels)}`]));
    const meaning = (engine: PolicyEngine, entries: Map<string, number>): unknown => {
      const name = names(engine);
      const endpoints = pods.flatMap((p) => {
        const e = engine.endpoint(p.namespace, p.name);
        return e ? [{ pod: `${p.namespace}/${p.name}`, identity: name.get(e.identity), rules: e.rules.map((r) => `${r.direction} ${r.identity === 0 ? 'any' : name.get(r.identity)} ${r.protocol} ${r.port}/${r.portPrefixLen}`).sort() }] : [];
      });
      return { endpoints, ipcache: [...entries].map(([cidr, id]) => `${cidr} ${name.get(id)}`).sort() };
    };
    assert.deepEqual(meaning(restarted, restartedIpcache), meaning(fresh, freshIpcache));

    // Each unchanged pod kept its number; no number names two label sets.
    const unchanged = pods.filter((p) => cluster.pods.includes(p));
    for (const p of unchanged) {
      const before = ipcache.get(`${p.ips[0]}/32`);
      const now = restarted.podIdentity(p.namespace, p.name);
      const set = cluster.pods.filter((q) => q.namespace === p.namespace && JSON.stringify(q.labels) === JSON.stringify(p.labels));
      if (set.every((q) => unchanged.includes(q))) assert.equal(now, before, `${p.namespace}/${p.name}`);
    }
    const labelIds = restarted.identities().filter((i) => i.kind === 'labels').map((i) => i.id);
    assert.equal(new Set(labelIds).size, labelIds.length);
  });
});
