/**
 * Kubernetes mode's network policy sync (agent/k8s/policy.ts) with the real policy computation and an
 * in-memory policy map writer and EDT: what the watches deliver → what is written to the ipcache and
 * to each local pod's device (its ifindex), when; device changes, deletes, relists, refused writes,
 * malformed NetworkPolicies and bandwidth annotations (logged once, posted as events), the API views.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import { Registry } from 'prom-client';
import { PolicySync, type PolicyMaps } from '../../agent/k8s/policy.js';
import { PolicyMetrics } from '../../agent/k8s/metrics.js';
import type { EventObject } from '../../agent/k8s/events.js';
import { memoryLogger } from '../../agent/log.js';
import type { EndpointPolicy, IpcacheEntry, PolicyRule, RulesChange } from '../../lb/policy/types.js';
import { ReservedIdentity } from '../../lb/policy/types.js';
import { waitFor } from '../support/wait.js';

const NODE = 'node-1';
const NS = 'shop';
const IFINDEX: Record<string, number> = { 'lxc-client': 11, 'lxc-server': 12, 'lxc-new': 13 };

/** The policy map writer as a map of what it holds, with a log of the calls and of what they changed. */
class FakeMaps implements PolicyMaps {
  readonly entries = new Map<string, number>();
  readonly endpoints = new Map<number, { identity: number } & EndpointPolicy>();
  readonly calls: string[] = [];
  /** What the calls changed (the real writer writes only that: it diffs against what the maps hold). */
  readonly changes: string[] = [];
  failNext = 0;

  private check(what: string): void {
    this.calls.push(what);
    if (this.failNext > 0) {
      this.failNext -= 1;
      throw new Error(`${what}: map xlb_policy: No space left on device (ENOSPC)`);
    }
  }

  setIpcache(entries: IpcacheEntry[]): void {
    this.check(`setIpcache ${entries.length}`);
    for (const e of entries) {
      if (this.entries.get(e.cidr) !== e.identity) this.changes.push(`ipcache ${e.cidr} → ${e.identity}`);
      this.entries.set(e.cidr, e.identity);
    }
  }

  deleteIpcache(cidrs: string[]): void {
    this.check(`deleteIpcache ${cidrs.join(',')}`);
    for (const c of cidrs) if (this.entries.delete(c)) this.changes.push(`ipcache ${c} deleted`);
  }

  setEndpoint(ifindex: number, endpoint: { identity: number } & EndpointPolicy): void {
    this.check(`setEndpoint ${ifindex}`);
    if (!isDeepStrictEqual(this.endpoints.get(ifindex), endpoint)) this.changes.push(`endpoint ${ifindex} → identity ${endpoint.identity}, ${endpoint.rules.length} rules`);
    this.endpoints.set(ifindex, endpoint);
  }

  /** As the real writer's premise: the change applied to what the device holds gives the endpoint's rules. */
  changeEndpoint(ifindex: number, endpoint: { identity: number } & EndpointPolicy, change: RulesChange): void {
    this.check(`changeEndpoint ${ifindex}`);
    const text = (rule: PolicyRule): string => JSON.stringify(rule);
    const held = new Set((this.endpoints.get(ifindex)?.rules ?? []).map(text));
    for (const rule of change.removed) assert.ok(held.delete(text(rule)), `changeEndpoint ${ifindex}: removed ${text(rule)} is not held`);
    for (const rule of change.added) held.add(text(rule));
    assert.deepEqual([...held].sort(), endpoint.rules.map(text).sort(), `changeEndpoint ${ifindex}: the change gives the endpoint's rules`);
    if (!isDeepStrictEqual(this.endpoints.get(ifindex), endpoint)) this.changes.push(`endpoint ${ifindex} → identity ${endpoint.identity}, ${endpoint.rules.length} rules`);
    this.endpoints.set(ifindex, endpoint);
  }

  deleteEndpoint(ifindex: number): void {
    this.check(`deleteEndpoint ${ifindex}`);
    if (this.endpoints.delete(ifindex)) this.changes.push(`endpoint ${ifindex} deleted`);
  }

  prune(keep: Set<number>): number[] {
    this.check(`prune ${[...keep].sort().join(',')}`);
    const stale = [...this.endpoints.keys()].filter((ifindex) => !keep.has(ifindex));
    for (const ifindex of stale) this.endpoints.delete(ifindex);
    return stale;
  }

