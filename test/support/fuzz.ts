/**
 * What the packet fuzzers (test/datapath/fuzz.test.ts for xdp_lb, fuzz-pod.test.ts for tc_pod and
 * tc_edt_egress) share: seeded choices, the mutations a well-formed frame goes through, and reading an
 * output that may not parse.
 */
import { checksumErrors, parseFrame, type ParsedFrame } from './packet.js';

const ETH_HLEN = 14;

/** Choices drawn from a seeded PRNG (prng.ts), so a failing seed repeats. */
export class Fuzz {
  constructor(private readonly next: () => number) {}
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new Error('pick from nothing');
    return item;
  }
  bytes(n: number): Buffer {
    return Buffer.from(Array.from({ length: n }, () => this.int(256)));
  }
}

/**
 * `frame` after up to three mutations — a byte of its headers, cut short (never below an Ethernet header:
 * no device delivers less), trailing bytes, an IP length field. `least` 1: at least one mutation, and
 * trailing bytes are at least one.
 */
export function mutate(f: Fuzz, frame: Buffer, least: 0 | 1 = 0): Buffer {
  let out = Buffer.from(frame);
  const mutations = least + f.int(4 - least);
  for (let i = 0; i < mutations; i++) {
    switch (f.int(4)) {
      case 0: { // a byte in the headers
        const at = f.int(Math.min(out.length, 96));
        out[at] = f.int(256);
        break;
      }
      case 1: // cut short
        out = out.subarray(0, ETH_HLEN + f.int(out.length - ETH_HLEN + 1));
        break;
      case 2: // trailing bytes
        out = Buffer.concat([out, f.bytes(least + f.int(64))]);
        break;
      default: { // a length field
        const v6 = out.length > 20 && out.readUInt16BE(12) === 0x86dd;
        if (out.length > 20) out.writeUInt16BE(f.int(0x10000), v6 ? ETH_HLEN + 4 : ETH_HLEN + 2);
        break;
      }
    }
  }
  return out;
}

/** The frame parsed, or undefined when it does not parse. */
export function safeParse(frame: Buffer): ParsedFrame | undefined {
  try {
    return parseFrame(frame);
  } catch {
    return undefined;
  }
}

/** Whether every checksum of the frame is right (false when it cannot even be read). */
export function validChecksums(frame: Buffer): boolean {
  try {
    return checksumErrors(frame).length === 0;
  } catch {
    return false;
  }
}
