import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { validateService, type Service } from '../../lb/service.js';
import { Reason } from '../../lb/reasons.js';
import { MAX_BUFFERED_BYTES, MAX_MONITOR_STREAMS } from '../../agent/api/monitor.js';
import { removeStaleSocket } from '../../agent/api/server.js';
import { ServiceFileError, loadConfigFile, parseConfigText, readStateFile } from '../../agent/store.js';
import type { KubernetesStatus } from '../../agent/kubernetes-status.js';
import { FakeDatapath, fakeEvent, startFakeAgent, type FakeAgent } from '../support/fake-datapath.js';
import { parsePromText, sampleValue } from '../support/prom-text.js';
import { waitFor } from '../support/wait.js';

interface Target {
  socketPath?: string;
  port?: number;
  token?: string;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: unknown;
}

function call(target: Target, method: string, path: string, body?: unknown, raw?: string, contentType?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = raw ?? (body === undefined ? undefined : JSON.stringify(body));
    const headers: Record<string, string> = {};
    if (contentType !== undefined) headers['content-type'] = contentType;
    else if (payload !== undefined) headers['content-type'] = 'application/json';
    if (target.token !== undefined) headers.authorization = `Bearer ${target.token}`;
    const req = request(
      { ...(target.socketPath ? { socketPath: target.socketPath } : { host: '127.0.0.1', port: target.port }), method, path, headers, agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

function unix(agent: FakeAgent): Target {
  return { socketPath: agent.socketPath };
}

function web(port = 8080, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { frontend: { address: '198.18.0.10', port: 80, protocol: 'TCP' }, backends: [{ address: '198.18.1.2', port }], ...extra };
}

function normalized(input: Record<string, unknown>): Service {
  return validateService(input);
}

async function withAgent(run: (agent: FakeAgent) => Promise<void>, options: Parameters<typeof startFakeAgent>[0] = {}): Promise<void> {
  const agent = await startFakeAgent(options);
  try {
    await run(agent);
  } finally {
    await agent.close();
  }
}

/** The documented error shape: exactly {error, issues}, a message and a list of {field, message}. */
function assertErrorShape(answer: Answer, what: string): { error: string; issues: { field: string; message: string }[] } {
  assert.match(String(answer.headers['content-type']), /^application\/json/, `${what}: ${answer.text}`);
  const body = answer.json as { error: unknown; issues: unknown };
  assert.deepEqual(Object.keys(body ?? {}), ['error', 'issues'], `${what}: ${answer.text}`);
  assert.ok(typeof body.error === 'string' && body.error !== '', `${what}: error is a message`);
  assert.ok(Array.isArray(body.issues), `${what}: issues is a list`);
  for (const issue of body.issues as unknown[]) {
    assert.deepEqual(Object.keys(issue as object).sort(), ['field', 'message'], `${what}: ${answer.text}`);
  }
  return body as { error: string; issues: { field: string; message: string }[] };
}

function fieldsOf(answer: Answer): string[] {
  const body = answer.json as { issues?: { field: string }[] };
  return (body.issues ?? []).map((i) => i.field);
}

test('the unix socket is created 0600 in a new directory and needs no token', () =>
  withAgent(async (agent) => {
    assert.ok((await stat(join(agent.dir, 'run'))).isDirectory(), 'the socket directory was created');
    const info = await stat(agent.socketPath);
    assert.ok(info.isSocket());
    assert.equal(info.mode & 0o777, 0o600);
    const answer = await call(unix(agent), 'GET', '/healthz');
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.json, { status: 'ok' });
  }));

test('a stale socket is replaced; a live one or a regular file is refused', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'xlb-sock-'));
  try {
    const path = join(dir, 'xlb.sock');
    // A socket left behind by a killed process (a closed Node server removes its own file).
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await once(createInterface({ input: child.stdout }), 'line');
    await assert.rejects(removeStaleSocket(path), /is in use: another xlb-agent is running/);
    child.kill('SIGKILL');
    await once(child, 'close');
    assert.ok((await lstat(path)).isSocket(), 'the killed process left its socket');

    const datapath = new FakeDatapath();
    const agent = await startFakeAgent({ dir, datapath });
    try {
      assert.equal((await call({ socketPath: agent.socketPath }, 'GET', '/healthz')).status, 200);
    } finally {
      await agent.close();
    }
    const file = join(dir, 'not-a-socket');
    await writeFile(file, 'x');
    await assert.rejects(removeStaleSocket(file), /exists and is not a socket/);
    assert.equal(await readFile(file, 'utf8'), 'x');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the TCP listener answers 401 without the right bearer token', () =>
  withAgent(
    async (agent) => {
      assert.ok(agent.tcp);
      const port = agent.tcp.port;
      for (const [token, status] of [
        [undefined, 401],
        ['wrong', 401],
        ['s3cret-token-x', 401],
        ['s3cret-token', 200],
      ] as const) {
        const answer = await call({ port, ...(token === undefined ? {} : { token }) }, 'GET', '/v1/services');
        assert.equal(answer.status, status, `token ${String(token)}`);
        if (status === 401) {
          assert.match(assertErrorShape(answer, 'a 401').error, /bearer token/);
          assert.equal(answer.headers['www-authenticate'], 'Bearer realm="xlb"');
        }
      }
      // A rejected request changes nothing.
      const put = await call({ port, token: 'nope' }, 'PUT', '/v1/services/web', web());
      assert.equal(put.status, 401);
      assert.equal(agent.store.size, 0);
      assert.equal((await call({ port, token: 's3cret-token' }, 'PUT', '/v1/services/web', web())).status, 201);
    },
    { token: 's3cret-token' },
  ));

test('services: create, get, list, identical put is a no-op, replace, delete, 404', () =>
  withAgent(async (agent) => {
    const t = unix(agent);
    assert.deepEqual((await call(t, 'GET', '/v1/services')).json, { revision: 1, services: [] });

    const created = await call(t, 'PUT', '/v1/services/web', web());
    assert.equal(created.status, 201);
    assert.deepEqual(created.json, { id: 'web', origin: 'api', result: 'created', revision: 2, service: normalized(web()) });
    assert.equal(created.headers.location, '/v1/services/web');
    assert.deepEqual(agent.datapath.current.get('web'), normalized(web()));

    const got = await call(t, 'GET', '/v1/services/web');
    assert.equal(got.status, 200);
    assert.deepEqual(got.json, normalized(web()));
    assert.equal(got.text, JSON.stringify(normalized(web())), 'members in the documented order');

    const applies = agent.datapath.attempts;
    const same = await call(t, 'PUT', '/v1/services/web', { ...normalized(web()) });
    assert.equal(same.status, 200);
    assert.equal((same.json as { result: string }).result, 'unchanged');
    assert.equal(agent.datapath.attempts, applies, 'an identical service is not applied again');

    const updated = await call(t, 'PUT', '/v1/services/web', web(9090, { mode: 'dsr' }));
    assert.equal(updated.status, 200);
    assert.equal((updated.json as { result: string }).result, 'updated');
    assert.equal(agent.datapath.current.get('web')?.backends[0]?.port, 9090);
    assert.match(updated.text, /"type":"LoadBalancer","mode":"dsr","algorithm"/);

    const list = await call(t, 'GET', '/v1/services');
    assert.deepEqual(list.json, { revision: 3, services: [{ id: 'web', origin: 'api', service: normalized(web(9090, { mode: 'dsr' })) }] });

    const attempts = agent.datapath.attempts;
    const conflict = await call(t, 'PUT', '/v1/services/other', web(7777, { mode: 'dsr' }));
    assert.equal(conflict.status, 409, conflict.text);
    assert.deepEqual(conflict.json, {
      error: 'service other: 198.18.0.10:80/TCP is already the frontend of service web',
      issues: [{ field: 'frontend', message: '198.18.0.10:80/TCP is already the frontend of service web' }],
    });
    assert.equal(agent.datapath.attempts, attempts, 'a conflicting service never reaches the datapath');

    const deleted = await call(t, 'DELETE', '/v1/services/web');
    assert.equal(deleted.status, 200);
    assert.equal((deleted.json as { result: string }).result, 'deleted');
    assert.equal(agent.datapath.current.size, 0);

    for (const [method, path] of [['DELETE', '/v1/services/web'], ['GET', '/v1/services/web']] as const) {
      const missing = await call(t, method, path);
      assert.equal(missing.status, 404);
      assert.deepEqual(missing.json, { error: 'service "web" not found', issues: [] });
    }
    assert.equal((await call(t, 'GET', '/v1/nothing')).status, 404);
    assert.deepEqual(agent.datapath.violations, []);
  }));

test('GET /v1/backends, /v1/status and /healthz', () =>
  withAgent(async (agent) => {
    const t = unix(agent);
    await call(t, 'PUT', '/v1/services/web', web(8080, { backends: [{ address: '198.18.1.10', port: 8080 }, { address: '198.18.1.2', port: 8080, weight: 5 }] }));
    await call(t, 'PUT', '/v1/services/api', { frontend: { address: '198.18.0.11', port: 443, protocol: 'TCP' }, backends: [{ address: '198.18.1.2', port: 8080, state: 'maintenance' }] });
    await call(t, 'PUT', '/v1/services/dns', { frontend: { address: '2001:db8::53', port: 53, protocol: 'UDP' }, backends: [{ address: '2001:db8::1:2', port: 53 }] });

    const backends = await call(t, 'GET', '/v1/backends');
    assert.equal(backends.status, 200);
    assert.deepEqual(backends.json, {
      backends: [
        { address: '198.18.1.2', port: 8080, protocol: 'TCP', services: [{ id: 'api', weight: 100, state: 'maintenance' }, { id: 'web', weight: 5, state: 'active' }] },
        { address: '198.18.1.10', port: 8080, protocol: 'TCP', services: [{ id: 'web', weight: 100, state: 'active' }] },
        { address: '2001:db8::1:2', port: 53, protocol: 'UDP', services: [{ id: 'dns', weight: 100, state: 'active' }] },
      ],
    });

    const status = await call(t, 'GET', '/v1/status');
    assert.equal(status.status, 200);
    const body = status.json as Record<string, unknown>;
    assert.equal(body.version, '0.0.0-test');
    assert.equal(typeof body.uptimeSeconds, 'number');
    assert.equal(body.revision, 4);
    assert.deepEqual(body.services, { total: 3, config: 0, api: 3, kubernetes: 0 });
    assert.deepEqual(body.datapath, agent.datapath.status());
    assert.deepEqual(body.ids, [
      { table: 'service ids', used: 3, capacity: 4095, full: false },
      { table: 'backend ids', used: 3, capacity: 65536, full: false },
    ]);
    assert.deepEqual(body.maps, [{ map: 'xlb_lb4_svc', entries: 3, maxEntries: 1024, full: false }]);

    assert.deepEqual((await call(t, 'GET', '/healthz')).json, { status: 'ok' });
  }));

test('GET /v1/status carries the node settings the datapath reports', async () => {
  const nodeSettings = [{ sysctl: 'net.ipv4.conf.veth0.rp_filter', value: '0', wanted: '0', changedFrom: '1', effect: 'replies from the VIP are dropped' }];
  const datapath = new FakeDatapath({ devices: [{ name: 'veth0', mode: 'xdp-native' }], maglevTableSize: 251, defaultMode: 'snat', nodeSettings });
  await withAgent(async (agent) => {
    const body = (await call(unix(agent), 'GET', '/v1/status')).json as { datapath: { nodeSettings?: unknown } };
    assert.deepEqual(body.datapath.nodeSettings, nodeSettings);
  }, { datapath });
});

/** Kubernetes services as the watcher hands them to the store: ClusterIP allowed, ids namespace/name:port@address. */
const K8S = {
  clusterV4: {
    id: 'default/web:http@198.18.128.10',
    service: validateService(
      {
        frontend: { address: '198.18.128.10', port: 80, protocol: 'TCP' },
        type: 'ClusterIP',
        sessionAffinity: { type: 'ClientIP', timeoutSeconds: 300 },
        internalTrafficPolicy: 'Local',
        backends: [{ address: '198.18.1.2', port: 8080, node: 'worker-1' }, { address: '198.18.1.3', port: 8080, state: 'terminating', node: 'worker-2' }],
      },
      '',
      { clusterIP: true },
    ),
  },
  nodePort: {
    id: 'default/web:80@0.0.0.0',
    service: validateService(
      { frontend: { address: '0.0.0.0', port: 30080, protocol: 'TCP' }, type: 'NodePort', externalTrafficPolicy: 'Local', backends: [{ address: '198.18.1.2', port: 8080, node: 'worker-1' }] },
      '',
      { clusterIP: true },
    ),
  },
  clusterV6: {
    id: 'ns/name:port@2001:db8::10',
    service: validateService(
      { frontend: { address: '2001:db8::10', port: 53, protocol: 'UDP' }, type: 'ClusterIP', mode: 'snat', backends: [{ address: '2001:db8::1:2', port: 5353 }] },
      '',
      { clusterIP: true },
    ),
  },
} as const;

async function syncK8s(agent: FakeAgent): Promise<void> {
  const result = await agent.store.syncKubernetes(new Map(Object.values(K8S).map(({ id, service }) => [id, service])));
  assert.deepEqual(result.failed, []);
}

test('Kubernetes services: GET by percent-encoded id (IPv4, NodePort, IPv6), every member kept; listed with origin kubernetes', () =>
  withAgent(async (agent) => {
    const t = unix(agent);
    assert.equal((await call(t, 'PUT', '/v1/services/web', web())).status, 201);
    await syncK8s(agent);

    for (const { id, service } of Object.values(K8S)) {
      const got = await call(t, 'GET', `/v1/services/${encodeURIComponent(id)}`);
      assert.equal(got.status, 200, `${id}: ${got.text}`);
      assert.deepEqual(got.json, service, id);
      // The serializer drops what its schema does not name: the text must be serviceToJSON's, whole and in order.
      assert.equal(got.text, JSON.stringify(service), `${id}: every member, in the documented order`);
    }
    const cluster = await call(t, 'GET', `/v1/services/${encodeURIComponent(K8S.clusterV4.id)}`);
    assert.match(cluster.text, /"type":"ClusterIP","algorithm":"maglev","sessionAffinity":\{"type":"ClientIP","timeoutSeconds":300\},"internalTrafficPolicy":"Local","sourceRanges"/);
    assert.match(cluster.text, /"node":"worker-2"/);
    assert.match((await call(t, 'GET', `/v1/services/${encodeURIComponent(K8S.nodePort.id)}`)).text, /"externalTrafficPolicy":"Local"/);

    // A client that encodes only the slash reaches the same service; an unencoded slash is another path.
    assert.deepEqual((await call(t, 'GET', '/v1/services/default%2Fweb:http@198.18.128.10')).json, K8S.clusterV4.service);
    assert.deepEqual((await call(t, 'GET', '/v1/services/default%2fweb%3ahttp%40198.18.128.10')).json, K8S.clusterV4.service);
    assert.equal((await call(t, 'GET', '/v1/services/default/web:http@198.18.128.10')).status, 404);

    const gone = 'ns/gone:http@198.18.128.99';
    const missing = await call(t, 'GET', `/v1/services/${encodeURIComponent(gone)}`);
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.json, { error: `service "${gone}" not found`, issues: [] });

    const list = await call(t, 'GET', '/v1/services');
    assert.equal(list.status, 200);
    assert.deepEqual(list.json, {
      revision: 3,
      services: [
        { id: K8S.nodePort.id, origin: 'kubernetes', service: K8S.nodePort.service },
        { id: K8S.clusterV4.id, origin: 'kubernetes', service: K8S.clusterV4.service },
        { id: K8S.clusterV6.id, origin: 'kubernetes', service: K8S.clusterV6.service },
        { id: 'web', origin: 'api', service: normalized(web()) },
      ],
    });
    assert.ok(list.text.includes('"internalTrafficPolicy":"Local"'), 'the list keeps every member too');

    const status = (await call(t, 'GET', '/v1/status')).json as Record<string, unknown>;
    assert.deepEqual(status.services, { total: 4, config: 0, api: 1, kubernetes: 3 });
    assert.equal('kubernetes' in status, false, 'no Kubernetes section without a Kubernetes source');

    const backends = (await call(t, 'GET', '/v1/backends')).json as { backends: { address: string; services: { id: string }[] }[] };
    assert.deepEqual(backends.backends.find((b) => b.address === '2001:db8::1:2')?.services.map((s) => s.id), [K8S.clusterV6.id]);
  }));

