/**
 * Reading a NetworkPolicy as the API server sends it (JSON), defensively: every field is checked where
 * it is read and a malformed one becomes a PolicyProblem naming its path in the object
 * ("spec.ingress[0].from[1].ipBlock.except[0]"). The engine applies a policy only when it has none.
 */
import { isObject, member } from '../k8s/objects.js';

export interface PolicyProblem {
  namespace: string;
  name: string;
  /** The field's path in the object, e.g. `spec.egress[0].ports[1].endPort`. */
  field: string;
  message: string;
}

export { member };

/** `path[index]` */
export function item(path: string, index: number): string {
  return `${path}[${index}]`;
}

function show(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  return JSON.stringify(value) ?? String(value);
}

/** Collects the problems of one policy object. Absent (undefined or null) is never a problem here. */
export class PolicyReader {
  readonly problems: PolicyProblem[] = [];

  constructor(
    readonly namespace: string,
    readonly name: string,
  ) {}

  problem(field: string, message: string): void {
    this.problems.push({ namespace: this.namespace, name: this.name, field, message });
  }

  object(value: unknown, field: string): Record<string, unknown> | undefined {
    if (value === undefined || value === null) return undefined;
    if (isObject(value)) return value;
    this.problem(field, `${show(value)} is not an object`);
    return undefined;
  }

  list(value: unknown, field: string): unknown[] {
    if (value === undefined || value === null) return [];
    if (Array.isArray(value)) return value;
    this.problem(field, `${show(value)} is not a list`);
    return [];
  }

  string(value: unknown, field: string): string | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value === 'string') return value;
    this.problem(field, `${show(value)} is not a string`);
    return undefined;
  }

  integer(value: unknown, field: string, min: number, max: number): number | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return value;
    this.problem(field, `${show(value)} is not an integer in ${min}..${max}`);
    return undefined;
  }

  oneOf<T extends string>(value: unknown, field: string, allowed: readonly T[]): T | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
    this.problem(field, `${show(value)} is not one of ${allowed.join(', ')}`);
    return undefined;
  }

  /** A string → string map (matchLabels); a malformed entry is a problem. */
  stringMap(value: unknown, field: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [key, v] of Object.entries(this.object(value, field) ?? {})) {
      const text = this.string(v, member(field, key));
      if (text !== undefined) out[key] = text;
    }
    return out;
  }
}
