import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import murmurhash3js from 'murmurhash3js';
import {
  DEFAULT_MAGLEV_SEED,
  DEFAULT_MAGLEV_TABLE_SIZE,
  MAGLEV_TABLE_SIZES,
  MaglevTableCache,
  MaglevTablePool,
  buildMaglevTable,
  canonicalIpAddress,
  hash128Hex,
  maglevBackendKey,
  maglevOffsetAndSkip,
  maglevTailEmpties,
  murmur3X64Hash128,
  parseMaglevSeed,
  populateMaglevTable,
  populateMaglevTableByProbing,
  prepareMaglevPopulation,
  type MaglevBackend,
  type MaglevPopulationInput,
  type MaglevTable,
  type MaglevTableRequest,
} from '../../lb/maglev/index.js';
import { mulberry32 } from '../support/prng.js';

const seed = parseMaglevSeed(DEFAULT_MAGLEV_SEED);

/** Cilium's maglev_test.go mkAddr(i): IPv4 from big-endian i, port i, TCP. */
function ciliumTestBackend(i: number, weight: number): MaglevBackend {
  const address = [24, 16, 8, 0].map((shift) => (i >>> shift) & 0xff).join('.');
  return { key: maglevBackendKey({ address, port: i % 65535, protocol: 'TCP' }), weight };
}

function podBackends(count: number, weight: (i: number) => number = () => 100): MaglevBackend[] {
  return Array.from({ length: count }, (_, i) => ({
    key: maglevBackendKey({ address: `198.18.${1 + (i >> 8)}.${i & 0xff}`, port: 8080, protocol: 'TCP' }),
    weight: weight(i),
  }));
}

function counts(table: MaglevTable, backendCount: number): number[] {
  const result = new Array<number>(backendCount).fill(0);
  for (const index of table) result[index] = (result[index] ?? 0) + 1;
  return result;
}

/** Cilium's runLengthEncodeIDs: "<id>(<count>),...". */
function runLengthEncode(table: MaglevTable): string {
  const runs: string[] = [];
  let current = table[0];
  let length = 0;
  for (const id of table) {
    if (id === current) {
      length++;
    } else {
      runs.push(`${current}(${length})`);
      current = id;
      length = 1;
    }
  }
  runs.push(`${current}(${length})`);
  return runs.join(',');
}

function keyAt(table: MaglevTable, backends: readonly MaglevBackend[], slot: number): string {
  return backends[table[slot] ?? -1]?.key ?? 'none';
}


function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

test('seed: default decodes as Cilium does (murmur seed = first 4 bytes big-endian)', () => {
  assert.equal(seed.murmur, 0x24b7ef82);
  assert.equal(seed.jhash0, 0x71dcda46);
  assert.equal(seed.jhash1, 0x92505688);
  assert.throws(() => parseMaglevSeed('AAAA'), /decodes to 3 bytes \(not 12 bytes\)/);
  assert.throws(() => parseMaglevSeed('JLfvgnHc2kaSUFa!'), /not valid standard base64/);
  assert.throws(() => parseMaglevSeed('JLfvgnHc2kaSUFaIAA'), /not valid standard base64/);
  assert.equal(parseMaglevSeed('////////////////').murmur, 0xffffffff);
});

test('murmur3 x64_128: reference vectors and agreement with murmurhash3js', () => {
  const bytes = (text: string): Uint8Array => Buffer.from(text, 'utf8');
  assert.equal(hash128Hex(murmur3X64Hash128(bytes(''), 0)), '0'.repeat(32));
  // mmh3.hash64("hello") = (-3758069500696749310, 6565844092913065241)
  assert.equal(hash128Hex(murmur3X64Hash128(bytes('hello'), 0)), 'cbd8a7b341bd9b025b1e906a48ae1d19');
  const random = mulberry32(7);
  for (let length = 0; length <= 100; length++) {
    const text = Array.from({ length }, () => String.fromCharCode(32 + Math.floor(random() * 95))).join('');
    for (const murmurSeed of [0, 1, seed.murmur, 0x80000000, 0xffffffff]) {
      assert.equal(
        hash128Hex(murmur3X64Hash128(bytes(text), murmurSeed)),
        murmurhash3js.x64.hash128(text, murmurSeed),
        `length ${length} seed ${murmurSeed}`,
      );
    }
  }
});

