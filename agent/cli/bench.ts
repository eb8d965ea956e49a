/**
 * `xlb bench throughput`: the live throughput suite (bench/throughput/) as a command users run. The
 * suite is loaded only when asked for: it needs the kernel binding, which the rest of the CLI does not.
 */
import { THROUGHPUT_USAGE, parseThroughputArgs } from '../../bench/throughput/options.js';
import { EXIT_FAILURE, EXIT_OK, UsageError, type CliCommand, type CliIO } from './command.js';

const SUITES = ['throughput'] as const;

const USAGE = `usage: xlb bench throughput [options]   (xlb bench throughput --help for its options)

Benchmarks run against this machine. throughput: live Mpps through a node in network namespaces — xlb
beside kube-proxy's iptables and nftables layouts, plain routing and a minimal XDP forwarder.
The other suites (maglev, datapath, control-plane) run with npm run bench.`;

export const benchCommand: CliCommand = {
  name: 'bench',
  summary: 'benchmarks: throughput (live Mpps of xlb beside kube-proxy iptables/nftables)',
  usage: `${USAGE}\n\n${THROUGHPUT_USAGE}`,
  async run(args: string[], io: CliIO): Promise<number> {
    const [suite, ...rest] = args;
    if (suite === undefined) throw new UsageError(`name a suite: ${SUITES.join(', ')}`);
    if (suite !== 'throughput') throw new UsageError(`unknown suite ${JSON.stringify(suite)} (one of ${SUITES.join(', ')})`);
    let options;
    try {
      options = parseThroughputArgs(rest);
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error));
    }
    const { runThroughputBench } = await import('../../bench/throughput/run.js');
    try {
      await runThroughputBench(options, { line: (text) => io.err(`${text}\n`) });
      return EXIT_OK;
    } catch (error) {
      io.err(`xlb bench throughput: ${error instanceof Error ? error.message : String(error)}\n`);
      return EXIT_FAILURE;
    }
  },
};
