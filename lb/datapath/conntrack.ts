/**
 * The conntrack table from the agent's side (bpf/include/conntrack.h). Reading is plain map reads;
 * every change — purge, flush, expiry — runs in BPF (the xlb_ct_sweep program), because the table is
 * ours rather than a kernel hash map and its writers must take a way's lock, which userspace cannot.
 */
import { CT_VALUE_SIZE, CT_WAYS, CtBucket, CtPurgeKey, CtSweep, CtSweepFlag, CtWay, TupleKind, XlbTuple } from '../layouts.js';
import type { BpfMap } from './map.js';
import type { BpfObject } from './object.js';
import type { BpfProgram } from './program.js';

export const CONNTRACK_MAPS = { table: 'xlb_ct', purge: 'xlb_ct_purge' } as const;
export const CONNTRACK_SWEEP_PROGRAM = 'xlb_ct_sweep';

export interface CtSweepResult {
  /** Entries left. */
  live: number;
  /** Entries cleared, the expired ones included. */
  cleared: number;
  /** Entries cleared because the sweep asked for them (flush, purge). */
  purged: number;
  /** Ways skipped because a packet was writing them at that moment. */
  busy: number;
}

/** Flows to forget: of these backends in any service, and of these backends in these services. */
export interface CtPurgeRequest {
  backendIds: readonly number[];
  pairs: readonly { serviceId: number; backendId: number }[];
}

/** What the map writer needs of conntrack: forgetting the flows of removed backends. */
export interface FlowPurger {
  purge(request: CtPurgeRequest): number;
}

export class Conntrack implements FlowPurger {
  constructor(
    private readonly table: BpfMap,
    private readonly purgeRequests: BpfMap,
    private readonly sweepProgram: BpfProgram,
  ) {
    if (table.valueSize !== CtBucket.size) {
      throw new Error(`conntrack map ${table.name} has ${table.valueSize}-byte buckets; struct ct_bucket is ${CtBucket.size} bytes`);
    }
  }

  static fromObject(object: BpfObject): Conntrack {
    return new Conntrack(object.map(CONNTRACK_MAPS.table), object.map(CONNTRACK_MAPS.purge), object.program(CONNTRACK_SWEEP_PROGRAM));
  }

  /** Flows the table can hold. */
  get capacity(): number {
    return this.table.maxEntries * CT_WAYS;
  }

  /** Clear expired entries (and with `flags`, more) and count what is left. */
  sweep(flags = 0): CtSweepResult {
    const { retval, args } = this.sweepProgram.runSyscall(CtSweep.encode({ flags, live: 0, cleared: 0, purged: 0, busy: 0 }));
    if (retval !== 0) throw new Error(`conntrack sweep (program ${this.sweepProgram.name}) returned ${retval}`);
    const { live, cleared, purged, busy } = CtSweep.decode(args);
    return { live, cleared, purged, busy };
  }

  /** Forget every flow; returns how many there were. */
  flush(): number {
    return this.sweep(CtSweepFlag.Flush).purged;
  }

  /** Forget the flows `request` names; returns how many. Requests beyond the purge map's size go in rounds. */
  purge(request: CtPurgeRequest): number {
    const keys = [
      ...request.backendIds.map((backendId) => CtPurgeKey.encode({ serviceId: 0, backendId })),
      ...request.pairs.map((pair) => CtPurgeKey.encode(pair)),
    ];
    let purged = 0;
    for (let at = 0; at < keys.length; at += this.purgeRequests.maxEntries) {
      const round = keys.slice(at, at + this.purgeRequests.maxEntries);
      try {
        this.purgeRequests.updateBatch(round, round.map(() => Buffer.from([1])));
        purged += this.sweep(CtSweepFlag.Purge).purged;
      } finally {
        this.purgeRequests.deleteBatch(round);
      }
    }
    return purged;
  }
}

/**
 * The occupied ways of conntrack buckets, as [struct xlb_tuple, union ct_value] bytes (the key's kind
 * says which: TupleKind.Flow, a ct_entry; SnatReply, a nat_reverse); ways being written are skipped.
 */
export function* ctWays(buckets: Iterable<Buffer>): Generator<[Buffer, Buffer]> {
  const seqAt = CtBucket.offsetOf('seq');
  const tagAt = CtBucket.offsetOf('tag');
  const waysAt = CtBucket.offsetOf('way');
  const valueAt = CtWay.offsetOf('value');
  for (const bucket of buckets) {
    for (let i = 0; i < CT_WAYS; i++) {
      if (bucket.readUInt32LE(tagAt + 4 * i) === 0 || (bucket.readUInt32LE(seqAt + 4 * i) & 1) === 1) continue;
      const way = bucket.subarray(waysAt + i * CtWay.size, waysAt + (i + 1) * CtWay.size);
      yield [way.subarray(0, valueAt), way.subarray(valueAt, valueAt + CT_VALUE_SIZE)];
    }
  }
}

/** The flows among the ways (ctWays): SNAT reply entries left out. */
export function* ctFlows(buckets: Iterable<Buffer>): Generator<[Buffer, Buffer]> {
  const kindAt = XlbTuple.offsetOf('kind');
  for (const [key, value] of ctWays(buckets)) if (key[kindAt] === TupleKind.Flow) yield [key, value];
}
