#!/usr/bin/env node
/**
 * xlb-agent: loads the datapath on this node, serves the services of the standalone config file and
 * of the REST API (unix socket; TCP with a bearer token), exports metrics, and shuts down cleanly on
 * SIGINT/SIGTERM. Exit codes: 0 clean shutdown, 1 start-up or runtime failure, 2 bad command line.
 */
import { readFile, rm, stat } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import type { FastifyInstance } from 'fastify';
import { MonitorStreams } from './api/monitor.js';
import { buildApiServer, buildMetricsServer, listenTcp, listenUnix } from './api/server.js';
import type { ServiceDatapath } from './datapath.js';
import {
  AGENT_USAGE,
  FlagError,
  deviceAddresses,
  formatHostPort,
  nodeDatapathOptions,
  parseAgentFlags,
  type AgentFlags,
} from './flags.js';
import { createLogger, type Logger } from './log.js';
import { AgentMetrics } from './metrics.js';
import { AgentLock, AgentRunningError } from './node-lock.js';
import { ServiceStore, loadConfigFile } from './store.js';
import type { KubernetesWatcher, PolicyWiring } from './k8s/syncer.js';
import type { PodDatapath } from './pod-datapath.js';
import type { EdtDatapath } from './edt-datapath.js';
import type { BandwidthSettings } from './bandwidth.js';
import { nodePortAddresses } from '../lb/k8s/node.js';

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

async function agentVersion(): Promise<string> {
  const text = await readFile(new URL('../../package.json', import.meta.url), 'utf8');
  const version = (JSON.parse(text) as { version?: unknown }).version;
  return typeof version === 'string' ? version : 'unknown';
}

/** The bearer token: the file's content without surrounding whitespace. */
async function readToken(file: string, log: Logger): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new Error(`--api-token-file ${file}: cannot read: ${error instanceof Error ? error.message : String(error)}`);
  }
  const token = text.trim();
  if (token === '' || /\s/.test(token)) throw new Error(`--api-token-file ${file}: must hold one token (no spaces), not ${token === '' ? 'nothing' : 'several words'}`);
  if (((await stat(file)).mode & 0o077) !== 0) log.warn(`--api-token-file ${file} is readable by other users; chmod 600 it`);
  return token;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Cleanup steps, run in reverse order of registration; failures are logged, not thrown. */
class Teardown {
  private readonly steps: { what: string; run: () => Promise<void> }[] = [];
  constructor(private readonly log: Logger) {}

  add(what: string, run: () => Promise<void>): void {
    this.steps.push({ what, run });
  }

  async run(): Promise<void> {
    for (const step of this.steps.reverse()) {
      try {
        await step.run();
      } catch (error) {
        this.log.error(`${step.what}: ${message(error)}`);
      }
    }
    this.steps.length = 0;
  }
}

/**
 * Resolves on the first SIGINT/SIGTERM. Installed before start-up, so a signal during start-up
 * still leads to a clean teardown (once the step under way has finished); a second signal exits now.
 */
function signalReceived(log: Logger): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.once('SIGINT', () => forceExit(log));
      process.once('SIGTERM', () => forceExit(log));
      log.info(`${signal}: shutting down`);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

function forceExit(log: Logger): void {
  log.error('second signal during shutdown: exiting now');
  process.exit(EXIT_FAILURE);
}

async function closeServer(app: FastifyInstance): Promise<void> {
  await app.close();
}

/**
 * Socket-level load balancing for the processes under --cgroup-root: after the datapath, whose maps it
 * reads through their pins (same capacity and Maglev parameters). Without a cgroup v2 (and not allowed
 * to mount one) it is a warning, not a failure: packets through the devices are still served.
 */
async function startSocketLb(flags: AgentFlags, log: Logger, teardown: Teardown): Promise<void> {
  const { resolveCgroupRoot } = await import('../lb/datapath/cgroup.js');
  const cgroupRoot = resolveCgroupRoot(flags.cgroupRoot, { mount: flags.nodeSetup, log: (l) => log.info(l), warn: (l) => log.warn(l) });
  if (cgroupRoot === undefined) return;
  const { SocketLb } = await import('./socket-lb.js');
  const socketLb = SocketLb.load({
    pinDir: flags.bpffs,
    capacity: flags.capacity,
    maglevTableSize: flags.maglevTableSize,
    maglevSeed: flags.maglevSeed,
    cgroupRoot,
    log: (l) => log.info(l),
  });
  teardown.add('closing socket-level load balancing', async () => socketLb.close());
  log.info(`socket-level load balancing for the processes under ${cgroupRoot}`);
}

