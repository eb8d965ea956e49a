/**
 * The cluster-wide Maglev seed, as Cilium's --bpf-lb-maglev-hash-seed: 12 bytes in standard base64.
 * Bytes 0..3 (big-endian) seed murmur3 for the backend permutations; bytes 4..11 seed the datapath's
 * jhash of the packet tuple. Every node must use the same seed, or they pick different backends.
 */

/** Cilium's pkg/maglev DefaultHashSeed. */
export const DEFAULT_MAGLEV_SEED = 'JLfvgnHc2kaSUFaI';

export const MAGLEV_SEED_BYTES = 12;

export interface MaglevSeed {
  /** The seed as given (base64). */
  readonly base64: string;
  /** Bytes 0..3, big-endian: the murmur3 seed for backend offsets and skips. */
  readonly murmur: number;
  /** Bytes 4..7 and 8..11, big-endian: the datapath's jhash seeds. */
  readonly jhash0: number;
  readonly jhash1: number;
}

// Go's base64.StdEncoding: standard alphabet, '=' padding required.
const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Parses a base64 Maglev seed; throws an Error naming the problem unless it decodes to exactly 12 bytes. */
export function parseMaglevSeed(base64: string): MaglevSeed {
  if (!STD_BASE64.test(base64)) {
    throw new Error(`maglev seed ${JSON.stringify(base64)} is not valid standard base64`);
  }
  const bytes = Buffer.from(base64, 'base64');
  if (bytes.length !== MAGLEV_SEED_BYTES) {
    throw new Error(
      `maglev seed ${JSON.stringify(base64)} decodes to ${bytes.length} bytes (not ${MAGLEV_SEED_BYTES} bytes)`,
    );
  }
  return {
    base64,
    murmur: bytes.readUInt32BE(0),
    jhash0: bytes.readUInt32BE(4),
    jhash1: bytes.readUInt32BE(8),
  };
}
