/**
 * `xlb demo`: xlb explained by real packets in about a minute. Builds a client, an LB node and three
 * backend nodes in network namespaces, runs a real xlb-agent on each node, configures services with
 * `xlb service add`, sends real traffic through them step by step (agent/demo/steps.ts) and ends
 * with a summary; exit 0 only when every step's expectation held. Everything is removed afterwards,
 * also on failure and on Ctrl-C/SIGTERM, unless --keep. `xlb demo --cleanup` removes what any earlier
 * run left: a kept lab, or what a demo killed with SIGKILL could not remove itself.
 *
 * `xlb demo --kubernetes` (or `xlb demo kubernetes`) runs the same lab against a real kube-apiserver
 * (built once per machine by deploy/kube-apiserver.sh, which it runs when the binary is missing):
 * the services come from Services and EndpointSlices written to the apiserver
 * (agent/demo/kubernetes-steps.ts), every agent runs in Kubernetes mode.
 */
import { existsSync } from 'node:fs';
import { DemoCluster, cleanupDemoRuns } from '../demo/cluster.js';
import { paths } from '../demo/paths.js';
import { Output, failedStep, summaryJson, summaryTable, type StepResult } from '../demo/report.js';
import { KUBERNETES_STEPS } from '../demo/kubernetes-steps.js';
import { STEPS } from '../demo/steps.js';
import { EXIT_FAILURE, EXIT_OK, UsageError, parseCliArgs, type CliCommand, type CliIO } from './command.js';

const USAGE = `xlb demo [--json] [--keep]
xlb demo --kubernetes [--json]      (also: xlb demo kubernetes)
xlb demo --cleanup

Builds a small network in namespaces (a client, an LB node, three backend nodes; addresses from
198.18.0.0/15 and 2001:db8::/32), runs xlb-agent on every node and shows, with real traffic: DSR over
IPv4 and IPv6, a UDP service with SNAT, Maglev keeping a connection while a backend is removed, a
source-range-restricted VIP, a pod on the LB node calling a ClusterIP service, and the metrics and
maps behind it all. Needs root.

With --kubernetes the services come from a real kube-apiserver 1.20 (with etcd, on the host's
127.0.0.1): Services and EndpointSlices written to it, every agent in Kubernetes mode; LoadBalancer
TCP (DSR by annotation) and UDP (SNAT), a NodePort, a backend scaled away through the apiserver, and
xlb status. The apiserver is built once per machine by deploy/kube-apiserver.sh (4-10 minutes; cached
in ~/.cache/xlb): the demo runs it, showing its progress, when the binary is missing.

  --kubernetes  services from a real kube-apiserver instead of the agents' API (about 30 s)
  --json        print only the summary, as JSON {steps: [{name, ok, expected, seen, figures}]} (progress on stderr)
  --keep        leave the namespaces and agents running and print commands to explore them (not with --kubernetes)
  --cleanup     remove what earlier demo runs left: a lab kept with --keep, or the namespaces, agents,
                bpffs, apiserver and run dir of a demo that was killed (a demo still running is left alone)

Exit codes: 0 every step held, 1 a step failed (or set-up failed), 2 bad arguments, 130 interrupted.`;

const INTRO = `xlb is a load balancer for Kubernetes nodes (a kube-proxy replacement) and a standalone L4 load
balancer: eBPF programs in the kernel (XDP and tc) forward the packets; an agent on each node programs
them from the services it gets through its REST API and the \`xlb\` CLI. This demo builds a client, an LB
node and three backend nodes in network namespaces, runs a real xlb-agent on each, and sends real traffic.`;

const KUBERNETES_INTRO = `xlb is a load balancer for Kubernetes nodes: a kube-proxy replacement. eBPF programs in the kernel
(XDP and tc) forward the packets; an agent on each node watches the apiserver's Services and
EndpointSlices and programs them. This demo runs a real kube-apiserver, builds a client, an LB node and
three backend nodes in network namespaces, runs a real xlb-agent in Kubernetes mode on each node, and
sends real traffic.`;

const DIAGRAM = `    client    198.18.0.100    ──┐
    LB node   198.18.0.2      ──┤ a switch   the client reaches the VIPs (198.18.10.0/24, 2001:db8:10::/64)
    b1 b2 b3  198.18.0.11-13  ──┘            through the LB node; each backend runs HTTP :8080 and UDP echo :5353
    pod       198.18.20.2     ── a veth to the LB node (xlbpod0), its default route; the pod range is routed to the LB node`;

