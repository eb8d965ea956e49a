/**
 * What network policy needs of agent/k8s/pods.ts and lb/k8s/pod.ts: with every Pod of the cluster
 * watched, only this node's count; each pod's device handed over (onPods), again when the pod is
 * recreated under its name; Pods and Namespaces read into the policy model.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PodDeviceTracker } from '../../agent/k8s/pods.js';
import { namespaceInfo, podEgressBandwidth, podInfo } from '../../lb/k8s/pod.js';
import { waitFor } from '../support/wait.js';

function pod(name: string, ip: string, node: string, uid = `uid-${name}`): unknown {
  return { metadata: { namespace: 'shop', name, uid }, spec: { nodeName: node }, status: { podIP: ip, podIPs: [{ ip }] } };
}

describe('PodDeviceTracker for network policy', () => {
  test("only this node's Pods; each pod's device handed over, and again when the pod is recreated", async () => {
    const asked: string[] = [];
    const handed: Map<string, string>[] = [];
    const tracker = new PodDeviceTracker({
      nodeName: 'node-1',
      onDevices: () => undefined,
      onPods: (devices) => handed.push(new Map(devices)),
      lookup: async (address) => {
        asked.push(address);
        return address === '198.18.71.2' ? 'lxc-a' : 'lxc-b';
      },
      log: { warn: () => undefined },
    });
    tracker.list([pod('a', '198.18.71.2', 'node-1'), pod('b', '198.18.72.2', 'node-1'), pod('far', '198.18.73.2', 'node-2')]);
    await waitFor(() => handed.length === 1, 5_000, 'the first hand-over');
    assert.deepEqual([...(handed[0] ?? [])], [['shop/a', 'lxc-a'], ['shop/b', 'lxc-b']]);
    assert.ok(!asked.includes('198.18.73.2'), "another node's pod is not looked up");

    tracker.event('add', pod('far2', '198.18.73.3', 'node-2'));
    tracker.event('update', pod('b', '198.18.72.2', 'node-1'));
    await new Promise((resolve) => setImmediate(resolve));
    await tracker.stop();
    assert.equal(handed.length, 1, 'nothing of ours changed');
  });

  test('a pod recreated under its name (another uid, the same device name) is handed over again', async () => {
    const handed: Map<string, string>[] = [];
    const tracker = new PodDeviceTracker({
      nodeName: 'node-1',
      onDevices: () => undefined,
      onPods: (devices) => handed.push(new Map(devices)),
      lookup: async () => 'lxc-a',
      log: { warn: () => undefined },
    });
    tracker.list([pod('a', '198.18.71.2', 'node-1', 'uid-1')]);
    await waitFor(() => handed.length === 1, 5_000, 'the first hand-over');
    tracker.event('delete', pod('a', '198.18.71.2', 'node-1', 'uid-1'));
    tracker.event('add', pod('a', '198.18.71.2', 'node-1', 'uid-2'));
    await waitFor(() => handed.length === 2, 5_000, 'the recreated pod handed over');
    assert.deepEqual([...(handed[1] ?? [])], [['shop/a', 'lxc-a']]);
    await tracker.stop();
  });
});

describe('Pods and Namespaces in the policy model', () => {
  test('labels, addresses, node, hostNetwork, named ports (TCP by default); malformed parts left out', () => {
    const info = podInfo({
      metadata: { namespace: 'shop', name: 'web', labels: { app: 'web', bad: 3 } },
      spec: {
        nodeName: 'node-1',
        containers: [
          { name: 'c', ports: [{ name: 'http', containerPort: 8080 }, { name: 'dns', containerPort: 53, protocol: 'UDP' }, { containerPort: 9000 }, { name: 'x', containerPort: 0 }] },
          { name: 'd', ports: [{ name: 'sctp', containerPort: 3868, protocol: 'SCTP' }, { name: 'q', containerPort: 1, protocol: 'QUIC' }] },
        ],
      },
      status: { podIP: '198.18.71.2', podIPs: [{ ip: '198.18.71.2' }, { ip: '2001:db8::71:2' }, { ip: 'nonsense' }] },
    });
    assert.deepEqual(info, {
      namespace: 'shop',
      name: 'web',
      labels: { app: 'web' },
      ips: ['198.18.71.2', '2001:db8::71:2'],
      nodeName: 'node-1',
      hostNetwork: false,
      namedPorts: [
        { name: 'http', port: 8080, protocol: 'TCP' },
        { name: 'dns', port: 53, protocol: 'UDP' },
        { name: 'sctp', port: 3868, protocol: 'SCTP' },
      ],
    });
    assert.equal(podInfo({ metadata: { name: 'no-namespace' } }), undefined);
    const pending = podInfo({ metadata: { namespace: 'shop', name: 'p' }, spec: { hostNetwork: true } });
    assert.deepEqual({ ips: pending?.ips, nodeName: pending?.nodeName, hostNetwork: pending?.hostNetwork }, { ips: [], nodeName: '', hostNetwork: true });
  });

  test('the egress bandwidth annotation; namespaces with their labels', () => {
    assert.equal(podEgressBandwidth({ metadata: { annotations: { 'kubernetes.io/egress-bandwidth': ' 10M ' } } }), '10M');
    assert.equal(podEgressBandwidth({ metadata: { annotations: { other: '1' } } }), undefined);
    assert.deepEqual(namespaceInfo({ metadata: { name: 'shop', labels: { team: 'a' } } }), { name: 'shop', labels: { team: 'a' } });
    assert.equal(namespaceInfo({ metadata: {} }), undefined);
  });
});
