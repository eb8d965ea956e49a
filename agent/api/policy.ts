/**
 * GET /v1/identities and GET /v1/policy/{namespace}/{pod}: what network policy enforces on this node,
 * as Kubernetes mode computed it (agent/k8s/policy.ts): the security identities with their labels and
 * pods, and for one pod of this node its identity, whether each direction is enforced, the
 * NetworkPolicies selecting it and every allow rule with its peer's labels, protocol and ports.
 * Standalone there is no policy: both answer 409, saying it needs Kubernetes mode.
 */
import type { FastifyPluginAsync } from 'fastify';
import { errorBody, errorResponses, errorSchema } from './openapi.js';

export type IdentityKind = 'reserved' | 'labels' | 'cidr';

export interface IdentityView {
  id: number;
  kind: IdentityKind;
  /** Label identities: the namespace of its pods. */
  namespace?: string;
  labels: Record<string, string>;
  /** CIDR identities (ipBlock peers): the prefix. */
  cidr?: string;
  /** Pods of the cluster with this identity. */
  pods: number;
}

export interface PolicyRuleView {
  /** The peer's identity; 0: any peer. */
  identity: number;
  /** The peer identity's labels (empty for any peer). */
  labels: Record<string, string>;
  cidr?: string;
  protocol: 'any' | 'TCP' | 'UDP' | 'SCTP';
  /** Destination ports port..endPort; both absent: any port. */
  port?: number;
  endPort?: number;
}

export interface DirectionView {
  /** Selected by a policy of this direction: what no rule allows is dropped. */
  enforced: boolean;
  /** The NetworkPolicies (namespace/name) that select the pod for this direction. */
  policies: string[];
  rules: PolicyRuleView[];
}

export interface EndpointPolicyView {
  namespace: string;
  pod: string;
  ips: string[];
  identity: { id: number; labels: Record<string, string> };
  /** The host-side device of the pod and its ifindex, once found (the policy is written there). */
  device?: string;
  ifindex?: number;
  ingress: DirectionView;
  egress: DirectionView;
}

/** What the routes ask of Kubernetes mode's policy. */
export interface PolicySource {
  identities(): IdentityView[];
  /** The pod's policy, or why there is none on this node (no such pod, another node's, hostNetwork). */
  endpoint(namespace: string, pod: string): EndpointPolicyView | { missing: string };
  /** An identity's labels (monitor events of policy drops), undefined when not known. */
  identityLabels(id: number): Record<string, string> | undefined;
}

const labelsSchema = { type: 'object', additionalProperties: { type: 'string' } } as const;

export const identitySchema = {
  title: 'Identity',
  type: 'object',
  additionalProperties: false,
  required: ['id', 'kind', 'labels', 'pods'],
  properties: {
    id: { type: 'integer', description: 'the numeric security identity the datapath uses (ipcache, policy maps, monitor events)' },
    kind: { type: 'string', enum: ['reserved', 'labels', 'cidr'] },
    namespace: { type: 'string' },
    labels: labelsSchema,
    cidr: { type: 'string' },
    pods: { type: 'integer', description: 'pods of the cluster with this identity' },
  },
} as const;

const ruleSchema = {
  title: 'PolicyRule',
  type: 'object',
  additionalProperties: false,
  required: ['identity', 'labels', 'protocol'],
  properties: {
    identity: { type: 'integer', description: '0: any peer' },
    labels: labelsSchema,
    cidr: { type: 'string' },
    protocol: { type: 'string', enum: ['any', 'TCP', 'UDP', 'SCTP'] },
    port: { type: 'integer', description: 'first destination port; absent: any port' },
    endPort: { type: 'integer', description: 'last destination port' },
  },
} as const;

const directionSchema = {
  title: 'PolicyDirection',
  type: 'object',
  additionalProperties: false,
  required: ['enforced', 'policies', 'rules'],
  properties: {
    enforced: { type: 'boolean', description: 'a policy selects the pod for this direction: what no rule allows is dropped' },
    policies: { type: 'array', items: { type: 'string' }, description: 'the NetworkPolicies (namespace/name) selecting the pod' },
    rules: { type: 'array', items: ruleSchema },
  },
} as const;

export const endpointPolicySchema = {
  title: 'EndpointPolicy',
  type: 'object',
  additionalProperties: false,
  required: ['namespace', 'pod', 'ips', 'identity', 'ingress', 'egress'],
  properties: {
    namespace: { type: 'string' },
    pod: { type: 'string' },
    ips: { type: 'array', items: { type: 'string' } },
    identity: { type: 'object', additionalProperties: false, required: ['id', 'labels'], properties: { id: { type: 'integer' }, labels: labelsSchema } },
    device: { type: 'string', description: "the pod's host-side device, once found" },
    ifindex: { type: 'integer' },
    ingress: directionSchema,
    egress: directionSchema,
  },
} as const;

export const POLICY_NEEDS_KUBERNETES = 'network policy needs Kubernetes mode: this agent runs standalone (--standalone), where no NetworkPolicy applies';

const standalone = { ...errorSchema, description: 'the agent runs standalone: network policy needs Kubernetes mode' };
const namePattern = { type: 'string', minLength: 1, maxLength: 253 } as const;

export interface PolicyRoutesOptions {
  /** Kubernetes mode's policy; absent (standalone): 409. */
  policy?: PolicySource;
}

export const policyRoutes: FastifyPluginAsync<PolicyRoutesOptions> = async (app, { policy }) => {
  app.get(
    '/v1/identities',
    {
      schema: {
        summary: 'Security identities of network policy: labels, kind, pods',
        tags: ['policy'],
        response: {
          200: { type: 'object', additionalProperties: false, required: ['identities'], properties: { identities: { type: 'array', items: identitySchema } } },
          ...errorResponses(409),
          409: standalone,
        },
      },
    },
    async (_request, reply) => {
      if (!policy) return reply.code(409).send(errorBody(POLICY_NEEDS_KUBERNETES));
      return { identities: policy.identities() };
    },
  );

  app.get<{ Params: { namespace: string; pod: string } }>(
    '/v1/policy/:namespace/:pod',
    {
      schema: {
        summary: "One pod of this node: its identity and the network policy enforced on it",
        tags: ['policy'],
        params: {
          type: 'object',
          additionalProperties: false,
          required: ['namespace', 'pod'],
          properties: { namespace: { ...namePattern, description: "the pod's namespace" }, pod: { ...namePattern, description: 'the pod' } },
        },
        response: {
          200: endpointPolicySchema,
          ...errorResponses(400, 404, 409),
          404: { ...errorSchema, description: 'no such pod on this node (the message says whether it exists elsewhere)' },
          409: standalone,
        },
      },
    },
    async (request, reply) => {
      if (!policy) return reply.code(409).send(errorBody(POLICY_NEEDS_KUBERNETES));
      const { namespace, pod } = request.params;
      const found = policy.endpoint(namespace, pod);
      if ('missing' in found) return reply.code(404).send(errorBody(found.missing));
      return found;
    },
  );
};
