/**
 * `xlb maglev`: prints the Maglev table Cilium would compute for the given backends, size and seed,
 * without an agent — to check that xlb and Cilium nodes agree, or to look at a weighting.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { EXIT_OK, UsageError, parseCliArgs, type CliCommand, type CliIO } from './command.js';
import {
  DEFAULT_MAGLEV_SEED,
  DEFAULT_MAGLEV_TABLE_SIZE,
  L4_PROTOCOLS,
  MAGLEV_TABLE_SIZES,
  MAX_MAGLEV_WEIGHT,
  buildMaglevTable,
  canonicalIpAddress,
  maglevBackendKey,
  parseMaglevSeed,
  type L4Protocol,
  type MaglevSeed,
  type MaglevTable,
} from '../../lb/maglev/index.js';

/** Cilium's loadbalancer.DefaultBackendWeight. */
const DEFAULT_WEIGHT = 100;

const USAGE = `xlb maglev [--size M] [--seed B64] --backend ADDR:PORT/PROTO[@WEIGHT]... [--json]

  --size M        table size, one of ${MAGLEV_TABLE_SIZES.join(', ')} (default ${DEFAULT_MAGLEV_TABLE_SIZE})
  --seed B64      12-byte base64 seed (default ${DEFAULT_MAGLEV_SEED})
  --backend SPEC  198.18.1.2:8080/TCP, [2001:db8::2]:53/UDP; PROTO is TCP, UDP or SCTP;
                  @WEIGHT 0..${MAX_MAGLEV_WEIGHT} (default ${DEFAULT_WEIGHT}; 0 keeps it out of the table); repeatable
  --json          print the table as a JSON array of backend indexes, in the order given`;

export interface BackendSpec {
  /** ADDR:PORT/PROTO with the address in canonical form, IPv6 in brackets. */
  label: string;
  key: string;
  weight: number;
}

const SPEC = /^(\[[^\]]*\]|[^:[\]/@]+):([^/]*)\/([^@]*)(?:@(.*))?$/;

export function parseBackendSpec(spec: string): BackendSpec {
  const bad = (why: string): UsageError => new UsageError(`--backend ${JSON.stringify(spec)}: ${why}`);
  const hostAndPort = spec.split('/')[0] ?? '';
  if (!spec.startsWith('[') && hostAndPort.indexOf(':') !== hostAndPort.lastIndexOf(':')) {
    throw bad('an IPv6 address goes in brackets, as in [2001:db8::2]:53/UDP');
  }
  const match = SPEC.exec(spec);
  if (match === null) throw bad('expected ADDR:PORT/PROTO[@WEIGHT], with an IPv6 ADDR in brackets');
  const [, host = '', portText = '', protoText = '', weightText] = match;

  const bracketed = host.startsWith('[');
  const address = bracketed ? host.slice(1, -1) : host;
  if (bracketed ? !isIPv6(address) : !isIPv4(address)) {
    throw bad(
      bracketed
        ? `${JSON.stringify(address)} is not an IPv6 address (IPv4 goes without brackets)`
        : `${JSON.stringify(address)} is not an IPv4 address (IPv6 goes in brackets)`,
    );
  }
  if (address.includes('%')) throw bad('a backend address has no zone');
  const ip = canonicalIpAddress(address);

  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
    throw bad(`port ${JSON.stringify(portText)} is not an integer in 1..65535`);
  }
  const protocol = protoText.toUpperCase();
  if (!isL4Protocol(protocol)) {
    throw bad(`protocol ${JSON.stringify(protoText)} is not one of ${L4_PROTOCOLS.join(', ')}`);
  }
  let weight = DEFAULT_WEIGHT;
  if (weightText !== undefined) {
    weight = Number(weightText);
    if (!/^\d+$/.test(weightText) || weight > MAX_MAGLEV_WEIGHT) {
      throw bad(`weight ${JSON.stringify(weightText)} is not an integer in 0..${MAX_MAGLEV_WEIGHT}`);
    }
  }
  const label = `${bracketed ? `[${ip}]` : ip}:${port}/${protocol}`;
  return { label, key: maglevBackendKey({ address: ip, port, protocol }), weight };
}

