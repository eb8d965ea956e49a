/**
 * Kubernetes label selectors (metav1.LabelSelector): matchLabels and matchExpressions with In, NotIn,
 * Exists and DoesNotExist, all terms ANDed; the empty selector matches everything. Validated as the API
 * server validates them, so a selector that parses here means what Kubernetes says it means.
 */
import { item, member, type PolicyReader } from './problems.js';

const OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;
type Operator = (typeof OPERATORS)[number];

interface Requirement {
  key: string;
  operator: Operator;
  values: ReadonlySet<string>;
}

export interface LabelSelector {
  /** matchLabels as requirements `key In (value)`, then matchExpressions. */
  requirements: readonly Requirement[];
}

export const EVERYTHING: LabelSelector = { requirements: [] };

export function selectorMatches(selector: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const { key, operator, values } of selector.requirements) {
    const value = Object.hasOwn(labels, key) ? labels[key] : undefined;
    switch (operator) {
      case 'In':
        if (value === undefined || !values.has(value)) return false;
        break;
      case 'NotIn':
        if (value !== undefined && values.has(value)) return false;
        break;
      case 'Exists':
        if (value === undefined) return false;
        break;
      case 'DoesNotExist':
        if (value !== undefined) return false;
        break;
    }
  }
  return true;
}

/** A selector, or undefined with problems when any term is malformed (absent: undefined, no problem). */
export function parseSelector(value: unknown, field: string, reader: PolicyReader): LabelSelector | undefined {
  const object = reader.object(value, field);
  if (!object) return undefined;
  const before = reader.policyProblems.length;
  const requirements: Requirement[] = [];
  for (const [key, text] of reader.stringMap(object.matchLabels, member(field, 'matchLabels'))) {
    requirements.push({ key, operator: 'In', values: new Set([text]) });
  }
  const expressionsField = member(field, 'matchExpressions');
  reader.list(object.matchExpressions, expressionsField).forEach((raw, index) => {
    const at = item(expressionsField, index);
    const expression = reader.object(raw, at);
    if (!expression) return;
    const key = reader.string(expression.key, member(at, 'key'));
    if (key === undefined || key === '') reader.problem(member(at, 'key'), 'required: a label key');
    const operator = reader.oneOf(expression.operator, member(at, 'operator'), OPERATORS);
    if (operator === undefined && (expression.operator === undefined || expression.operator === null)) {
      reader.problem(member(at, 'operator'), `required: one of ${OPERATORS.join(', ')}`);
    }
    const valuesField = member(at, 'values');
    const values = reader.list(expression.values, valuesField).flatMap((v, i) => reader.string(v, item(valuesField, i)) ?? []);
    if ((operator === 'In' || operator === 'NotIn') && values.length === 0) {
      reader.problem(valuesField, `required for ${operator}: at least one value`);
    }
    if ((operator === 'Exists' || operator === 'DoesNotExist') && values.length > 0) {
      reader.problem(valuesField, `must be empty for ${operator}`);
    }
    if (key && operator) requirements.push({ key, operator, values: new Set(values) });
  });
  if (reader.policyProblems.length > before) return undefined;
  return { requirements };
}
