/**
 * Numeric security identities: one per distinct (namespace, pod labels), shared by every pod with that
 * set, and one per distinct ipBlock prefix. Numbers are handed out in increasing order and a released
 * one is not reused until the range wraps: a number seen in a monitor event or a stale map entry keeps
 * naming the labels it named.
 *
 * Numbers survive an agent restart by hints: what the pinned ipcache held (an address's label
 * identity, a prefix's CIDR identity). A restarted agent gives each label set and prefix the number it
 * had, so the maps it finds — judged by the datapath while it rewrites them — keep meaning what they
 * meant: no allowed connection is dropped, and no two label sets swap numbers (which would allow what
 * is denied). Numbers handed out afresh start above the highest hint, so no hinted number goes to
 * another set before every hint has been claimed.
 */
import type { CidrPrefix } from './cidr.js';
import { FIRST_CIDR_IDENTITY, FIRST_LABEL_IDENTITY } from './types.js';

/** Increasing numbers in [first, end), skipping those in use once the range has wrapped. */
class NumberAllocator {
  private next: number;
  private readonly used = new Set<number>();

  constructor(
    private readonly first: number,
    private readonly end: number,
    private readonly what: string,
  ) {
    this.next = first;
  }

  inRange(id: number): boolean {
    return Number.isInteger(id) && id >= this.first && id < this.end;
  }

  /** Number `id` itself, when it is in the range and free. */
  claim(id: number): boolean {
    if (!this.inRange(id) || this.used.has(id)) return false;
    this.used.add(id);
    return true;
  }

  /** Fresh numbers from above the highest of `numbers` in the range on: those may only be claimed. */
  startAbove(numbers: Iterable<number>): void {
    let highest = this.next - 1;
    for (const id of numbers) if (this.inRange(id) && id > highest) highest = id;
    if (highest < this.next) return;
    this.next = highest;
    this.advance();
  }

  take(): number {
    if (this.used.size >= this.end - this.first) throw new Error(`${this.what} identities: all ${this.end - this.first} numbers are in use`);
    while (this.used.has(this.next)) this.advance();
    const id = this.next;
    this.used.add(id);
    this.advance();
    return id;
  }

  give(id: number): void {
    this.used.delete(id);
  }

  private advance(): void {
    this.next = this.next + 1 >= this.end ? this.first : this.next + 1;
  }
}

export interface LabelIdentity {
  id: number;
  namespace: string;
  labels: Readonly<Record<string, string>>;
  /** Keys (`namespace/name`) of the pods that have it. */
  pods: Set<string>;
}

function labelKey(namespace: string, labels: Readonly<Record<string, string>>): string {
  const entries = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([namespace, entries]);
}

/** A pod about to be acquired, with the numbers its addresses had (one per address that had one). */
export interface LabelHint {
  namespace: string;
  labels: Readonly<Record<string, string>>;
  hinted: readonly number[];
}

export class LabelIdentities {
  private readonly byKey = new Map<string, LabelIdentity>();
  private readonly byId = new Map<number, LabelIdentity>();
  private readonly numbers = new NumberAllocator(FIRST_LABEL_IDENTITY, FIRST_CIDR_IDENTITY, 'label');
  /** Label key → the number its first acquisition takes (prefer()). */
  private readonly preferred = new Map<string, number>();

