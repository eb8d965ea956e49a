/**
 * Bench suite "throughput": live Mpps through a node in network namespaces — xlb (the real agent,
 * SNAT and DSR) beside kube-proxy's iptables and nftables rule layouts, plain routing and a minimal
 * XDP forwarder, at 1, 1,000 and 10,000 services; established and new flows. See bench/throughput/.
 *
 *   node dist/bench/throughput.js [--quick] [options]     (the same as: xlb bench throughput ...)
 *   npm run bench -- throughput [options]
 */
import { parseThroughputArgs, THROUGHPUT_USAGE } from './throughput/options.js';
import { runThroughputBench } from './throughput/run.js';

async function main(argv: string[]): Promise<number> {
  // `npm run bench -- throughput ...` hands the suite's name along.
  const args = argv[0] === 'throughput' ? argv.slice(1) : argv;
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${THROUGHPUT_USAGE.replace('xlb bench throughput', 'node dist/bench/throughput.js')}\n`);
    return 0;
  }
  let options;
  try {
    options = parseThroughputArgs(args);
  } catch (error) {
    process.stderr.write(`bench throughput: ${error instanceof Error ? error.message : String(error)}\n\n${THROUGHPUT_USAGE}\n`);
    return 2;
  }
  try {
    await runThroughputBench(options, { line: (text) => void process.stderr.write(`${text}\n`) });
    return 0;
  } catch (error) {
    const interrupted = error instanceof Error && error.message === 'interrupted';
    process.stderr.write(`bench throughput: ${error instanceof Error && !interrupted ? (error.stack ?? error.message) : String(error instanceof Error ? error.message : error)}\n`);
    return interrupted ? 130 : 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
