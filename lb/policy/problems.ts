/**
 * Reading a NetworkPolicy as the API server sends it (JSON), defensively: every field is checked where
 * it is read and a malformed one becomes a PolicyProblem naming its path in the object
 * ("spec.ingress[0].from[1].ipBlock.except[0]"). The engine applies a policy only when it has none.
 */
import { member, ObjectReader } from '../k8s/objects.js';

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

/**
 * Reads the fields of one NetworkPolicy: the Kubernetes object reader (lb/k8s/objects.ts), its problems
 * kept as PolicyProblems. Absent (undefined or null) is never a problem here.
 */
export class PolicyReader extends ObjectReader {
  readonly policyProblems: PolicyProblem[] = [];

  constructor(
    readonly namespace: string,
    readonly name: string,
  ) {
    super({ kind: 'NetworkPolicy', namespace, name }, []);
  }

  override problem(field: string, message: string): void {
    this.policyProblems.push({ namespace: this.namespace, name: this.name, field, message });
  }
}
