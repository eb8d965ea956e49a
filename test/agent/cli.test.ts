/** The xlb CLI's agent commands as real processes, against a control plane (fake datapath) in this process. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { validateService } from '../../lb/service.js';
import type { KubernetesStatus } from '../../agent/kubernetes-status.js';
import { Reason } from '../../lb/reasons.js';
import { FakeDatapath, fakeEvent, startFakeAgent, type FakeAgent } from '../support/fake-datapath.js';
import { repoRoot } from '../support/paths.js';
import { runNode, type NodeRun } from '../support/run-node.js';
import { waitFor } from '../support/wait.js';

const CLI = join(repoRoot, 'dist', 'agent', 'cli', 'main.js');

/** Runs `xlb ...` asynchronously (the agent answering it lives in this process). */
function xlb(args: string[], env: NodeJS.ProcessEnv = {}): Promise<NodeRun> {
  return runNode(CLI, args, { env: { XLB_API_SOCKET: '', ...env } });
}

async function withAgent(run: (agent: FakeAgent, sock: string[]) => Promise<void>): Promise<void> {
  const agent = await startFakeAgent();
  try {
    await run(agent, ['--api-socket', agent.socketPath]);
  } finally {
    await agent.close();
  }
}

function ok(run: NodeRun): NodeRun {
  assert.equal(run.code, 0, `exit ${String(run.code)}\nstdout: ${run.out}\nstderr: ${run.err}`);
  return run;
}

const WEB_ARGS = [
  '--frontend', '198.18.0.10:80/tcp',
  '--mode', 'dsr',
  '--affinity-timeout', '600',
  '--source-range', '198.18.0.0/24',
  '--external-traffic-policy', 'Local',
  '--backend', '198.18.1.2:8080,node=worker-1',
  '--backend', '198.18.1.3:8080@50:maintenance',
];

const WEB = validateService({
  frontend: { address: '198.18.0.10', port: 80, protocol: 'TCP' },
  mode: 'dsr',
  sessionAffinity: { type: 'ClientIP', timeoutSeconds: 600 },
  externalTrafficPolicy: 'Local',
  sourceRanges: ['198.18.0.0/24'],
  backends: [
    { address: '198.18.1.2', port: 8080, node: 'worker-1' },
    { address: '198.18.1.3', port: 8080, weight: 50, state: 'maintenance' },
  ],
});

test('xlb service add / list / get / delete', () =>
  withAgent(async (agent, sock) => {
    assert.equal(ok(await xlb(['service', 'list', ...sock])).out, 'no services\n');

    assert.equal(ok(await xlb(['service', 'add', 'web', ...WEB_ARGS, ...sock])).out, 'service web created (revision 2)\n');
    assert.deepEqual(agent.store.get('web')?.service, WEB);
    assert.equal(ok(await xlb(['service', 'add', 'web', ...WEB_ARGS, ...sock])).out, 'service web unchanged (revision 2)\n');

    const file = join(agent.dir, 'dns.yaml');
    await writeFile(file, 'type: NodePort\nfrontend: { port: 30053, protocol: UDP }\nbackends:\n  - address: "2001:db8::1:2"\n    port: 53\n');
    const added = JSON.parse(ok(await xlb(['service', 'add', 'dns', '--file', file, '--json', ...sock])).out) as Record<string, unknown>;
    assert.equal(added.result, 'created');
    assert.equal(added.origin, 'api');
    assert.equal(agent.store.get('dns')?.service.frontend.address, '::');

    const table = ok(await xlb(['service', 'list', ...sock])).out.split('\n');
    assert.match(table[0] ?? '', /^id\s+origin\s+frontend\s+type\s+mode\s+algorithm\s+backends\s+active$/);
    assert.match(table[2] ?? '', /^dns\s+api\s+\[::\]:30053\/UDP\s+NodePort\s+default\s+maglev\s+1\s+1$/);
    assert.match(table[3] ?? '', /^web\s+api\s+198\.18\.0\.10:80\/TCP\s+LoadBalancer\s+dsr\s+maglev\s+2\s+1$/);

    const listed = JSON.parse(ok(await xlb(['service', 'list', '--json', ...sock])).out) as { id: string; origin: string; service: unknown }[];
    assert.deepEqual(listed.map((e) => e.id), ['dns', 'web']);
    assert.deepEqual(listed[1], { id: 'web', origin: 'api', service: WEB });

    const text = ok(await xlb(['service', 'get', 'web', ...sock])).out;
    assert.match(text, /^service web\n {2}frontend {10}198\.18\.0\.10:80\/TCP\n/);
    assert.match(text, /session affinity {2}ClientIP, 600 s/);
    assert.match(text, /198\.18\.1\.3:8080\s+50\s+maintenance\s+-/);
    assert.match(text, /198\.18\.1\.2:8080\s+100\s+active\s+worker-1/);
    assert.match(text, /traffic policy {4}Local/);

    // get --json prints the service object exactly as add --file takes it.
    const json = ok(await xlb(['service', 'get', 'web', '--json', ...sock])).out;
    assert.deepEqual(JSON.parse(json), WEB);
    const copy = join(agent.dir, 'web.json');
    await writeFile(copy, json);
    assert.equal(ok(await xlb(['service', 'add', 'web', '--file', copy, ...sock])).out, 'service web unchanged (revision 3)\n');

    assert.equal(ok(await xlb(['service', 'delete', 'dns', ...sock])).out, 'service dns deleted (revision 4)\n');
    assert.equal(agent.store.get('dns'), undefined);

    const missing = await xlb(['service', 'delete', 'dns', ...sock]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /service "dns" not found/);
    assert.equal((await xlb(['service', 'get', 'dns', ...sock])).code, 1);
  }));