test('Kubernetes services are read-only: PUT and DELETE answer 409 naming the id and the apiserver; nothing changes', () =>
  withAgent(async (agent) => {
    const t = unix(agent);
    await syncK8s(agent);
    const before = agent.store.list();
    const { revision } = agent.store;
    const attempts = agent.datapath.attempts;

    for (const { id, service } of Object.values(K8S)) {
      const path = `/v1/services/${encodeURIComponent(id)}`;
      const message = `service ${id} comes from Kubernetes: change its Service or EndpointSlices through the apiserver`;
      // A body the API would take, and the service's own GET answer put back (ClusterIP): 409 either way.
      for (const [what, method, body] of [
        ['PUT of another service', 'PUT', web(8080, { frontend: { address: '198.18.0.77', port: 80, protocol: 'TCP' } })],
        ['PUT of its own GET answer', 'PUT', service],
        ['DELETE', 'DELETE', undefined],
      ] as const) {
        const answer = await call(t, method, path, body);
        assert.equal(answer.status, 409, `${what} ${id}: ${answer.text}`);
        assertErrorShape(answer, `${what} ${id}`);
        assert.deepEqual(answer.json, { error: message, issues: [{ field: 'id', message }] }, `${what} ${id}`);
      }
    }
    assert.deepEqual(agent.store.list(), before);
    assert.equal(agent.store.revision, revision);
    assert.equal(agent.datapath.attempts, attempts, 'no refused request reached the datapath');

    // Ids that are not served: a Kubernetes-shaped one is not found (DELETE) or not a DNS label (PUT); any other stays 400.
    const gone = encodeURIComponent('ns/gone:http@198.18.128.99');
    assert.equal((await call(t, 'DELETE', `/v1/services/${gone}`)).status, 404);
    const putGone = await call(t, 'PUT', `/v1/services/${gone}`, web());
    assert.equal(putGone.status, 400, putGone.text);
    assert.deepEqual(fieldsOf(putGone), ['id']);
    // A Kubernetes service port (no '@address'): GET names the services that serve it.
    const port = await call(t, 'GET', `/v1/services/${encodeURIComponent('default/web:http')}`);
    assert.equal(port.status, 404, port.text);
    assert.equal((port.json as { error: string }).error, 'default/web:http is a Kubernetes service port, served as one service per frontend: default/web:http@198.18.128.10');
    const unserved = await call(t, 'GET', `/v1/services/${encodeURIComponent('default/other:http')}`);
    assert.equal((unserved.json as { error: string }).error, 'Kubernetes service port "default/other:http" is not served');
    assert.equal((await call(t, 'DELETE', `/v1/services/${encodeURIComponent('default/web:http')}`)).status, 404);
    assert.equal((await call(t, 'PUT', `/v1/services/${encodeURIComponent('default/web:http')}`, web())).status, 400);
    for (const id of ['a/b', 'Web@198.18.0.1', 'x'.repeat(150)]) {
      for (const method of ['PUT', 'GET', 'DELETE']) {
        const answer = await call(t, method, `/v1/services/${encodeURIComponent(id)}`, method === 'PUT' ? web() : undefined);
        assert.equal(answer.status, 400, `${method} ${id}: ${answer.text}`);
        assert.deepEqual(fieldsOf(answer), ['id'], `${method} ${id}`);
        assert.match((answer.json as { error: string }).error, /is not a DNS label/);
      }
    }
    assert.equal(agent.datapath.attempts, attempts);

    // A DNS-label service beside them is created as ever, its Location encoded.
    const created = await call(t, 'PUT', '/v1/services/web', web());
    assert.equal(created.status, 201);
    assert.equal(created.headers.location, '/v1/services/web');
  }));

