export { DEFAULT_MAGLEV_SEED, MAGLEV_SEED_BYTES, parseMaglevSeed, type MaglevSeed } from './seed.js';
export {
  L4_PROTOCOLS,
  canonicalIpAddress,
  maglevBackendKey,
  type L4Protocol,
  type MaglevBackendAddress,
} from './backend-key.js';
export {
  DEFAULT_MAGLEV_TABLE_SIZE,
  MAGLEV_TABLE_SIZES,
  MAX_MAGLEV_WEIGHT,
  assertMaglevTableSize,
  buildMaglevTable,
  maglevOffsetAndSkip,
  maglevTailEmpties,
  populateMaglevTable,
  populateMaglevTableByProbing,
  prepareMaglevPopulation,
  type MaglevBackend,
  type MaglevPopulationInput,
  type MaglevTable,
  type OffsetAndSkip,
} from './table.js';
export { MaglevTableCache, type MaglevTableCacheOptions } from './cache.js';
export { MaglevTablePool, type MaglevTablePoolOptions, type MaglevTableRequest } from './pool.js';
export { hash128Hex, murmur3X64Hash128, type Hash128 } from './murmur3.js';
