/**
 * xlb-agent in Kubernetes mode, end to end: a real kube-apiserver (test/support/kube.ts), a real
 * `xlb-agent --kubeconfig` on the lab's LB node, backends as "pods" (network namespaces with real
 * servers), Services and EndpointSlices written through the apiserver as a controller would, and real
 * TCP and UDP traffic from the client. The agent reaches the apiserver through the lab's loopback
 * relay (agent/lab/relay.ts): the node's namespace has a loopback of its own.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { apiRequest } from '../../agent/cli/api-client.js';
import { AgentProcess } from '../../agent/demo/agent-process.js';
import { paths } from '../../agent/demo/paths.js';
import { LabProcesses, type ClientReport } from '../../agent/lab/processes.js';
import { LoopbackRelay } from '../../agent/lab/relay.js';
import { Lab } from '../../agent/lab/topology.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { KubeApiServer, endpointSlice, service, type EndpointSliceEndpoint } from '../support/kube.js';
import { waitUntil as waitFor } from '../support/wait.js';

const VIP4 = '198.18.10.40';
const NODE_PORT = 30080;
const AGENT_READY_MS = 60_000;
const CONVERGE_MS = 20_000;

interface ServiceEntry {
  id: string;
  origin: string;
  service: { type: string; frontend: { address: string; port: number; protocol: string }; backends: { address: string; port: number; node?: string }[] };
}

describe('xlb-agent in Kubernetes mode: a real apiserver, real traffic', () => {
  let bpffs: TempBpffs;
  let dir: string;
  let lab: Lab;
  let processes: LabProcesses;
  let kube: KubeApiServer;
  let relay: LoopbackRelay;
  let relayPort: number;
  let agent: AgentProcess | undefined;
  const agents: AgentProcess[] = [];

  const endpoints = (names: string[]): EndpointSliceEndpoint[] =>
    lab.backends
      .map((b, i) => ({ name: `b${i + 1}`, host: b }))
      .filter(({ name }) => names.includes(name))
      // 1.20 drops nodeName (alpha there): its EndpointSlice controller wrote the node as topology.
      .map(({ name, host }) => ({ addresses: [host.v4], topology: { 'kubernetes.io/hostname': name }, conditions: { ready: true } }));

  const startAgent = async (): Promise<AgentProcess> => {
    const started = AgentProcess.start({
      node: 'lb',
      ns: lab.lb.ns,
      xdp: 'native',
      mode: 'snat',
      nodeAddresses: [lab.lb.v4, lab.lb.v6],
      dir,
      bpffs: bpffs.dir,
      dsrServiceRanges: lab.dsrServiceRanges,
      kubernetes: { kubeconfig: kube.kubeconfig, apiServer: `https://127.0.0.1:${relayPort}` },
      extraArgs: ['--node-name', 'lb'],
    });
    agents.push(started);
    await started.ready(AGENT_READY_MS);
    agent = started;
    return started;
  };

  const socket = (): string => {
    assert.ok(agent, 'the agent runs');
    return agent.socket;
  };

  const kubernetesServices = async (): Promise<ServiceEntry[]> => {
    const response = await apiRequest(socket(), 'GET', '/v1/services');
    assert.equal(response.status, 200);
    return ((response.body as { services: ServiceEntry[] }).services ?? []).filter((s) => s.origin === 'kubernetes');
  };

  /** Waits until the agent serves `id` with these backend addresses (sorted). */
  const waitForBackends = async (id: string, addresses: string[]): Promise<void> => {
    const want = [...addresses].sort();
    await waitFor(async () => {
      const entry = (await kubernetesServices()).find((s) => s.id === id);
      return JSON.stringify(entry?.service.backends.map((b) => b.address).sort()) === JSON.stringify(want);
    }, CONVERGE_MS, `${id} served with backends ${want.join(', ')}`);
  };

  const answeredBy = (report: ClientReport): string[] => Object.keys(report.byBackend).sort();

  before(async () => {
    bpffs = TempBpffs.mount('k8s');
    dir = mkdtempSync('/tmp/xlb-k8s-');
    lab = Lab.create('k8s');
    processes = new LabProcesses(lab);
    await Promise.all(lab.backends.map((b, i) => processes.startServer(b, `b${i + 1}`)));
    kube = await KubeApiServer.start();
    ({ relay, port: relayPort } = await LoopbackRelay.start(lab.lb.ns, `${dir}/apiserver.sock`, { host: '127.0.0.1', port: kube.port }));

    const rest = kube.rest;
    await rest.createService(service('default', 'web', { type: 'LoadBalancer', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], selector: { app: 'web' } }));
    await rest.updateServiceStatus('default', 'web', { loadBalancer: { ingress: [{ ip: VIP4 }] } });
    await rest.createService(service('default', 'dns', { type: 'LoadBalancer', ports: [{ name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' }], selector: { app: 'dns' } }));
    await rest.updateServiceStatus('default', 'dns', { loadBalancer: { ingress: [{ ip: VIP4 }] } });
    await rest.createService(service('default', 'np', { type: 'NodePort', ports: [{ name: 'http', port: 8080, targetPort: 8080, nodePort: NODE_PORT, protocol: 'TCP' }], selector: { app: 'web' } }));
    const all = ['b1', 'b2', 'b3'];
    await rest.createEndpointSlice(endpointSlice('default', 'web-1', 'web', endpoints(all), [{ name: 'http', port: 8080, protocol: 'TCP' }]));
    await rest.createEndpointSlice(endpointSlice('default', 'dns-1', 'dns', endpoints(all), [{ name: 'dns', port: 5353, protocol: 'UDP' }]));
    await rest.createEndpointSlice(endpointSlice('default', 'np-1', 'np', endpoints(all), [{ name: 'http', port: 8080, protocol: 'TCP' }]));
  });

  after(async () => {
    await processes?.stopAll();
    await Promise.all(agents.map((a) => a.stop()));
    await relay?.stop();
    await kube?.stop();
    lab?.destroy();
    bpffs?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the agent lists the cluster\'s services (read-only, origin kubernetes) and serves LoadBalancer TCP and UDP and NodePort', async () => {
    await startAgent();
    const backends = lab.backends.map((b) => b.v4);
    await waitForBackends(`default/web:http@${VIP4}`, backends);
    await waitForBackends(`default/dns:dns@${VIP4}`, backends);
    await waitForBackends('default/np:http@0.0.0.0', backends);
    const web = (await kubernetesServices()).find((s) => s.id === `default/web:http@${VIP4}`);
    assert.deepEqual(web?.service.frontend, { address: VIP4, port: 80, protocol: 'TCP' });
    assert.deepEqual(web?.service.backends.map((b) => b.node).sort(), ['b1', 'b2', 'b3']);
    const ids = (await kubernetesServices()).map((s) => s.id);
    assert.ok(ids.some((id) => id.startsWith('default/web:http@198.18.1')), `the ClusterIP is carried too: ${ids.join(', ')}`);

    const deleted = await apiRequest(socket(), 'DELETE', `/v1/services/${encodeURIComponent(`default/web:http@${VIP4}`)}`);
    assert.equal(deleted.status, 409, 'Kubernetes services are read-only through the API');

    const http = await processes.client('http', `${VIP4}:80`, 30);
    assert.equal(http.answered, 30, http.errors.join('; '));
    assert.deepEqual(answeredBy(http), ['b1', 'b2', 'b3']);
    const udp = await processes.client('udp', `${VIP4}:53`, 30);
    assert.equal(udp.answered, 30, udp.errors.join('; '));
    assert.deepEqual(answeredBy(udp), ['b1', 'b2', 'b3']);
    const nodePort = await processes.client('http', `${lab.lb.v4}:${NODE_PORT}`, 20);
    assert.equal(nodePort.answered, 20, nodePort.errors.join('; '));

    const cli = spawnSync(process.execPath, [paths.cli, 'service', 'list', '--api-socket', socket()], { encoding: 'utf8' });
    assert.match(cli.stdout, new RegExp(`default/web:http@${VIP4.replace(/\./g, '\\.')}\\s+kubernetes`));
    const status = spawnSync(process.execPath, [paths.cli, 'status', '--api-socket', socket()], { encoding: 'utf8' });
    assert.match(status.stdout, /kubernetes/i);
    assert.match(status.stdout, /connected/);
  });

  test('an endpoint removed through the apiserver: new flows avoid it; it comes back when re-added', async () => {
    await kube.rest.updateEndpointSlice('default', 'web-1', (slice) => ({ ...slice, endpoints: endpoints(['b1', 'b2']) }));
    await waitForBackends(`default/web:http@${VIP4}`, [lab.backends[0]?.v4 ?? '', lab.backends[1]?.v4 ?? '']);
    const after = await processes.client('http', `${VIP4}:80`, 30);
    assert.equal(after.answered, 30, after.errors.join('; '));
    assert.deepEqual(answeredBy(after), ['b1', 'b2']);
    await kube.rest.updateEndpointSlice('default', 'web-1', (slice) => ({ ...slice, endpoints: endpoints(['b1', 'b2', 'b3']) }));
    await waitForBackends(`default/web:http@${VIP4}`, lab.backends.map((b) => b.v4));
  });

  test('the apiserver restarted: traffic is served meanwhile; after it is back, changes arrive again', async () => {
    await kube.stopApiServer('crash');
    try {
      await waitFor(async () => {
        const response = await apiRequest(socket(), 'GET', '/v1/status');
        return (response.body as { kubernetes?: { connection?: string } }).kubernetes?.connection !== 'connected';
      }, CONVERGE_MS, 'the agent notices the apiserver is gone');
      const during = await processes.client('http', `${VIP4}:80`, 20);
      assert.equal(during.answered, 20, 'the datapath keeps serving while the apiserver is down');
      assert.equal((await kubernetesServices()).length > 0, true, 'nothing was removed');
    } finally {
      await kube.startApiServer();
    }
    await kube.rest.updateEndpointSlice('default', 'web-1', (slice) => ({ ...slice, endpoints: endpoints(['b2', 'b3']) }));
    await waitForBackends(`default/web:http@${VIP4}`, [lab.backends[1]?.v4 ?? '', lab.backends[2]?.v4 ?? '']);
    const after = await processes.client('http', `${VIP4}:80`, 20);
    assert.deepEqual(answeredBy(after), ['b2', 'b3']);
  });

  test('the agent restarted with a connection open: the connection keeps its backend; the relist rewrites nothing', async () => {
    const held = processes.hold(`${VIP4}:80`, 30, 50);
    const first = await held.next();
    assert.ok(first.backend, `first answer: ${first.error ?? ''}`);
    await agent?.stop();
    const restarted = await startAgent();
    await waitForBackends(`default/web:http@${VIP4}`, [lab.backends[1]?.v4 ?? '', lab.backends[2]?.v4 ?? '']);
    const rest = await held.rest();
    assert.equal(rest.length, 29);
    for (const line of rest) {
      assert.equal(line.backend, first.backend, `request ${line.i} answered by ${line.backend ?? line.error}`);
      assert.equal(line.localPort, first.localPort, 'the same TCP connection throughout');
    }
    const log = readFileSync(restarted.log, 'utf8');
    assert.doesNotMatch(log, /kubernetes service .* not served/);
  });

  test('a Service deleted through the apiserver disappears from the agent and its frontend stops answering', async () => {
    await kube.rest.deleteService('default', 'dns');
    await waitFor(async () => !(await kubernetesServices()).some((s) => s.id.startsWith('default/dns:')), CONVERGE_MS, 'dns removed');
    const udp = await processes.client('udp', `${VIP4}:53`, 5, 500);
    assert.equal(udp.answered, 0);
  });
});
