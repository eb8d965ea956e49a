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
 */
export function populateMaglevTable(input: MaglevPopulationInput): MaglevTable {
  const { size, weights, ids } = input;
  const count = ids.length;
  if (count === 0) return allocateTable(0, input.idLimit).table;
  const { table, empty } = allocateTable(size, input.idLimit);

  // Int32Array: V8 keeps int32 loads in registers; u32 loads may need a float64 path.
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
