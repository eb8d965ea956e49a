/**
 * Maglev lookup tables, computed exactly as Cilium ≥ 1.17 does (pkg/maglev/maglev.go), so an xlb node
 * and a Cilium node with the same backends, weights, seed and size pick the same backend per flow.
 *
 * How the datapath uses a table: a packet's jhash(saddr, ports, proto, seed), scaled to 0..M−1 by
 * multiply-and-shift, picks an entry; the entry is a u16 slot of the service, and the slot holds the
 * backend's id and a copy of the backend (xlb_lb_slot). A u16 table
 * is 2·M bytes, so a service at the default M = 16381 costs 32 KiB (Cilium stores u32 backend ids:
 * 64 KiB). Tables here hold indexes into the caller's `backends` array; the caller maps them to ids.
 *
 * Cilium's steps, reproduced:
 * 1. Each backend's key (see backend-key.ts) → murmur3 x64_128 with the seed's first 4 bytes →
 *    offset = h1 mod M, skip = (h2 mod (M − 1)) + 1; its permutation is offset + j·skip mod M.
 * 2. Backends are sorted bytewise by key, so every node sees the same order whatever order its
 *    backends arrived in.
 * 3. Envoy-style weighted turns (envoyproxy/envoy#2982): for slot number n, the turn starts at backend
 *    n mod N and passes over backend i while (n + 1)·weight_i < trunc(counter_i); the backend that
 *    takes the turn adds the weight sum to its counter, which starts at weight_i / N (a float64, as in
 *    Go). Weights only steer turns when trunc(weightSum / N) > 1; otherwise turns are round-robin.
 *    The backend taking the turn claims the next free slot of its permutation.
 *
 * Where xlb differs on purpose: weight-0 backends are left out before step 2 (they keep their index,
 * which just never appears). Cilium's own routine would still give a weight-0 backend one turn;
 * removing them first yields Cilium's table for the remaining backends.
 * Cilium keeps an N·M u64 permutation array (M = 65521, N = 1000: 500 MiB); we keep each backend's
 * next position instead and advance it by skip (no multiplication, no modulo in the loop).
 */
import { type MaglevSeed } from './seed.js';
import { murmur3X64Hash128 } from './murmur3.js';

/** The primes Cilium accepts for --bpf-lb-maglev-table-size. */
export const MAGLEV_TABLE_SIZES: readonly number[] = Object.freeze([
  251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
]);

export const DEFAULT_MAGLEV_TABLE_SIZE = 16381;

/** Cilium's backend weights are u16. */
export const MAX_MAGLEV_WEIGHT = 65535;

export interface MaglevBackend {
  /** The backend's hash key (maglevBackendKey()); unique within the set. */
  readonly key: string;
  /** 0..65535; 0 keeps the backend out of the table. */
  readonly weight: number;
}

export type MaglevTable = Uint16Array | Uint32Array;

export function assertMaglevTableSize(size: number): void {
  if (!MAGLEV_TABLE_SIZES.includes(size)) {
    throw new Error(
      `maglev table size ${size} is not supported: it must be one of the primes ${MAGLEV_TABLE_SIZES.join(', ')}`,
    );
  }
}

/** A 64-bit value given as (hi, lo) u32 words, modulo m < 2^21: exact in doubles, no BigInt. */
function mod64(hi: number, lo: number, m: number): number {
  return (((hi % m) * (0x1_0000_0000 % m)) % m + (lo % m)) % m;
}

export interface OffsetAndSkip {
  readonly offset: number;
  readonly skip: number;
}

export function maglevOffsetAndSkip(key: Uint8Array, size: number, seed: MaglevSeed): OffsetAndSkip {
  const hash = murmur3X64Hash128(key, seed.murmur);
  return {
    offset: mod64(hash.h1Hi, hash.h1Lo, size),
    skip: mod64(hash.h2Hi, hash.h2Lo, size - 1) + 1,
  };
}

/** What the population step needs, per backend in Cilium's (sorted) order. */
export interface MaglevPopulationInput {
  readonly size: number;
  readonly offsets: Uint32Array;
  readonly skips: Uint32Array;
  readonly weights: Uint32Array;
  /** The value written into the table for each backend (the caller's index). */
  readonly ids: Uint32Array;
  /** Exclusive bound on ids; picks the table's element type. */
  readonly idLimit: number;
}