test('GET /v1/status carries the Kubernetes status from its source, every member kept', async () => {
  const connected: KubernetesStatus = {
    apiServer: 'https://198.18.0.1:6443',
    connection: 'connected',
    since: '2025-01-02T03:04:05.000Z',
    endpointSliceVersion: 'v1beta1',
    nodeName: 'worker-1',
    services: 3,
    lastSync: { at: '2025-01-02T03:04:06.000Z', durationMs: 12.5, changed: 3, failed: 1 },
    problems: 2,
  };
  let current: KubernetesStatus = connected;
  await withAgent(
    async (agent) => {
      await syncK8s(agent);
      const first = (await call(unix(agent), 'GET', '/v1/status')).json as Record<string, unknown>;
      assert.deepEqual(first.kubernetes, connected);
      assert.deepEqual(first.services, { total: 3, config: 0, api: 0, kubernetes: 3 });
      // The source is asked on every request.
      current = { apiServer: 'https://198.18.0.1:6443', connection: 'disconnected', since: '2025-01-02T04:00:00.000Z', lastError: 'connect ECONNREFUSED 198.18.0.1:6443', nodeName: 'worker-1', services: 3, problems: 0 };
      const second = await call(unix(agent), 'GET', '/v1/status');
      assert.equal(second.status, 200, second.text);
      assert.deepEqual((second.json as Record<string, unknown>).kubernetes, current);
    },
    { kubernetes: { status: () => current } },
  );
});

test('invalid input answers 400 naming every field, and changes nothing', () =>
  withAgent(async (agent) => {
    const t = unix(agent);
    await call(t, 'PUT', '/v1/services/web', web());
    const applies = agent.datapath.attempts;
    const cases: { what: string; path?: string; body?: unknown; raw?: string; fields: string[] }[] = [
      { what: 'bad id', path: '/v1/services/Web_1', body: web(), fields: ['id'] },
      { what: 'id too long', path: `/v1/services/${'a'.repeat(64)}`, body: web(), fields: ['id'] },
      { what: 'missing frontend and backends', body: {}, fields: ['frontend', 'backends'] },
      { what: 'port as a string, unknown protocol', body: { frontend: { address: '198.18.0.10', port: '80', protocol: 'ICMP' }, backends: [] }, fields: ['frontend.port', 'frontend.protocol'] },
      { what: 'typo in a backend field', body: web(8080, { backends: [{ address: '198.18.1.2', port: 8080, weigth: 3 }] }), fields: ['backends[0].weigth'] },
      { what: 'unknown service field', body: web(8080, { colour: 'red' }), fields: ['colour'] },
      { what: 'weight and state out of range', body: web(8080, { backends: [{ address: '198.18.1.2', port: 8080, weight: 70000, state: 'gone' }] }), fields: ['backends[0].weight', 'backends[0].state'] },
      { what: 'mode, type, algorithm', body: web(8080, { mode: 'fast', type: 'Headless', algorithm: 'rr' }), fields: ['type', 'mode', 'algorithm'] },
      { what: 'affinity timeout', body: web(8080, { sessionAffinity: { type: 'ClientIP', timeoutSeconds: 0 } }), fields: ['sessionAffinity.timeoutSeconds'] },
      { what: 'bad address', body: { frontend: { address: '198.18.0.300', port: 80, protocol: 'TCP' }, backends: [] }, fields: ['frontend.address'] },
      { what: 'mixed families, CIDR with host bits', body: web(8080, { backends: [{ address: '2001:db8::1:2', port: 80 }], sourceRanges: ['198.18.0.1/24'] }), fields: ['backends[0].address', 'sourceRanges[0]'] },
      { what: 'duplicate backend', body: web(8080, { backends: [{ address: '198.18.1.2', port: 80 }, { address: '198.18.1.2', port: 80 }] }), fields: ['backends[1]'] },
      { what: 'not an object', body: [1, 2], fields: [''] },
      { what: 'malformed JSON', raw: '{"frontend": ', fields: [''] },
    ];
    for (const c of cases) {
      const answer = await call(t, 'PUT', c.path ?? '/v1/services/web', c.body, c.raw);
      assert.equal(answer.status, 400, `${c.what}: ${answer.text}`);
      assert.deepEqual(fieldsOf(answer).sort(), [...c.fields].sort(), `${c.what}: ${answer.text}`);
      const body = answer.json as { error: string };
      for (const field of c.fields.filter((f) => f !== '')) assert.ok(body.error.includes(field), `${c.what}: the message names ${field}`);
    }
    assert.equal((await call(t, 'GET', '/v1/services/BAD')).status, 400);
    assert.deepEqual(fieldsOf(await call(t, 'DELETE', '/v1/services/-x')), ['id']);
    assert.deepEqual(fieldsOf(await call(t, 'GET', '/v1/monitor?type=everything')), ['type']);
    assert.equal(agent.datapath.attempts, applies, 'no invalid request reached the datapath');
    assert.deepEqual((await call(t, 'GET', '/v1/services/web')).json, normalized(web()));
  }));

