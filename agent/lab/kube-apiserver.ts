/**
 * A real kube-apiserver on this machine: etcd + kube-apiserver 1.20 on 127.0.0.1 with unique ports and
 * a temp dir of their own, and a small REST client for the objects a controller would write
 * (Services, EndpointSlices, a Service's status), so neither the tests nor `xlb demo --kubernetes`
 * need a client library of their own. (test/support/kube.ts re-exports this for the tests.)
 *
 * The apiserver binary is built by deploy/kube-apiserver.sh (cached outside the clone; `npm test`'s
 * set-up runs it, buildKubeApiServer() runs it with its progress shown); etcd is Debian's
 * etcd-server. `KubeApiServer.start()` gives a kubeconfig file, the server URL and a token; `stop()`
 * kills both processes and removes the temp dir, and a failed start cleans up the same way. Both
 * processes die with the process that started them too (setpriv's parent death signal), so a killed
 * run leaves no server behind, and the next start() removes a temp dir such a run left in the
 * system's temp dir.
 *
 * 1.20 serves EndpointSlice as discovery.k8s.io/v1beta1 only, and runs no controllers here
 * (no controller-manager): callers write EndpointSlices (and LoadBalancer status) themselves.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

/** The repository (or package) root, from dist/agent/lab/ at run time. */
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** Builds (or finds) the apiserver binary; prints its path on stdout, progress on stderr. */
export const KUBE_APISERVER_SCRIPT = join(repoRoot, 'deploy', 'kube-apiserver.sh');

/** The service CIDR the apiserver allocates ClusterIPs from: inside our only IPv4 range. */
export const SERVICE_CLUSTER_IP_RANGE = '198.18.128.0/17';
export const ENDPOINT_SLICE_API = 'discovery.k8s.io/v1beta1';
/** EndpointSlices name their Service with this label. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 15_000;
/** A graceful 1.20 apiserver drains open watches for up to its 60 s shutdown timeout. */
const GRACEFUL_STOP_TIMEOUT_MS = 75_000;
const LOG_TAIL_BYTES = 4_000;
const DIR_PREFIX = 'xlb-kube-';
const OWNER_FILE = 'owner.pid';

export interface KubeApiServerOptions {
  /** kube-apiserver binary; default: $XLB_KUBE_APISERVER, else the one deploy/kube-apiserver.sh built. */
  apiserverBinary?: string;
  /** etcd binary; default: $XLB_ETCD, else `etcd` on PATH. */
  etcdBinary?: string;
  /** Deadline for etcd and then the apiserver to become ready, each. */
  startTimeoutMs?: number;
  /**
   * Where the temp dir goes (default: the system's temp dir). A caller that records its own
   * leftovers (the demo's run dir) puts it there; only the system's temp dir is swept for stale ones.
   */
  parentDir?: string;
  /** Told each server process as it is spawned (before it is ready), e.g. to record what a run started. */
  onSpawn?: (name: 'etcd' | 'kube-apiserver', pid: number) => void;
}

/** Where deploy/kube-apiserver.sh keeps (or would keep) the binary for the current recipe, and whether it is there. */
export function kubeApiServerRecipe(): { path: string; built: boolean } {
  const r = spawnSync('bash', [KUBE_APISERVER_SCRIPT, '--print-path'], { encoding: 'utf8' });
  const path = r.stdout.trim();
  if (!path) throw new Error(`${KUBE_APISERVER_SCRIPT} --print-path printed nothing: ${r.stderr || r.error?.message || ''}`);
  return { path, built: r.status === 0 && existsSync(path) };
}

/** The kube-apiserver binary: $XLB_KUBE_APISERVER, else the one deploy/kube-apiserver.sh built (throws if it did not yet). */
export function kubeApiServerBinary(): string {
  const fromEnv = process.env['XLB_KUBE_APISERVER'];
  if (fromEnv) return fromEnv;
  const { path, built } = kubeApiServerRecipe();
  if (!built) throw new Error(`kube-apiserver is not built (expected ${path}): run deploy/kube-apiserver.sh (deploy/setup.sh --tests does)`);
  return path;
}