/** The narrowest table that can hold every id and an empty-slot sentinel. */
function allocateTable(size: number, idLimit: number): { table: MaglevTable; empty: number } {
  return idLimit <= 0xffff
    ? { table: new Uint16Array(size).fill(0xffff), empty: 0xffff }
    : { table: new Uint32Array(size).fill(0xffffffff), empty: 0xffffffff };
}

/**
 * Fills a table from precomputed offsets and skips — the part the benchmark compares with its C peer.
 * Typed-array reads use `?? 0`: the indexes are in range by construction, and the fallback keeps the
 * strict compiler (noUncheckedIndexedAccess) satisfied without assertions.
 *
 * Exact shortcuts over the plain loop (populateMaglevTableByProbing), all giving the same table:
 * - Equal weights take round-robin turns. With every weight w, backend i's counter before its
 *   (k+1)-th turn is kNw + w/N, and the turn n = kN + i passes over it only if (n + 1)·w <
 *   trunc(kNw + w/N), which never holds; so the weighted walk is skipped (Cilium's default weight is
 *   100 for every backend, so this is the common case), and the round-robin loop keeps each
 *   backend's position, step and id side by side in one array.
 * - The probe tail. With E empty entries left, a probe finds one with chance about E/M, so most
 *   probes happen at the very end: at M = 16381, N = 10 the last 1.5% of entries take ~45% of all
 *   probes. Once E ≤ `tailEmpties` (maglevTailEmpties() by default; 0 probes to the end), a backend
 *   that gets a turn instead lists the empty entries in the order its permutation reaches them — M
 *   is prime, so entry s is at distance d = (s − next_i)·skip_i⁻¹ mod M from the backend's next
 *   position — and every turn after that pops the list's first entry that is still empty. That is
 *   the slot the probe would have found: every entry the backend's permutation passed was filled,
 *   and filled entries stay filled.
 * What the tail buys is less than the probe count suggests, measured in V8 on this machine: the
 * tail's probes are cheap (~1 ns: the loop almost always goes on, so its branch is predicted and the
 * loads overlap), while the cost of a table is mostly the middle turns, whose probe loop exits at a
 * random point (a mispredicted branch per turn), and V8's per-access checks. A list entry costs
 * ~10 ns (a modular product, a counting sort) and finding the empty entries one pass of indexOf
 * over the table, so the tail pays where M is large (−15% at M = 65521, N = 100) and little at
 * M = 16381, N = 10 (−3%). With the round-robin loop: −13% and −17% against the probing loop, over
 * distinct backend sets (bench/maglev.ts, "distinct backend sets").
 */
export function populateMaglevTable(
  input: MaglevPopulationInput,
  tailEmpties: number = maglevTailEmpties(input.size, input.ids.length),
): MaglevTable {
  const { size, ids } = input;
  const count = ids.length;
  if (count === 0) return allocateTable(0, input.idLimit).table;
  const { table, empty } = allocateTable(size, input.idLimit);
  // Int32Array: V8 keeps int32 loads in registers; u32 loads may need a float64 path.
  const next = new Int32Array(input.offsets);
  const skips = new Int32Array(input.skips);
  const turns = startTurns(input.weights);
  const tail = Math.min(Math.max(0, Math.floor(tailEmpties)), size, maxTailEmpties(size));
  const switchAt = size - tail;
  probeTurns(table, empty, turns, next, skips, ids, size, switchAt);
  if (switchAt < size) tailTurns(table, empty, turns, next, skips, ids, size, switchAt);
  return table;
}

/**
 * The number of empty entries at which populateMaglevTable stops probing, tuned with interleaved runs
 * over distinct backend sets on this 2-core machine. The probes the tail saves grow with M (about
 * M·ln E of them are left when E entries are empty), its lists cost N·E plus one scan of the table
 * (~1 ns an entry in V8), so the switch sits near E = M / (24·N), at least 16 entries. Below 8
 * backends it does not pay: each backend's probes never exceed M, so few backends probe little
 * (measured: N = 3 at M = 16381 is slower with any tail).
 */
export function maglevTailEmpties(size: number, count: number): number {
  if (count < TAIL_MIN_BACKENDS) return 0;
  return Math.max(TAIL_MIN_EMPTIES, Math.floor(size / (TAIL_SIZE_PER_BACKEND_EMPTY * count)));
}

const TAIL_MIN_BACKENDS = 8;
const TAIL_MIN_EMPTIES = 16;
const TAIL_SIZE_PER_BACKEND_EMPTY = 24;

/** A list entry packs (distance << bits) | index into an int32: distance < M ≤ 2^sizeBits. */
function maxTailEmpties(size: number): number {
  return 2 ** (31 - bitsFor(size));
}

