/**
 * This node's Pods → their host-side devices (agent/k8s/pods.ts) with an injected route lookup, no
 * `ip` run: which Pods count, which devices are skipped, coalesced recomputes, deletes and relists.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { podAddresses, PodDeviceTracker, type RouteLookup } from '../../agent/k8s/pods.js';
import { waitFor } from '../support/wait.js';

function pod(name: string, ips: string[], extra: { hostNetwork?: boolean; uid?: string; podIPOnly?: boolean } = {}): unknown {
  return {
    metadata: { namespace: 'default', name, uid: extra.uid ?? `uid-${name}` },
    spec: { nodeName: 'node-1', ...(extra.hostNetwork ? { hostNetwork: true } : {}) },
    status: extra.podIPOnly ? { podIP: ips[0] } : { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) },
  };
}

/** A routing table as a map; counts lookups. */
function routes(table: Record<string, string>): { lookup: RouteLookup; asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    lookup: async (address) => {
      asked.push(address);
      if (address === '198.18.9.9') throw new Error('ip route get 198.18.9.9: timed out');
      return table[address] ?? 'eth0';
    },
  };
}

function tracker(lookup: RouteLookup): { t: PodDeviceTracker; calls: string[][]; warnings: string[] } {
  const calls: string[][] = [];
  const warnings: string[] = [];
  const t = new PodDeviceTracker({ onDevices: (d) => calls.push(d), nodeDevices: ['eth0'], lookup, log: { warn: (m) => warnings.push(m) } });
  return { t, calls, warnings };
}

describe('podAddresses', () => {
  test('podIPs, else podIP; none for hostNetwork or no address yet', () => {
    assert.deepEqual(podAddresses(pod('a', ['198.18.0.10', '2001:db8::a'])), ['198.18.0.10', '2001:db8::a']);
    assert.deepEqual(podAddresses(pod('a', ['198.18.0.10'], { podIPOnly: true })), ['198.18.0.10']);
    assert.deepEqual(podAddresses(pod('a', ['198.18.0.10'], { hostNetwork: true })), []);
    assert.deepEqual(podAddresses({ metadata: { namespace: 'default', name: 'p' }, spec: {}, status: {} }), []);
  });
});

describe('PodDeviceTracker', () => {
  test('the devices of the pods routes, sorted; lo, the node devices and failed lookups skipped', async () => {
    const r = routes({ '198.18.0.10': 'veth-a', '2001:db8::a': 'veth-a', '198.18.0.11': 'lxc1', '198.18.0.12': 'lo' });
    const { t, calls, warnings } = tracker(r.lookup);
    const counts = t.list([
      pod('a', ['198.18.0.10', '2001:db8::a']),
      pod('b', ['198.18.0.11']),
      pod('local', ['198.18.0.12']),
      pod('via-node', ['198.18.0.13']),
      pod('broken', ['198.18.9.9']),
      pod('host', ['198.18.0.1'], { hostNetwork: true }),
    ]);
    assert.deepEqual(counts, { add: 6, update: 0, delete: 0 });
    await waitFor(() => calls.length === 1, 5_000, 'the first device list');
    assert.deepEqual(calls, [['lxc1', 'veth-a']]);
    assert.ok(!r.asked.includes('198.18.0.1'), 'a hostNetwork pod is not looked up');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /default\/broken: ip route get 198\.18\.9\.9: timed out/);
    await t.stop();
  });

  test('changes in one go make one recompute; found devices are not asked again; deletes and relists remove', async () => {
    const r = routes({ '198.18.0.10': 'veth-a', '198.18.0.11': 'veth-b', '198.18.0.12': 'veth-c' });
    const { t, calls } = tracker(r.lookup);
    t.list([]);
    await waitFor(() => calls.length === 1, 5_000, 'the empty list handed over');
    assert.deepEqual(calls, [[]]);
    t.event('add', pod('a', ['198.18.0.10']));
    t.event('add', pod('b', ['198.18.0.11']));
    await waitFor(() => calls.length === 2, 5_000, 'a and b');
    assert.deepEqual(calls[1], ['veth-a', 'veth-b']);
    // A pod without an address yet, then with one; an update that changes nothing hands nothing over.
    t.event('add', pod('c', []));
    t.event('update', pod('a', ['198.18.0.10']));
    t.event('update', pod('c', ['198.18.0.12']));
    await waitFor(() => calls.length === 3, 5_000, 'c');
    assert.deepEqual(calls[2], ['veth-a', 'veth-b', 'veth-c']);
    assert.equal(r.asked.filter((a) => a === '198.18.0.10').length, 1, 'a asked once');
    t.event('delete', pod('b', ['198.18.0.11']));
    await waitFor(() => calls.length === 4, 5_000, 'b gone');
    assert.deepEqual(calls[3], ['veth-a', 'veth-c']);
    // A relist without c (deleted while the watch was down): c goes.
    assert.deepEqual(t.list([pod('a', ['198.18.0.10'])]), { add: 0, update: 0, delete: 1 });
    await waitFor(() => calls.length === 5, 5_000, 'c gone by the relist');
    assert.deepEqual(t.devices(), ['veth-a']);
    await t.stop();
  });

  test('a pod recreated under its name with its address is looked up again', async () => {
    const table: Record<string, string> = { '198.18.0.10': 'veth-old' };
    const r = routes(table);
    const { t, calls } = tracker(r.lookup);
    t.list([pod('a', ['198.18.0.10'], { uid: 'one' })]);
    await waitFor(() => calls.length === 1, 5_000, 'the old device');
    table['198.18.0.10'] = 'veth-new';
    t.event('delete', pod('a', ['198.18.0.10'], { uid: 'one' }));
    t.event('add', pod('a', ['198.18.0.10'], { uid: 'two' }));
    await waitFor(() => calls.length === 2, 5_000, 'the new device');
    assert.deepEqual(calls, [['veth-old'], ['veth-new']]);
    await t.stop();
  });
});