/** The etcd binary: $XLB_ETCD, else `etcd` on PATH (Debian's etcd-server), or undefined when there is none. */
export function etcdBinary(): string | undefined {
  const fromEnv = process.env['XLB_ETCD'];
  if (fromEnv) return fromEnv;
  const r = spawnSync('sh', ['-c', 'command -v etcd'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() !== '' ? r.stdout.trim() : undefined;
}

/**
 * Runs deploy/kube-apiserver.sh: builds the apiserver if the cache has none for this recipe (4–10
 * minutes on 2 cores; installs etcd-server too), else only checks. Each progress line the script
 * prints goes to `progress`. The script runs in a process group of its own; `signal` aborting stops
 * all of it (the go build included). Resolves with the binary's path.
 */
export async function buildKubeApiServer(progress: (line: string) => void, signal?: AbortSignal): Promise<string> {
  signal?.throwIfAborted();
  const child = spawn('bash', [KUBE_APISERVER_SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  const stderr: string[] = [];
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  createInterface({ input: child.stderr }).on('line', (line) => {
    stderr.push(line);
    progress(line);
  });
  const stop = (): void => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
    } catch {
      // gone already
    }
  };
  signal?.addEventListener('abort', stop, { once: true });
  try {
    const [code] = (await once(child, 'close')) as [number | null];
    signal?.throwIfAborted();
    const path = stdout.trim().split('\n').pop() ?? '';
    if (code !== 0 || !existsSync(path)) {
      throw new Error(`${KUBE_APISERVER_SCRIPT} failed (exit ${String(code)}): ${stderr.slice(-5).join('\n') || 'no output'}`);
    }
    return path;
  } finally {
    signal?.removeEventListener('abort', stop);
  }
}

/** A port nobody listens on right now (the OS's choice); start() retries if another process takes it first. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('no TCP port from the OS');
  return address.port;
}

function logTail(path: string): string {
  try {
    const text = readFileSync(path, 'utf8');
    return text.slice(-LOG_TAIL_BYTES);
  } catch {
    return '(no log)';
  }
}

/** A child process with its output in a log file; dies with this process (parent death signal). */
class ServerProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  exitCode: number | null = null;

  constructor(
    readonly name: string,
    private readonly binary: string,
    private readonly args: string[],
    readonly logPath: string,
    private readonly onSpawn: (pid: number) => void = () => undefined,
  ) {}

  get pid(): number | undefined {
    return this.exitCode === null ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.exitCode === null;
  }

  start(): void {
    const log = openSync(this.logPath, 'a');
    try {
      // setpriv execs the server in place (same pid) with SIGKILL as its parent death signal.
      const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', this.binary, ...this.args], {
        stdio: ['ignore', log, log],
      });
      this.child = child;
      this.exitCode = null;
      if (child.pid !== undefined) this.onSpawn(child.pid);
      this.exited = new Promise((resolve) => {
        child.once('exit', (code, signal) => {
          this.exitCode = code ?? (signal ? 128 : -1);
          resolve();
        });
        child.once('error', (error) => {
          writeFileSync(this.logPath, `spawn failed: ${error.message}\n`, { flag: 'a' });
          this.exitCode = -1;
          resolve();
        });
      });
    } finally {
      closeSync(log);
    }
  }

  /** Send `signal`, then SIGKILL after `timeoutMs`; resolves once the process is gone. */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM', timeoutMs = STOP_TIMEOUT_MS): Promise<void> {
    const child = this.child;
    if (child === undefined || this.exitCode !== null) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** For the process 'exit' hook, where nothing can be awaited. */
  killNow(): void {
    if (this.child !== undefined && this.exitCode === null) this.child.kill('SIGKILL');
  }

  describeFailure(): string {
    return `${this.name} (${this.binary}) exited with ${this.exitCode}; last output:\n${logTail(this.logPath)}`;
  }
}

interface HttpAnswer {
  status: number;
  body: string;
}