test('backend key: the string Cilium setHashString builds', () => {
  assert.equal(
    maglevBackendKey({ address: '198.18.1.2', port: 8080, protocol: 'TCP' }),
    '[198.18.1.2:8080/TCP,State:active]',
  );
  assert.equal(
    maglevBackendKey({ address: '2001:DB8:0:0::2', port: 53, protocol: 'UDP' }),
    '[[2001:db8::2]:53/UDP,State:active]',
  );
  assert.equal(maglevBackendKey({ address: '198.18.0.1', port: 9, protocol: 'SCTP' }), '[198.18.0.1:9/SCTP,State:active]');
  assert.throws(() => maglevBackendKey({ address: '198.18.0.1', port: 65536, protocol: 'TCP' }), /port 65536/);
  assert.throws(() => maglevBackendKey({ address: 'fe80::1%eth0', port: 1, protocol: 'TCP' }), /without zone/);
});

test('IPv6 addresses print as Go netip does', () => {
  const cases: [string, string][] = [
    ['2001:0DB8:0000:0000:0000:0000:0000:0002', '2001:db8::2'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // equal runs: the first is elided
    ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'], // the longest run wins
    ['2001:db8:1:2:3:4:0:5', '2001:db8:1:2:3:4:0:5'], // a single zero group stays
    ['::', '::'],
    ['1::', '1::'],
    ['::1', '::1'],
    ['::ffff:198.18.0.1', '::ffff:198.18.0.1'],
    ['::ffff:c612:1', '::ffff:198.18.0.1'],
    ['::1.2.3.4', '::102:304'],
    ['198.18.0.1', '198.18.0.1'],
  ];
  for (const [input, expected] of cases) assert.equal(canonicalIpAddress(input), expected, input);
  assert.throws(() => canonicalIpAddress('198.18.0.256'), /not an IPv4 or IPv6 address/);
});

test('Cilium TestReproducible: exact table at M=251', () => {
  const backends = [ciliumTestBackend(1, 2), ciliumTestBackend(3, 13), ciliumTestBackend(4, 111), ciliumTestBackend(5, 10)];
  const expected =
    '2(5),3(1),2(3),1(1),2(2),0(1),2(1),3(1),2(1),3(1),2(1),1(1),2(7),1(1),2(14),3(1),2(1),' +
    '1(2),2(12),3(1),2(3),1(1),2(4),3(1),2(8),3(1),2(2),1(1),2(16),1(2),2(3),3(1),2(11),1(2),2(4),3(1),2(3),' +
    '1(1),2(4),3(1),2(1),0(1),1(1),2(8),1(1),2(7),1(1),2(4),3(1),2(1),3(1),2(9),1(2),2(5),1(1),2(7),3(1),2(1),' +
    '3(1),1(1),2(8),1(1),2(4),0(1),2(1),1(1),2(5),3(1),2(3),1(1),2(4),3(1),2(3),1(1),2(12),0(1),3(1),2(3),3(1),' +
    '2(4),3(1),2(2),1(1),2(7)';
  assert.equal(runLengthEncode(buildMaglevTable(backends, 251, seed)), expected);
});

test('Cilium TestWeightedBackendWithRemoval: counts 16/98/832/75 at M=1021, removal moves < 1%', () => {
  const backends = [ciliumTestBackend(1, 2), ciliumTestBackend(2, 13), ciliumTestBackend(3, 111), ciliumTestBackend(4, 10)];
  const before = buildMaglevTable(backends, 1021, seed);
  assert.deepEqual(counts(before, 4), [16, 98, 832, 75]);

  const rest = backends.slice(1);
  const after = buildMaglevTable(rest, 1021, seed);
  let changedExisting = 0;
  for (let slot = 0; slot < 1021; slot++) {
    const was = keyAt(before, backends, slot);
    const now = keyAt(after, rest, slot);
    if (was !== backends[0]?.key && now !== was) changedExisting++;
    assert.notEqual(now, backends[0]?.key);
  }
  assert.ok((changedExisting / 1021) * 100 < 1, `${changedExisting} slots of remaining backends moved`);
});

test('Cilium TestBackendRemoval: 3 equal backends, removing one moves < 1% of the others', () => {
  const backends = [1, 2, 3].map((i) => ciliumTestBackend(i, 1));
  const before = buildMaglevTable(backends, 1021, seed);
  const after = buildMaglevTable(backends.slice(0, 2), 1021, seed);
  let changedExisting = 0;
  for (let slot = 0; slot < 1021; slot++) {
    const was = before[slot];
    if (was !== 2 && after[slot] !== was) changedExisting++;
    assert.ok(after[slot] === 0 || after[slot] === 1);
  }
  assert.ok((changedExisting / 1021) * 100 < 1, `${changedExisting} slots moved`);
});

test('every slot is filled with a backend of weight > 0', () => {
  for (const size of [251, 1021, DEFAULT_MAGLEV_TABLE_SIZE]) {
    for (const count of [1, 2, 7, 100]) {
      const backends = podBackends(count, (i) => (i % 5 === 4 ? 0 : 1 + ((i * 37) % 200)));
      if (backends.every((b) => b.weight === 0)) continue;
      const table = buildMaglevTable(backends, size, seed);
      assert.equal(table.length, size);
      for (const index of table) assert.ok((backends[index]?.weight ?? 0) > 0, `slot holds ${index}`);
    }
  }
});

test('shares follow weights when M >= 100·N', () => {
  const size = 16381;
  const equal = counts(buildMaglevTable(podBackends(100), size, seed), 100);
  for (const count of equal) assert.ok(Math.abs(count / size - 1 / 100) <= 0.01 / 100, `equal share ${count}`);

  // Cilium's turn rule seeds each counter at weight/N, which gives every backend an early turn,
  // so weighted shares are looser than equal ones: 1 point of the table, 5% of each backend's share.
  const backends = podBackends(100, (i) => 50 + i);
  const weightSum = backends.reduce((sum, b) => sum + b.weight, 0);
  const weighted = counts(buildMaglevTable(backends, size, seed), 100);
  backends.forEach((backend, i) => {
    const share = (weighted[i] ?? 0) / size;
    const weightShare = backend.weight / weightSum;
    assert.ok(Math.abs(share - weightShare) <= 0.01, `backend ${i}`);
    assert.ok(Math.abs(share - weightShare) <= 0.05 * weightShare, `backend ${i}: ${share} vs ${weightShare}`);
  });
});

test('the slot → backend mapping does not depend on the order backends are given in', () => {
  const backends = podBackends(50, (i) => 1 + (i % 4) * 100);
  const reference = buildMaglevTable(backends, 4093, seed);
  const random = mulberry32(42);
  for (let round = 0; round < 5; round++) {
    const order = shuffled(backends, random);
    const table = buildMaglevTable(order, 4093, seed);
    for (let slot = 0; slot < 4093; slot++) {
      assert.equal(keyAt(table, order, slot), keyAt(reference, backends, slot), `round ${round} slot ${slot}`);
    }
  }
});

test('removing 1 of N backends moves about 1/N of the table', () => {
  // Besides the removed backend's own slots, Maglev moves a small excess; measured for N = 100:
  // ~1.3% of the table at M = 16381 (M/N = 164), ~0.6% at M = 65521 (M/N = 655).
  const backends = podBackends(100);
  for (const { size, excessBound } of [
    { size: 16381, excessBound: 0.02 },
    { size: 65521, excessBound: 0.01 },
  ]) {
    const before = buildMaglevTable(backends, size, seed);
    for (const removed of [0, 37, 99]) {
      const rest = backends.filter((_, i) => i !== removed);
      const after = buildMaglevTable(rest, size, seed);
      let changed = 0;
      let owned = 0;
      for (let slot = 0; slot < size; slot++) {
        const was = keyAt(before, backends, slot);
        if (was === backends[removed]?.key) owned++;
        if (keyAt(after, rest, slot) !== was) changed++;
      }
      const where = `M=${size}, removing ${removed}: ${changed} changed, ${owned} owned`;
      assert.ok(changed >= owned, where);
      assert.ok(Math.abs(owned / size - 1 / 100) < 0.001, where);
      assert.ok((changed - owned) / size < excessBound, where);
    }
  }
});

test('weight-0 backends keep their index but never appear', () => {
  const backends = podBackends(6, (i) => (i === 2 || i === 5 ? 0 : 100));
  const table = buildMaglevTable(backends, 1021, seed);
  const tally = counts(table, 6);
  assert.equal(tally[2], 0);
  assert.equal(tally[5], 0);
  const without = backends.filter((b) => b.weight > 0);
  const reference = buildMaglevTable(without, 1021, seed);
  for (let slot = 0; slot < 1021; slot++) assert.equal(keyAt(table, backends, slot), keyAt(reference, without, slot));
});

test('no backend of weight > 0 gives an empty table', () => {
  assert.equal(buildMaglevTable([], 251, seed).length, 0);
  assert.equal(buildMaglevTable(podBackends(3, () => 0), 251, seed).length, 0);
});

test('u16 table up to 65535 backends, u32 beyond', () => {
  const many = (count: number): MaglevBackend[] =>
    Array.from({ length: count }, (_, i) => ({ key: `backend-${i}`, weight: i === count - 1 ? 1 : 0 }));
  const small = buildMaglevTable(many(65535), 251, seed);
  assert.ok(small instanceof Uint16Array);
  assert.ok(small.every((index) => index === 65534));
  const large = buildMaglevTable(many(65536), 251, seed);
  assert.ok(large instanceof Uint32Array);
  assert.ok(large.every((index) => index === 65535));
});

test('bad input is rejected with an error naming the problem', () => {
  const two = podBackends(2);
  for (const size of [1000, 7, 65537, 251.5, 0]) {
    assert.throws(() => buildMaglevTable(two, size, seed), /table size .* not supported/);
  }
  const first = two[0] ?? { key: 'x', weight: 1 };
  assert.throws(() => buildMaglevTable([first, { ...first, weight: 5 }], 251, seed), /backend 1 has the same key as backend 0/);
  for (const weight of [-1, 1.5, 65536, Number.NaN]) {
    assert.throws(() => buildMaglevTable([{ key: 'a', weight }], 251, seed), /weight .* must be an integer in 0\.\.65535/);
  }
  assert.deepEqual(MAGLEV_TABLE_SIZES, [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071]);
});

test('offset and skip stay in range', () => {
  for (const size of MAGLEV_TABLE_SIZES) {
    for (const backend of podBackends(20)) {
      const { offset, skip } = maglevOffsetAndSkip(Buffer.from(backend.key), size, seed);
      assert.ok(Number.isInteger(offset) && offset >= 0 && offset < size);
      assert.ok(Number.isInteger(skip) && skip >= 1 && skip < size);
    }
  }
});

/** Weights of one random case: equal, spread, skewed, tiny (round-robin by Cilium's rule), or with zeros. */
function randomWeights(count: number, random: () => number): number[] {
  const int = (below: number): number => Math.floor(random() * below);
  const kind = int(6);
  const equal = 1 + int(65535);
  return Array.from({ length: count }, (_, i) => {
    switch (kind) {
      case 0: return equal;
      case 1: return 1 + int(1000);
      case 2: return i === 0 ? 65535 : 1 + int(10);
      case 3: return 1 + int(2);
      case 4: return int(4) === 0 ? 0 : 1 + int(65535);
      default: return 1 + int(65535);
    }
  });
}

function sameTable(actual: MaglevTable, expected: MaglevTable, where: string): void {
  assert.equal(actual.constructor, expected.constructor, where);
  assert.equal(actual.length, expected.length, where);
  for (let slot = 0; slot < expected.length; slot++) {
    if (actual[slot] !== expected[slot]) assert.fail(`${where}: slot ${slot} holds ${actual[slot]}, probing gives ${expected[slot]}`);
  }
}

test('populate with the probe tail gives exactly the probing loop\'s table (random backends, weights, sizes, seeds)', () => {
  const random = mulberry32(20260521);
  const int = (below: number): number => Math.floor(random() * below);
  // Small sizes often, the large ones a few times each: each case builds the table several ways.
  const sizes = [251, 251, 509, 1021, 1021, 2039, 4093, 8191, 16381, 32749, 65521];
  let cases = 0;
  for (let round = 0; round < 120; round++) {
    const size = sizes[round % sizes.length] ?? 251;
    const count = [1, 2, 3, 8, 10, 10, 30, 100, 1 + int(300)][int(9)] ?? 10;
    const caseSeed = parseMaglevSeed(Buffer.from(Array.from({ length: 12 }, () => int(256))).toString('base64'));
    const weights = randomWeights(count, random);
    const backends = weights.map((weight, i) => ({
      key: maglevBackendKey({ address: `198.${18 + (i >> 16)}.${(i >> 8) & 0xff}.${i & 0xff}`, port: 1 + int(65535), protocol: 'TCP' }),
      weight,
    }));
    if (backends.every((b) => b.weight === 0)) continue;
    const input = prepareMaglevPopulation(backends, size, caseSeed);
    const expected = populateMaglevTableByProbing(input);
    const where = `round ${round}: M=${size} N=${count} weights ${weights.slice(0, 4).join(',')}…`;
    sameTable(populateMaglevTable(input), expected, `${where} default tail ${maglevTailEmpties(size, input.ids.length)}`);
    for (const tail of [0, 1, 1 + int(size), size]) sameTable(populateMaglevTable(input, tail), expected, `${where} tail ${tail}`);
    assert.ok(
      buildMaglevTable(backends, size, caseSeed).every((v, slot) => v === expected[slot]),
      `${where}: buildMaglevTable differs`,
    );
    cases++;
  }
  assert.ok(cases > 100);
});

test('populate with the probe tail: hand-made inputs, u32 tables and the largest size', () => {
  const random = mulberry32(7);
  const int = (below: number): number => Math.floor(random() * below);
  const handMade = (size: number, count: number, idLimit: number): MaglevPopulationInput => {
    const weights = randomWeights(count, random).map((w) => Math.max(1, w));
    return {
      size,
      offsets: Uint32Array.from({ length: count }, () => int(size)),
      skips: Uint32Array.from({ length: count }, () => 1 + int(size - 1)),
      weights: Uint32Array.from(weights),
      ids: Uint32Array.from({ length: count }, (_, i) => idLimit - 1 - i),
      idLimit,
    };
  };
  for (const [size, count, idLimit] of [
    [251, 5, 70000],
    [4093, 40, 100000],
    [131071, 50, 60],
    [131071, 12, 200000],
    [65521, 2, 10],
    [1021, 700, 700],
  ] as const) {
    for (let round = 0; round < 3; round++) {
      const input = handMade(size, count, idLimit);
      const expected = populateMaglevTableByProbing(input);
      assert.equal(expected instanceof Uint32Array, idLimit > 0xffff);
      for (const tail of [undefined, 0, 16, int(size), size]) {
        sameTable(populateMaglevTable(input, tail), expected, `M=${size} N=${count} idLimit ${idLimit} tail ${tail ?? 'default'}`);
      }
    }
  }
});

test('maglevTailEmpties: no tail for few backends, else about M / (24·N), at least 16', () => {
  assert.equal(maglevTailEmpties(16381, 1), 0);
  assert.equal(maglevTailEmpties(16381, 7), 0);
  assert.equal(maglevTailEmpties(16381, 10), 68);
  assert.equal(maglevTailEmpties(65521, 1000), 16);
});

test('cache returns the identical table for the same input and rebuilds on change', () => {
  const cache = new MaglevTableCache({ maxEntries: 2 });
  const backends = podBackends(10);
  const first = cache.table(backends, 1021, seed);
  const again = cache.table(podBackends(10), 1021, seed);
  assert.equal(again, first);
  assert.deepEqual([cache.builds, cache.hits], [1, 1]);

  const reweighted = backends.map((b, i) => (i === 0 ? { ...b, weight: 50 } : b));
  assert.notEqual(cache.table(reweighted, 1021, seed), first);
  assert.notEqual(cache.table(backends, 2039, seed), first);
  assert.equal(cache.builds, 3);
  assert.equal(cache.size, 2);
  // The first entry was the least recently used of three: evicted, so this builds again.
  assert.notEqual(cache.table(backends, 1021, seed), first);
  assert.equal(cache.builds, 4);
  cache.clear();
  assert.equal(cache.size, 0);
  assert.throws(() => new MaglevTableCache({ maxEntries: 0 }), /maxEntries/);
});

/** Distinct requests: sizes, backend counts and weights vary; one has no backend of weight > 0. */
function poolRequests(count: number): MaglevTableRequest[] {
  const random = mulberry32(64);
  const sizes = [251, 1021, 4093, DEFAULT_MAGLEV_TABLE_SIZE];
  return Array.from({ length: count }, (_, r) => {
    const n = 1 + Math.floor(random() * 20);
    const backends = podBackends(n, (i) => (r === 3 ? 0 : r % 2 === 0 ? 100 : 1 + ((i * 31 + r) % 300))).map((b) => ({
      ...b,
      key: b.key.replace('8080', String(1000 + r)),
    }));
    return { backends, size: sizes[r % sizes.length] ?? 251, seed };
  });
}

test('pool: warming 64 tables gives the tables the main thread builds, and table() then hits', async () => {
  const requests = poolRequests(64);
  const cache = new MaglevTableCache({ pool: new MaglevTablePool({ workers: 2 }) });
  try {
    await cache.warm(requests);
    assert.deepEqual([cache.warmed, cache.pinnedCount], [64, 64]);
    for (const [i, { backends, size }] of requests.entries()) {
      assert.deepEqual(cache.table(backends, size, seed), buildMaglevTable(backends, size, seed), `request ${i}`);
    }
    assert.deepEqual([cache.hits, cache.builds, cache.pinnedCount], [64, 0, 0]);
    assert.equal(cache.table(requests[3]?.backends ?? [], 4093, seed).length, 0);
    // Warming what is held builds nothing.
    await cache.warm(requests.slice(0, 8));
    assert.equal(cache.warmed, 64);
  } finally {
    await cache.close();
  }
});

test('pool: warmed tables are pinned until asked for, even beyond maxEntries', async () => {
  const requests = poolRequests(20);
  const cache = new MaglevTableCache({ maxEntries: 4 });
  try {
    await cache.warm([...requests, ...requests.slice(0, 5)]);
    assert.deepEqual([cache.warmed, cache.size], [20, 20]);
    // Building others meanwhile evicts only from the LRU.
    for (let n = 1; n <= 6; n++) cache.table(podBackends(n), 251, seed);
    for (const { backends, size } of requests) cache.table(backends, size, seed);
    assert.deepEqual([cache.hits, cache.builds, cache.pinnedCount, cache.size], [20, 6, 0, 4]);
  } finally {
    await cache.close();
  }
});

test('pool: a bad request rejects warm with the request named, and nothing is inserted', async () => {
  const requests = poolRequests(40);
  const first = requests[0]?.backends[0] ?? { key: 'x', weight: 1 };
  requests[37] = { backends: [first, { ...first, weight: 7 }], size: 1021, seed };
  const pool = new MaglevTablePool({ workers: 2, batchSize: 4 });
  const cache = new MaglevTableCache({ pool });
  try {
    await assert.rejects(cache.warm(requests), /maglev table request 37 \(M=1021, 2 backends\): maglev backend 1 has the same key as backend 0/);
    assert.equal(cache.size, 0);
    await assert.rejects(pool.build([{ backends: [first], size: 1000, seed }]), /maglev table request 0: maglev table size 1000 is not supported/);
    // The pool goes on serving.
    const [table] = await pool.build([{ backends: [first], size: 251, seed }]);
    assert.deepEqual(table, buildMaglevTable([first], 251, seed));
  } finally {
    await cache.close();
    assert.equal(pool.threads, 2, 'a pool given to the cache is not closed by it');
    await pool.close();
  }
});

test('pool: lazy start, close() terminates the threads and rejects what is pending', async () => {
  const pool = new MaglevTablePool({ workers: 2 });
  assert.equal(pool.workerCount, 2);
  assert.equal(pool.threads, 0);
  assert.deepEqual(await pool.build([]), []);
  assert.equal(pool.threads, 0);
  const pending = assert.rejects(pool.build(poolRequests(200)), /closed before the tables were built/);
  assert.equal(pool.threads, 2);
  await pool.close();
  await pending;
  assert.equal(pool.threads, 0);
  await assert.rejects(pool.build(poolRequests(1)), /MaglevTablePool is closed/);
  assert.throws(() => new MaglevTablePool({ workers: 0 }), /workers 0 must be a positive integer/);
});

test('pool: a process that warms and never closes the cache still exits', async () => {
  const index = fileURLToPath(new URL('../../lb/maglev/index.js', import.meta.url));
  const script = `
    const m = await import(${JSON.stringify(index)});
    const seed = m.parseMaglevSeed(m.DEFAULT_MAGLEV_SEED);
    const cache = new m.MaglevTableCache();
    await cache.warm([{ backends: [{ key: 'a', weight: 1 }, { key: 'b', weight: 2 }], size: 1021, seed }]);
    console.log('warmed', cache.warmed);`;
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 60_000 }, (err, out, errOut) => {
      if (err !== null) reject(new Error(`child failed: ${err.message}\n${errOut}`));
      else resolve(out);
    });
  });
  assert.equal(stdout.trim(), 'warmed 1');
});
