/**
 * Network policy end to end in Kubernetes mode: a real kube-apiserver (test/support/kube.ts), the real
 * `xlb-agent` in a node's network namespace (reaching the apiserver through the lab's loopback relay)
 * with --pod-devices, three pods plugged into the node as a ptp CNI does (agent/lab/pod.ts), each a
 * labelled Pod in the apiserver with its addresses and the agent's node. The server pod runs TCP and
 * UDP echo servers on two ports each; the client and the other pod call it.
 *
 *   client 198.18.81.2 ── lxc-client ┐
 *   server 198.18.82.2 ── lxc-server ├ node (xlb-agent, tc_pod on lxc+) eth0 198.18.80.1 ── out
 *   other  198.18.83.2 ── lxc-other  ┘
 *
 * Before any policy everything is answered; a default-deny ingress policy on the server: TCP connects
 * time out and UDP goes unanswered, counted (xlb_drop_count_total policy_ingress) and reported (a
 * monitor event with both identities and their labels); a policy allowing the client's labels on
 * TCP 8080: that port answers the client, over IPv4 and IPv6, not the other port, UDP, or the other
 * pod; `xlb policy get` and `xlb identity list` show it; the agent restarted with those policies in force:
 * the same identities, the policy maps as they were, an allowed connection opened right after the
 * restart answered and a denied one not; a default-deny egress policy on the client with
 * one allowed destination port (neighbour discovery anew); all deleted: allowed again. A pod's
 * kubernetes.io/egress-bandwidth annotation sets its device's rate in the bandwidth manager.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { apiRequest, apiStream } from '../../agent/cli/api-client.js';
import { formatMonitorEvent } from '../../agent/cli/monitor.js';
import type { EndpointPolicyView, IdentityView } from '../../agent/api/policy.js';
import { AgentProcess } from '../../agent/demo/agent-process.js';
import { paths } from '../../agent/demo/paths.js';
import type { ClientReport } from '../../agent/lab/processes.js';
import { attachPod, type LabPod } from '../../agent/lab/pod.js';
import { LoopbackRelay } from '../../agent/lab/relay.js';
import { TempBpffs } from '../../lb/datapath/bpffs.js';
import { BpfMap } from '../../lb/datapath/map.js';
import { POLICY_MAPS } from '../../lb/layouts-policy.js';
import { Topology } from '../../lb/datapath/topology.js';
import { KubeApiServer, type ObjectMeta } from '../support/kube.js';
import { parsePromText } from '../support/prom-text.js';
import { repoRoot } from '../support/paths.js';
import { waitUntil } from '../support/wait.js';

const SERVER = join(repoRoot, 'dist', 'agent', 'lab', 'server.js');
const CLIENT = join(repoRoot, 'dist', 'agent', 'lab', 'client.js');
const AGENT_READY_MS = 60_000;
/** From an object written to the apiserver to the agent's maps. */
const CONVERGE_MS = 5_000;
/** What a denied exchange waits before it counts as unanswered. */
const DENIED_MS = 800;

const NS = `pol-${randomBytes(3).toString('hex')}`;
const NODE = `xlb-pol-${randomBytes(3).toString('hex')}`;
const NODE_V4 = '198.18.80.1';
const PORTS = { http: 8080, udp: 5353, httpAlt: 9090, udpAlt: 5454 };
const PODS = {
  client: { hostDevice: 'lxc-client', v4: '198.18.81.2', v6: '2001:db8:81::2', gateway: { v4: '198.18.81.1', v6: '2001:db8:81::1' }, labels: { app: 'client' } },
  server: { hostDevice: 'lxc-server', v4: '198.18.82.2', v6: '2001:db8:82::2', gateway: { v4: '198.18.82.1', v6: '2001:db8:82::1' }, labels: { app: 'server' } },
  other: { hostDevice: 'lxc-other', v4: '198.18.83.2', v6: '2001:db8:83::2', gateway: { v4: '198.18.83.1', v6: '2001:db8:83::1' }, labels: { app: 'other' } },
} as const;
type PodName = keyof typeof PODS;