function httpGet(url: string, headers: Record<string, string>, ca: string | undefined, timeoutMs: number): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const options = { method: 'GET', headers, timeout: timeoutMs, ...(ca === undefined ? {} : { ca }) };
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, options, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Poll `ready` until it answers true, the process dies or the deadline passes. */
async function waitReady(proc: ServerProcess, what: string, timeoutMs: number, ready: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  for (;;) {
    if (!proc.running) throw new Error(`${what} did not start: ${proc.describeFailure()}`);
    try {
      if (await ready()) return;
      last = 'not ready';
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() > deadline) {
      throw new Error(`${what} not ready after ${timeoutMs} ms (${last}); last output:\n${logTail(proc.logPath)}`);
    }
    await sleep(100);
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove temp dirs of test processes that were killed (SIGKILL leaves the dir; the servers die with
 * their parent). A dir is stale when the pid in its owner file is gone; a dir without one is
 * someone's start() in progress unless it is an hour old.
 */
function removeStaleDirs(): void {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(DIR_PREFIX)) continue;
    const dir = join(tmpdir(), name);
    try {
      const owner = existsSync(join(dir, OWNER_FILE)) ? Number(readFileSync(join(dir, OWNER_FILE), 'utf8')) : undefined;
      const stale = owner === undefined ? Date.now() - statSync(dir).mtimeMs > 3_600_000 : !processExists(owner);
      if (stale) rmSync(dir, { recursive: true, force: true });
    } catch {
      // removed meanwhile by its owner or another sweep
    }
  }
}

const live = new Set<KubeApiServer>();
let exitHookInstalled = false;
function trackForExit(server: KubeApiServer): void {
  live.add(server);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A test that ends without stop() (a thrown assertion before its finally, a runner timeout) still
  // leaves nothing: kill the servers and remove their dirs synchronously on the way out.
  process.once('exit', () => {
    for (const s of live) s.killAndRemoveNow();
  });
}

export class KubeApiServer {
  /** https://127.0.0.1:PORT */
  readonly url: string;
  /** A kubeconfig (JSON, which is YAML) with the server, its CA and a bearer token. */
  readonly kubeconfig: string;
  readonly token: string;
  /** PEM of the self-signed serving certificate, which is also the CA to trust. */
  readonly ca: string;
  readonly rest: KubeRest;
  private stopped = false;

  private constructor(
    /** The temp dir holding certificates, etcd's data and both logs; removed by stop(). */
    readonly dir: string,
    readonly etcdUrl: string,
    readonly port: number,
    private readonly etcd: ServerProcess,
    private readonly apiserver: ServerProcess,
    private readonly startTimeoutMs: number,
    token: string,
    ca: string,
  ) {
    this.url = `https://127.0.0.1:${port}`;
    this.token = token;
    this.ca = ca;
    this.kubeconfig = join(dir, 'kubeconfig');
    this.rest = new KubeRest(this.url, token, ca);
  }

  /** Start etcd and kube-apiserver; resolves once /readyz answers ok. Retries if a port was taken meanwhile. */
  static async start(options: KubeApiServerOptions = {}): Promise<KubeApiServer> {
    const apiserverBinary = options.apiserverBinary ?? kubeApiServerBinary();
    const etcd = options.etcdBinary ?? process.env['XLB_ETCD'] ?? 'etcd';
    for (let attempt = 1; ; attempt++) {
      try {
        return await KubeApiServer.startOnce(apiserverBinary, etcd, options);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        if (attempt >= 3 || !/address already in use/.test(message)) throw error;
      }
    }
  }