const K8S_ID = 'default/web:http@198.18.128.10';
const K8S_V6_ID = 'ns/name:port@2001:db8::10';
const K8S_CLUSTER = validateService(
  {
    frontend: { address: '198.18.128.10', port: 80, protocol: 'TCP' },
    type: 'ClusterIP',
    internalTrafficPolicy: 'Local',
    backends: [{ address: '198.18.1.2', port: 8080, node: 'worker-1' }],
  },
  '',
  { clusterIP: true },
);
const K8S_V6 = validateService(
  { frontend: { address: '2001:db8::10', port: 53, protocol: 'UDP' }, type: 'ClusterIP', backends: [{ address: '2001:db8::1:2', port: 5353 }] },
  '',
  { clusterIP: true },
);

test('xlb service list / get / delete with Kubernetes services', () =>
  withAgent(async (agent, sock) => {
    await agent.store.put('web', WEB);
    await agent.store.syncKubernetes(new Map([[K8S_ID, K8S_CLUSTER], [K8S_V6_ID, K8S_V6]]));

    const table = ok(await xlb(['service', 'list', ...sock])).out.split('\n');
    assert.match(table[2] ?? '', /^default\/web:http@198\.18\.128\.10\s+kubernetes\s+198\.18\.128\.10:80\/TCP\s+ClusterIP\s+default\s+maglev\s+1\s+1$/);
    assert.match(table[3] ?? '', /^ns\/name:port@2001:db8::10\s+kubernetes\s+\[2001:db8::10\]:53\/UDP\s+ClusterIP\s+default\s+maglev\s+1\s+1$/);
    assert.match(table[4] ?? '', /^web\s+api\s+/);

    const kube = JSON.parse(ok(await xlb(['service', 'list', '--origin', 'kubernetes', '--json', ...sock])).out) as unknown[];
    assert.deepEqual(kube, [
      { id: K8S_ID, origin: 'kubernetes', service: K8S_CLUSTER },
      { id: K8S_V6_ID, origin: 'kubernetes', service: K8S_V6 },
    ]);
    const api = ok(await xlb(['service', 'list', '--origin', 'api', ...sock])).out;
    assert.match(api, /^id\s+origin/);
    assert.doesNotMatch(api, /kubernetes/);
    assert.equal(ok(await xlb(['service', 'list', '--origin', 'config', ...sock])).out, 'no services\n');

    const text = ok(await xlb(['service', 'get', K8S_ID, ...sock])).out;
    assert.match(text, /^service default\/web:http@198\.18\.128\.10\n {2}frontend {10}198\.18\.128\.10:80\/TCP\n {2}type {14}ClusterIP\n/);
    assert.match(text, /traffic policy {4}Local \(internal\)\n/);
    assert.match(text, /198\.18\.1\.2:8080\s+100\s+active\s+worker-1/);
    assert.match(ok(await xlb(['service', 'get', 'web', ...sock])).out, /traffic policy {4}Local \(external\)\n/);
    assert.deepEqual(JSON.parse(ok(await xlb(['service', 'get', K8S_V6_ID, '--json', ...sock])).out), K8S_V6);

    const refused = await xlb(['service', 'delete', K8S_ID, ...sock]);
    assert.equal(refused.code, 1, refused.err);
    assert.equal(refused.out, '');
    assert.equal(refused.err, `xlb service: service ${K8S_ID} comes from Kubernetes: change its Service or EndpointSlices through the apiserver\n`);
    assert.deepEqual(agent.store.get(K8S_ID)?.service, K8S_CLUSTER);

    // A Kubernetes service port: every service that serves it (one per frontend).
    const byPort = ok(await xlb(['service', 'get', 'default/web:http', ...sock])).out;
    assert.match(byPort, /^service default\/web:http@198\.18\.128\.10\n/);
    assert.deepEqual(JSON.parse(ok(await xlb(['service', 'get', 'ns/name:port', '--json', ...sock])).out), [{ id: K8S_V6_ID, service: K8S_V6 }]);
    const noPort = await xlb(['service', 'get', 'default/gone:http', ...sock]);
    assert.equal(noPort.code, 1);
    assert.equal(noPort.err, 'xlb service: Kubernetes service port "default/gone:http" is not served\n');

    const missing = await xlb(['service', 'get', 'ns/gone:http@198.18.128.99', ...sock]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /service "ns\/gone:http@198\.18\.128\.99" not found/);

    // add keeps to DNS labels: the agent would refuse the id anyway.
    const add = await xlb(['service', 'add', K8S_ID, ...WEB_ARGS, ...sock]);
    assert.equal(add.code, 2);
    assert.match(add.err, /ID: "default\/web:http@198\.18\.128\.10" is not a DNS label/);
    for (const args of [['service', 'get', 'default/web'], ['service', 'delete', 'default/web:http'], ['service', 'delete', 'Web_1'], ['service', 'list', '--origin', 'cluster']]) {
      const run = await xlb([...args, ...sock]);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.err}`);
      assert.match(run.err, args[2] === '--origin' ? /--origin "cluster": must be one of config, api, kubernetes/ : /nor a Kubernetes service id \(namespace\/name:port@address\)/);
    }
  }));

test('xlb status: the Kubernetes section, with a WARNING when disconnected', async () => {
  const connected: KubernetesStatus = {
    apiServer: 'https://198.18.0.1:6443',
    connection: 'connected',
    since: new Date(Date.now() - 125_000).toISOString(),
    endpointSliceVersion: 'v1beta1',
    nodeName: 'worker-1',
    services: 1,
    lastSync: { at: '2025-01-02T03:04:06.000Z', durationMs: 12.34, changed: 1, failed: 1 },
    problems: 2,
  };
  let current = connected;
  const agent = await startFakeAgent({ kubernetes: { status: () => current } });
  try {
    const sock = ['--api-socket', agent.socketPath];
    await agent.store.syncKubernetes(new Map([[K8S_ID, K8S_CLUSTER]]));
    const text = ok(await xlb(['status', ...sock])).out;
    assert.match(text, /services: {10}1 \(0 from the config file, 0 from the API, 1 from Kubernetes\), revision 2\n/);
    assert.match(text, /\nkubernetes:\n {2}apiserver: {7}https:\/\/198\.18\.0\.1:6443\n/);
    assert.match(text, /\n {2}connection: {6}connected since \S+ \(2m\ds ago\)\n/);
    assert.match(text, /\n {2}endpointslices: {2}discovery\.k8s\.io\/v1beta1\n/);
    assert.match(text, /\n {2}node: {12}worker-1\n/);
    assert.match(text, /\n {2}services served: 1\n/);
    assert.match(text, /\n {2}last sync: {7}2025-01-02T03:04:06\.000Z \(\S+ ago\): 1 changed, 1 failed, 12\.3 ms/);
    assert.match(text, /\n {2}problems: {8}2 malformed object\(s\) or field\(s\)/);
    assert.doesNotMatch(text, /WARNING/);

    current = { ...connected, connection: 'disconnected', since: '2025-01-02T04:00:00.000Z', lastError: 'connect ECONNREFUSED 198.18.0.1:6443', problems: 0 };
    delete current.lastSync;
    const down = ok(await xlb(['status', ...sock])).out;
    assert.match(down, /\n {2}connection: {6}disconnected since 2025-01-02T04:00:00\.000Z/);
    assert.match(down, /\n {2}last sync: {7}none yet\n/);
    assert.match(down, /\n {2}problems: {8}none\n/);
    assert.match(
      down,
      /\nWARNING: disconnected from the apiserver https:\/\/198\.18\.0\.1:6443 since 2025-01-02T04:00:00\.000Z \(\S+ ago\): connect ECONNREFUSED 198\.18\.0\.1:6443; the services of the last sync are still served/,
    );
    const json = JSON.parse(ok(await xlb(['status', '--json', ...sock])).out) as { kubernetes: unknown; services: unknown };
    assert.deepEqual(json.kubernetes, current);
    assert.deepEqual(json.services, { total: 1, config: 0, api: 0, kubernetes: 1 });
  } finally {
    await agent.close();
  }
});

test('xlb status', () =>
  withAgent(async (agent, sock) => {
    await agent.store.put('web', WEB);
    const text = ok(await xlb(['status', ...sock])).out;
    assert.match(text, /^xlb-agent 0\.0\.0-test, up \d+s\n/);
    assert.match(text, /devices: {11}veth0 \(xdp-native\)/);
    assert.match(text, /default mode: {6}snat/);
    assert.match(text, /services: {10}1 \(0 from the config file, 1 from the API\), revision 2/);
    assert.match(text, /xlb_lb4_svc\s+1\s+1024\s+0\.1%/);
    assert.match(text, /service ids\s+1\s+4095\s+0\.0%\n/);
    assert.match(text, /backend ids\s+2\s+65536\s+0\.0%\n/);
    assert.doesNotMatch(text, /full/);
    const json = JSON.parse(ok(await xlb(['status', '--json', ...sock])).out) as { services: unknown; datapath: unknown };
    assert.deepEqual(json.services, { total: 1, config: 0, api: 1, kubernetes: 0 });
    assert.deepEqual(json.datapath, agent.datapath.status());
  }));

test('xlb status marks a full table and names it', async () => {
  const agent = await startFakeAgent({ datapath: new FakeDatapath(undefined, { maxServices: 1 }) });
  try {
    await agent.store.put('web', WEB);
    const text = ok(await xlb(['status', '--api-socket', agent.socketPath])).out;
    assert.match(text, /service ids\s+1\s+1\s+100\.0%\s+FULL\n/);
    assert.match(text, /backend ids\s+2\s+65536\s+0\.0%\n/);
    assert.match(text, /\nfull: service ids \(changes needing room there are refused\)\n$/);
  } finally {
    await agent.close();
  }
});

test('xlb monitor prints events live, one line each, until interrupted', () =>
  withAgent(async (agent, sock) => {
    await agent.store.put('web', WEB);
    const serviceId = agent.datapath.serviceIdOf('web') ?? 0;
    for (const json of [false, true]) {
      const child = spawn(process.execPath, [CLI, 'monitor', ...(json ? ['--json'] : []), ...sock], { stdio: ['ignore', 'pipe', 'pipe'] });
      try {
        const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
        await waitFor(() => agent.datapath.subscribers === 1, 5000, 'xlb monitor to subscribe');
        agent.datapath.emit(fakeEvent({ serviceId }));
        agent.datapath.emit(
          fakeEvent({ type: 'new-flow', reason: Reason.FWD_NEW_FLOW, proto: 17, family: 6, saddr: '2001:db8::9', daddr: '2001:db8::10', sport: 5353, dport: 53, serviceId, backendId: 2 }),
        );
        const first = String((await lines.next()).value);
        const second = String((await lines.next()).value);
        if (json) {
          assert.equal((JSON.parse(first) as { timestamp: string }).timestamp, '123456789012345678');
          assert.equal((JSON.parse(second) as { type: string }).type, 'new-flow');
        } else {
          assert.equal(first, 'xx drop (source_range) 198.18.0.9:41000 -> 198.18.0.10:80 tcp service web');
          assert.equal(second, '-> new-flow (new_flow) [2001:db8::9]:5353 -> [2001:db8::10]:53 udp service web backend 2');
        }
        child.kill('SIGINT');
        const [code] = (await once(child, 'close')) as [number | null];
        assert.equal(code, 0);
        await waitFor(() => agent.datapath.subscribers === 0, 5000, 'the stream to close');
      } finally {
        child.kill('SIGKILL');
      }
    }
  }));

test('exit code 2 for bad arguments, naming them', () =>
  withAgent(async (_agent, sock) => {
    const cases: [string[], RegExp][] = [
      [['service'], /a subcommand is required/],
      [['service', 'bogus'], /unknown subcommand "bogus"/],
      [['service', 'add', 'web', ...sock], /--frontend: required/],
      [['service', 'add', 'Web_1', ...WEB_ARGS, ...sock], /ID: "Web_1" is not a DNS label/],
      [['service', 'get', ...sock], /the service ID is required/],
      [['service', 'add', 'web', '--frontend', '198.18.0.10/TCP', ...sock], /--frontend "198\.18\.0\.10\/TCP": expected ADDR:PORT\/PROTO/],
      [['service', 'add', 'web', '--frontend', '198.18.0.10:80/TCP', '--backend', '2001:db8::2:80', ...sock], /--backend "2001:db8::2:80": .*brackets/],
      [['service', 'add', 'web', '--frontend', '198.18.0.10:80/TCP', '--backend', '198.18.1.2:70000', ...sock], /--backend "198\.18\.1\.2:70000": backends\[0\]\.port: 70000 is not an integer/],
      [['service', 'add', 'web', '--frontend', '198.18.0.10:80/TCP', '--backend', '198.18.1.2:80:gone', ...sock], /--backend "198\.18\.1\.2:80:gone": backends\[0\]\.state/],
      [['service', 'add', 'web', '--frontend', '198.18.0.10:80/TCP', '--source-range', '198.18.0.1/24', ...sock], /--source-range "198\.18\.0\.1\/24": sourceRanges\[0\]: .*host bits/],
      [['service', 'add', 'web', '--frontend', '198.18.0.10:80/TCP', '--mode', 'fast', ...sock], /--mode: mode: "fast" is not one of/],
      [['service', 'add', 'web', '--file', '/nonexistent.yaml', ...sock], /--file \/nonexistent\.yaml: cannot read/],
      [['service', 'add', 'web', '--file', '/x.yaml', '--frontend', '198.18.0.10:80/TCP', ...sock], /--file: cannot be combined with --frontend/],
      [['service', 'list', '--frontend', 'x', ...sock], /--frontend is not an option of list/],
      [['service', 'list', '--bogus', ...sock], /--bogus/],
      [['status', 'extra', ...sock], /extra/],
      [['monitor', '--type', 'everything', ...sock], /--type "everything": must be one of drop, new-flow, reject/],
    ];
    for (const [args, pattern] of cases) {
      const run = await xlb(args);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.err}`);
      assert.match(run.err, pattern, args.join(' '));
    }
  }));

