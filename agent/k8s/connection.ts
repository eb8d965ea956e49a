/**
 * Where the apiserver is and how to authenticate to it: a KubeConfig from --kubeconfig, or in-cluster
 * (the pod's service account), with --k8s-api-server replacing the server either way (Cilium's
 * k8sServiceHost: a kube-proxy replacement cannot reach the apiserver through the `kubernetes`
 * ClusterIP it is itself about to serve). Every unusable input is an error naming the file or the
 * environment variable, checked here once, so the watcher never starts against a half-usable config.
 */
import { accessSync, constants } from 'node:fs';
import { isIPv6 } from 'node:net';
import { join } from 'node:path';
import { KubeConfig, type Cluster } from '@kubernetes/client-node';

/** Where a pod finds its service account's token and the cluster's CA. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface ConnectionOptions {
  /** --kubeconfig */
  kubeconfig?: string;
  /** --k8s-api-server: replaces the server of the kubeconfig's current cluster, or of in-cluster. */
  apiServer?: string;
  /** Environment to read KUBERNETES_SERVICE_HOST/PORT from (tests); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** The service account directory (tests); default SERVICE_ACCOUNT_DIR. */
  serviceAccountDir?: string;
}

export interface Connection {
  kubeConfig: KubeConfig;
  /** The apiserver's URL, without a trailing slash. */
  server: string;
  /** How it was found, for the start-up log line: "kubeconfig /etc/xlb/kubeconfig", "in-cluster service account". */
  source: string;
}

/** The apiserver cannot be used as configured; the message names the file, flag or variable. */
export class ConnectionConfigError extends Error {
  override name = 'ConnectionConfigError';
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function readable(file: string): boolean {
  try {
    accessSync(file, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/** The KubeConfig the watcher uses; throws ConnectionConfigError when nothing usable is configured. */
export function kubeConnection(options: ConnectionOptions): Connection {
  const env = options.env ?? process.env;
  const saDir = options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const kc = new KubeConfig();
  let source: string;
  if (options.kubeconfig !== undefined) {
    const file = options.kubeconfig;
    if (!readable(file)) throw new ConnectionConfigError(`--kubeconfig ${file}: cannot read the file`);
    try {
      kc.loadFromFile(file);
    } catch (error) {
      throw new ConnectionConfigError(`--kubeconfig ${file}: not a usable kubeconfig: ${message(error)}`);
    }
    if (kc.getCurrentContext() === undefined || kc.getCurrentContext() === '') {
      throw new ConnectionConfigError(`--kubeconfig ${file}: no current-context`);
    }
    if (!kc.getCurrentCluster()) {
      throw new ConnectionConfigError(`--kubeconfig ${file}: current-context ${JSON.stringify(kc.getCurrentContext())} names no cluster defined in the file`);
    }
    source = `kubeconfig ${file}`;
  } else {
    inCluster(kc, env, saDir, options.apiServer !== undefined);
    source = readable(join(saDir, 'token')) ? `in-cluster service account (${saDir})` : 'no credentials';
  }
  if (options.apiServer !== undefined) source += ', server from --k8s-api-server';
  const server = (options.apiServer ?? kc.getCurrentCluster()?.server ?? '').replace(/\/+$/, '');
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new ConnectionConfigError(`${source}: the cluster's server ${JSON.stringify(server)} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConnectionConfigError(`${source}: the cluster's server ${server} is not an http(s) URL`);
  }
  useServer(kc, server);
  return { kubeConfig: kc, server, source };
}

/**
 * In-cluster: KUBERNETES_SERVICE_HOST/PORT and the service account's token and CA. With
 * --k8s-api-server the variables are not needed (the flag gives the server), and the token and CA
 * are used when present (a DaemonSet pod has them), else the server is used without credentials.
 */
function inCluster(kc: KubeConfig, env: NodeJS.ProcessEnv, saDir: string, serverGiven: boolean): void {
  const token = join(saDir, 'token');
  const ca = join(saDir, 'ca.crt');
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'];
  if (!serverGiven) {
    if (host === undefined || host === '' || port === undefined || port === '') {
      throw new ConnectionConfigError(
        'no --kubeconfig, no --k8s-api-server, and not in a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set ' +
          '(give --kubeconfig PATH, or --k8s-api-server URL, or --standalone)',
      );
    }
    if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) {
      throw new ConnectionConfigError(`KUBERNETES_SERVICE_PORT ${JSON.stringify(port)} is not a port number`);
    }
    for (const file of [token, ca]) {
      if (!readable(file)) throw new ConnectionConfigError(`in-cluster: cannot read ${file} (the pod's service account; is automountServiceAccountToken off?)`);
    }
  }
  const haveToken = readable(token);
  const cluster: Cluster = {
    name: 'in-cluster',
    server: host && port ? `https://${isIPv6(host) ? `[${host}]` : host}:${port}` : 'https://kubernetes.invalid',
    skipTLSVerify: false,
    ...(readable(ca) ? { caFile: ca } : {}),
  };
  // The token is re-read from its file (client-node's tokenFile provider, every minute): bound service
  // account tokens are rotated by the kubelet.
  const user = haveToken ? { name: 'in-cluster', authProvider: { name: 'tokenFile', config: { tokenFile: token } } } : { name: 'anonymous' };
  kc.loadFromClusterAndUser(cluster, user);
}

/** The current cluster, with `server` as its server. */
function useServer(kc: KubeConfig, server: string): void {
  const current = kc.getCurrentCluster();
  if (!current) throw new ConnectionConfigError(`${server}: no current cluster to apply it to`);
  // client-node refuses plain http unless TLS verification is off: there is no TLS to verify.
  const replacement: Cluster = { ...current, server, skipTLSVerify: current.skipTLSVerify || server.startsWith('http:') };
  kc.clusters = kc.clusters.map((c) => (c.name === current.name ? replacement : c));
}