/** tc_pod on the pods' host-side devices (--pod-devices, and in Kubernetes mode this node's Pods'), on the datapath's pinned maps, attached as devices come and go. */
async function startPodDatapath(flags: AgentFlags, log: Logger, teardown: Teardown): Promise<PodDatapath> {
  const { PodDatapath } = await import('./pod-datapath.js');
  const pods = PodDatapath.load({
    pinDir: flags.bpffs,
    capacity: flags.capacity,
    maglevTableSize: flags.maglevTableSize,
    maglevSeed: flags.maglevSeed,
    conntrackEntries: flags.conntrackEntries,
    podDevices: flags.podDevices,
    nodeSetup: flags.nodeSetup,
    log: (l) => log.info(l),
    warn: (l) => log.warn(l),
  });
  teardown.add('closing the pod datapath', () => pods.close());
  pods.watch();
  log.info(`pod datapath: tc_pod on devices matching ${flags.podDevices.join(', ') || 'no pattern'} (now: ${pods.attached().join(', ') || 'none'})`);
  return pods;
}

/**
 * The EDT bandwidth manager on the devices, after the node datapath (tc_edt_egress must come after
 * tc_dsr_egress: edt-datapath.ts); fq is installed where node setup is allowed, else warned about.
 */
async function startBandwidthManager(flags: AgentFlags, log: Logger): Promise<EdtDatapath> {
  const { EdtDatapath } = await import('./edt-datapath.js');
  return EdtDatapath.load({ pinDir: flags.bpffs, devices: flags.devices, horizonNs: flags.edtHorizonNs, nodeSetup: flags.nodeSetup, log: (l) => log.info(l), warn: (l) => log.warn(l) });
}

/**
 * Kubernetes mode's network policy writes tc_pod's policy maps (through its loaded object), and pods'
 * egress-bandwidth annotations go to the bandwidth manager, both at the ifindex of each pod's device.
 */
async function policyWiring(pods: PodDatapath, edt: EdtDatapath | undefined): Promise<PolicyWiring> {
  const { PolicyMapWriter } = await import('../lb/datapath/policy-writer.js');
  const { ifindexOf } = await import('../lb/datapath/netif.js');
  const known = (device: string): number | undefined => {
    try {
      return ifindexOf(device);
    } catch {
      return undefined; // gone since pods.ts found it: written once it is found again
    }
  };
  const localAddresses = (): string[] => Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address));
  return { maps: PolicyMapWriter.open(pods.object), ...(edt ? { bandwidth: edt } : {}), ifindexOf: known, localAddresses };
}

/** Standalone mode: the pods' bandwidth limits of PUT /v1/bandwidth, kept beside the state file. */
async function startBandwidthSettings(flags: AgentFlags, edt: EdtDatapath, log: Logger, teardown: Teardown): Promise<BandwidthSettings> {
  const { BandwidthSettings, bandwidthFileOf } = await import('./bandwidth.js');
  const settings = new BandwidthSettings({ edt, podDevices: flags.podDevices, file: bandwidthFileOf(flags.stateFile), log });
  teardown.add('waiting for pending bandwidth changes', () => settings.idle());
  await settings.start();
  return settings;
}