/** The smallest b with 2^b ≥ n. */
function bitsFor(n: number): number {
  let bits = 0;
  while (2 ** bits < n) bits++;
  return bits;
}

/** Cilium's weighted turns (file comment, step 3), as state carried from one slot number to the next. */
interface Turns {
  readonly count: number;
  readonly weights: Uint32Array;
  readonly counters: Float64Array;
  readonly weightSum: number;
  /** False when turns are round-robin: weights too small to steer, or all equal. */
  readonly weighted: boolean;
  first: number;
}

function startTurns(weights: Uint32Array): Turns {
  const count = weights.length;
  let weightSum = 0;
  let equal = true;
  for (let i = 0; i < count; i++) {
    weightSum += weights[i] ?? 0;
    if (weights[i] !== weights[0]) equal = false;
  }
  const counters = new Float64Array(count);
  for (let i = 0; i < count; i++) counters[i] = (weights[i] ?? 0) / count;
  const weighted = !equal && Math.floor(weightSum / count) > 1;
  return { count, weights, counters, weightSum, weighted, first: 0 };
}

/** The backend (index in Cilium's order) whose turn slot number n is. */
function takeTurn(turns: Turns, n: number): number {
  let i = turns.first;
  const { count } = turns;
  if (++turns.first === count) turns.first = 0;
  if (turns.weighted) {
    const { weights, counters } = turns;
    while ((n + 1) * (weights[i] ?? 0) < Math.trunc(counters[i] ?? 0)) {
      if (++i === count) i = 0;
    }
    counters[i] = (counters[i] ?? 0) + turns.weightSum;
  }
  return i;
}

/** Slot numbers 0..until−1: each turn probes the backend's permutation for its next empty entry. */
function probeTurns(
  table: MaglevTable,
  empty: number,
  turns: Turns,
  next: Int32Array,
  skips: Int32Array,
  ids: Uint32Array,
  size: number,
  until: number,
): void {
  if (turns.weighted) {
    // takeTurn() written out with the turn state in locals: V8 keeps them in registers.
    const { count, weights, counters, weightSum } = turns;
    let first = turns.first;
    for (let n = 0; n < until; n++) {
      let i = first;
      if (++first === count) first = 0;
      while ((n + 1) * (weights[i] ?? 0) < Math.trunc(counters[i] ?? 0)) {
        if (++i === count) i = 0;
      }
      counters[i] = (counters[i] ?? 0) + weightSum;
      const back = (skips[i] ?? 1) - size;
      let slot = next[i] ?? 0;
      while (table[slot] !== empty) {
        const wrapped = (slot + back) | 0;
        slot = (wrapped + (size & (wrapped >> 31))) | 0;
      }
      table[slot] = ids[i] ?? 0;
      const wrapped = (slot + back) | 0;
      next[i] = (wrapped + (size & (wrapped >> 31))) | 0;
    }
    turns.first = first;
    return;
  }
  // Round-robin: the turn is a local counter (no state object touched per turn), and each backend's
  // position, step back (skip − M) and id sit side by side in one array.
  const count = turns.count;
  const state = new Int32Array(3 * count);
  for (let i = 0; i < count; i++) {
    state[3 * i] = next[i] ?? 0;
    state[3 * i + 1] = (skips[i] ?? 1) - size;
    state[3 * i + 2] = ids[i] ?? 0;
  }
  const end = 3 * count;
  let at = 3 * turns.first;
  // advance() written out, and `| 0` so V8 drops its overflow checks: this loop is the hot one.
  for (let n = 0; n < until; n++) {
    const back = state[at + 1] ?? 0;
    let slot = state[at] ?? 0;
    while (table[slot] !== empty) {
      const wrapped = (slot + back) | 0;
      slot = (wrapped + (size & (wrapped >> 31))) | 0;
    }
    table[slot] = state[at + 2] ?? 0;
    const wrapped = (slot + back) | 0;
    state[at] = (wrapped + (size & (wrapped >> 31))) | 0;
    at += 3;
    if (at === end) at = 0;
  }
  for (let i = 0; i < count; i++) next[i] = state[3 * i] ?? 0;
  turns.first = at / 3;
}

/**
 * Slot numbers from..M−1, the E = M − from entries still empty (populateMaglevTable's comment): a
 * backend's first turn here lists the empty entries by distance along its permutation; its turns pop
 * that list. Lists are built lazily, so a backend that gets no turn (low weight) costs nothing.
 */
