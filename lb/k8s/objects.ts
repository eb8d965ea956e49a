/**
 * Reading Kubernetes objects as the API server sends them (JSON, as `kubectl get -o json` shows them),
 * defensively: the input is whatever the watch delivered, so every field is checked where it is read,
 * and a malformed one becomes a Problem naming the object and the field ("spec.ports[1].port"), never
 * an exception. The caller skips what a problem makes unusable and carries on with the rest.
 */

/** The object a problem is about, as a Kubernetes event's involvedObject names it. */
export interface ObjectRef {
  kind: 'Service' | 'EndpointSlice' | 'Node' | 'NetworkPolicy';
  /** Absent for Nodes (cluster-scoped) and for objects too malformed to have one. */
  namespace?: string;
  name: string;
}

export interface Problem {
  object: ObjectRef;
  /** The field's path in the object, e.g. `spec.ports[1].port` or `metadata.annotations["xlb.io/lb-algorithm"]`. */
  field: string;
  message: string;
}

/** "Service default/web: spec.ports[1].port: 0 is not an integer in 1..65535" — a log line. */
export function problemText(problem: Problem): string {
  const { kind, namespace, name } = problem.object;
  const object = `${kind} ${namespace === undefined ? name : `${namespace}/${name}`}`;
  return problem.field === '' ? `${object}: ${problem.message}` : `${object}: ${problem.field}: ${problem.message}`;
}

/** Labels and annotations xlb reads (Kubernetes' own, Cilium's, and xlb's). */
export const LABEL_SERVICE_NAME = 'kubernetes.io/service-name';
export const LABEL_SERVICE_PROXY_NAME = 'service.kubernetes.io/service-proxy-name';
export const LABEL_HEADLESS = 'service.kubernetes.io/headless';
export const LABEL_ZONE = 'topology.kubernetes.io/zone';
export const LABEL_HOSTNAME = 'kubernetes.io/hostname';
export const ANNOTATION_SOURCE_RANGES = 'service.beta.kubernetes.io/load-balancer-source-ranges';
export const ANNOTATION_FORWARDING_MODE = 'xlb.io/forwarding-mode';
export const ANNOTATION_LB_ALGORITHM = 'xlb.io/lb-algorithm';
export const ANNOTATION_CILIUM_FORWARDING_MODE = 'service.cilium.io/forwarding-mode';
export const ANNOTATION_CILIUM_LB_ALGORITHM = 'service.cilium.io/lb-algorithm';

export type Json = Record<string, unknown>;

export function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function show(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  return JSON.stringify(value) ?? String(value);
}

/** Member access in a field path: `.name`, or `["xlb.io/mode"]` for keys that are not identifiers. */
export function member(path: string, key: string): string {
  const part = /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
  return path === '' ? part.replace(/^\./, '') : `${path}${part}`;
}

/**
 * Reads the fields of one object, recording a problem for each malformed one. Absent (undefined or
 * null, as the API server omits or nulls empty fields) is never a problem here: callers decide what
 * absence means.
 */
export class ObjectReader {
  constructor(
    readonly ref: ObjectRef,
    readonly problems: Problem[],
  ) {}

  problem(field: string, message: string): void {
    this.problems.push({ object: this.ref, field, message });
  }

  object(value: unknown, field: string): Json | undefined {
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

  boolean(value: unknown, field: string): boolean | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value === 'boolean') return value;
    this.problem(field, `${show(value)} is not true or false`);
    return undefined;
  }

  integer(value: unknown, field: string, min: number, max: number): number | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return value;
    this.problem(field, `${show(value)} is not an integer in ${min}..${max}`);
    return undefined;
  }

  /** One of `allowed`, or undefined with a problem (absent: undefined, no problem). */
  oneOf<T extends string>(value: unknown, field: string, allowed: readonly T[]): T | undefined {
    if (value === undefined || value === null) return undefined;
    if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
    this.problem(field, `${show(value)} is not one of ${allowed.join(', ')}`);
    return undefined;
  }

  /** A string → string map (labels, annotations); malformed entries are reported and left out. */
  stringMap(value: unknown, field: string): Map<string, string> {
    const out = new Map<string, string>();
    const map = this.object(value, field);
    if (!map) return out;
    for (const [key, v] of Object.entries(map)) {
      const text = this.string(v, member(field, key));
      if (text !== undefined) out.set(key, text);
    }
    return out;
  }
}

/** The namespace and name of an object's metadata, or a problem and undefined. */
export function objectMeta(
  kind: ObjectRef['kind'],
  value: unknown,
  problems: Problem[],
  namespaced: boolean,
): { reader: ObjectReader; metadata: Json; labels: Map<string, string>; annotations: Map<string, string> } | undefined {
  const top = isObject(value) ? value : undefined;
  const metadata = top && isObject(top.metadata) ? top.metadata : undefined;
  const name = typeof metadata?.name === 'string' && metadata.name !== '' ? metadata.name : undefined;
  const namespace = typeof metadata?.namespace === 'string' && metadata.namespace !== '' ? metadata.namespace : undefined;
  const ref: ObjectRef = { kind, name: name ?? '(unnamed)', ...(namespace !== undefined ? { namespace } : {}) };
  const reader = new ObjectReader(ref, problems);
  if (!top) {
    reader.problem('', `${show(value)} is not an object`);
    return undefined;
  }
  if (!metadata || name === undefined) {
    reader.problem('metadata.name', 'required');
    return undefined;
  }
  if (namespaced && namespace === undefined) {
    reader.problem('metadata.namespace', 'required');
    return undefined;
  }
  return {
    reader,
    metadata,
    labels: reader.stringMap(metadata.labels, 'metadata.labels'),
    annotations: reader.stringMap(metadata.annotations, 'metadata.annotations'),
  };
}