interface Pod {
  metadata: ObjectMeta;
  spec: Record<string, unknown>;
  status?: Record<string, unknown>;
}

const target = (address: string, port: number): string => (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);

describe('network policy in Kubernetes mode: a real apiserver, the real agent, pods in namespaces', () => {
  const topology = new Topology('polk8s');
  const children = new Set<ChildProcess>();
  const pods = {} as Record<PodName, LabPod>;
  let bpffs: TempBpffs | undefined;
  let dir = '';
  let kube: KubeApiServer | undefined;
  let relay: LoopbackRelay | undefined;
  let agent: AgentProcess | undefined;

  const rest = (): KubeApiServer['rest'] => (kube ?? assert.fail('the apiserver runs')).rest;
  const socket = (): string => (agent ?? assert.fail('the agent runs')).socket;
  const policiesPath = `/apis/networking.k8s.io/v1/namespaces/${NS}/networkpolicies`;

  const spawnIn = (ns: string, script: string, args: string[]): ChildProcess => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    child.on('exit', () => children.delete(child));
    return child;
  };
  const startServer = (pod: LabPod, name: string, httpPort: number, udpPort: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const child = spawnIn(pod.ns, SERVER, ['--name', name, '--listen', pod.v4, '--listen', pod.v6, '--http-port', String(httpPort), '--udp-port', String(udpPort)]);
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.stdout?.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`server ${name} exited with ${code}: ${stderr.trim()}`)));
    });
  /** `count` exchanges from a pod, each a new connection or source port, each waiting at most timeoutMs. */
  const call = (from: PodName, kind: 'http' | 'udp', to: string, count: number, timeoutMs = 2000): Promise<ClientReport> =>
    new Promise((resolve, reject) => {
      const child = spawnIn(pods[from].ns, CLIENT, [kind, '--target', to, '--count', String(count), '--timeout-ms', String(timeoutMs)]);
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(stdout) as ClientReport) : reject(new Error(`client ${kind} ${to} exited with ${code}: ${stderr.trim()}`))));
    });
  const answered = async (from: PodName, kind: 'http' | 'udp', to: string, count = 3): Promise<void> => {
    const report = await call(from, kind, to, count);
    assert.equal(report.answered, count, `${from} → ${kind} ${to}: ${report.errors.join('; ')}`);
  };
  const unanswered = async (from: PodName, kind: 'http' | 'udp', to: string, count = 2): Promise<void> => {
    const report = await call(from, kind, to, count, DENIED_MS);
    assert.equal(report.answered, 0, `${from} → ${kind} ${to} must not be answered`);
    if (kind === 'http') for (const error of report.errors) assert.doesNotMatch(error, /ECONNREFUSED/, 'dropped, not refused');
  };

  const policyOf = async (pod: PodName): Promise<EndpointPolicyView | undefined> => {
    const response = await apiRequest(socket(), 'GET', `/v1/policy/${NS}/${pod}`);
    return response.status === 200 ? (response.body as EndpointPolicyView) : undefined;
  };
  const waitPolicy = (pod: PodName, what: string, condition: (view: EndpointPolicyView) => boolean): Promise<void> =>
    waitUntil(async () => {
      const view = await policyOf(pod);
      return view !== undefined && view.ifindex !== undefined && condition(view);
    }, CONVERGE_MS, `${NS}/${pod}: ${what}`);
  const identities = async (): Promise<IdentityView[]> => {
    const response = await apiRequest(socket(), 'GET', '/v1/identities');
    assert.equal(response.status, 200);
    return (response.body as { identities: IdentityView[] }).identities;
  };
  const identityOf = async (app: string): Promise<number> =>
    (await identities()).find((i) => i.namespace === NS && i.labels.app === app)?.id ?? assert.fail(`an identity for app=${app}`);
  const policyDrops = async (): Promise<number> => {
    const response = await apiRequest(socket(), 'GET', '/metrics');
    return parsePromText(String(response.body))
      .samples.filter((s) => s.name === 'xlb_drop_count_total' && s.labels.reason === 'policy_ingress')
      .reduce((sum, s) => sum + s.value, 0);
  };
  const cli = (...args: string[]): { status: number | null; stdout: string; stderr: string } =>
    spawnSync(process.execPath, [paths.cli, ...args, '--api-socket', socket()], { encoding: 'utf8' });

  before(async () => {
    const nodeNs = topology.namespace('node');
    const outNs = topology.namespace('out');
    // The node's own device (--device eth0), to a namespace of its own.
    topology.veth({ ns: nodeNs, name: 'eth0' }, { ns: outNs, name: 'eth0' });
    topology.address(nodeNs, 'eth0', `${NODE_V4}/24`);
    topology.address(outNs, 'eth0', '198.18.80.2/24');
    for (const name of Object.keys(PODS) as PodName[]) pods[name] = attachPod(topology, nodeNs, { role: name, ...PODS[name] });
    await startServer(pods.server, 'server', PORTS.http, PORTS.udp);
    await startServer(pods.server, 'server-alt', PORTS.httpAlt, PORTS.udpAlt);

    bpffs = TempBpffs.mount('polk8s');
    dir = mkdtempSync('/tmp/xlb-polk8s-');
    kube = await KubeApiServer.start();
    const started = await LoopbackRelay.start(nodeNs, `${dir}/apiserver.sock`, { host: '127.0.0.1', port: kube.port });
    relay = started.relay;
    agent = AgentProcess.start({
      node: 'node',
      ns: nodeNs,
      xdp: 'off',
      mode: 'snat',
      nodeAddresses: [NODE_V4],
      dir,
      bpffs: bpffs.dir,
      dsrServiceRanges: [`${NODE_V4}/32`],
      kubernetes: { kubeconfig: kube.kubeconfig, apiServer: `https://127.0.0.1:${started.port}` },
      extraArgs: ['--node-name', NODE, '--pod-devices', 'lxc+'],
    });

    // What a scheduler and kubelets would have written: the namespace, the node, the pods with their addresses.
    await rest().createNamespace(NS);
    await rest().request('POST', `/api/v1/namespaces/${NS}/serviceaccounts`, { metadata: { name: 'default', namespace: NS } });
    await rest().request('POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
    await rest().update<Pod>(`/api/v1/nodes/${NODE}/status`, (n) => ({ ...n, status: { addresses: [{ type: 'InternalIP', address: NODE_V4 }] } }));
    for (const name of Object.keys(PODS) as PodName[]) {
      const podPath = `/api/v1/namespaces/${NS}/pods`;
      await rest().request<Pod>('POST', podPath, {
        metadata: { namespace: NS, name, labels: PODS[name].labels },
        spec: {
          nodeName: NODE,
          automountServiceAccountToken: false,
          containers: [{ name: 'c', image: 'registry.invalid/none:1', ports: [{ name: 'http', containerPort: PORTS.http }] }],
        },
      });
      const ips = [PODS[name].v4, PODS[name].v6];
      await rest().update<Pod>(`${podPath}/${name}/status`, (p) => ({ ...p, status: { ...p.status, phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } }));
    }
    await (agent ?? assert.fail('agent')).ready(AGENT_READY_MS);
  });

  after(async () => {
    await Promise.all(
      [...children].map(
        (child) =>
          new Promise<void>((resolve) => {
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      ),
    );
    await agent?.stop();
    await relay?.stop();
    await kube?.stop();
    topology.destroy();
    bpffs?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('before any policy: every pod of the node has its endpoint and identity, and everything is answered', async () => {
    for (const name of Object.keys(PODS) as PodName[]) {
      await waitPolicy(name, 'written at its device, not enforced', (v) => v.device === PODS[name].hostDevice && !v.ingress.enforced && !v.egress.enforced);
    }
    await answered('client', 'http', target(PODS.server.v4, PORTS.http));
    await answered('client', 'udp', target(PODS.server.v4, PORTS.udp));
    await answered('client', 'http', target(PODS.server.v6, PORTS.http));
    await answered('other', 'http', target(PODS.server.v4, PORTS.httpAlt));
  });

  test('default-deny ingress on the server: TCP times out, UDP is unanswered, counted and reported with both identities', async () => {
    await rest().request('POST', policiesPath, {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'deny-ingress', namespace: NS },
      spec: { podSelector: { matchLabels: { app: 'server' } }, policyTypes: ['Ingress'] },
    });
    await waitPolicy('server', 'ingress enforced', (v) => v.ingress.enforced && v.ingress.policies.includes(`${NS}/deny-ingress`));
    const client = await identityOf('client');
    const server = await identityOf('server');
    const dropsBefore = await policyDrops();

    const events: Record<string, unknown>[] = [];
    const abort = new AbortController();
    let opened: () => void = () => undefined;
    const open = new Promise<void>((resolve) => (opened = resolve));
    const stream = apiStream(socket(), '/v1/monitor?type=drop', { onOpen: () => opened(), onLine: (line) => events.push(JSON.parse(line) as Record<string, unknown>) }, abort.signal);
    try {
      await open;
      await unanswered('client', 'http', target(PODS.server.v4, PORTS.http));
      await unanswered('client', 'udp', target(PODS.server.v4, PORTS.udp));
      await unanswered('client', 'http', target(PODS.server.v6, PORTS.http), 1);
      const denied = (): Record<string, unknown> | undefined => events.find((e) => e.reasonLabel === 'policy_ingress' && e.saddr === PODS.client.v4 && e.proto === 6);
      await waitUntil(async () => denied() !== undefined, CONVERGE_MS, 'a monitor event of the denied connection');
      const event = denied() ?? assert.fail('event');
      assert.equal(event.srcIdentity, client);
      assert.equal(event.dstIdentity, server);
      assert.equal(event.daddr, PODS.server.v4);
      assert.equal(event.dport, PORTS.http);
      assert.deepEqual(event.srcLabels, { 'io.kubernetes.pod.namespace': NS, app: 'client' });
      assert.deepEqual(event.dstLabels, { 'io.kubernetes.pod.namespace': NS, app: 'server' });
      assert.match(formatMonitorEvent(event), new RegExp(`^xx drop \\(policy_ingress\\) .* tcp identity ${client} \\(.*app=client.*\\) -> ${server} \\(.*app=server.*\\)`));
      assert.ok(events.some((e) => e.reasonLabel === 'policy_ingress' && e.proto === 17), 'the UDP datagrams too');
    } finally {
      abort.abort();
      await stream;
    }
    // Two SYNs and two datagrams at least (retransmissions add more).
    assert.ok((await policyDrops()) - dropsBefore >= 4, 'policy_ingress drops counted');
  });

  test("a policy allowing the client's labels on TCP 8080: that port answers the client (IPv4 and IPv6); the other port, UDP and the other pod do not", async () => {
    await rest().request('POST', policiesPath, {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'allow-client', namespace: NS },
      spec: {
        podSelector: { matchLabels: { app: 'server' } },
        ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }], ports: [{ protocol: 'TCP', port: PORTS.http }] }],
      },
    });
    const client = await identityOf('client');
    await waitPolicy('server', 'the client allowed on TCP 8080', (v) => v.ingress.rules.some((r) => r.identity === client && r.protocol === 'TCP' && r.port === PORTS.http));
    await answered('client', 'http', target(PODS.server.v4, PORTS.http));
    await answered('client', 'http', target(PODS.server.v6, PORTS.http));
    await unanswered('client', 'http', target(PODS.server.v4, PORTS.httpAlt));
    await unanswered('client', 'udp', target(PODS.server.v4, PORTS.udp));
    await unanswered('other', 'http', target(PODS.server.v4, PORTS.http));

    const shown = cli('policy', 'get', `${NS}/server`);
    assert.equal(shown.status, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`^Ingress: enforced by ${NS}/allow-client, ${NS}/deny-ingress$`, 'm'));
    assert.match(shown.stdout, new RegExp(`allow from identity ${client} \\(app=client, io\\.kubernetes\\.pod\\.namespace=${NS}\\): TCP ${PORTS.http}$`, 'm'));
    assert.match(shown.stdout, /^Egress: not enforced/m);
    const listed = cli('identity', 'list');
    assert.equal(listed.status, 0, listed.stderr);
    for (const app of ['client', 'server', 'other']) assert.match(listed.stdout, new RegExp(`^\\s*\\d+\\s+labels\\s+${NS}\\s+app=${app}\\s+1$`, 'm'));
    assert.match(listed.stdout, /^\s*1\s+reserved\s+-\s+reserved=host\s+0$/m);
    const missing = cli('policy', 'get', `${NS}/nobody`);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, new RegExp(`404: no pod ${NS}/nobody`));
  });

  test('the agent restarted with the policies in force: identities and policy maps as they were; connections opened right after it: the allowed one answered, the denied one not', async () => {
    const running = agent ?? assert.fail('the agent runs');
    const pinned = (): Record<string, string[]> => {
      const out: Record<string, string[]> = {};
      for (const name of [POLICY_MAPS.ipcache, POLICY_MAPS.endpoint, POLICY_MAPS.policy]) {
        const map = BpfMap.openPinned(`${running.bpffs}/${name}`);
        try {
          out[name] = [...map.entries()].map(([key, value]) => `${key.toString('hex')} ${value.toString('hex')}`).sort();
        } finally {
          map.close();
        }
      }
      return out;
    };
    // A pod that came last but lists first (by name): without its number kept, every label set would shift.
    const early = 'aaa-early';
    const podPath = `/api/v1/namespaces/${NS}/pods`;
    await rest().request<Pod>('POST', podPath, {
      metadata: { namespace: NS, name: early, labels: { app: 'early' } },
      spec: { nodeName: 'elsewhere', automountServiceAccountToken: false, containers: [{ name: 'c', image: 'registry.invalid/none:1' }] },
    });
    await rest().update<Pod>(`${podPath}/${early}/status`, (p) => ({ ...p, status: { ...p.status, phase: 'Running', podIP: '198.18.84.2', podIPs: [{ ip: '198.18.84.2' }] } }));
    await waitUntil(async () => (await identities()).some((i) => i.labels.app === 'early'), CONVERGE_MS, 'the early pod has its identity');
    assert.ok((await identityOf('early')) > (await identityOf('server')), 'numbered after the others');
    const identitiesBefore = await identities();
    const listedBefore = cli('identity', 'list');
    assert.equal(listedBefore.status, 0, listedBefore.stderr);
    const mapsBefore = pinned();

    await running.stop();
    agent = AgentProcess.start(running.spec);
    await agent.ready(AGENT_READY_MS);
    // At once: the new agent may still be listing the cluster; the maps as the earlier one left them decide.
    await Promise.all([answered('client', 'http', target(PODS.server.v4, PORTS.http)), unanswered('other', 'http', target(PODS.server.v4, PORTS.http))]);

    await waitPolicy('server', 'its endpoint written by the new agent', (v) => v.ingress.enforced);
    assert.deepEqual(await identities(), identitiesBefore);
    const listed = cli('identity', 'list');
    assert.equal(listed.status, 0, listed.stderr);
    assert.equal(listed.stdout, listedBefore.stdout);
    assert.deepEqual(pinned(), mapsBefore, 'the first sync changed nothing in the policy maps');
    await answered('client', 'http', target(PODS.server.v6, PORTS.http));
    await unanswered('other', 'http', target(PODS.server.v6, PORTS.http), 1);
    await rest().request('DELETE', `${podPath}/${early}?gracePeriodSeconds=0`);
    await waitUntil(async () => !(await identities()).some((i) => i.labels.app === 'early'), CONVERGE_MS, 'the early pod gone');
  });

  test("kubernetes.io/egress-bandwidth on a pod sets its device's rate; a bad value is a Warning event on the Pod and changes nothing; removed: no limit", async () => {
    const podPath = `/api/v1/namespaces/${NS}/pods/client`;
    const annotate = (value: string | undefined): Promise<Pod> =>
      rest().update<Pod>(podPath, (p) => {
        const annotations = { ...(p.metadata.annotations ?? {}) };
        if (value === undefined) delete annotations['kubernetes.io/egress-bandwidth'];
        else annotations['kubernetes.io/egress-bandwidth'] = value;
        return { ...p, metadata: { ...p.metadata, annotations } };
      });
    const clientRate = async (): Promise<number | undefined> => {
      const response = await apiRequest(socket(), 'GET', '/v1/status');
      const rates = (response.body as { bandwidth?: { rates: { device?: string; bytesPerSecond: number }[] } }).bandwidth?.rates ?? [];
      return rates.find((r) => r.device === PODS.client.hostDevice)?.bytesPerSecond;
    };
    await annotate('10M');
    await waitUntil(async () => (await clientRate()) === 1_250_000, CONVERGE_MS, 'the client limited to 10 Mbit/s');
    await annotate('fast');
    await waitUntil(async () => {
      const events = await rest().request<{ items: { involvedObject: { kind: string; name: string }; reason: string; type: string; message: string }[] }>('GET', `/api/v1/namespaces/${NS}/events`);
      return events.items.some((e) => e.involvedObject.kind === 'Pod' && e.involvedObject.name === 'client' && e.type === 'Warning' && /egress-bandwidth.*"fast"/.test(e.message));
    }, CONVERGE_MS, 'a Warning event on the client Pod');
    assert.equal(await clientRate(), 1_250_000, 'the rate stays as it was');
    await annotate(undefined);
    await waitUntil(async () => (await clientRate()) === undefined, CONVERGE_MS, 'no limit once the annotation is gone');
  });

  test("default-deny egress on the client, then egress to the server's labels on TCP 8080: only that is answered", async () => {
    await rest().request('POST', policiesPath, {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'client-out', namespace: NS },
      spec: {
        podSelector: { matchLabels: { app: 'client' } },
        policyTypes: ['Egress'],
        egress: [{ to: [{ podSelector: { matchLabels: { app: 'server' } } }], ports: [{ protocol: 'TCP', port: PORTS.http }] }],
      },
    });
    await waitPolicy('client', 'egress enforced', (v) => v.egress.enforced);
    await answered('client', 'http', target(PODS.server.v4, PORTS.http));
    // Neighbour discovery to the gateway anew (the cache of earlier steps would hide it).
    topology.exec(pods.client.ns, 'ip', ['neigh', 'flush', 'dev', pods.client.dev]);
    topology.exec(pods.client.ns, 'ip', ['-6', 'neigh', 'flush', 'dev', pods.client.dev]);
    await answered('client', 'http', target(PODS.server.v4, PORTS.http));
    await answered('client', 'http', target(PODS.server.v6, PORTS.http));
    await unanswered('client', 'udp', target(PODS.server.v4, PORTS.udpAlt));
    await rest().request('DELETE', `${policiesPath}/client-out`);
    await waitPolicy('client', 'egress no longer enforced', (v) => !v.egress.enforced);
  });

  test('both policies deleted: everything is answered again', async () => {
    await rest().request('DELETE', `${policiesPath}/allow-client`);
    await rest().request('DELETE', `${policiesPath}/deny-ingress`);
    await waitPolicy('server', 'ingress no longer enforced', (v) => !v.ingress.enforced && v.ingress.rules.length === 0);
    await answered('client', 'http', target(PODS.server.v4, PORTS.httpAlt));
    await answered('client', 'udp', target(PODS.server.v4, PORTS.udp));
    await answered('other', 'http', target(PODS.server.v4, PORTS.http));
  });
});