  /**
   * Before acquiring `pods`: the number each label set takes when it is created. A set takes the
   * number most of its pods' addresses had; a number hinted for several sets goes to the set with
   * the most addresses hinting it (then the first by namespace and labels), the others take their next
   * best or a fresh number. Numbers outside the label range are ignored. The outcome depends on the
   * pods, not on their order. Replaces earlier preferences.
   */
  prefer(pods: readonly LabelHint[]): void {
    const votes = new Map<string, Map<number, number>>();
    for (const { namespace, labels, hinted } of pods) {
      const key = labelKey(namespace, labels);
      for (const id of hinted) {
        if (!this.numbers.inRange(id)) continue;
        const ofSet = votes.get(key) ?? new Map<number, number>();
        votes.set(key, ofSet.set(id, (ofSet.get(id) ?? 0) + 1));
      }
    }
    const claims = [...votes].flatMap(([key, ofSet]) => [...ofSet].map(([id, count]) => ({ key, id, count })));
    claims.sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0) || a.id - b.id);
    this.preferred.clear();
    const taken = new Set<number>();
    for (const { key, id } of claims) {
      if (this.preferred.has(key) || taken.has(id)) continue;
      this.preferred.set(key, id);
      taken.add(id);
    }
  }

  /** Numbers an earlier agent gave (those in the label range count): fresh numbers start above them. */
  avoid(numbers: Iterable<number>): void {
    this.numbers.startAbove(numbers);
  }

  /** The hints are settled: a set created from now on takes a fresh number. */
  endPreferences(): void {
    this.preferred.clear();
  }

  /** The identity of (namespace, labels), now also held by `pod`; `created` when it is new. */
  acquire(namespace: string, labels: Readonly<Record<string, string>>, pod: string): { identity: LabelIdentity; created: boolean } {
    const key = labelKey(namespace, labels);
    const known = this.byKey.get(key);
    if (known) {
      known.pods.add(pod);
      return { identity: known, created: false };
    }
    const preferred = this.preferred.get(key);
    this.preferred.delete(key);
    const id = preferred !== undefined && this.numbers.claim(preferred) ? preferred : this.numbers.take();
    const identity: LabelIdentity = { id, namespace, labels: { ...labels }, pods: new Set([pod]) };
    this.byKey.set(key, identity);
    this.byId.set(identity.id, identity);
    return { identity, created: true };
  }

  /** `pod` no longer holds identity `id`; true when that released it. */
  release(id: number, pod: string): boolean {
    const identity = this.byId.get(id);
    if (!identity) return false;
    identity.pods.delete(pod);
    if (identity.pods.size > 0) return false;
    this.byKey.delete(labelKey(identity.namespace, identity.labels));
    this.byId.delete(id);
    this.numbers.give(id);
    return true;
  }

  get(id: number): LabelIdentity | undefined {
    return this.byId.get(id);
  }

  all(): IterableIterator<LabelIdentity> {
    return this.byId.values();
  }
}

/** CIDR identities, counted by the policies that name their prefix. */
export class CidrIdentities {
  private readonly byCidr = new Map<string, { id: number; prefix: CidrPrefix; refs: number }>();
  private readonly numbers = new NumberAllocator(FIRST_CIDR_IDENTITY, 2 * FIRST_CIDR_IDENTITY, 'CIDR');
  /** Prefix (canonical text) → the number it had (prefer()). */
  private readonly hints = new Map<string, number>();

  /**
   * The number each prefix (canonical text) had: its identity takes it when created, if the number is
   * in the CIDR range and free (a number hinted for two prefixes goes to the first created). Until
   * endPreferences(); replaces earlier hints.
   */
  prefer(hints: ReadonlyMap<string, number>): void {
    this.hints.clear();
    for (const [cidr, id] of hints) if (this.numbers.inRange(id)) this.hints.set(cidr, id);
    this.numbers.startAbove(this.hints.values());
  }

  /** The hints are settled: a prefix named from now on takes a fresh number. */
  endPreferences(): void {
    this.hints.clear();
  }

  /** The identity of `prefix`, one more policy naming it; `created` when it is new. */
  acquire(prefix: CidrPrefix): { id: number; created: boolean } {
    const known = this.byCidr.get(prefix.text);
    if (known) {
      known.refs++;
      return { id: known.id, created: false };
    }
    const hint = this.hints.get(prefix.text);
    const id = hint !== undefined && this.numbers.claim(hint) ? hint : this.numbers.take();
    this.byCidr.set(prefix.text, { id, prefix, refs: 1 });
    return { id, created: true };
  }

  /** One policy fewer names `cidr`; the released identity's number when none does any more. */
  release(cidr: string): number | undefined {
    const known = this.byCidr.get(cidr);
    if (!known) return undefined;
    if (--known.refs > 0) return undefined;
    this.byCidr.delete(cidr);
    this.numbers.give(known.id);
    return known.id;
  }

  all(): IterableIterator<{ id: number; prefix: CidrPrefix }> {
    return this.byCidr.values();
  }
}