  private static async startOnce(apiserverBinary: string, etcdBinary: string, options: KubeApiServerOptions): Promise<KubeApiServer> {
    const timeoutMs = options.startTimeoutMs ?? START_TIMEOUT_MS;
    const onSpawn = options.onSpawn ?? (() => undefined);
    removeStaleDirs();
    const dir = mkdtempSync(join(options.parentDir ?? tmpdir(), DIR_PREFIX));
    let server: KubeApiServer | undefined;
    try {
      writeFileSync(join(dir, OWNER_FILE), String(process.pid));
      const [clientPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
      const etcdUrl = `http://127.0.0.1:${clientPort}`;
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      const etcd = new ServerProcess('etcd', etcdBinary, [
        '--name', 'xlb-test',
        '--data-dir', join(dir, 'etcd'),
        '--listen-client-urls', etcdUrl,
        '--advertise-client-urls', etcdUrl,
        '--listen-peer-urls', peerUrl,
        '--initial-advertise-peer-urls', peerUrl,
        '--initial-cluster', `xlb-test=${peerUrl}`,
        '--initial-cluster-state', 'new',
        '--logger', 'zap',
        '--log-outputs', 'stderr',
      ], join(dir, 'etcd.log'), (pid) => onSpawn('etcd', pid));

      const { token, ca } = writeCredentials(dir);
      const apiserver = new ServerProcess('kube-apiserver', apiserverBinary, apiServerArgs(dir, apiPort, etcdUrl), join(dir, 'kube-apiserver.log'), (pid) => onSpawn('kube-apiserver', pid));
      server = new KubeApiServer(dir, etcdUrl, apiPort, etcd, apiserver, timeoutMs, token, ca);
      trackForExit(server);
      writeFileSync(server.kubeconfig, kubeconfigText(server.url, token, ca));

      etcd.start();
      await waitReady(etcd, 'etcd', timeoutMs, async () => {
        const r = await httpGet(`${etcdUrl}/health`, {}, undefined, 2_000);
        return r.status === 200 && /"health":\s*"true"/.test(r.body);
      });
      await server.startApiServer();
      // /readyz does not wait for the system namespaces; tests write into "default" at once.
      const rest = server.rest;
      await waitReady(apiserver, 'the default namespace', timeoutMs, () => rest.request('GET', '/api/v1/namespaces/default').then(() => true));
      return server;
    } catch (error) {
      if (server) await server.stop();
      else rmSync(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Pids of the processes still running (for tests that assert nothing is left). */
  pids(): number[] {
    return [this.etcd.pid, this.apiserver.pid].filter((p): p is number => p !== undefined);
  }

  /** Start the apiserver (after stopApiServer()) and wait for /readyz. */
  async startApiServer(): Promise<void> {
    if (this.apiserver.running) return;
    this.apiserver.start();
    await waitReady(this.apiserver, 'kube-apiserver', this.startTimeoutMs, async () => {
      const r = await httpGet(`${this.url}/readyz`, { authorization: `Bearer ${this.token}` }, this.ca, 5_000);
      return r.status === 200 && r.body.trim() === 'ok';
    });
  }

  /**
   * Stop the apiserver alone; etcd keeps the data. 'crash' (default) kills it: connections drop at
   * once, as when a node dies. 'graceful' sends SIGTERM: 1.20 stops listening but holds open
   * watches until its shutdown timeout (60 s) before it exits, so that takes a minute.
   */
  async stopApiServer(how: 'crash' | 'graceful' = 'crash'): Promise<void> {
    if (how === 'graceful') await this.apiserver.stop('SIGTERM', GRACEFUL_STOP_TIMEOUT_MS);
    else await this.apiserver.stop('SIGKILL');
  }

  /** The apiserver alone, on the same port with the same etcd: clients reconnect to the same URL. */
  async restart(how: 'crash' | 'graceful' = 'crash'): Promise<void> {
    await this.stopApiServer(how);
    await this.startApiServer();
  }

  /** Kill both processes and remove the temp dir. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      // Nothing of the apiserver's needs to survive: no drain. etcd may stop properly.
      await this.apiserver.stop('SIGKILL');
      await this.etcd.stop();
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
      live.delete(this);
    }
  }

  /** The last output of both servers, for a failing test's message. */
  logs(): string {
    return `--- etcd\n${logTail(this.etcd.logPath)}\n--- kube-apiserver\n${logTail(this.apiserver.logPath)}`;
  }

  /** @internal the process 'exit' hook. */
  killAndRemoveNow(): void {
    this.apiserver.killNow();
    this.etcd.killNow();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function apiServerArgs(dir: string, port: number, etcdUrl: string): string[] {
  return [
    '--etcd-servers', etcdUrl,
    '--bind-address', '127.0.0.1',
    '--advertise-address', '127.0.0.1',
    '--secure-port', String(port),
    '--insecure-port', '0',
    // As clusters run (kubeadm's default): node agents such as xlb's DaemonSet are privileged pods.
    '--allow-privileged=true',
    '--cert-dir', join(dir, 'certs'),
    '--tls-cert-file', join(dir, 'serving.crt'),
    '--tls-private-key-file', join(dir, 'serving.key'),
    '--token-auth-file', join(dir, 'tokens.csv'),
    '--authorization-mode', 'AlwaysAllow',
    '--service-account-key-file', join(dir, 'sa.pub'),
    '--service-account-signing-key-file', join(dir, 'sa.key'),
    '--service-account-issuer', 'https://kubernetes.default.svc',
    '--api-audiences', 'https://kubernetes.default.svc',
    '--service-cluster-ip-range', SERVICE_CLUSTER_IP_RANGE,
    '--service-node-port-range', '30000-32767',
    // Alpha in 1.20: without it the apiserver drops endpoints' serving/terminating conditions.
    '--feature-gates', 'EndpointSliceTerminatingCondition=true',
    // The "kubernetes" Service's Endpoints would name 127.0.0.1, which Endpoints validation rejects.
    '--endpoint-reconciler-type', 'none',
    '--profiling=false',
    '--logtostderr',
    '-v', '1',
  ];
}

/** Serving certificate (self-signed, 127.0.0.1), bearer token and service-account key pair. */
function writeCredentials(dir: string): { token: string; ca: string } {
  mkdirSync(join(dir, 'certs'));
  const crt = join(dir, 'serving.crt');
  const key = join(dir, 'serving.key');
  const r = spawnSync('openssl', [
    'req', '-x509', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-keyout', key, '-out', crt, '-days', '2', '-subj', '/CN=xlb-test-kube-apiserver',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,digitalSignature,keyCertSign',
    '-addext', 'extendedKeyUsage=serverAuth',
  ], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl could not make the serving certificate: ${r.stderr || r.error?.message}`);

  const sa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(join(dir, 'sa.key'), sa.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(join(dir, 'sa.pub'), sa.publicKey.export({ type: 'spki', format: 'pem' }));

  const token = randomBytes(24).toString('hex');
  writeFileSync(join(dir, 'tokens.csv'), `${token},xlb-test,xlb-test,"system:masters"\n`, { mode: 0o600 });
  return { token, ca: readFileSync(crt, 'utf8') };
}

function kubeconfigText(url: string, token: string, ca: string): string {
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'xlb-test', cluster: { server: url, 'certificate-authority-data': Buffer.from(ca).toString('base64') } }],
    users: [{ name: 'xlb-test', user: { token } }],
    contexts: [{ name: 'xlb-test', context: { cluster: 'xlb-test', user: 'xlb-test', namespace: 'default' } }],
    'current-context': 'xlb-test',
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

// ---- Objects a controller writes (only the fields the tests and the demo use) ----

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  resourceVersion?: string;
  uid?: string;
}

export interface ServicePort {
  name?: string;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  port: number;
  targetPort?: number | string;
  nodePort?: number;
}

export interface Service {
  apiVersion: 'v1';
  kind: 'Service';
  metadata: ObjectMeta;
  spec: {
    type?: 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
    clusterIP?: string;
    clusterIPs?: string[];
    ports?: ServicePort[];
    selector?: Record<string, string>;
    externalIPs?: string[];
    loadBalancerSourceRanges?: string[];
    sessionAffinity?: 'None' | 'ClientIP';
    sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
    externalTrafficPolicy?: 'Cluster' | 'Local';
    healthCheckNodePort?: number;
    externalName?: string;
  };
  status?: { loadBalancer?: { ingress?: { ip?: string; hostname?: string }[] } };
}

export interface EndpointSliceEndpoint {
  addresses: string[];
  conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean };
  topology?: Record<string, string>;
  nodeName?: string;
  hostname?: string;
}

export interface EndpointSlice {
  apiVersion: typeof ENDPOINT_SLICE_API;
  kind: 'EndpointSlice';
  metadata: ObjectMeta;
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints: EndpointSliceEndpoint[];
  ports?: { name?: string; protocol?: 'TCP' | 'UDP' | 'SCTP'; port?: number; appProtocol?: string }[];
}

export interface Namespace {
  apiVersion: 'v1';
  kind: 'Namespace';
  metadata: ObjectMeta;
}

/** A non-2xx answer, with the apiserver's Status message. */
export class KubeApiError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(`${method} ${path}: ${status} ${statusMessage(body)}`);
    this.name = 'KubeApiError';
  }
}

function statusMessage(body: string): string {
  try {
    const parsed: unknown = JSON.parse(body);
    if (typeof parsed === 'object' && parsed !== null && 'message' in parsed && typeof parsed.message === 'string') return parsed.message;
  } catch {
    // not JSON: the body itself
  }
  return body.slice(0, 300);
}

const servicePath = (ns: string, name?: string): string => `/api/v1/namespaces/${ns}/services${name ? `/${name}` : ''}`;
const slicePath = (ns: string, name?: string): string => `/apis/${ENDPOINT_SLICE_API}/namespaces/${ns}/endpointslices${name ? `/${name}` : ''}`;

/** Plain JSON over HTTPS with the bearer token and the server's CA. */
export class KubeRest {
  constructor(
    readonly url: string,
    private readonly token: string,
    private readonly ca: string,
  ) {}

  /** One request; resolves with the parsed body, rejects with KubeApiError on a non-2xx answer. */
  request<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: 'application/json' };
      if (payload !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = String(Buffer.byteLength(payload));
      }
      const req = httpsRequest(new URL(path, this.url), { method, headers, ca: this.ca, timeout: 30_000 }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('error', reject);
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status < 200 || status > 299) return reject(new KubeApiError(method, path, status, text));
          try {
            resolve(JSON.parse(text) as T);
          } catch (error) {
            reject(new Error(`${method} ${path}: answer is not JSON: ${String(error)}`));
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** GET the object, apply `change`, PUT it back; retried on a write conflict. */
  async update<T extends { metadata: ObjectMeta }>(path: string, change: (current: T) => T): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const current = await this.request<T>('GET', path);
      try {
        return await this.request<T>('PUT', path, change(current));
      } catch (error) {
        if (!(error instanceof KubeApiError && error.status === 409) || attempt >= 5) throw error;
      }
    }
  }

  listNamespaces(): Promise<{ items: Namespace[] }> {
    return this.request('GET', '/api/v1/namespaces');
  }

  createNamespace(name: string): Promise<Namespace> {
    return this.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  }

  getService(ns: string, name: string): Promise<Service> {
    return this.request('GET', servicePath(ns, name));
  }

  createService(service: Service): Promise<Service> {
    return this.request('POST', servicePath(service.metadata.namespace ?? 'default'), service);
  }

  updateService(ns: string, name: string, change: (current: Service) => Service): Promise<Service> {
    return this.update(servicePath(ns, name), change);
  }

  /** Status is a subresource: LoadBalancer ingress addresses are written here (no cloud controller runs). */
  updateServiceStatus(ns: string, name: string, status: NonNullable<Service['status']>): Promise<Service> {
    return this.update(`${servicePath(ns, name)}/status`, (s: Service) => ({ ...s, status }));
  }

  deleteService(ns: string, name: string): Promise<unknown> {
    return this.request('DELETE', servicePath(ns, name));
  }

  getEndpointSlice(ns: string, name: string): Promise<EndpointSlice> {
    return this.request('GET', slicePath(ns, name));
  }

  createEndpointSlice(slice: EndpointSlice): Promise<EndpointSlice> {
    return this.request('POST', slicePath(slice.metadata.namespace ?? 'default'), slice);
  }

  updateEndpointSlice(ns: string, name: string, change: (current: EndpointSlice) => EndpointSlice): Promise<EndpointSlice> {
    return this.update(slicePath(ns, name), change);
  }

  deleteEndpointSlice(ns: string, name: string): Promise<unknown> {
    return this.request('DELETE', slicePath(ns, name));
  }
}

/** A Service object named `ns/name`; the apiserver defaults what `spec` leaves out (type ClusterIP, TCP). */
export function service(ns: string, name: string, spec: Service['spec']): Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec };
}

/** An EndpointSlice (v1beta1) of the Service `serviceName`, IPv4, all endpoints ready unless given. */
export function endpointSlice(
  ns: string,
  name: string,
  serviceName: string,
  endpoints: EndpointSliceEndpoint[],
  ports: NonNullable<EndpointSlice['ports']>,
): EndpointSlice {
  return {
    apiVersion: ENDPOINT_SLICE_API,
    kind: 'EndpointSlice',
    metadata: { name, namespace: ns, labels: { [SERVICE_NAME_LABEL]: serviceName } },
    addressType: 'IPv4',
    endpoints: endpoints.map((e) => ({ conditions: { ready: true }, ...e })),
    ports,
  };
}
