/**
 * Named ports as policies resolve them: the ports the pods of each identity give a name (egress rules
 * name their peers' ports), and the ports any pod gives it (egress to every peer). Keys are
 * `protocol/name` (namedPortKey): a name resolves only to container ports of the rule's protocol.
 */
import { namedPortKey, type NamedPorts } from './contribution.js';
import { PROTOCOL_NUMBERS } from './network-policy.js';
import type { PodInfo } from './types.js';

type PortList = PodInfo['namedPorts'];

export class NamedPortIndex implements NamedPorts {
  /** Identity → key → its pods' ports of that name (computed when asked). */
  private readonly byIdentity = new Map<number, Map<string, number[]>>();
  /** Key → port → how many pods give it that name. */
  private readonly everywhere = new Map<string, Map<number, number>>();

  /** `portsOf(id)`: the named ports of each pod of identity `id`. */
  constructor(private readonly portsOf: (id: number) => Iterable<PortList>) {}

  /** A pod's ports joining (+1) or leaving (-1) the cluster; true when that changed `anywhere`. */
  count(ports: PortList, delta: 1 | -1): boolean {
    let changed = false;
    for (const { name, port, protocol } of ports) {
      const key = namedPortKey(PROTOCOL_NUMBERS[protocol], name);
      const counts = this.everywhere.get(key) ?? new Map<number, number>();
      const count = (counts.get(port) ?? 0) + delta;
      if (count > 0) counts.set(port, count);
      else counts.delete(port);
      if (count === 0 || (count === 1 && delta > 0)) changed = true;
      if (counts.size > 0) this.everywhere.set(key, counts);
      else this.everywhere.delete(key);
    }
    return changed;
  }

  of(id: number, key: string): readonly number[] {
    return this.ofIdentity(id).get(key) ?? [];
  }

  anywhere(key: string): Iterable<number> {
    return this.everywhere.get(key)?.keys() ?? [];
  }

  /** Whether identity `id`'s ports differ from what was last asked of it (and learns them anew). */
  changed(id: number): boolean {
    const before = this.byIdentity.get(id);
    this.byIdentity.delete(id);
    const now = this.ofIdentity(id);
    return !before || before.size !== now.size || [...now].some(([key, ports]) => before.get(key)?.join() !== ports.join());
  }

  forget(id: number): void {
    this.byIdentity.delete(id);
  }

  private ofIdentity(id: number): Map<string, number[]> {
    const known = this.byIdentity.get(id);
    if (known) return known;
    const sets = new Map<string, Set<number>>();
    for (const ports of this.portsOf(id)) {
      for (const { name, port, protocol } of ports) {
        const key = namedPortKey(PROTOCOL_NUMBERS[protocol], name);
        sets.set(key, (sets.get(key) ?? new Set()).add(port));
      }
    }
    const out = new Map([...sets].map(([key, ports]) => [key, [...ports]]));
    this.byIdentity.set(id, out);
    return out;
  }
}