  ipcache(): Map<string, number> {
    return new Map(this.entries);
  }
}

function pod(name: string, ip: string, labels: Record<string, string>, extra: { node?: string; annotations?: Record<string, string>; resourceVersion?: string } = {}): unknown {
  return {
    metadata: { namespace: NS, name, uid: `uid-${name}`, labels, resourceVersion: extra.resourceVersion ?? '1', ...(extra.annotations ? { annotations: extra.annotations } : {}) },
    spec: { nodeName: extra.node ?? NODE, containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080 }] }] },
    status: { podIP: ip, podIPs: [{ ip }] },
  };
}

function policy(name: string, spec: Record<string, unknown>, resourceVersion = '1'): unknown {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: NS, name, resourceVersion }, spec };
}

const denyIngress = policy('deny', { podSelector: { matchLabels: { app: 'server' } }, policyTypes: ['Ingress'] });
const allowClient = policy('allow-client', {
  podSelector: { matchLabels: { app: 'server' } },
  ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }], ports: [{ protocol: 'TCP', port: 8080 }] }],
});

/** Lets the coalesced sync (setImmediate) run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(() => setImmediate(resolve)));

/** A PolicySync over `maps` (new ones unless given: a restarted agent's are an earlier one's). */
function harness(options: { bandwidth?: boolean; maps?: FakeMaps } = {}) {
  const maps = options.maps ?? new FakeMaps();
  const rates = new Map<number, number>();
  const rateCalls: [number, number | undefined][] = [];
  const events: { object: EventObject; reason: string; message: string }[] = [];
  const log = memoryLogger();
  const registry = new Registry();
  const sync = new PolicySync({
    nodeName: NODE,
    maps,
    ...(options.bandwidth
      ? {
          bandwidth: {
            setRate: (ifindex: number, rate: number | undefined) => {
              rateCalls.push([ifindex, rate]);
              if (rate === undefined) rates.delete(ifindex);
              else rates.set(ifindex, rate);
            },
          },
        }
      : {}),
    events: { warn: (object, reason, message) => events.push({ object, reason, message }) },
    metrics: new PolicyMetrics(registry),
    log,
    ifindexOf: (device) => IFINDEX[device],
    localAddresses: () => ['198.18.81.1', 'fe80::1', '198.18.70.1'],
    retry: { initialMs: 20, maxMs: 40 },
  });
  return { sync, maps, rates, rateCalls, events, log, registry };
}

/** The usual cluster: a client and a server here, another pod elsewhere, two nodes, the namespace. */
function listCluster(sync: PolicySync, policies: unknown[] = []): void {
  sync.list('Namespace', [{ metadata: { name: NS, labels: { team: 'shop' } } }]);
  sync.list('Node', [
    { metadata: { name: NODE }, status: { addresses: [{ type: 'InternalIP', address: '198.18.70.1' }] } },
    { metadata: { name: 'node-2' }, status: { addresses: [{ type: 'InternalIP', address: '198.18.70.2' }] } },
  ]);
  sync.list('Pod', [
    pod('client', '198.18.71.2', { app: 'client' }),
    pod('server', '198.18.72.2', { app: 'server' }),
    pod('remote', '198.18.73.2', { app: 'client' }, { node: 'node-2' }),
  ]);
  sync.list('NetworkPolicy', policies);
}

