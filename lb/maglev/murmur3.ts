/**
 * MurmurHash3 x64_128 (Austin Appleby's reference, which Cilium's pkg/murmur3 follows), computed on
 * 32-bit halves: exact 64-bit arithmetic without BigInt, so hashing N backends stays cheap.
 * Blocks are read little-endian, as Cilium's Go code reads them on x86-64 and arm64 hosts.
 */

/** The two 64-bit halves of the hash, h1 and h2, each as (hi, lo) unsigned 32-bit words. */
export interface Hash128 {
  readonly h1Hi: number;
  readonly h1Lo: number;
  readonly h2Hi: number;
  readonly h2Lo: number;
}

const C1_HI = 0x87c37b91;
const C1_LO = 0x114253d5;
const C2_HI = 0x4cf5ad43;
const C2_LO = 0x2745937f;

/** A mutable unsigned 64-bit register; every operation wraps modulo 2^64. */
class U64 {
  constructor(
    public hi = 0,
    public lo = 0,
  ) {}

  mul(bHi: number, bLo: number): this {
    const aHi = this.hi;
    const aLo = this.lo;
    // aLo * bLo needs its full 64 bits: split into 16-bit limbs so no product passes 2^32.
    const a0 = aLo & 0xffff;
    const a1 = aLo >>> 16;
    const b0 = bLo & 0xffff;
    const b1 = bLo >>> 16;
    const low = a0 * b0;
    const cross1 = a1 * b0;
    const cross2 = a0 * b1;
    const mid = (low >>> 16) + (cross1 & 0xffff) + (cross2 & 0xffff);
    const lo = (((mid & 0xffff) << 16) | (low & 0xffff)) >>> 0;
    const hiOfLow = a1 * b1 + (cross1 >>> 16) + (cross2 >>> 16) + (mid >>> 16);
    this.hi = (hiOfLow + Math.imul(aHi, bLo) + Math.imul(aLo, bHi)) >>> 0;
    this.lo = lo;
    return this;
  }

  add(bHi: number, bLo: number): this {
    const lo = this.lo + bLo;
    this.hi = (this.hi + bHi + (lo > 0xffffffff ? 1 : 0)) >>> 0;
    this.lo = lo >>> 0;
    return this;
  }

  xor(bHi: number, bLo: number): this {
    this.hi = (this.hi ^ bHi) >>> 0;
    this.lo = (this.lo ^ bLo) >>> 0;
    return this;
  }

  rotl(bits: number): this {
    let hi = this.hi;
    let lo = this.lo;
    if (bits >= 32) {
      [hi, lo] = [lo, hi];
      bits -= 32;
    }
    if (bits > 0) {
      this.hi = ((hi << bits) | (lo >>> (32 - bits))) >>> 0;
      this.lo = ((lo << bits) | (hi >>> (32 - bits))) >>> 0;
    } else {
      this.hi = hi;
      this.lo = lo;
    }
    return this;
  }

  /** x ^= x >> 33 */
  xorShift33(): this {
    this.lo = (this.lo ^ (this.hi >>> 1)) >>> 0;
    return this;
  }
}

function fmix64(k: U64): U64 {
  return k.xorShift33().mul(0xff51afd7, 0xed558ccd).xorShift33().mul(0xc4ceb9fe, 0x1a85ec53).xorShift33();
}

function mixK1(k1: U64): U64 {
  return k1.mul(C1_HI, C1_LO).rotl(31).mul(C2_HI, C2_LO);
}

function mixK2(k2: U64): U64 {
  return k2.mul(C2_HI, C2_LO).rotl(33).mul(C1_HI, C1_LO);
}

/** Little-endian 64-bit word of up to 8 tail bytes starting at `from`. */
function readTail(view: DataView, from: number, count: number, word: U64): U64 {
  word.hi = 0;
  word.lo = 0;
  for (let j = count - 1; j >= 0; j--) {
    const byte = view.getUint8(from + j);
    if (j >= 4) word.hi = (word.hi | (byte << (8 * (j - 4)))) >>> 0;
    else word.lo = (word.lo | (byte << (8 * j))) >>> 0;
  }
  return word;
}

export function murmur3X64Hash128(data: Uint8Array, seed: number): Hash128 {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const length = data.byteLength;
  const blocks = Math.floor(length / 16);
  const h1 = new U64(0, seed >>> 0);
  const h2 = new U64(0, seed >>> 0);
  const k1 = new U64();
  const k2 = new U64();

  for (let i = 0; i < blocks; i++) {
    const at = i * 16;
    k1.hi = view.getUint32(at + 4, true);
    k1.lo = view.getUint32(at, true);
    k2.hi = view.getUint32(at + 12, true);
    k2.lo = view.getUint32(at + 8, true);

    mixK1(k1);
    h1.xor(k1.hi, k1.lo).rotl(27).add(h2.hi, h2.lo).mul(0, 5).add(0, 0x52dce729);
    mixK2(k2);
    h2.xor(k2.hi, k2.lo).rotl(31).add(h1.hi, h1.lo).mul(0, 5).add(0, 0x38495ab5);
  }

  const tail = blocks * 16;
  const rest = length & 15;
  if (rest > 8) {
    mixK2(readTail(view, tail + 8, rest - 8, k2));
    h2.xor(k2.hi, k2.lo);
  }
  if (rest > 0) {
    mixK1(readTail(view, tail, Math.min(rest, 8), k1));
    h1.xor(k1.hi, k1.lo);
  }

  // Lengths fit in 32 bits here; the reference XORs the 64-bit length.
  h1.xor(0, length);
  h2.xor(0, length);
  h1.add(h2.hi, h2.lo);
  h2.add(h1.hi, h1.lo);
  fmix64(h1);
  fmix64(h2);
  h1.add(h2.hi, h2.lo);
  h2.add(h1.hi, h1.lo);
  return { h1Hi: h1.hi, h1Lo: h1.lo, h2Hi: h2.hi, h2Lo: h2.lo };
}

/** h1 then h2, each as 16 hex digits of its 64-bit value (the form murmurhash3js prints). */
export function hash128Hex(hash: Hash128): string {
  const hex = (word: number): string => word.toString(16).padStart(8, '0');
  return hex(hash.h1Hi) + hex(hash.h1Lo) + hex(hash.h2Hi) + hex(hash.h2Lo);
}
