/** The throughput bench's command line, one parser for `xlb bench throughput` and `node dist/bench/throughput.js`. */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SYSTEM_IDS, systemIds, type SystemId } from './catalog.js';
import type { Flows, Traffic } from './measure.js';
import { perfAvailable } from './profile.js';

export interface ThroughputOptions {
  systems: SystemId[];
  serviceCounts: number[];
  traffic: Traffic[];
  flows: Flows[];
  rounds: number;
  /** per round: frames sent at most, seconds at most */
  packets: number;
  seconds: number;
  warmUpPackets: number;
  iptables: 'legacy' | 'nft';
  /** where the report goes; undefined: bench/results */
  out: string | undefined;
  quick: boolean;
  /** one more round of xlb and the forwarder per case under perf record: where the time goes */
  perf: boolean;
}

/** 10 endpoints each from 198.18.0.1 on must stay below 198.19.144.0 (bench/throughput/topology.ts). */
export const MAX_SERVICES = 10_000;

export const DEFAULTS = { serviceCounts: [1, 1_000, 10_000], rounds: 5, packets: 500_000, seconds: 0.6, warmUpPackets: 20_000 } as const;
export const QUICK = { serviceCounts: [1, 1_000], rounds: 3, packets: 200_000, seconds: 0.4, warmUpPackets: 5_000 } as const;


export const THROUGHPUT_USAGE = `usage: xlb bench throughput [--quick] [--systems LIST] [--services LIST] [--traffic LIST]
                            [--flows LIST] [--rounds N] [--packets N] [--seconds S] [--iptables legacy|nft] [--perf]
                            [--out DIR]

Live forwarding rate of xlb beside kube-proxy's iptables and nftables rule layouts, plain routing and a
minimal XDP forwarder, all in network namespaces this run creates and removes (also on Ctrl-C): a
generator (BPF_PROG_TEST_RUN live frames) → a node → a sink that counts and drops. Needs root, and the
built eBPF objects (make -C bpf). Compare the figures as ratios within one run.

  --quick              about a minute: ${QUICK.serviceCounts.join(' and ')} services, ${QUICK.rounds} rounds of ≤ ${QUICK.packets.toLocaleString('en-US')} frames;
                       the report goes to a temp dir unless --out says where
  --systems LIST       of ${SYSTEM_IDS.join(', ')} (default all)
  --services LIST      service counts, 10 endpoints each (default ${DEFAULTS.serviceCounts.join(',')}; at most ${MAX_SERVICES})
  --traffic LIST       one (to one service), spread (over all of them) (default both)
  --flows LIST         established, new (default both)
  --rounds N           rounds per system and case; medians are reported (default ${DEFAULTS.rounds})
  --packets N          frames per round at most (default ${DEFAULTS.packets.toLocaleString('en-US')})
  --seconds S          seconds per round at most (default ${DEFAULTS.seconds})
  --warm-up N          untimed frames before each case (default ${DEFAULTS.warmUpPackets.toLocaleString('en-US')})
  --iptables BACKEND   legacy (default: restoring 10,000 services with nf_tables takes minutes here) or nft
  --perf               one more round of xlb and the minimal forwarder per case under perf record
                       (this process only): ns per packet of the functions and BPF programs it spends on
  --out DIR            where throughput.{json,md,svg} go (default bench/results/)`;

function list<T extends string>(option: string, text: string | undefined, allowed: readonly T[], fallback: readonly T[]): T[] {
  if (text === undefined) return [...fallback];
  const items = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const item of items) if (!(allowed as readonly string[]).includes(item)) throw new Error(`${option}: ${JSON.stringify(item)} is not one of ${allowed.join(', ')}`);
  if (items.length === 0) throw new Error(`${option}: name at least one`);
  return [...new Set(items)] as T[];
}

function positive(option: string, text: string | undefined, fallback: number, integer = true): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) throw new Error(`${option}: ${JSON.stringify(text)} is not a positive ${integer ? 'integer' : 'number'}`);
  return value;
}

/** Throws an Error naming the option for bad input. */
export function parseThroughputArgs(args: string[]): ThroughputOptions {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      quick: { type: 'boolean' },
      systems: { type: 'string' },
      services: { type: 'string' },
      traffic: { type: 'string' },
      flows: { type: 'string' },
      rounds: { type: 'string' },
      packets: { type: 'string' },
      seconds: { type: 'string' },
      'warm-up': { type: 'string' },
      iptables: { type: 'string' },
      out: { type: 'string' },
      perf: { type: 'boolean' },
    },
  });
  if (positionals.length > 0) throw new Error(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const quick = values.quick === true;
  const base = quick ? QUICK : DEFAULTS;
  const serviceCounts =
    values.services === undefined
      ? [...base.serviceCounts]
      : values.services.split(',').map((s) => {
          const n = positive('--services', s.trim(), 1);
          if (n > MAX_SERVICES) throw new Error(`--services: ${n} is more than ${MAX_SERVICES} (their 10 endpoints each must fit 198.18.0.0 – 198.19.143.255)`);
          return n;
        });
  const iptables = values.iptables ?? 'legacy';
  if (iptables !== 'legacy' && iptables !== 'nft') throw new Error(`--iptables: ${JSON.stringify(iptables)} is not legacy or nft`);
  if (values.perf === true && !perfAvailable()) throw new Error('--perf: perf is not installed (apt-get install linux-perf)');
  return {
    systems: values.systems === undefined ? [...SYSTEM_IDS] : systemIds(values.systems),
    serviceCounts: [...new Set(serviceCounts)].sort((a, b) => a - b),
    traffic: list<Traffic>('--traffic', values.traffic, ['one', 'spread'], ['one', 'spread']),
    flows: list<Flows>('--flows', values.flows, ['established', 'new'], ['established', 'new']),
    rounds: positive('--rounds', values.rounds, base.rounds),
    packets: positive('--packets', values.packets, base.packets),
    seconds: positive('--seconds', values.seconds, base.seconds, false),
    warmUpPackets: positive('--warm-up', values['warm-up'], base.warmUpPackets),
    iptables,
    out: values.out ?? (quick ? join(tmpdir(), 'xlb-bench-throughput-quick') : undefined),
    quick,
    perf: values.perf === true,
  };
}