async function run(flags: AgentFlags, log: Logger): Promise<number> {
  const startedAt = Date.now();
  let stopping = false;
  const stop = signalReceived(log).then(() => {
    stopping = true;
  });
  const checkNotStopping = (): void => {
    if (stopping) throw new Error('interrupted during start-up');
  };
  const version = await agentVersion();
  const token = flags.apiTokenFile === undefined ? undefined : await readToken(flags.apiTokenFile, log);
  const configServices = flags.config === undefined ? new Map() : await loadConfigFile(flags.config);
  if (flags.config !== undefined) log.info(`config file ${flags.config}: ${configServices.size} service(s)`);

  const nodeAddresses = flags.nodeAddresses ?? deviceAddresses(flags.devices, networkInterfaces());
  if (nodeAddresses.length === 0) {
    log.warn(`no node address (none given, none on ${flags.devices.join(', ')}): NodePort services and SNAT have no address`);
  }
  // kube-proxy's --nodeport-addresses narrows where NodePorts listen; SNAT still uses the node's address.
  const nodePortAddressList = flags.kubernetes ? nodePortAddresses(nodeAddresses, flags.kubernetes.nodePortAddresses) : nodeAddresses;
  log.info(
    `xlb-agent ${version} starting (${flags.kubernetes ? 'Kubernetes mode' : 'standalone'}): devices ${flags.devices.join(', ')}, ` +
      `xdp ${flags.xdp}, mode ${flags.mode}, maglev table ${flags.maglevTableSize}, node addresses ${nodeAddresses.join(', ') || '(none)'}` +
      `${flags.kubernetes ? `, NodePorts on ${nodePortAddressList.join(', ') || '(none)'}` : ''}, bpffs ${flags.bpffs}`,
  );

  const teardown = new Teardown(log);
  try {
    // Nothing on the node is touched before the node is ours (node-lock.ts).
    const lock = await AgentLock.acquire(flags.apiSocket);
    teardown.add('releasing the node lock', () => lock.release());
    // Loaded only now: --help and flag errors must not need the kernel binding.
    const { prepareBpffs } = await import('../lb/datapath/bpffs.js');
    prepareBpffs(flags.bpffs, { mount: flags.nodeSetup, log: (line) => log.info(line) });
    lock.lockBpffs(flags.bpffs);
    const { createNodeDatapath } = await import('./node-datapath.js');
    const datapath: ServiceDatapath = await createNodeDatapath({
      ...nodeDatapathOptions(flags, nodeAddresses, (line) => log.info(line)),
      nodePortAddresses: nodePortAddressList,
      warn: (line) => log.warn(line),
    });
    teardown.add('closing the datapath', () => datapath.close());
    checkNotStopping();
    if (flags.socketLb) await startSocketLb(flags, log, teardown);
    const pods = flags.podDevices.length > 0 || flags.kubernetes ? await startPodDatapath(flags, log, teardown) : undefined;
    const edt = flags.bandwidthManager ? await startBandwidthManager(flags, log) : undefined;
    if (edt) teardown.add('closing the bandwidth manager', async () => edt.close());
    const bandwidth = edt && !flags.kubernetes ? await startBandwidthSettings(flags, edt, log, teardown) : undefined;

    const store = new ServiceStore({ datapath, stateFile: flags.stateFile, log });
    const metrics = new AgentMetrics({ datapath, store });
    teardown.add('waiting for pending service changes', () => store.idle());
    teardown.add('closing the metrics', async () => metrics.close());
    await store.start(configServices);
    checkNotStopping();

    let kubernetes: KubernetesWatcher | undefined;
    if (flags.kubernetes) {
      const { startKubernetes } = await import('./k8s/syncer.js');
      kubernetes = await startKubernetes({ flags: flags.kubernetes, nodeName: flags.nodeName, store, registry: metrics.registry, log, nodeAddresses: nodePortAddressList,
        nodeDevices: flags.devices, ...(pods ? { onPodDevices: (d: string[]) => pods.setNamed(d), policy: await policyWiring(pods, edt) } : {}) });
      const watcher = kubernetes;
      teardown.add('stopping the Kubernetes watcher', () => watcher.stop());
      // The pinned maps' leftovers go once the cluster's services are all listed and applied; until
      // then (an apiserver that is down) the datapath serves what it served.
      void watcher
        .initialSync()
        .then(() => store.pruneStale())
        .catch((error: unknown) => {
          if (!stopping) log.error(`removing services the cluster no longer has: ${message(error)}`);
        });
    } else {
      await store.pruneStale();
    }
    checkNotStopping();

    // One stream limit for the unix socket and the TCP listener together.
    const common = {
      store,
      datapath,
      metrics,
      log,
      version,
      startedAt,
      monitor: new MonitorStreams(),
      ...(kubernetes ? { kubernetes } : {}),
      ...(kubernetes?.policy ? { policy: kubernetes.policy } : {}),
      ...(edt ? { edt } : {}),
      ...(bandwidth ? { bandwidth } : {}),
    };
    const unix = await buildApiServer(common);
    checkNotStopping();
    teardown.add('closing the API socket', () => closeServer(unix));
    await listenUnix(unix, flags.apiSocket);
    // Only now is the socket ours (listenUnix refuses to replace a live agent's).
    teardown.add(`removing ${flags.apiSocket}`, () => rm(flags.apiSocket, { force: true }));
    log.info(`REST API on unix socket ${flags.apiSocket} (mode 0600)`);

    if (flags.apiAddr && token !== undefined) {
      const tcp = await buildApiServer({ ...common, token });
      teardown.add('closing the TCP API listener', () => closeServer(tcp));
      const bound = await listenTcp(tcp, flags.apiAddr);
      log.info(`REST API on http://${formatHostPort(bound)} (bearer token required)`);
    }
    if (flags.metricsAddr) {
      const server = await buildMetricsServer(metrics);
      teardown.add('closing the metrics listener', () => closeServer(server));
      const bound = await listenTcp(server, flags.metricsAddr);
      log.info(`metrics on http://${formatHostPort(bound)}/metrics`);
    }

    checkNotStopping();
    log.info(`ready in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
    await stop;
    await teardown.run();
    log.info('stopped');
    return EXIT_OK;
  } catch (error) {
    await teardown.run();
    if (stopping) {
      log.info('stopped before start-up finished');
      return EXIT_OK;
    }
    log.error(error instanceof AgentRunningError ? `xlb-agent refused to start: ${error.message}` : `xlb-agent failed: ${message(error)}`);
    return EXIT_FAILURE;
  }
}

/** xlb-agent --cleanup: xlb's programs off the devices, its pins and socket gone; refused while an agent runs. */
async function cleanup(flags: AgentFlags, log: Logger): Promise<number> {
  let lock: AgentLock;
  try {
    lock = await AgentLock.acquire(flags.apiSocket);
  } catch (error) {
    log.error(`xlb-agent --cleanup: ${message(error)}`);
    return EXIT_FAILURE;
  }
  try {
    const { detachXlbPrograms, netDevices, removePins } = await import('../lb/datapath/cleanup.js');
    const removed = detachXlbPrograms(flags.devices.length > 0 ? flags.devices : netDevices());
    for (const line of removed) log.info(`detached ${line}`);
    const { resolveCgroupRoot } = await import('../lb/datapath/cgroup.js');
    const { SocketLb } = await import('./socket-lb.js');
    // Without a cgroup v2 mount only the pinned links are detached (they hold the programs).
    const cgroupRoot = resolveCgroupRoot(flags.cgroupRoot, { mount: false });
    for (const line of SocketLb.detachAll({ pinDir: flags.bpffs, ...(cgroupRoot ? { cgroupRoot } : {}) })) log.info(`detached ${line}`);
    const { PodDatapath } = await import('./pod-datapath.js');
    for (const line of PodDatapath.cleanup()) log.info(`detached ${line}`);
    const { EdtDatapath } = await import('./edt-datapath.js');
    for (const line of EdtDatapath.cleanup()) log.info(`detached ${line}`);
    const pins = removePins(flags.bpffs);
    log.info(`removed ${pins} pinned map(s) and ${flags.bpffs}`);
    await rm(flags.apiSocket, { force: true });
    log.info(`removed ${flags.apiSocket}; sysctls the agent set stay as they are (its log names their old values)`);
    return EXIT_OK;
  } catch (error) {
    log.error(`xlb-agent --cleanup: ${message(error)}`);
    return EXIT_FAILURE;
  } finally {
    await lock.release();
  }
}

async function main(argv: string[]): Promise<number> {
  let flags: AgentFlags;
  try {
    const command = parseAgentFlags(argv);
    if (command.help) {
      process.stdout.write(`${AGENT_USAGE}\n`);
      return EXIT_OK;
    }
    flags = command.flags;
  } catch (error) {
    if (!(error instanceof FlagError)) throw error;
    process.stderr.write(`xlb-agent: ${error.message}\n(xlb-agent --help for usage)\n`);
    return EXIT_USAGE;
  }
  const log = createLogger();
  try {
    return await (flags.cleanup ? cleanup(flags, log) : run(flags, log));
  } catch (error) {
    log.error(`xlb-agent: ${message(error)}`);
    return EXIT_FAILURE;
  }
}

process.exitCode = await main(process.argv.slice(2));
