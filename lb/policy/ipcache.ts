/**
 * The ipcache's desired contents and what changed since the last flush. An entry can have several
 * sources; the most specific kind of source wins: a pod's address over a node's over an ipBlock prefix
 * over World (0.0.0.0/0, ::/0, always present). Between two pods claiming one address (an old pod not
 * yet deleted, a new one given its IP) the one written last wins, and the other takes over again if
 * the winner goes.
 */
import { WORLD_CIDRS } from './cidr.js';
import { ReservedIdentity, type IpcacheEntry } from './types.js';

export type IpcacheSource = 'pod' | 'node' | 'prefix';
const PRECEDENCE: readonly IpcacheSource[] = ['pod', 'node', 'prefix'];

export class Ipcache {
  /** source → cidr → owner → identity; Map order is write order, so the last entry is the latest. */
  private readonly sources = new Map<IpcacheSource, Map<string, Map<string, number>>>(PRECEDENCE.map((s) => [s, new Map()]));
  private readonly flushed = new Map<string, number>();
  private readonly dirty = new Set<string>(WORLD_CIDRS);

  /** `owner` (a pod key, node name or the prefix itself) maps `cidr` to `identity`; undefined: no more. */
  set(source: IpcacheSource, owner: string, cidr: string, identity: number | undefined): void {
    const byCidr = this.sources.get(source);
    if (!byCidr) return;
    const owners = byCidr.get(cidr) ?? new Map<string, number>();
    if (identity === undefined) {
      if (!owners.delete(owner)) return;
      if (owners.size === 0) byCidr.delete(cidr);
    } else {
      if (owners.get(owner) === identity) return;
      owners.delete(owner);
      owners.set(owner, identity);
      byCidr.set(cidr, owners);
    }
    this.dirty.add(cidr);
  }

  /** Replaces `owner`'s cidrs of `source` (all with one identity) by `cidrs`. */
  replace(source: IpcacheSource, owner: string, previous: readonly string[], cidrs: readonly string[], identity: number | undefined): void {
    for (const cidr of previous) if (identity === undefined || !cidrs.includes(cidr)) this.set(source, owner, cidr, undefined);
    if (identity !== undefined) for (const cidr of cidrs) this.set(source, owner, cidr, identity);
  }

  desired(cidr: string): number | undefined {
    for (const source of PRECEDENCE) {
      const owners = this.sources.get(source)?.get(cidr);
      if (owners && owners.size > 0) return [...owners.values()].at(-1);
    }
    return (WORLD_CIDRS as readonly string[]).includes(cidr) ? ReservedIdentity.World : undefined;
  }

  /** Every entry, sorted by cidr. */
  entries(): IpcacheEntry[] {
    const cidrs = new Set<string>(WORLD_CIDRS);
    for (const byCidr of this.sources.values()) for (const cidr of byCidr.keys()) cidrs.add(cidr);
    return [...cidrs].sort().flatMap((cidr) => {
      const identity = this.desired(cidr);
      return identity === undefined ? [] : [{ cidr, identity }];
    });
  }

  /** What changed since the last call (the first: everything), sorted by cidr. */
  flush(): { set: IpcacheEntry[]; deleted: string[] } {
    const set: IpcacheEntry[] = [];
    const deleted: string[] = [];
    for (const cidr of [...this.dirty].sort()) {
      const identity = this.desired(cidr);
      const before = this.flushed.get(cidr);
      if (identity === undefined) {
        if (before !== undefined) deleted.push(cidr);
        this.flushed.delete(cidr);
      } else if (identity !== before) {
        set.push({ cidr, identity });
        this.flushed.set(cidr, identity);
      }
    }
    this.dirty.clear();
    return { set, deleted };
  }
}
