/**
 * The Pod side of Kubernetes mode against a real kube-apiserver 1.20 (test/support/kube.ts): the
 * watcher watches only this node's Pods, and hands the devices their addresses are routed through
 * (an injected route lookup: no `ip` run, no network touched) to onPodDevices; a Pod's IPs set
 * through the status subresource add its device, a hostNetwork Pod and another node's Pod add
 * nothing, deleting the Pod removes its device.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { startKubernetes, type KubernetesWatcher } from '../../agent/k8s/syncer.js';
import { memoryLogger } from '../../agent/log.js';
import { ServiceStore } from '../../agent/store.js';
import { FakeDatapath } from '../support/fake-datapath.js';
import { KubeApiServer, type ObjectMeta } from '../support/kube.js';
import { waitFor } from '../support/wait.js';

const DEADLINE_MS = 30_000;
const NS = `xlb-${randomBytes(3).toString('hex')}`;
const NODE = `xlb-node-${randomBytes(3).toString('hex')}`;
/** The routing table the injected lookup answers from: pod address → device. */
const ROUTES: Record<string, string> = { '198.18.5.10': 'veth-web', '2001:db8::5:10': 'veth-web', '198.18.5.11': 'veth-db', '198.18.5.12': 'veth-other' };

interface Pod {
  metadata: ObjectMeta;
  spec: Record<string, unknown>;
  status?: { podIP?: string; podIPs?: { ip: string }[]; phase?: string };
}

function pod(name: string, nodeName: string, hostNetwork = false): Pod {
  return {
    metadata: { namespace: NS, name },
    spec: {
      nodeName,
      automountServiceAccountToken: false,
      ...(hostNetwork ? { hostNetwork: true } : {}),
      containers: [{ name: 'c', image: 'registry.invalid/none:1' }],
    },
  };
}

test('KubernetesWatcher against kube-apiserver 1.20: this node\'s Pods → their devices', async () => {
  const server = await KubeApiServer.start();
  const dir = await mkdtemp(join(tmpdir(), 'xlb-pods-'));
  const log = memoryLogger();
  const store = new ServiceStore({ datapath: new FakeDatapath(), stateFile: join(dir, 'state.json'), log });
  const calls: string[][] = [];
  const asked: string[] = [];
  let watcher: KubernetesWatcher | undefined;
  const rest = server.rest;
  const podsPath = `/api/v1/namespaces/${NS}/pods`;
  const createPod = (p: Pod): Promise<Pod> => rest.request<Pod>('POST', podsPath, p);
  const setIPs = (name: string, ips: string[]): Promise<Pod> =>
    rest.update<Pod>(`${podsPath}/${name}/status`, (p) => ({ ...p, status: { ...p.status, phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } }));
  const last = (): string => JSON.stringify(calls.at(-1));
  const waitDevices = (expected: string[], what: string): Promise<void> =>
    waitFor(() => last() === JSON.stringify(expected), DEADLINE_MS, `${what} (last ${last()}; log:\n${log.lines.join('\n')})`);
  try {
    await store.start(new Map());
    await rest.createNamespace(NS);
    // No controller-manager creates it: the ServiceAccount admission wants the pods' account to exist.
    await rest.request('POST', `/api/v1/namespaces/${NS}/serviceaccounts`, { metadata: { name: 'default', namespace: NS } });
    await createPod(pod('web', NODE));
    await setIPs('web', ['198.18.5.10', '2001:db8::5:10']);

    watcher = await startKubernetes({
      flags: { kubeconfig: server.kubeconfig, nodePortAddresses: { kind: 'all' } },
      nodeName: NODE,
      store,
      registry: new Registry(),
      log,
      onPodDevices: (devices) => calls.push(devices),
      nodeDevices: ['eth-node'],
      tuning: {
        healthCheckAddresses: ['127.0.0.1'],
        podRouteLookup: async (address) => {
          asked.push(address);
          return ROUTES[address] ?? 'eth-node';
        },
      },
    });

    // The Pod that existed before the start, from the first list.
    await waitDevices(['veth-web'], 'web listed');
    await watcher.initialSync();

    // A Pod without IPs yet adds nothing; its IPs set through the status subresource add its device.
    await createPod(pod('db', NODE));
    await setIPs('db', ['198.18.5.11']);
    await waitDevices(['veth-db', 'veth-web'], 'db running');

    // Another node's Pod and a hostNetwork Pod are not this node's pods' devices.
    await createPod(pod('other', `${NODE}-2`));
    await setIPs('other', ['198.18.5.12']);
    await createPod(pod('host', NODE, true));
    await setIPs('host', ['198.18.5.13']);
    // The host pod's event has come and gone when a later change is handed over.
    await createPod(pod('late', NODE));
    await setIPs('late', ['198.18.5.14']); // routed through the node's device: not a pod device
    await waitFor(() => asked.includes('198.18.5.14'), DEADLINE_MS, 'late looked up');
    assert.ok(!asked.includes('198.18.5.12'), 'another node\'s pod is not watched');
    assert.ok(!asked.includes('198.18.5.13'), 'a hostNetwork pod is not looked up');
    assert.deepEqual(calls.at(-1), ['veth-db', 'veth-web']);

    // Deleting the Pod removes its device.
    await rest.request('DELETE', `${podsPath}/db`, { gracePeriodSeconds: 0 });
    await waitDevices(['veth-web'], 'db deleted');
    assert.ok(watcher.watchCounts().Pod.lists >= 1);
  } finally {
    await watcher?.stop();
    await store.idle();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