test('exit code 1 when the agent fails or cannot be reached; the message names the cause', () =>
  withAgent(async (agent, sock) => {
    agent.datapath.failNextApply(new Error('service web: update of map xlb_lb4_svc failed: EPERM'));
    const failed = await xlb(['service', 'add', 'web', ...WEB_ARGS, ...sock]);
    assert.equal(failed.code, 1);
    assert.match(failed.err, /xlb-agent answered 500: datapath apply failed: service web: update of map xlb_lb4_svc failed: EPERM/);

    const missing = join(agent.dir, 'nothing.sock');
    for (const args of [['service', 'list'], ['status'], ['monitor']]) {
      const run = await xlb([...args, '--api-socket', missing]);
      assert.equal(run.code, 1, args.join(' '));
      assert.match(run.err, new RegExp(`cannot reach xlb-agent at unix socket ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: no such socket`));
    }
  }));

test('XLB_API_SOCKET is the fallback socket; --help exits 0', () =>
  withAgent(async (agent) => {
    assert.equal(ok(await xlb(['service', 'list'], { XLB_API_SOCKET: agent.socketPath })).out, 'no services\n');
    for (const command of [['service'], ['service', 'add'], ['status'], ['monitor']]) {
      const run = ok(await xlb([...command, '--help']));
      assert.match(run.out, new RegExp(`^xlb ${command[0] ?? ''}`));
      assert.match(run.out, /--api-socket PATH/);
    }
  }));