test('reserved addresses and a backend at the VIP answer 400 naming each field and why; a NodePort keeps 0.0.0.0', () =>
  withAgent(async (agent) => {
    const t = unix(agent);
    const applies = agent.datapath.attempts;
    const answer = await call(t, 'PUT', '/v1/services/web', {
      frontend: { address: '198.18.0.10', port: 80, protocol: 'TCP' },
      backends: [
        { address: '198.18.1.2', port: 8080 },
        { address: '198.18.0.10', port: 8080 },
        { address: '127.0.0.1', port: 8080 },
        { address: '169.254.0.7', port: 8080 },
        { address: '224.0.0.5', port: 8080 },
        { address: '255.255.255.255', port: 8080 },
        { address: '0.0.0.0', port: 8080 },
      ],
    });
    assert.equal(answer.status, 400, answer.text);
    const body = answer.json as { error: string; issues: { field: string; message: string }[] };
    assert.deepEqual(
      body.issues.map((i) => [i.field, i.message.replace(/ \(.*$|,.*$|:.*$/, '')]),
      [
        ['backends[2].address', '127.0.0.1 is a loopback address'],
        ['backends[3].address', '169.254.0.7 is a link-local address'],
        ['backends[4].address', '224.0.0.5 is a multicast address'],
        ['backends[5].address', '255.255.255.255 is the broadcast address'],
        ['backends[6].address', '0.0.0.0 is the unspecified address'],
        ['backends[1].address', "198.18.0.10 is the frontend's own address"],
      ],
    );
    assert.match(body.error, /^invalid service: backends\[2\]\.address: 127\.0\.0\.1 is a loopback address/);

    const v6 = await call(t, 'PUT', '/v1/services/web6', {
      frontend: { address: '::ffff:127.0.0.1', port: 80, protocol: 'TCP' },
      backends: [{ address: 'fe80::1', port: 80 }, { address: '::1', port: 80 }, { address: 'ff02::1', port: 80 }],
    });
    assert.equal(v6.status, 400, v6.text);
    assert.deepEqual(fieldsOf(v6), ['backends[0].address', 'backends[1].address', 'backends[2].address', 'frontend.address']);
    assert.match(v6.text, /::ffff:127\.0\.0\.1 is a loopback address \(IPv4-mapped 127\.0\.0\.1\)/);
    assert.equal(agent.datapath.attempts, applies, 'nothing reached the datapath');

    const nodePort = await call(t, 'PUT', '/v1/services/np', { type: 'NodePort', frontend: { address: '0.0.0.0', port: 30080, protocol: 'TCP' }, backends: [{ address: '198.18.1.2', port: 80 }] });
    assert.equal(nodePort.status, 201, nodePort.text);
  }));

test('every error answer has the {error, issues} shape, fastify\'s own included', () =>
  withAgent(async (agent) => {
    const t = unix(agent);
    assert.equal((await call(t, 'PUT', '/v1/services/web', web())).status, 201);
    const applies = agent.datapath.attempts;
    const json = JSON.stringify(web(9090));
    const cases: { what: string; method: string; path: string; raw?: string; type?: string; status: number; fields: string[]; error: RegExp }[] = [
      { what: 'an id over the router\'s 100 characters', method: 'GET', path: `/v1/services/${'a'.repeat(101)}`, status: 400, fields: ['id'], error: /\(101 characters\) is not a DNS label: 1 to 63 characters/ },
      { what: 'the same on PUT', method: 'PUT', path: `/v1/services/${'a'.repeat(300)}`, raw: json, status: 400, fields: ['id'], error: /\(300 characters\) is not a DNS label: 1 to 63 characters/ },
      { what: 'an id of 64 characters', method: 'DELETE', path: `/v1/services/${'a'.repeat(64)}`, status: 400, fields: ['id'], error: /\(64 characters\) is not a DNS label: 1 to 63 characters/ },
      { what: 'a path that is not percent-encoded UTF-8', method: 'GET', path: '/v1/services/%E0%A4%A', status: 400, fields: [], error: /not valid percent-encoded UTF-8/ },
      { what: 'text/plain', method: 'PUT', path: '/v1/services/web', raw: json, type: 'text/plain', status: 415, fields: [''], error: /content type "text\/plain": the body must be application\/json/ },
      { what: 'application/xml', method: 'PUT', path: '/v1/services/web', raw: '<service/>', type: 'application/xml', status: 415, fields: [''], error: /application\/xml/ },
      { what: 'malformed JSON', method: 'PUT', path: '/v1/services/web', raw: '{"frontend": ', status: 400, fields: [''], error: /not valid JSON/ },
      { what: 'an empty JSON body', method: 'PUT', path: '/v1/services/web', raw: '', type: 'application/json', status: 400, fields: [''], error: /cannot be empty/ },
      { what: 'no body at all', method: 'PUT', path: '/v1/services/web', status: 400, fields: [''], error: /required: the service object/ },
      { what: 'a body over the limit', method: 'PUT', path: '/v1/services/web', raw: ' '.repeat(16 * 1024 * 1024 + 1), status: 413, fields: [''], error: /larger than 16777216 bytes/ },
      { what: 'an unknown route', method: 'GET', path: '/v1/nothing', status: 404, fields: [], error: /^no route GET \/v1\/nothing/ },
      { what: 'a missing service', method: 'GET', path: '/v1/services/gone', status: 404, fields: [], error: /service "gone" not found/ },
      { what: 'a method the route does not have', method: 'PATCH', path: '/v1/services/web', raw: json, status: 405, fields: [], error: /PATCH is not a method of \/v1\/services\/web \(it has GET, PUT, DELETE\)/ },
      { what: 'POST on the list', method: 'POST', path: '/v1/services?x=1', raw: json, status: 405, fields: [], error: /POST is not a method of \/v1\/services \(it has GET\)/ },
    ];
    for (const c of cases) {
      const answer = await call(t, c.method, c.path, undefined, c.raw, c.type);
      assert.equal(answer.status, c.status, `${c.what}: ${answer.text.slice(0, 300)}`);
      const body = assertErrorShape(answer, c.what);
      assert.deepEqual(body.issues.map((i) => i.field), c.fields, c.what);
      assert.match(body.error, c.error, c.what);
      if (c.status === 405) assert.match(String(answer.headers.allow), /^GET/, c.what);
    }
    // A request line too long for the HTTP parser never reaches fastify's router: same shape.
    const huge = await call(t, 'GET', `/v1/services/${'a'.repeat(20000)}`);
    assert.equal(huge.status, 431);
    assertErrorShape(huge, 'a 20 KB request line');
    assert.equal(agent.datapath.attempts, applies, 'no refused request reached the datapath');
    assert.deepEqual((await call(t, 'GET', '/v1/services/web')).json, normalized(web()));
  }));

test('a refused apply answers 500 (507 when a map is full) and the previous state stays', () =>
  withAgent(async (agent) => {
    const t = unix(agent);
    await call(t, 'PUT', '/v1/services/web', web());
    const stateBefore = await readFile(agent.stateFile, 'utf8');

    agent.datapath.failNextApply(new Error('service web: update of map xlb_lb4_svc failed: EINVAL (invalid argument)'));
    const failed = await call(t, 'PUT', '/v1/services/web', web(9999));
    assert.equal(failed.status, 500);
    assert.match((failed.json as { error: string }).error, /datapath apply failed: service web: update of map xlb_lb4_svc failed: EINVAL/);
    assert.deepEqual((await call(t, 'GET', '/v1/services/web')).json, normalized(web()));
    assert.deepEqual(agent.datapath.current.get('web'), normalized(web()));
    assert.equal(await readFile(agent.stateFile, 'utf8'), stateBefore, 'the state file is untouched');

    // A map the kernel finds full: 507 naming the map and its size; status shows it full until a change is applied.
    agent.datapath.pressure = [{ map: 'xlb_lb_be', entries: 1, maxEntries: 65536 }];
    const full = Object.assign(new Error('writing service big (id 2) to map xlb_lb_be failed (errno 7): E2BIG (map is full); rolled back 3 change(s)'), { errno: 7, map: 'xlb_lb_be' });
    agent.datapath.failNextApply(full);
    const refused = await call(t, 'PUT', '/v1/services/big', web(7000, { frontend: { address: '198.18.0.20', port: 80, protocol: 'TCP' } }));
    assert.equal(refused.status, 507);
    assert.match(assertErrorShape(refused, '507').error, /^the xlb_lb_be table is full \(it holds 65536\): writing service big .*E2BIG/);
    assert.equal((await call(t, 'GET', '/v1/services/big')).status, 404);
    const mapsOf = async (): Promise<unknown> => ((await call(t, 'GET', '/v1/status')).json as { maps: unknown }).maps;
    assert.deepEqual(await mapsOf(), [{ map: 'xlb_lb_be', entries: 1, maxEntries: 65536, full: true }]);
    // Without LbWriteError's `map`, the map named in the message.
    agent.datapath.failNextApply(Object.assign(new Error('update of map xlb_lb_be failed: ENOSPC'), { code: 'ENOSPC' }));
    assert.match((await call(t, 'PUT', '/v1/services/big', web(7000, { frontend: { address: '198.18.0.20', port: 80, protocol: 'TCP' } }))).text, /the xlb_lb_be table is full \(it holds 65536\): update of map/);

    agent.datapath.failNextApply(new Error('delete of map xlb_lb4_svc failed: EPERM'));
    assert.equal((await call(t, 'DELETE', '/v1/services/web')).status, 500);
    assert.equal((await call(t, 'GET', '/v1/services/web')).status, 200);
    assert.ok(agent.log.lines.some((l) => /^error: service web delete not applied: .*EPERM/.test(l)), agent.log.lines.join('\n'));

    assert.deepEqual(await mapsOf(), [{ map: 'xlb_lb_be', entries: 1, maxEntries: 65536, full: true }], 'a refusal for another cause does not clear it');
    assert.equal((await call(t, 'PUT', '/v1/services/web2', web(7000, { frontend: { address: '198.18.0.20', port: 80, protocol: 'TCP' } }))).status, 201);
    assert.deepEqual(await mapsOf(), [{ map: 'xlb_lb_be', entries: 2, maxEntries: 65536, full: false }], 'an applied change clears the refusal');
    assert.equal((await call(t, 'DELETE', '/v1/services/web2')).status, 200);

    // A state file that cannot be written: the datapath is rolled back to the previous state.
    const stateDir = join(agent.dir, 'state');
    await rm(stateDir, { recursive: true });
    await writeFile(stateDir, 'in the way');
    const unwritable = await call(t, 'PUT', '/v1/services/web', web(9999));
    assert.equal(unwritable.status, 500);
    assert.match((unwritable.json as { error: string }).error, /service web update: cannot write the state file .*; nothing changed/);
    assert.deepEqual(agent.datapath.current.get('web'), normalized(web()), 'rolled back');
    assert.deepEqual((await call(t, 'GET', '/v1/services/web')).json, normalized(web()));
    await rm(stateDir);

    // And the next change goes through.
    assert.equal((await call(t, 'PUT', '/v1/services/web', web(9999))).status, 200);
    assert.equal(agent.datapath.current.get('web')?.backends[0]?.port, 9999);
    assert.deepEqual(JSON.parse(await readFile(agent.stateFile, 'utf8')), { version: 1, services: { web: normalized(web(9999)) } });
  }));

/** `count` services with distinct frontends (198.18.x.y:80) and the given backends, as a config file gives them. */
function manyServices(count: number, backends: (i: number) => { address: string; port: number }[] = () => []): Map<string, Service> {
  return new Map(
    Array.from({ length: count }, (_, i) => [
      `cfg-${i}`,
      normalized({ frontend: { address: `198.18.${100 + (i >> 8)}.${i & 255}`, port: 80, protocol: 'TCP' }, backends: backends(i) }),
    ]),
  );
}

interface StatusTables {
  ids: { table: string; used: number; capacity: number; full: boolean }[];
  maps: { map: string; full: boolean }[];
}

test('the 4096th service is refused 507 naming the service ids table; status shows it full; nothing else changes', () =>
  withAgent(
    async (agent) => {
      const t = unix(agent);
      const status = async (): Promise<StatusTables> => (await call(t, 'GET', '/v1/status')).json as StatusTables;
      agent.datapath.pressure = [{ map: 'xlb_lb_svc', entries: 4094, maxEntries: 4096 }];
      assert.deepEqual((await status()).ids[0], { table: 'service ids', used: 4094, capacity: 4095, full: false });
      assert.equal((await call(t, 'PUT', '/v1/services/last', web())).status, 201);
      assert.deepEqual((await status()).ids[0], { table: 'service ids', used: 4095, capacity: 4095, full: true });

      const idsBefore = ['cfg-0', 'cfg-4093', 'last'].map((name) => agent.datapath.serviceIdOf(name));
      const stateBefore = await readFile(agent.stateFile, 'utf8');
      const applied = agent.datapath.applied.length;
      const refused = await call(t, 'PUT', '/v1/services/one-more', web(8080, { frontend: { address: '198.18.0.20', port: 80, protocol: 'TCP' } }));
      assert.equal(refused.status, 507, refused.text);
      assert.deepEqual(assertErrorShape(refused, '507'), { error: 'the service ids table is full: 4096 needed, it holds 4095', issues: [] });
      const after = await status();
      assert.deepEqual(after.ids[0], { table: 'service ids', used: 4095, capacity: 4095, full: true });
      assert.ok(after.maps.every((m) => !m.full), 'no map is full: the id space is');

      // Every service already configured is intact: store, datapath, ids, state file.
      assert.equal((await call(t, 'GET', '/v1/services/one-more')).status, 404);
      assert.equal(((await call(t, 'GET', '/v1/services')).json as { services: unknown[] }).services.length, 4095);
      assert.equal(agent.datapath.applied.length, applied, 'no state was applied');
      assert.equal(agent.datapath.current.size, 4095);
      assert.deepEqual(agent.datapath.current.get('last'), normalized(web()));
      assert.deepEqual(['cfg-0', 'cfg-4093', 'last'].map((name) => agent.datapath.serviceIdOf(name)), idsBefore);
      assert.equal(await readFile(agent.stateFile, 'utf8'), stateBefore);

      // Room again after a delete.
      assert.equal((await call(t, 'DELETE', '/v1/services/cfg-7')).status, 200);
      assert.deepEqual((await status()).ids[0], { table: 'service ids', used: 4094, capacity: 4095, full: false });
      assert.equal((await call(t, 'PUT', '/v1/services/one-more', web(8080, { frontend: { address: '198.18.0.20', port: 80, protocol: 'TCP' } }))).status, 201);
      assert.deepEqual(agent.datapath.violations, []);
    },
    { configServices: manyServices(4094) },
  ));

test('backend ids run out at 65536 distinct backends: 507 naming the table; a backend already listed still fits', () =>
  withAgent(
    async (agent) => {
      const t = unix(agent);
      const status = async (): Promise<StatusTables> => (await call(t, 'GET', '/v1/status')).json as StatusTables;
      assert.deepEqual((await status()).ids[1], { table: 'backend ids', used: 65536, capacity: 65536, full: true });
      const fresh = await call(t, 'PUT', '/v1/services/new', web(8080, { backends: [{ address: '10.0.0.1', port: 1 }, { address: '10.0.99.1', port: 80 }] }));
      assert.equal(fresh.status, 507, fresh.text);
      assert.equal(assertErrorShape(fresh, '507').error, 'the backend ids table is full: 65537 needed, it holds 65536');
      assert.equal((await call(t, 'GET', '/v1/services/new')).status, 404);
      assert.equal(agent.datapath.current.size, 16);
      const shared = await call(t, 'PUT', '/v1/services/new', web(8080, { backends: [{ address: '10.0.3.1', port: 4096 }] }));
      assert.equal(shared.status, 201, 'a backend another service lists has its id already');
    },
    { configServices: manyServices(16, (i) => Array.from({ length: 4096 }, (_, p) => ({ address: `10.0.${i}.1`, port: p + 1 }))) },
  ));

test('a burst of 50 concurrent PUT/DELETE requests is applied one state at a time, in the store\'s order', () =>
  withAgent(async (agent) => {
    const t = unix(agent);
    const ids = ['s0', 's1', 's2', 's3', 's4'];
    type Op = { kind: 'put'; id: string; service: Service } | { kind: 'delete'; id: string };
    const ops: Op[] = Array.from({ length: 50 }, (_, i) => {
      const id = ids[i % ids.length] ?? 's0';
      const frontend = { address: '198.18.0.10', port: 8000 + (i % ids.length), protocol: 'TCP' };
      return i % 3 === 2 ? { kind: 'delete', id } : { kind: 'put', id, service: normalized(web(1000 + i, { frontend })) };
    });
    const answers = await Promise.all(
      ops.map((op) => (op.kind === 'put' ? call(t, 'PUT', `/v1/services/${op.id}`, op.service) : call(t, 'DELETE', `/v1/services/${op.id}`))),
    );
    assert.deepEqual(agent.datapath.violations, [], 'applies never overlapped, no state changed while applied');

    // Every change that happened carries its revision; replaying them in that order must give every
    // state the datapath received, and the final state.
    const changes = ops
      .map((op, i) => ({ op, answer: answers[i] }))
      .filter(({ answer }) => answer !== undefined && answer.status !== 404)
      .map(({ op, answer }) => {
        assert.ok(answer && (answer.status === 200 || answer.status === 201), answer?.text);
        return { op, revision: (answer.json as { revision: number }).revision };
      })
      .sort((a, b) => a.revision - b.revision);
    assert.deepEqual(changes.map((c) => c.revision), changes.map((_, i) => i + 2), 'revisions 2, 3, ... without gaps');
    assert.equal(agent.datapath.applied.length, changes.length + 1);

    const state = new Map<string, Service>();
    for (const { op, revision } of changes) {
      if (op.kind === 'put') state.set(op.id, op.service);
      else state.delete(op.id);
      assert.deepEqual(agent.datapath.applied[revision - 1], state, `state at revision ${revision}`);
    }
    const list = (await call(t, 'GET', '/v1/services')).json as { revision: number; services: { id: string; service: Service }[] };
    assert.equal(list.revision, changes.length + 1);
    assert.deepEqual(new Map(list.services.map((e) => [e.id, e.service])), state);
    for (const [i, answer] of answers.entries()) {
      if (answer?.status === 404) assert.equal(ops[i]?.kind, 'delete', 'only a DELETE of a missing service answers 404');
    }
  }));

const API = web(7000, { frontend: { address: '198.18.0.11', port: 443, protocol: 'TCP' } });

const CONFIG_YAML = `# standalone services
services:
  - id: web
    frontend: { address: 198.18.0.10, port: 80, protocol: TCP }
    mode: dsr
    backends:
      - { address: 198.18.1.2, port: 8080 }
      - { address: 198.18.1.3, port: 8080, weight: 50, state: maintenance }
  - id: dns
    type: NodePort
    frontend: { port: 30053, protocol: UDP }
    backends: []
`;

test('services survive a restart: the state file brings the API services back, the config file wins a collision', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'xlb-restart-'));
  try {
    const first = await startFakeAgent({ dir });
    try {
      const t = unix(first);
      assert.equal((await call(t, 'PUT', '/v1/services/api', API)).status, 201);
      assert.equal((await call(t, 'PUT', '/v1/services/web', web(7001))).status, 201);
    } finally {
      await first.close();
    }
    const saved = JSON.parse(await readFile(join(dir, 'state', 'state.json'), 'utf8')) as unknown;
    assert.deepEqual(saved, { version: 1, services: { api: normalized(API), web: normalized(web(7001)) } });
    assert.deepEqual((await readdir(join(dir, 'state'))).sort(), ['state.json'], 'no temporary file left behind');
    assert.equal((await stat(join(dir, 'state', 'state.json'))).mode & 0o777, 0o600);

    // An API service whose frontend the config file now uses loses too.
    const old = { type: 'NodePort', frontend: { port: 30053, protocol: 'UDP' }, backends: [] };
    await writeFile(join(dir, 'state', 'state.json'), JSON.stringify({ version: 1, services: { ...(saved as { services: object }).services, old } }));
    const configFile = join(dir, 'services.yaml');
    await writeFile(configFile, CONFIG_YAML);
    const config = await loadConfigFile(configFile);
    const second = await startFakeAgent({ dir, configServices: config });
    try {
      const list = (await call(unix(second), 'GET', '/v1/services')).json as { services: { id: string; origin: string; service: Service }[] };
      assert.deepEqual(
        list.services.map((e) => [e.id, e.origin]),
        [['api', 'api'], ['dns', 'config'], ['web', 'config']],
      );
      assert.deepEqual(list.services.find((e) => e.id === 'web')?.service, config.get('web'));
      assert.deepEqual(list.services.find((e) => e.id === 'api')?.service, normalized(API));
      assert.deepEqual(second.datapath.applied[0], new Map<string, Service>([...config, ['api', normalized(API)]]));
      assert.ok(second.log.lines.some((l) => /^warn: service old from the state file .* dropped: 0\.0\.0\.0:30053\/UDP is the frontend of service dns/.test(l)), second.log.lines.join('\n'));
      assert.ok(second.log.lines.some((l) => /^warn: service web: defined by the config file and by the state file .*; the config file wins/.test(l)), second.log.lines.join('\n'));
      const rewritten = JSON.parse(await readFile(second.stateFile, 'utf8')) as { services: Record<string, unknown> };
      assert.deepEqual(Object.keys(rewritten.services), ['api'], 'the overridden API copy is dropped from the state file');

      // PUT on a config service makes it an API service; DELETE of a config service works too.
      const put = await call(unix(second), 'PUT', '/v1/services/dns', { type: 'NodePort', frontend: { port: 30054, protocol: 'UDP' }, backends: [] });
      assert.equal(put.status, 200);
      assert.equal((put.json as { origin: string }).origin, 'api');
      assert.equal((await call(unix(second), 'DELETE', '/v1/services/web')).status, 200);
      const after = JSON.parse(await readFile(second.stateFile, 'utf8')) as { services: Record<string, unknown> };
      assert.deepEqual(Object.keys(after.services), ['api', 'dns']);
    } finally {
      await second.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a bad config or state file names the file and the field', async () => {
  const bad = (text: string, pattern: RegExp): void => {
    assert.throws(
      () => parseConfigText(text, '/etc/xlb/services.yaml'),
      (error: unknown) => {
        assert.ok(error instanceof ServiceFileError, String(error));
        assert.match(error.message, /^config file \/etc\/xlb\/services\.yaml: /);
        assert.match(error.message, pattern);
        return true;
      },
    );
  };
  bad('services:\n  - id: web\n    frontend: { address: 198.18.0.10, port: "80", protocol: TCP }\n    backends: []\n', /services\[0\]\.frontend\.port: "80" is not an integer/);
  bad('services:\n  - frontend: { address: 198.18.0.10, port: 80, protocol: TCP }\n    backends: []\n', /services\[0\]\.id: required/);
  bad('services:\n  - id: Web\n    frontend: { address: 198.18.0.10, port: 80, protocol: TCP }\n    backends: []\n', /services\[0\]\.id: "Web" is not a DNS label/);
  bad(`${CONFIG_YAML}  - id: web\n    frontend: { address: 198.18.0.12, port: 80, protocol: TCP }\n    backends: []\n`, /services\[2\]\.id: "web" is also the id of services\[0\]/);
  bad(`${CONFIG_YAML}  - id: www\n    frontend: { address: 198.18.0.10, port: 80, protocol: TCP }\n    backends: []\n`, /services\[2\]\.frontend: 198\.18\.0\.10:80\/TCP is also the frontend of services\[0\]/);
  bad('services: {}\n', /services: must be a list/);
  bad('service: []\n', /service: unknown field/);
  bad('services: [\n', /not valid YAML\/JSON/);
  bad('- web\n', /expected a mapping with a "services:" list/);
  bad('services:\n  - id: web\n    frontend: { address: 198.18.0.10, port: 80, protocol: TCP }\n    backends: [{ address: 198.18.1.2, port: 8080, weigth: 2 }]\n', /services\[0\]\.backends\[0\]\.weigth: unknown field/);

  // JSON is accepted too, and `services:` may be empty.
  assert.deepEqual([...parseConfigText('{"services": [{"id": "a", "frontend": {"address": "198.18.0.10", "port": 80, "protocol": "TCP"}, "backends": []}]}', 'f.json').keys()], ['a']);
  assert.equal(parseConfigText('services:\n', 'f.yaml').size, 0);

  const dir = await mkdtemp(join(tmpdir(), 'xlb-files-'));
  try {
    await assert.rejects(loadConfigFile(join(dir, 'missing.yaml')), /missing\.yaml: cannot read/);
    const stateFile = join(dir, 'state', 'state.json');
    await mkdir(join(dir, 'state'));
    await writeFile(stateFile, JSON.stringify({ version: 1, services: { web: { frontend: { address: '198.18.0.10', port: 80, protocol: 'TCP' }, backends: [{ address: 'x', port: 1 }] } } }));
    const datapath = new FakeDatapath();
    await assert.rejects(startFakeAgent({ dir, datapath }), /state file .*state\.json: services\.web\.backends\[0\]\.address: "x" is not an IPv4 or IPv6 address/);
    assert.equal(datapath.attempts, 0, 'nothing was applied');
    await writeFile(stateFile, '{"version": 2, "services": {}}');
    await assert.rejects(readStateFile(stateFile), /expected \{"version": 1/);
    await writeFile(stateFile, '{"version": 1, "services": {"Bad_Id": {}}}');
    await assert.rejects(readStateFile(stateFile), /services\.Bad_Id: "Bad_Id" is not a DNS label/);
    assert.equal((await readStateFile(join(dir, 'none.json'))).size, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('GET /v1/openapi.json documents every route with its schemas', () =>
  withAgent(async (agent) => {
    const answer = await call(unix(agent), 'GET', '/v1/openapi.json');
    assert.equal(answer.status, 200);
    const doc = answer.json as {
      openapi: string;
      paths: Record<string, Record<string, { parameters?: { name: string; in: string }[]; requestBody?: unknown; responses: Record<string, unknown> }>>;
      components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
    };
    assert.equal(doc.openapi, '3.0.3');
    const routes = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`)).sort();
    assert.deepEqual(routes, [
      'DELETE /v1/services/{id}',
      'GET /healthz',
      'GET /metrics',
      'GET /v1/backends',
      'GET /v1/identities',
      'GET /v1/monitor',
      'GET /v1/openapi.json',
      'GET /v1/policy/{namespace}/{pod}',
      'GET /v1/services',
      'GET /v1/services/{id}',
      'GET /v1/status',
      'PUT /v1/services/{id}',
    ]);
    const put = doc.paths['/v1/services/{id}']?.put;
    assert.deepEqual(put?.parameters?.map((p) => [p.name, p.in]), [['id', 'path']]);
    assert.deepEqual(put?.requestBody, { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/Service' } } } });
    assert.deepEqual(Object.keys(put?.responses ?? {}), ['200', '201', '400', '401', '409', '413', '415', '500', '507']);
    assert.deepEqual(Object.keys(doc.components.schemas.Service?.properties ?? {}), ['frontend', 'type', 'mode', 'algorithm', 'sessionAffinity', 'externalTrafficPolicy', 'sourceRanges', 'backends']);
    assert.ok(doc.components.schemas.Error && doc.components.schemas.NormalizedService && doc.components.schemas.MonitorEvent);
    assert.deepEqual(doc.paths['/v1/monitor']?.get?.parameters?.map((p) => [p.name, p.in]), [['type', 'query']]);

    // Kubernetes: the origin and internalTrafficPolicy in answers (not in PUT bodies), ids, status.
    const schemas = doc.components.schemas as Record<string, { properties?: Record<string, { enum?: string[]; description?: string; properties?: Record<string, unknown>; items?: { properties?: Record<string, unknown> } }> }>;
    assert.deepEqual(schemas.ServiceEntry?.properties?.origin?.enum, ['config', 'api', 'kubernetes']);
    assert.match(schemas.ServiceEntry?.properties?.origin?.description ?? '', /kubernetes: from the apiserver \(read-only/);
    assert.deepEqual(schemas.ServiceChange?.properties?.origin?.enum, ['config', 'api', 'kubernetes']);
    assert.deepEqual(schemas.NormalizedService?.properties?.type?.enum, ['LoadBalancer', 'ExternalIP', 'NodePort', 'ClusterIP']);
    assert.deepEqual(schemas.Service?.properties?.type?.enum, ['LoadBalancer', 'ExternalIP', 'NodePort', 'ClusterIP']);
    // Every member serviceToJSON can write, at every level, is named by the answer's schema (the serializer drops the rest).
    const fullest = [
      K8S.clusterV4.service,
      validateService({ ...web(), mode: 'dsr', externalTrafficPolicy: 'Local', sessionAffinity: { type: 'ClientIP' }, sourceRanges: ['198.18.0.0/24'], backends: [{ address: '198.18.1.2', port: 80, node: 'worker-1' }] }),
    ];
    const named = schemas.NormalizedService?.properties ?? {};
    for (const service of fullest) {
      for (const key of Object.keys(service)) assert.ok(key in named, `NormalizedService names ${key}`);
      for (const key of Object.keys(service.frontend)) assert.ok(key in (named.frontend?.properties ?? {}), `frontend.${key}`);
      for (const key of Object.keys(service.sessionAffinity)) assert.ok(key in (named.sessionAffinity?.properties ?? {}), `sessionAffinity.${key}`);
      for (const backend of service.backends) for (const key of Object.keys(backend)) assert.ok(key in (named.backends?.items?.properties ?? {}), `backends[].${key}`);
    }
    assert.deepEqual(Object.keys(named), ['frontend', 'type', 'mode', 'algorithm', 'sessionAffinity', 'externalTrafficPolicy', 'internalTrafficPolicy', 'sourceRanges', 'backends'], 'serviceToJSON\'s order');
    const id = doc.paths['/v1/services/{id}']?.get?.parameters?.[0] as { description?: string } | undefined;
    assert.match(id?.description ?? '', /Kubernetes service's id, namespace\/name:port@address, percent-encoded \(encodeURIComponent: default%2Fweb%3Ahttp%40198\.18\.128\.10\)/);
    assert.deepEqual(Object.keys(doc.paths['/v1/services/{id}']?.delete?.responses ?? {}), ['200', '400', '401', '404', '409', '500', '507']);
    assert.deepEqual(Object.keys(schemas.KubernetesStatus?.properties ?? {}).sort(), ['apiServer', 'connection', 'endpointSliceVersion', 'lastError', 'lastSync', 'nodeName', 'problems', 'services', 'since']);
    assert.deepEqual(Object.keys(schemas.Status?.properties?.services?.properties ?? {}), ['total', 'config', 'api', 'kubernetes']);
  }));

test('GET /metrics exports datapath counters, map pressure, services and control-plane metrics', () =>
  withAgent(async (agent) => {
    const t = unix(agent);
    await call(t, 'PUT', '/v1/services/web', web());
    await call(t, 'PUT', '/v1/services/web', web(1, { colour: 'red' }));
    agent.datapath.counterSamples = [
      { reason: Reason.FWD_NEW_FLOW, direction: 0, packets: 10n, bytes: 1000n },
      { reason: Reason.FWD_ESTABLISHED, direction: 0, packets: 90n, bytes: 9000n },
      { reason: Reason.DROP_SOURCE_RANGE, direction: 0, packets: 3n, bytes: 180n },
      { reason: Reason.REJECT_NO_BACKEND, direction: 0, packets: 2n, bytes: 120n },
      { reason: Reason.PASS_NOT_SERVICE, direction: 0, packets: 7n, bytes: 700n },
      { reason: Reason.DSR_REPLY, direction: 1, packets: 5n, bytes: 500n },
      { reason: Reason.CT_EVICTED, direction: 0, packets: 4n, bytes: 0n },
    ];
    agent.datapath.pressure = [{ map: 'xlb_ct', entries: 256, maxEntries: 1024 }];
    const answer = await call(t, 'GET', '/metrics');
    assert.equal(answer.status, 200);
    assert.match(String(answer.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const m = parsePromText(answer.text);

    assert.equal(m.types.get('xlb_datapath_packets_total'), 'counter');
    assert.equal(sampleValue(m, 'xlb_datapath_packets_total', { reason: 'new_flow', direction: 'ingress', verdict: 'forward' }), 10);
    assert.equal(sampleValue(m, 'xlb_datapath_bytes_total', { reason: 'established', direction: 'ingress', verdict: 'forward' }), 9000);
    assert.equal(sampleValue(m, 'xlb_datapath_packets_total', { reason: 'source_range', verdict: 'drop' }), 3);
    assert.equal(sampleValue(m, 'xlb_datapath_packets_total', { reason: 'reject_no_backend', verdict: 'reject' }), 2);
    assert.equal(sampleValue(m, 'xlb_datapath_packets_total', { reason: 'not_service', verdict: 'pass' }), 7);
    assert.equal(sampleValue(m, 'xlb_datapath_packets_total', { reason: 'dsr_reply', direction: 'egress', verdict: 'forward' }), 5);
    assert.equal(sampleValue(m, 'xlb_drop_count_total', { reason: 'source_range', direction: 'ingress' }), 3);
    assert.equal(sampleValue(m, 'xlb_drop_bytes_total', { reason: 'source_range', direction: 'ingress' }), 180);
    assert.equal(m.samples.filter((s) => s.name === 'xlb_drop_count_total').length, 1, 'only drops in the drop counter');
    assert.equal(sampleValue(m, 'xlb_forward_count_total', { direction: 'ingress' }), 100);
    assert.equal(sampleValue(m, 'xlb_forward_count_total', { direction: 'egress' }), 5);
    assert.equal(sampleValue(m, 'xlb_forward_bytes_total', { direction: 'ingress' }), 10000);
    assert.equal(sampleValue(m, 'xlb_conntrack_evictions_total'), 4);
    assert.equal(sampleValue(m, 'xlb_datapath_packets_total', { reason: 'ct_evicted' }), undefined, 'evictions are not packets');

    assert.equal(sampleValue(m, 'xlb_bpf_map_pressure', { map_name: 'xlb_ct' }), 0.25);
    assert.equal(sampleValue(m, 'xlb_bpf_map_entries', { map_name: 'xlb_ct' }), 256);
    assert.equal(sampleValue(m, 'xlb_services'), 1);

    assert.equal(m.types.get('xlb_apply_duration_seconds'), 'histogram');
    assert.equal(sampleValue(m, 'xlb_apply_duration_seconds_count', { result: 'ok' }), 2, 'start-up and one PUT');
    assert.equal(sampleValue(m, 'xlb_api_requests_total', { method: 'PUT', route: '/v1/services/:id', code: '201' }), 1);
    assert.equal(sampleValue(m, 'xlb_api_requests_total', { method: 'PUT', route: '/v1/services/:id', code: '400' }), 1);
    assert.equal(m.types.get('xlb_api_request_duration_seconds'), 'histogram');

    // Counters are read at scrape time.
    agent.datapath.counterSamples = [{ reason: Reason.DROP_SOURCE_RANGE, direction: 0, packets: 4n, bytes: 240n }];
    const again = parsePromText((await call(t, 'GET', '/metrics')).text);
    assert.equal(sampleValue(again, 'xlb_drop_count_total', { reason: 'source_range', direction: 'ingress' }), 4);
    assert.equal(sampleValue(again, 'xlb_datapath_packets_total', { reason: 'new_flow' }), undefined);
  }));

test('process metrics come with the default registry setup', async () => {
  const datapath = new FakeDatapath();
  const { AgentMetrics } = await import('../../agent/metrics.js');
  const metrics = new AgentMetrics({ datapath, store: { size: 0, onApply: () => () => undefined } });
  try {
    const m = parsePromText(await metrics.metrics());
    assert.ok(m.types.has('process_cpu_user_seconds_total'));
    assert.ok(m.types.has('nodejs_eventloop_lag_seconds'));
  } finally {
    metrics.close();
  }
});

test('GET /v1/monitor streams NDJSON events until the client disconnects', () =>
  withAgent(async (agent) => {
    await call(unix(agent), 'PUT', '/v1/services/web', web());
    const serviceId = agent.datapath.serviceIdOf('web');
    const lines: string[] = [];
    const req = request({ socketPath: agent.socketPath, path: '/v1/monitor?type=drop', agent: false });
    const response = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      req.once('response', resolve);
      req.once('error', reject);
      req.end();
    });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'application/x-ndjson');
    response.setEncoding('utf8');
    let pending = '';
    response.on('data', (chunk: string) => {
      pending += chunk;
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      lines.push(...parts);
    });
    response.on('error', () => undefined);
    await waitFor(() => agent.datapath.subscribers === 1, 2000, 'the monitor subscription');
    agent.datapath.emit(fakeEvent({ serviceId: serviceId ?? 0 }));
    agent.datapath.emit(fakeEvent({ type: 'new-flow', reason: Reason.FWD_NEW_FLOW }));
    agent.datapath.emit(fakeEvent({ reason: Reason.DROP_NO_BACKEND, serviceId: 77, timestamp: 2n ** 64n - 1n, family: 6, saddr: '2001:db8::9', daddr: '2001:db8::10' }));
    await waitFor(() => lines.length === 2, 2000, 'two drop lines');
    assert.deepEqual(JSON.parse(lines[0] ?? ''), {
      type: 'drop', reason: 18, direction: 0, timestamp: '123456789012345678', family: 4, proto: 6,
      saddr: '198.18.0.9', daddr: '198.18.0.10', sport: 41000, dport: 80, ifindex: 3, serviceId, backendId: 0,
      reasonLabel: 'source_range', service: 'web',
    });
    const second = JSON.parse(lines[1] ?? '') as Record<string, unknown>;
    assert.equal(second.timestamp, '18446744073709551615');
    assert.equal(second.reasonLabel, 'no_backend');
    assert.equal(second.service, undefined, 'unknown service ids have no name');

    req.destroy();
    await waitFor(() => agent.datapath.subscribers === 0, 2000, 'the unsubscription after the client left');
  }));

test('closing the server ends open monitor streams', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'xlb-close-'));
  const datapath = new FakeDatapath();
  const agent = await startFakeAgent({ dir, datapath });
  try {
    const req = request({ socketPath: agent.socketPath, path: '/v1/monitor', agent: false });
    const ended = new Promise<void>((resolve, reject) => {
      req.once('response', (response) => {
        response.resume();
        response.once('end', resolve);
      });
      req.once('error', reject);
    });
    req.end();
    await waitFor(() => datapath.subscribers === 1, 2000, 'the monitor subscription');
    await agent.close();
    await ended;
    assert.equal(datapath.subscribers, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** A GET /v1/monitor whose answer has arrived; its body is not read until the caller says so. */
async function openMonitor(target: Target): Promise<{ response: IncomingMessage; close: () => void }> {
  const headers: Record<string, string> = target.token === undefined ? {} : { authorization: `Bearer ${target.token}` };
  const req = request({ ...(target.socketPath ? { socketPath: target.socketPath } : { host: '127.0.0.1', port: target.port }), path: '/v1/monitor', headers, agent: false });
  const response = await new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
    req.end();
  });
  response.on('error', () => undefined);
  return { response, close: () => req.destroy() };
}

async function scrape(agent: FakeAgent, name: string): Promise<number | undefined> {
  return sampleValue(parsePromText(await agent.metrics.metrics()), name);
}

test(`GET /v1/monitor: ${MAX_MONITOR_STREAMS} streams at once over every listener, the next is 503`, () =>
  withAgent(
    async (agent) => {
      assert.ok(agent.tcp);
      const open: { response: IncomingMessage; close: () => void }[] = [];
      try {
        for (let i = 0; i < MAX_MONITOR_STREAMS; i++) {
          const stream = await openMonitor(unix(agent));
          assert.equal(stream.response.statusCode, 200);
          stream.response.resume();
          open.push(stream);
        }
        assert.equal(agent.datapath.subscribers, MAX_MONITOR_STREAMS);
        assert.equal(await scrape(agent, 'xlb_monitor_streams'), MAX_MONITOR_STREAMS);
        for (const target of [unix(agent), { port: agent.tcp.port, token: 'tok' }]) {
          const refused = await call(target, 'GET', '/v1/monitor');
          assert.equal(refused.status, 503, refused.text);
          assert.equal(refused.headers['retry-after'], '10');
          assert.match(assertErrorShape(refused, '503').error, /^32 monitor streams are open, the most the agent serves at once/);
        }
        assert.equal(agent.datapath.subscribers, MAX_MONITOR_STREAMS, 'a refused stream never subscribes');

        open.pop()?.close();
        await waitFor(() => agent.datapath.subscribers === MAX_MONITOR_STREAMS - 1, 2000, 'a stream to close');
        const again = await openMonitor({ port: agent.tcp.port, token: 'tok' });
        assert.equal(again.response.statusCode, 200, 'a place freed is taken again');
        open.push(again);
      } finally {
        for (const stream of open) stream.close();
      }
      await waitFor(() => agent.datapath.subscribers === 0, 2000, 'every stream to close');
    },
    { token: 'tok' },
  ));

test('100 monitor clients that stop reading: at most the stream limit, each holding at most its cap; the drops are counted', () =>
  withAgent(async (agent) => {
    const stalled: { response: IncomingMessage; close: () => void }[] = [];
    try {
      for (let i = 0; i < 100; i++) {
        const stream = await openMonitor(unix(agent));
        stream.response.pause(); // reads nothing more: the agent's writes back up
        stalled.push(stream);
      }
      assert.deepEqual(
        [stalled.filter((s) => s.response.statusCode === 200).length, stalled.filter((s) => s.response.statusCode === 503).length],
        [MAX_MONITOR_STREAMS, 100 - MAX_MONITOR_STREAMS],
      );
      const cap = MAX_MONITOR_STREAMS * MAX_BUFFERED_BYTES;
      let emitted = 0;
      for (let round = 0; round < 10; round++) {
        // ~1.3 MB of lines per stream each round, 13 MB over the rounds: far beyond the cap.
        for (let i = 0; i < 4000; i++) agent.datapath.emit(fakeEvent({ sport: i }));
        emitted += 4000;
        const buffered = (await scrape(agent, 'xlb_monitor_buffered_bytes')) ?? -1;
        assert.ok(buffered >= 0 && buffered <= cap, `round ${round}: ${buffered} bytes buffered, cap ${cap}`);
        await new Promise((resolve) => setImmediate(resolve)); // let the sockets take what they will
      }
      const buffered = (await scrape(agent, 'xlb_monitor_buffered_bytes')) ?? -1;
      assert.ok(buffered > cap / 2, `the streams are really stalled (${buffered} bytes held)`);
      const dropped = (await scrape(agent, 'xlb_monitor_events_dropped_total')) ?? 0;
      assert.ok(dropped > MAX_MONITOR_STREAMS * emitted * 0.9, `${dropped} of ${MAX_MONITOR_STREAMS * emitted} events dropped`);

      // A client that reads again learns how many events it missed.
      const first = stalled.find((s) => s.response.statusCode === 200);
      assert.ok(first);
      let text = '';
      first.response.setEncoding('utf8');
      first.response.on('data', (chunk: string) => (text += chunk));
      first.response.resume();
      const lost = (): Record<string, unknown> | undefined =>
        text.split('\n').filter((l) => l.includes('"lost"')).map((l) => JSON.parse(l) as Record<string, unknown>)[0];
      await waitFor(() => {
        agent.datapath.emit(fakeEvent());
        return lost() !== undefined;
      }, 5000, 'the "lost" line');
      assert.equal(lost()?.type, 'lost');
      assert.ok(Number(lost()?.count) > emitted * 0.9, JSON.stringify(lost()));
    } finally {
      for (const stream of stalled) stream.close();
    }
    await waitFor(() => agent.datapath.subscribers === 0, 2000, 'every stream to close');
    assert.equal(await scrape(agent, 'xlb_monitor_buffered_bytes'), 0);
  }));
