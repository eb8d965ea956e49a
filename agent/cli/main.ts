#!/usr/bin/env node
/** `xlb`: the command-line interface. Each subcommand lives in its own module. */
import { bandwidthCommand } from './bandwidth.js';
import { benchCommand } from './bench.js';
import { bpfCommand } from './bpf.js';
import { demoCommand } from './demo.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError, type CliCommand, type CliIO } from './command.js';
import { maglevCommand } from './maglev.js';
import { monitorCommand } from './monitor.js';
import { identityCommand, policyCommand } from './policy.js';
import { serviceCommand } from './service.js';
import { statusCommand } from './status.js';

const commands: CliCommand[] = [maglevCommand, bpfCommand, serviceCommand, statusCommand, bandwidthCommand, monitorCommand, policyCommand, identityCommand, demoCommand, benchCommand];

const io: CliIO = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `usage: xlb <command> [arguments]  (xlb <command> --help for details)\n\n${commands
    .map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`)
    .join('\n')}\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.out(help());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    io.err(`xlb: unknown command ${JSON.stringify(name)}\n\n${help()}`);
    return EXIT_USAGE;
  }
  if (args.includes('--help') || args.includes('-h')) {
    io.out(`${command.usage}\n`);
    return EXIT_OK;
  }
  try {
    return await command.run(args, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`xlb ${command.name}: ${error.message}\n`);
      return EXIT_USAGE;
    }
    io.err(`xlb ${command.name}: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT_FAILURE;
  }
}

// `xlb ... | head` closes our stdout early: that ends the output, it is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? EXIT_OK);
  throw error;
});

process.exitCode = await main(process.argv.slice(2));
