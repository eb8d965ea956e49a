/**
 * `xlb policy get NAMESPACE/POD` and `xlb identity list`: what network policy enforces on this node
 * (GET /v1/policy/{namespace}/{pod}, GET /v1/identities). Kubernetes mode only: a standalone agent
 * answers that policy needs it.
 */
import type { DirectionView, EndpointPolicyView, IdentityView, PolicyRuleView } from '../api/policy.js';
import { API_SOCKET_USAGE, apiCall, apiSocketPath } from './api-client.js';
import { EXIT_OK, UsageError, parseCliArgs, type CliCommand, type CliIO } from './command.js';
import { formatTable } from './table.js';

const POLICY_USAGE = `xlb policy get NAMESPACE/POD [--json]

  get NAMESPACE/POD  a pod of this node: its security identity and labels, whether ingress and
                     egress are enforced, the NetworkPolicies selecting it, and every allow rule
                     (the peer identity's labels, protocol, ports)
  --json             the agent's answer as JSON
${API_SOCKET_USAGE}

Exit codes: 0 done, 1 the agent failed or is unreachable (or no such pod on this node), 2 bad arguments.`;

const IDENTITY_USAGE = `xlb identity list [--json]

  list     the security identities network policy uses: id, kind (reserved, labels, cidr),
           namespace, labels, and how many pods of the cluster have each
  --json   the agent's answer as JSON
${API_SOCKET_USAGE}

Exit codes: 0 done, 1 the agent failed or is unreachable, 2 bad arguments.`;

/** "app=web, tier=front"; "(none)" for an empty set. */
export function labelsText(labels: Record<string, string>): string {
  const entries = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.length === 0 ? '(none)' : entries.map(([k, v]) => (v === '' ? k : `${k}=${v}`)).join(', ');
}

function portsText(rule: PolicyRuleView): string {
  if (rule.port === undefined) return rule.protocol === 'any' ? 'any protocol, any port' : `${rule.protocol} any port`;
  const ports = rule.endPort !== undefined && rule.endPort !== rule.port ? `${rule.port}-${rule.endPort}` : String(rule.port);
  return `${rule.protocol === 'any' ? 'any protocol' : rule.protocol} ${ports}`;
}

function peerText(rule: PolicyRuleView): string {
  if (rule.identity === 0) return 'any peer';
  const what = rule.cidr !== undefined ? `cidr ${rule.cidr}` : labelsText(rule.labels);
  return `identity ${rule.identity} (${what})`;
}

function directionText(name: 'Ingress' | 'Egress', direction: DirectionView): string {
  if (!direction.enforced) return `${name}: not enforced (no policy selects the pod for ${name.toLowerCase()}): everything allowed\n`;
  const from = name === 'Ingress' ? 'from' : 'to';
  const lines = [`${name}: enforced by ${direction.policies.join(', ')}${direction.rules.length === 0 ? ': everything denied' : ''}`];
  for (const rule of direction.rules) lines.push(`  allow ${from} ${peerText(rule)}: ${portsText(rule)}`);
  return `${lines.join('\n')}\n`;
}

/** GET /v1/policy/{namespace}/{pod} as text. */
export function formatEndpointPolicy(view: EndpointPolicyView): string {
  const where = view.device === undefined ? 'device not found yet (its policy is written once it is)' : `device ${view.device}${view.ifindex === undefined ? '' : ` (ifindex ${view.ifindex})`}`;
  return (
    `Pod ${view.namespace}/${view.pod} ${view.ips.join(', ') || '(no address)'}, ${where}\n` +
    `Identity ${view.identity.id}: ${labelsText(view.identity.labels)}\n` +
    directionText('Ingress', view.ingress) +
    directionText('Egress', view.egress)
  );
}

/** GET /v1/identities as a table. */
export function formatIdentities(identities: IdentityView[]): string {
  return formatTable(
    ['ID', 'KIND', 'NAMESPACE', 'LABELS', 'PODS'],
    identities.map((i) => [i.id, i.kind, i.namespace ?? '-', i.kind === 'cidr' && i.cidr !== undefined ? `cidr ${i.cidr}` : labelsText(i.labels), i.pods]),
  );
}

function parse(args: string[]) {
  return parseCliArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, 'api-socket': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
}

/** NAMESPACE/POD → its parts; anything else is a usage error naming the argument. */
export function podArgument(text: string | undefined): { namespace: string; pod: string } {
  const match = /^([^/\s]+)\/([^/\s]+)$/.exec(text ?? '');
  if (text === undefined) throw new UsageError('NAMESPACE/POD is required');
  if (!match?.[1] || !match[2]) throw new UsageError(`${JSON.stringify(text)}: expected NAMESPACE/POD (e.g. default/web-0)`);
  return { namespace: match[1], pod: match[2] };
}

export const policyCommand: CliCommand = {
  name: 'policy',
  summary: 'show the network policy enforced on a pod of this node (Kubernetes mode)',
  usage: POLICY_USAGE,
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parse(args);
    const [sub, target, ...extra] = positionals;
    if (sub !== 'get') throw new UsageError(sub === undefined ? 'a subcommand is required: get' : `unknown subcommand ${JSON.stringify(sub)} (get)`);
    if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
    const { namespace, pod } = podArgument(target);
    const view = (await apiCall(apiSocketPath(values['api-socket']), 'GET', `/v1/policy/${encodeURIComponent(namespace)}/${encodeURIComponent(pod)}`)) as EndpointPolicyView;
    io.out(values.json === true ? `${JSON.stringify(view, null, 2)}\n` : formatEndpointPolicy(view));
    return EXIT_OK;
  },
};

export const identityCommand: CliCommand = {
  name: 'identity',
  summary: 'list the security identities of network policy (Kubernetes mode)',
  usage: IDENTITY_USAGE,
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parse(args);
    const [sub, ...extra] = positionals;
    if (sub !== 'list') throw new UsageError(sub === undefined ? 'a subcommand is required: list' : `unknown subcommand ${JSON.stringify(sub)} (list)`);
    if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
    const body = (await apiCall(apiSocketPath(values['api-socket']), 'GET', '/v1/identities')) as { identities: IdentityView[] };
    io.out(values.json === true ? `${JSON.stringify(body, null, 2)}\n` : formatIdentities(body.identities));
    return EXIT_OK;
  },
};
