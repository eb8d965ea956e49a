/**
 * Numeric security identities: one per distinct (namespace, pod labels), shared by every pod with that
 * set, and one per distinct ipBlock prefix. Numbers are handed out in increasing order and a released
 * one is not reused until the range wraps: a number seen in a monitor event or a stale map entry keeps
 * naming the labels it named.
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

export class LabelIdentities {
  private readonly byKey = new Map<string, LabelIdentity>();
  private readonly byId = new Map<number, LabelIdentity>();
  private readonly numbers = new NumberAllocator(FIRST_LABEL_IDENTITY, FIRST_CIDR_IDENTITY, 'label');

  /** The identity of (namespace, labels), now also held by `pod`; `created` when it is new. */
  acquire(namespace: string, labels: Readonly<Record<string, string>>, pod: string): { identity: LabelIdentity; created: boolean } {
    const key = labelKey(namespace, labels);
    const known = this.byKey.get(key);
    if (known) {
      known.pods.add(pod);
      return { identity: known, created: false };
    }
    const identity: LabelIdentity = { id: this.numbers.take(), namespace, labels: { ...labels }, pods: new Set([pod]) };
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

  /** The identity of `prefix`, one more policy naming it; `created` when it is new. */
  acquire(prefix: CidrPrefix): { id: number; created: boolean } {
    const known = this.byCidr.get(prefix.text);
    if (known) {
      known.refs++;
      return { id: known.id, created: false };
    }
    const id = this.numbers.take();
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