function isL4Protocol(text: string): text is L4Protocol {
  return (L4_PROTOCOLS as readonly string[]).includes(text);
}

function parseSize(text: string | undefined): number {
  if (text === undefined) return DEFAULT_MAGLEV_TABLE_SIZE;
  const size = Number(text);
  if (!/^\d+$/.test(text) || !MAGLEV_TABLE_SIZES.includes(size)) {
    throw new UsageError(`--size ${JSON.stringify(text)}: must be one of the primes ${MAGLEV_TABLE_SIZES.join(', ')}`);
  }
  return size;
}

function parseSeed(text: string | undefined): MaglevSeed {
  try {
    return parseMaglevSeed(text ?? DEFAULT_MAGLEV_SEED);
  } catch (err) {
    throw new UsageError(`--seed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function parseBackends(specs: readonly string[]): BackendSpec[] {
  if (specs.length === 0) throw new UsageError('--backend: at least one backend is required');
  const backends = specs.map(parseBackendSpec);
  const firstByKey = new Map<string, number>();
  backends.forEach((backend, index) => {
    const first = firstByKey.get(backend.key);
    if (first !== undefined) {
      throw new UsageError(
        `--backend ${JSON.stringify(specs[index])}: duplicate of backend ${first} (${JSON.stringify(specs[first])})`,
      );
    }
    firstByKey.set(backend.key, index);
  });
  if (backends.every((backend) => backend.weight === 0)) {
    throw new UsageError('--backend: every backend has weight 0, so no backend could be selected');
  }
  return backends;
}

function parseCommandLine(args: string[]) {
  return parseCliArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      size: { type: 'string' },
      seed: { type: 'string' },
      backend: { type: 'string', multiple: true },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
}

function summary(table: MaglevTable, backends: readonly BackendSpec[], size: number, seed: MaglevSeed): string {
  const counts = new Array<number>(backends.length).fill(0);
  for (const index of table) counts[index] = (counts[index] ?? 0) + 1;
  const weightSum = backends.reduce((sum, backend) => sum + backend.weight, 0);
  const percent = (part: number, whole: number): string => `${((100 * part) / whole).toFixed(2)}%`;
  const labelWidth = Math.max(7, ...backends.map((backend) => backend.label.length));
  const lines = [
    `Maglev table: size ${size}, seed ${seed.base64}, ${backends.length} backend(s), weight sum ${weightSum}`,
    `${'index'.padStart(5)}  ${'backend'.padEnd(labelWidth)}  ${'weight'.padStart(6)}  ${'entries'.padStart(7)}  ${'share'.padStart(7)}  ${'weight share'.padStart(12)}`,
  ];
  backends.forEach((backend, index) => {
    const entries = counts[index] ?? 0;
    lines.push(
      `${String(index).padStart(5)}  ${backend.label.padEnd(labelWidth)}  ${String(backend.weight).padStart(6)}  ` +
        `${String(entries).padStart(7)}  ${percent(entries, size).padStart(7)}  ${percent(backend.weight, weightSum).padStart(12)}`,
    );
  });
  return lines.join('\n');
}

export const maglevCommand: CliCommand = {
  name: 'maglev',
  summary: "print the Maglev table Cilium would compute for the given backends",
  usage: USAGE,
  async run(args: string[], io: CliIO): Promise<number> {
    const options = parseCommandLine(args);
    if (options.help === true) {
      io.out(`${USAGE}\n`);
      return EXIT_OK;
    }
    const size = parseSize(options.size);
    const seed = parseSeed(options.seed);
    const backends = parseBackends(options.backend ?? []);
    const table = buildMaglevTable(backends, size, seed);
    io.out(options.json === true ? `${JSON.stringify(Array.from(table))}\n` : `${summary(table, backends, size, seed)}\n`);
    return EXIT_OK;
  },
};
