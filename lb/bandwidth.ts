/**
 * Egress bandwidth as the pod annotation kubernetes.io/egress-bandwidth writes it: a Kubernetes
 * resource quantity of bits per second ("10M" = 10,000,000 bit/s, "1G", "500k", "100Mi", "1.5M",
 * "1e6", plain "1000000"), turned into the bytes per second the EDT datapath paces by.
 *
 * The range is Kubernetes' own for this annotation (its bandwidth plugin refuses less than 1 kbit/s
 * and more than 1 Pbit/s): below it a single full-size packet would wait past any sensible horizon,
 * above it no device sends. Bytes per second are whole (the datapath's rate is an integer), rounded
 * down: a pod is never given more than it was allowed. Computed exactly (bigint), without floats.
 */

/** Kubernetes' limits of kubernetes.io/egress-bandwidth, in bits per second. */
export const MIN_BANDWIDTH_BITS = 1_000n;
export const MAX_BANDWIDTH_BITS = 1_000_000_000_000_000n;

/** Suffixes of resource.Quantity: binary (Ki … Ei) and decimal (n … E), as multiplier / divisor. */
const SUFFIXES: Record<string, [bigint, bigint]> = {
  Ki: [1n << 10n, 1n],
  Mi: [1n << 20n, 1n],
  Gi: [1n << 30n, 1n],
  Ti: [1n << 40n, 1n],
  Pi: [1n << 50n, 1n],
  Ei: [1n << 60n, 1n],
  n: [1n, 10n ** 9n],
  u: [1n, 10n ** 6n],
  m: [1n, 10n ** 3n],
  '': [1n, 1n],
  k: [10n ** 3n, 1n],
  M: [10n ** 6n, 1n],
  G: [10n ** 9n, 1n],
  T: [10n ** 12n, 1n],
  P: [10n ** 15n, 1n],
  E: [10n ** 18n, 1n],
};

const QUANTITY = /^\+?(\d+(?:\.\d*)?|\.\d+)(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$/;
const LIMITS = '1k (1 kbit/s) to 1P (1 Pbit/s)';

/** Bits per second → bytes per second, e.g. "10M" → 1250000. Throws an Error saying what is wrong. */
export function parseBandwidth(quantity: string): number {
  const text = quantity.trim();
  const match = QUANTITY.exec(text);
  if (!match && QUANTITY.test(text.replace(/^-/, ''))) throw new Error(`bandwidth ${JSON.stringify(quantity)} is negative: a rate is ${LIMITS}`);
  if (!match) {
    throw new Error(
      `bandwidth ${JSON.stringify(quantity)} is not a quantity of bits per second (Kubernetes units: 10M, 1G, 500k, 100Mi, 1.5M, 1e6, 1000000)`,
    );
  }
  const [, number = '', exponent, suffix = ''] = match;
  const [whole = '', fraction = ''] = number.split('.');
  const [multiplier, divisor] = SUFFIXES[suffix] ?? [1n, 1n];
  const power = exponent === undefined ? 0 : Number(exponent.slice(1));
  if (Math.abs(power) > 30) throw new Error(`bandwidth ${JSON.stringify(quantity)} is outside ${LIMITS}`);
  // bits = digits × multiplier × 10^power / (10^fraction digits × divisor), kept as a fraction.
  const numerator = BigInt(`${whole}${fraction}` || '0') * multiplier * 10n ** BigInt(Math.max(power, 0));
  const denominator = 10n ** BigInt(fraction.length) * divisor * 10n ** BigInt(Math.max(-power, 0));
  if (numerator === 0n) throw new Error(`bandwidth ${JSON.stringify(quantity)} is zero: no limit is written by leaving the bandwidth out`);
  if (numerator < MIN_BANDWIDTH_BITS * denominator) throw new Error(`bandwidth ${JSON.stringify(quantity)} is below ${LIMITS}`);
  if (numerator > MAX_BANDWIDTH_BITS * denominator) throw new Error(`bandwidth ${JSON.stringify(quantity)} is above ${LIMITS}`);
  return Number(numerator / (8n * denominator));
}

/** 1250000 → "10 Mbit/s": a rate in bytes per second as people read bandwidth. */
export function formatBandwidth(bytesPerSecond: number): string {
  const bits = bytesPerSecond * 8;
  for (const [unit, size] of [['Pbit/s', 1e15], ['Tbit/s', 1e12], ['Gbit/s', 1e9], ['Mbit/s', 1e6], ['kbit/s', 1e3]] as const) {
    if (bits >= size) return `${Number((bits / size).toPrecision(4))} ${unit}`;
  }
  return `${bits} bit/s`;
}
