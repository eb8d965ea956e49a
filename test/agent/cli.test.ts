/** The xlb CLI's agent commands as real processes, against a control plane (fake datapath) in this process. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { validateService } from '../../lb/service.js';
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
    assert.deepEqual(json.services, { total: 1, config: 0, api: 1 });
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