function tailTurns(
  table: MaglevTable,
  empty: number,
  turns: Turns,
  next: Int32Array,
  skips: Int32Array,
  ids: Uint32Array,
  size: number,
  from: number,
): void {
  const count = ids.length;
  const emptyCount = size - from;
  // indexOf runs natively, faster than a scan written here (~0.6 vs ~1 ns an entry).
  const empties = new Int32Array(emptyCount);
  let found = 0;
  for (let slot = table.indexOf(empty); slot >= 0 && found < emptyCount; slot = table.indexOf(empty, slot + 1)) {
    empties[found++] = slot;
  }
  const lists: TailLists = {
    empties,
    indexBits: bitsFor(emptyCount),
    bucketShift: Math.max(0, bitsFor(size) - bitsFor(emptyCount)),
    counts: new Int32Array(2 ** Math.min(bitsFor(size), bitsFor(emptyCount)) + 1),
    unsorted: new Int32Array(emptyCount),
    entries: new Int32Array(count * emptyCount),
  };
  const indexMask = 2 ** lists.indexBits - 1;
  // Where each backend reads its list next; −1 until its first turn here.
  const read = new Int32Array(count).fill(-1);
  for (let n = from; n < size; n++) {
    const i = takeTurn(turns, n);
    let at = read[i] ?? 0;
    if (at < 0) at = listEmpties(table, empty, lists, i * emptyCount, next[i] ?? 0, modularInverse(skips[i] ?? 1, size), size);
    let slot = 0;
    do slot = empties[(lists.entries[at++] ?? 0) & indexMask] ?? 0;
    while (table[slot] !== empty);
    read[i] = at;
    table[slot] = ids[i] ?? 0;
  }
}

interface TailLists {
  /** The entries empty when the tail began, ascending. */
  readonly empties: Int32Array;
  /** A list entry is (distance << indexBits) | index into empties. */
  readonly indexBits: number;
  /** distance >> bucketShift picks a counting-sort bucket (about one entry per bucket). */
  readonly bucketShift: number;
  readonly counts: Int32Array;
  readonly unsorted: Int32Array;
  /** Backend i's list starts at i·E. */
  readonly entries: Int32Array;
}

/**
 * Writes at `start` the entries empty now, sorted by their distance from `position` along the
 * permutation of step skip = inverse⁻¹: a counting sort on the distance's high bits, then an insertion
 * sort that only moves entries within a bucket. Returns `start`, where the list is read from.
 * Distances are exact: (s − position) mod M < 2^17 and inverse < 2^17, so the product < 2^34 is an
 * exact double and floor(product / M) an exact quotient.
 */
function listEmpties(
  table: MaglevTable,
  empty: number,
  lists: TailLists,
  start: number,
  position: number,
  inverse: number,
  size: number,
): number {
  const { empties, indexBits, bucketShift, counts, unsorted, entries } = lists;
  const total = empties.length;
  counts.fill(0);
  let length = 0;
  for (let x = 0; x < total; x++) {
    const slot = empties[x] ?? 0;
    if (table[slot] !== empty) continue;
    // (slot − position) mod M without a branch: a branch on a random sign mispredicts half the time.
    const wrapped = (slot - position) | 0;
    const product = ((wrapped + (size & (wrapped >> 31))) | 0) * inverse;
    const distance = (product - Math.floor(product / size) * size) | 0;
    unsorted[length++] = (distance << indexBits) | x;
    const bucket = (distance >> bucketShift) + 1;
    counts[bucket] = (counts[bucket] ?? 0) + 1;
  }
  const buckets = counts.length - 1;
  for (let b = 1; b <= buckets; b++) counts[b] = (counts[b] ?? 0) + (counts[b - 1] ?? 0);
  const keyShift = indexBits + bucketShift;
  for (let x = 0; x < length; x++) {
    const key = unsorted[x] ?? 0;
    const bucket = key >> keyShift;
    const at = counts[bucket] ?? 0;
    entries[start + at] = key;
    counts[bucket] = at + 1;
  }
  const end = start + length;
  for (let x = start + 1; x < end; x++) {
    const key = entries[x] ?? 0;
    let y = x - 1;
    for (; y >= start; y--) {
      const before = entries[y] ?? 0;
      if (before <= key) break;
      entries[y + 1] = before;
    }
    entries[y + 1] = key;
  }
  return start;
}