const KUBERNETES_DIAGRAM = `    kube-apiserver + etcd   https://127.0.0.1:PORT on the host; each node reaches it through a relay
    client    198.18.0.100    ──┐
    LB node   198.18.0.2      ──┤ a switch   the client reaches the LoadBalancer addresses (198.18.10.0/24)
    b1 b2 b3  198.18.0.11-13  ──┘            through the LB node; each backend runs HTTP :8080 and UDP echo :5353`;

const EXIT_INTERRUPTED = 130;

interface DemoCommandOptions {
  json: boolean;
  keep: boolean;
  cleanup: boolean;
  kubernetes: boolean;
}

function parse(args: string[]): DemoCommandOptions {
  const { values, positionals } = parseCliArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, keep: { type: 'boolean' }, cleanup: { type: 'boolean' }, kubernetes: { type: 'boolean' } },
  });
  const unknown = positionals.filter((p) => p !== 'kubernetes');
  if (unknown.length > 0) throw new UsageError(`${JSON.stringify(unknown[0])}: not a demo; the one there is: kubernetes (or --kubernetes)`);
  const options = {
    json: values.json === true,
    keep: values.keep === true,
    cleanup: values.cleanup === true,
    kubernetes: values.kubernetes === true || positionals.length > 0,
  };
  if (options.cleanup && (options.json || options.keep || options.kubernetes)) throw new UsageError('--cleanup: takes no other option');
  if (options.kubernetes && options.keep) {
    throw new UsageError('--keep: not with --kubernetes (the apiserver and its relays live in the demo process); run xlb demo --keep for a lab to explore');
  }
  return options;
}

/**
 * SIGINT/SIGTERM: the first starts the teardown (once) and marks the run interrupted; a second says
 * to wait; a third gives up. Returns the function that removes the handlers.
 */
function onInterrupt(out: Output, interrupt: () => Promise<unknown>): { interrupted: () => boolean; remove: () => void } {
  let signals = 0;
  let fallback: NodeJS.Timeout | undefined;
  const handler = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals === 1) {
      out.line(`\n${signal}: stopping and cleaning up …`);
      // Should a step still be waiting on something after the teardown, do not hang: exit.
      void interrupt().then(() => {
        fallback = setTimeout(() => process.exit(EXIT_INTERRUPTED), 10_000);
      });
    } else if (signals === 2) {
      out.line('still cleaning up (agents, namespaces, bpffs); press Ctrl-C again to abandon');
    } else {
      process.exit(EXIT_INTERRUPTED);
    }
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    interrupted: () => signals > 0,
    remove: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
      if (fallback) clearTimeout(fallback);
    },
  };
}