describe('PolicySync', () => {
  test('nothing is written before every watch listed; then the ipcache, and each local pod once its device is known', async () => {
    const { sync, maps } = harness();
    listCluster(sync);
    await settle();
    assert.equal(maps.calls.length, 0, `no sync before start(): ${maps.calls.join("; ")}`);
    sync.start();
    await settle();
    const client = sync.identities().find((i) => i.labels.app === 'client');
    const server = sync.identities().find((i) => i.labels.app === 'server');
    assert.ok(client && server);
    assert.equal(client.pods, 2, 'the remote pod shares the client identity');
    assert.equal(maps.entries.get('198.18.71.2/32'), client.id);
    assert.equal(maps.entries.get('198.18.73.2/32'), client.id);
    assert.equal(maps.entries.get('198.18.72.2/32'), server.id);
    assert.equal(maps.entries.get('198.18.70.1/32'), ReservedIdentity.Host);
    assert.equal(maps.entries.get('198.18.81.1/32'), ReservedIdentity.Host, "the node's interfaces' addresses are Host too");
    assert.equal(maps.entries.get('fe80::1/128'), ReservedIdentity.Host);
    assert.equal(maps.entries.get('198.18.70.2/32'), ReservedIdentity.RemoteNode);
    assert.equal(maps.endpoints.size, 0, 'no device known yet');

    sync.setPodDevices(new Map([[`${NS}/client`, 'lxc-client'], [`${NS}/server`, 'lxc-server']]));
    await settle();
    assert.deepEqual(maps.endpoints.get(11), { identity: client.id, ingressEnforced: false, egressEnforced: false, rules: [] });
    assert.deepEqual(maps.endpoints.get(12), { identity: server.id, ingressEnforced: false, egressEnforced: false, rules: [] });
    assert.equal(maps.calls.filter((c) => c.startsWith('prune')).length, 1);
    assert.ok(maps.calls.includes('prune 11,12'), maps.calls.join('; '));
    sync.stop();
  });

  test("an earlier agent's leftovers: ipcache entries the cluster has no more and endpoints of devices no pod has go; its numbers stay", async () => {
    const maps = new FakeMaps();
    maps.entries.set('198.18.99.9/32', 300);
    maps.entries.set('198.18.71.2/32', 301);
    maps.endpoints.set(99, { identity: 300, ingressEnforced: true, egressEnforced: false, rules: [] });
    const { sync, log } = harness({ maps });
    listCluster(sync);
    sync.start();
    await settle();
    assert.equal(maps.entries.has('198.18.99.9/32'), false);
    assert.equal(maps.entries.get('198.18.71.2/32'), 301, "the client's label set keeps the number its address had");
    assert.equal(maps.entries.get('198.18.73.2/32'), 301, 'so does the other pod of that set');
    assert.ok((maps.entries.get('198.18.72.2/32') ?? 0) > 301, 'a set without a hint takes a number above the hints');
    assert.ok(maps.endpoints.has(99), 'kept until the pods\' devices are known');
    sync.setPodDevices(new Map([[`${NS}/client`, 'lxc-client']]));
    await settle();
    assert.deepEqual([...maps.endpoints.keys()], [11]);
    assert.ok(log.lines.some((l) => l.includes('removed the policy of 1 device(s) no pod has now (ifindex 99)')), log.lines.join('\n'));
    sync.stop();
  });

  test("a restarted agent's first sync, policies in force, rewrites nothing: identities as they were, whatever order the lists come in", async () => {
    const maps = new FakeMaps();
    const devices = new Map([[`${NS}/client`, 'lxc-client'], [`${NS}/server`, 'lxc-server']]);
    const first = harness({ maps }).sync;
    // The other label set (app=other) first, so without hints it would take the client's number.
    first.list('Pod', [pod('remote', '198.18.73.2', { app: 'client' }, { node: 'node-2' })]);
    listCluster(first, [denyIngress, allowClient]);
    first.event('Pod', 'add', pod('other', '198.18.74.2', { app: 'other' }, { node: 'node-2' }));
    first.setPodDevices(devices);
    first.start();
    await settle();
    first.stop();
    const identities = first.identities();
    const client = identities.find((i) => i.labels.app === 'client')?.id;
    assert.equal(maps.endpoints.get(12)?.rules.some((r) => r.identity === client), true, 'the server allows the client');
    const entries = new Map(maps.entries);
    const endpoints = new Map(maps.endpoints);

    maps.calls.length = 0;
    maps.changes.length = 0;
    const restarted = harness({ maps }).sync;
    restarted.list('Pod', [pod('other', '198.18.74.2', { app: 'other' }, { node: 'node-2' })]);
    listCluster(restarted, [allowClient, denyIngress]);
    restarted.list('Pod', [
      pod('other', '198.18.74.2', { app: 'other' }, { node: 'node-2' }),
      pod('server', '198.18.72.2', { app: 'server' }),
      pod('remote', '198.18.73.2', { app: 'client' }, { node: 'node-2' }),
      pod('client', '198.18.71.2', { app: 'client' }),
    ]);
    restarted.setPodDevices(devices);
    restarted.start();
    await settle();
    assert.deepEqual(restarted.identities(), identities);
    assert.deepEqual(maps.changes, [], 'nothing changed in the maps');
    assert.equal(maps.calls.filter((c) => c.startsWith('setIpcache') || c.startsWith('deleteIpcache')).length, 0, 'the ipcache is not even written');
    assert.deepEqual(maps.entries, entries);
    assert.deepEqual(maps.endpoints, endpoints);
    restarted.stop();
  });

  test('policies enforce and allow; the API views show identities, policies and rules with labels; deleted: allowed again', async () => {
    const { sync, maps, registry } = harness();
    listCluster(sync, [denyIngress]);
    sync.setPodDevices(new Map([[`${NS}/client`, 'lxc-client'], [`${NS}/server`, 'lxc-server']]));
    sync.start();
    await settle();
    const client = sync.identities().find((i) => i.labels.app === 'client')?.id ?? assert.fail('client identity');
    assert.deepEqual(maps.endpoints.get(12)?.ingressEnforced, true);
    assert.deepEqual(maps.endpoints.get(12)?.rules, [{ direction: 'ingress', identity: ReservedIdentity.Host, protocol: 0, port: 0, portPrefixLen: 0 }]);

    sync.event('NetworkPolicy', 'add', allowClient);
    await settle();
    assert.deepEqual(
      maps.endpoints.get(12)?.rules.filter((r) => r.identity === client),
      [{ direction: 'ingress', identity: client, protocol: 6, port: 8080, portPrefixLen: 16 }],
    );
    const view = sync.endpoint(NS, 'server');
    assert.ok(!('missing' in view));
    assert.equal(view.device, 'lxc-server');
    assert.equal(view.ifindex, 12);
    assert.deepEqual(view.identity.labels, { 'io.kubernetes.pod.namespace': NS, app: 'server' });
    assert.deepEqual(view.ingress.policies, [`${NS}/allow-client`, `${NS}/deny`]);
    assert.equal(view.ingress.enforced, true);
    assert.equal(view.egress.enforced, false);
    assert.deepEqual(
      view.ingress.rules.find((r) => r.identity === client),
      { identity: client, labels: { 'io.kubernetes.pod.namespace': NS, app: 'client' }, protocol: 'TCP', port: 8080 },
    );
    assert.deepEqual(view.ingress.rules.find((r) => r.identity === ReservedIdentity.Host)?.labels, { reserved: 'host' });
    assert.equal(sync.identityLabels(client)?.app, 'client');

    assert.match((sync.endpoint(NS, 'remote') as { missing: string }).missing, /runs on node node-2, not on this node \(node-1\)/);
    assert.match((sync.endpoint(NS, 'nobody') as { missing: string }).missing, /no pod shop\/nobody/);

    const metrics = await registry.metrics();
    assert.match(metrics, /^xlb_policy_endpoints 2$/m);
    assert.match(metrics, /^xlb_policy_identities \d+$/m);
    assert.match(metrics, /^xlb_policy_sync_duration_seconds_count [1-9]/m);

    sync.event('NetworkPolicy', 'delete', allowClient);
    sync.event('NetworkPolicy', 'delete', denyIngress);
    await settle();
    assert.deepEqual(maps.endpoints.get(12), { identity: view.identity.id, ingressEnforced: false, egressEnforced: false, rules: [] });
    sync.stop();
  });

  test('a pod whose device changes moves; a deleted pod leaves the ipcache and its device; a relist removes what it lacks', async () => {
    const { sync, maps } = harness();
    listCluster(sync);
    sync.setPodDevices(new Map([[`${NS}/client`, 'lxc-client'], [`${NS}/server`, 'lxc-server']]));
    sync.start();
    await settle();
    sync.setPodDevices(new Map([[`${NS}/client`, 'lxc-new'], [`${NS}/server`, 'lxc-server']]));
    await settle();
    assert.deepEqual([...maps.endpoints.keys()].sort(), [12, 13]);

    sync.event('Pod', 'delete', pod('server', '198.18.72.2', { app: 'server' }));
    await settle();
    assert.deepEqual([...maps.endpoints.keys()], [13]);
    assert.equal(maps.entries.has('198.18.72.2/32'), false);

    // A relist without the client (deleted while the watch was down).
    sync.list('Pod', [pod('remote', '198.18.73.2', { app: 'client' }, { node: 'node-2' })]);
    await settle();
    assert.equal(maps.endpoints.size, 0);
    assert.equal(maps.entries.has('198.18.71.2/32'), false);
    assert.equal(maps.entries.has('198.18.73.2/32'), true);
    sync.stop();
  });

  test('a Pod status change that changes nothing policy reads writes nothing', async () => {
    const { sync, maps } = harness();
    listCluster(sync);
    sync.start();
    await settle();
    const before = maps.calls.length;
    const same = pod('client', '198.18.71.2', { app: 'client' }, { resourceVersion: '2' }) as { status: Record<string, unknown> };
    same.status.phase = 'Running';
    sync.event('Pod', 'update', same);
    await settle();
    assert.deepEqual(maps.calls.slice(before), []);
    sync.stop();
  });

  test('a malformed NetworkPolicy: logged once per resourceVersion, an event on it, not applied', async () => {
    const { sync, maps, events, log } = harness();
    const bad = (rv: string): unknown => policy('bad', { podSelector: { matchLabels: { app: 'server' } }, ingress: [{ ports: [{ protocol: 'TCP', port: 0 }] }] }, rv);
    listCluster(sync, [bad('5')]);
    sync.setPodDevices(new Map([[`${NS}/server`, 'lxc-server']]));
    sync.start();
    await settle();
    assert.equal(maps.endpoints.get(12)?.ingressEnforced, false, 'not applied');
    assert.equal(events.length, 1);
    assert.deepEqual(events[0]?.object, { kind: 'NetworkPolicy', namespace: NS, name: 'bad' });
    assert.match(events[0]?.message ?? '', /^spec\.ingress\[0\]\.ports\[0\]\.port: .*not applied/);
    sync.list('NetworkPolicy', [bad('5')]);
    sync.event('NetworkPolicy', 'update', bad('5'));
    assert.equal(events.length, 1, 'the same version is not reported again');
    sync.event('NetworkPolicy', 'update', bad('6'));
    assert.equal(events.length, 2, 'a new version with the problem is');
    assert.equal(log.lines.filter((l) => l.includes('NetworkPolicy shop/bad')).length, 2);
    sync.stop();
  });

  test('a write the datapath refuses is logged once and retried until it succeeds', async () => {
    const { sync, maps, log } = harness();
    listCluster(sync, [denyIngress]);
    sync.setPodDevices(new Map([[`${NS}/server`, 'lxc-server']]));
    maps.failNext = 3;
    sync.start();
    await waitFor(() => maps.endpoints.get(12)?.ingressEnforced === true && maps.entries.has('198.18.72.2/32'), 5_000, 'the endpoint and the ipcache written after retries');
    assert.ok(maps.calls.includes('prune 12'), 'pruned once everything was written');
    assert.equal(log.lines.filter((l) => l.includes('the datapath refused a write')).length, 1, log.lines.join('\n'));
    sync.stop();
  });

  test('kubernetes.io/egress-bandwidth on a local pod: its rate at its device; changed, removed; a bad value is an event and changes nothing', async () => {
    const { sync, rates, rateCalls, events } = harness({ bandwidth: true });
    const server = (annotation: string | undefined, rv: string): unknown =>
      pod('server', '198.18.72.2', { app: 'server' }, { resourceVersion: rv, ...(annotation === undefined ? {} : { annotations: { 'kubernetes.io/egress-bandwidth': annotation } }) });
    listCluster(sync);
    sync.list('Pod', [server('10M', '1'), pod('remote', '198.18.73.2', { app: 'client' }, { node: 'node-2', annotations: { 'kubernetes.io/egress-bandwidth': '1M' } })]);
    sync.start();
    await settle();
    assert.equal(rates.size, 0, 'no device known yet');
    sync.setPodDevices(new Map([[`${NS}/server`, 'lxc-server']]));
    await settle();
    assert.deepEqual([...rates], [[12, 1_250_000]]);

    sync.event('Pod', 'update', server('20M', '2'));
    await settle();
    assert.deepEqual([...rates], [[12, 2_500_000]]);

    sync.event('Pod', 'update', server('fast', '3'));
    await settle();
    assert.deepEqual([...rates], [[12, 2_500_000]], 'a bad value leaves the rate as it was');
    assert.equal(events.length, 1);
    assert.deepEqual(events[0]?.object, { kind: 'Pod', namespace: NS, name: 'server' });
    assert.match(events[0]?.message ?? '', /kubernetes\.io\/egress-bandwidth.*"fast".*stays as it was/);
    sync.event('Pod', 'update', server('fast', '4'));
    assert.equal(events.length, 1, 'reported once');

    sync.event('Pod', 'update', server(undefined, '5'));
    await settle();
    assert.equal(rates.size, 0);
    assert.deepEqual(rateCalls.at(-1), [12, undefined]);
    sync.stop();
  });
});