/** skip⁻¹ mod M for prime M and 0 < skip < M (extended Euclid; every value stays below M). */
function modularInverse(skip: number, size: number): number {
  let r0 = size;
  let r1 = skip;
  let t0 = 0;
  let t1 = 1;
  while (r1 !== 0) {
    const q = Math.floor(r0 / r1);
    [r0, r1] = [r1, r0 - q * r1];
    [t0, t1] = [t1, t0 - q * t1];
  }
  return t0 < 0 ? t0 + size : t0;
}

/**
 * The plain loop, kept as the reference populateMaglevTable must equal (tests, benchmark): every turn
 * probes the backend's permutation until it finds an empty entry.
 */
export function populateMaglevTableByProbing(input: MaglevPopulationInput): MaglevTable {
  const { size, weights, ids } = input;
  const count = ids.length;
  if (count === 0) return allocateTable(0, input.idLimit).table;
  const { table, empty } = allocateTable(size, input.idLimit);

  const next = new Int32Array(input.offsets);
  const skips = new Int32Array(input.skips);
  let weightSum = 0;
  for (let i = 0; i < count; i++) weightSum += weights[i] ?? 0;
  const counters = new Float64Array(count);
  for (let i = 0; i < count; i++) counters[i] = (weights[i] ?? 0) / count;
  const weighted = Math.floor(weightSum / count) > 1;

  let first = 0;
  for (let n = 0; n < size; n++) {
    let i = first;
    if (++first === count) first = 0;
    if (weighted) {
      while ((n + 1) * (weights[i] ?? 0) < Math.trunc(counters[i] ?? 0)) {
        if (++i === count) i = 0;
      }
      counters[i] = (counters[i] ?? 0) + weightSum;
    }
    const back = (skips[i] ?? 1) - size;
    let slot = next[i] ?? 0;
    while (table[slot] !== empty) slot = advance(slot, back, size);
    table[slot] = ids[i] ?? 0;
    next[i] = advance(slot, back, size);
  }
  return table;
}

/**
 * (slot + skip) mod size, given back = skip − size < 0, without a branch: probe positions are random,
 * so a branch here mispredicts half the time (C compilers emit cmov for it; V8 does not), and this
 * form keeps the chain from one probe's position to the next short.
 */
function advance(slot: number, back: number, size: number): number {
  const wrapped = slot + back;
  return wrapped + (size & (wrapped >> 31));
}

/** Compares as Go compares strings: by their UTF-8 bytes. */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/** Validates the backends and derives the population input (hashing happens here, once per backend). */
export function prepareMaglevPopulation(
  backends: readonly MaglevBackend[],
  size: number,
  seed: MaglevSeed,
): MaglevPopulationInput {
  assertMaglevTableSize(size);
  const seen = new Map<string, number>();
  const active: { index: number; key: Uint8Array; weight: number }[] = [];
  backends.forEach((backend, index) => {
    const { key, weight } = backend;
    const earlier = seen.get(key);
    if (earlier !== undefined) {
      throw new Error(`maglev backend ${index} has the same key as backend ${earlier}: ${key}`);
    }
    seen.set(key, index);
    if (!Number.isInteger(weight) || weight < 0 || weight > MAX_MAGLEV_WEIGHT) {
      throw new Error(`maglev backend ${index} (${key}) has weight ${weight}: must be an integer in 0..${MAX_MAGLEV_WEIGHT}`);
    }
    if (weight > 0) active.push({ index, key: Buffer.from(key, 'utf8'), weight });
  });
  active.sort((a, b) => compareBytes(a.key, b.key));

  const count = active.length;
  const input = {
    size,
    offsets: new Uint32Array(count),
    skips: new Uint32Array(count),
    weights: new Uint32Array(count),
    ids: new Uint32Array(count),
    idLimit: backends.length,
  };
  active.forEach((backend, i) => {
    const { offset, skip } = maglevOffsetAndSkip(backend.key, size, seed);
    input.offsets[i] = offset;
    input.skips[i] = skip;
    input.weights[i] = backend.weight;
    input.ids[i] = backend.index;
  });
  return input;
}

/**
 * The Maglev table for `backends`: entry i is an index into `backends` (caller's order). The table is
 * a Uint16Array when there are at most 65535 backends, else a Uint32Array.
 * With no backend of weight > 0 the table is empty (length 0): there is nothing to select, and the
 * caller removes the service's table, as Cilium deletes its Maglev entry when no backend is active.
 * Throws an Error naming the problem for an unsupported size, a duplicate key or a bad weight.
 */
export function buildMaglevTable(backends: readonly MaglevBackend[], size: number, seed: MaglevSeed): MaglevTable {
  return populateMaglevTable(prepareMaglevPopulation(backends, size, seed));
}