async function runDemo(options: DemoCommandOptions, io: CliIO): Promise<number> {
  const out = new Output(options.json ? process.stderr : process.stdout);
  const cluster = new DemoCluster(out, { kubernetes: options.kubernetes });
  const steps = options.kubernetes ? KUBERNETES_STEPS : STEPS;
  const signals = onInterrupt(out, () => cluster.destroy());
  const results: StepResult[] = [];
  const started = Date.now();
  let setupSeconds = 0;
  let kept = false;
  try {
    out.line(options.kubernetes ? KUBERNETES_INTRO : INTRO);
    out.line();
    out.line(options.kubernetes ? KUBERNETES_DIAGRAM : DIAGRAM);
    out.line();
    out.line('Setting up:');
    try {
      await cluster.build(signals.interrupted);
    } catch (error) {
      if (signals.interrupted()) return EXIT_INTERRUPTED;
      const failed = failedStep('set-up', 'the lab built and every agent ready', error);
      out.line(`set-up failed: ${error instanceof Error ? error.message : String(error)}`);
      if (options.json) io.out(summaryJson([failed]));
      return EXIT_FAILURE;
    }
    setupSeconds = (Date.now() - started) / 1000;
    out.line(`  LB=$RUN/lb.sock   # the LB node agent's API socket: every xlb command below talks to it`);
    out.line(`  (xlb = node ${paths.cli})`);

    for (const [i, step] of steps.entries()) {
      if (signals.interrupted()) break;
      out.line();
      out.line(`[${i + 1}/${steps.length}] ${step.title.split('\n').join('\n      ')}`);
      let result: StepResult;
      try {
        result = await step.run({ cluster, out });
      } catch (error) {
        result = failedStep(step.name, step.expected, error);
      }
      // What a step saw while the run was being torn down says nothing about xlb.
      if (signals.interrupted()) result = failedStep(step.name, step.expected, new Error('interrupted'));
      out.verdict(result);
      results.push(result);
    }
    if (signals.interrupted()) {
      if (options.json) io.out(summaryJson(results));
      return EXIT_INTERRUPTED;
    }

    const stepsSeconds = (Date.now() - started) / 1000 - setupSeconds;
    const ok = results.every((r) => r.ok);
    out.line();
    out.line(`Summary (set-up ${setupSeconds.toFixed(1)} s, steps ${stepsSeconds.toFixed(1)} s):`);
    out.block(summaryTable(results));
    out.line(ok ? 'Every step held.' : `${results.filter((r) => !r.ok).length} step(s) failed: see the ✘ lines above.`);
    if (options.json) io.out(summaryJson(results));

    if (options.keep) {
      const state = await cluster.keep();
      kept = true;
      explore(out, state.dir, cluster);
    }
    return ok ? EXIT_OK : EXIT_FAILURE;
  } finally {
    if (!kept) {
      if (!signals.interrupted()) out.line();
      const problems = await cluster.destroy();
      for (const p of problems) out.line(`cleanup: ${p}`);
      const stopped = options.kubernetes ? 'agents, relays, kube-apiserver and etcd stopped' : 'agents stopped';
      out.line(problems.length === 0 ? `Cleaned up: ${stopped}, namespaces deleted, bpffs unmounted, temp dir removed.` : 'Cleanup was incomplete (see above).');
    }
    signals.remove();
  }
}

function explore(out: Output, dir: string, cluster: DemoCluster): void {
  const xlb = `node ${paths.cli}`;
  const client = cluster.lab.client.ns;
  out.line();
  out.line(`Left running (state in ${paths.keptState}). Explore:`);
  out.block(
    [
      `ip netns exec ${cluster.lb.host.ns} ${xlb} service list --api-socket ${cluster.lb.agent.socket}`,
      `${xlb} status --api-socket ${cluster.lb.agent.socket}`,
      `${xlb} monitor --api-socket ${cluster.lb.agent.socket}`,
      `${xlb} bpf lb list --bpffs ${cluster.lb.agent.bpffs}`,
      `${xlb} bpf ct list --bpffs ${cluster.lb.agent.bpffs}`,
      `ip netns exec ${client} curl -s http://198.18.10.10/`,
      `ip netns exec ${client} curl -s 'http://[2001:db8:10::10]/'`,
      ...(cluster.lab.pod ? [`ip netns exec ${cluster.lab.pod.ns} curl -s http://198.18.10.30/`] : []),
      `less ${dir}/lb.log`,
      `${xlb} demo --cleanup`,
    ].join('\n'),
  );
}

export const demoCommand: CliCommand = {
  name: 'demo',
  summary: 'show xlb at work in network namespaces: DSR, SNAT, Maglev, source ranges; --kubernetes: with a real apiserver (needs root)',
  usage: USAGE,
  async run(args, io) {
    const options = parse(args);
    if (process.getuid?.() !== 0) {
      io.err('xlb demo: needs root (it loads BPF programs and creates network namespaces): run it with sudo\n');
      return EXIT_FAILURE;
    }
    if (options.cleanup) {
      const report = await cleanupDemoRuns((line) => io.out(`${line}\n`));
      for (const problem of report.problems) io.err(`xlb demo --cleanup: ${problem}\n`);
      if (report.removed.length === 0 && report.problems.length === 0) io.out('nothing to clean up\n');
      return report.problems.length === 0 ? EXIT_OK : EXIT_FAILURE;
    }
    if (options.keep && existsSync(paths.keptState)) {
      io.err(`xlb demo: --keep: a kept demo is still running (${paths.keptState}); remove it first with xlb demo --cleanup\n`);
      return EXIT_FAILURE;
    }
    return runDemo(options, io);
  },
};
