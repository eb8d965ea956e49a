/**
 * deploy/kubernetes/xlb.yaml is what a user applies to run xlb instead of kube-proxy. Every object is
 * sent to a real kube-apiserver with dryRun=All (its own validation, defaulting included), the
 * ClusterRole is checked against what the agent watches, and the DaemonSet's command line against
 * the agent's flag parser.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { parseAgentFlags } from '../../agent/flags.js';
import { KubeApiError, KubeApiServer } from '../support/kube.js';
import { repoRoot } from '../support/paths.js';

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
  spec?: { template: { spec: { containers: { command: string[]; args: string[]; env: { name: string; value?: string }[] }[] } } };
}

const manifests = parseAllDocuments(readFileSync(join(repoRoot, 'deploy', 'kubernetes', 'xlb.yaml'), 'utf8')).map((d) => d.toJS() as Manifest);

function collectionPath(m: Manifest): string {
  const [group, version] = m.apiVersion.includes('/') ? m.apiVersion.split('/') : ['', m.apiVersion];
  const plural = `${m.kind.toLowerCase()}s`.replace(/ys$/, 'ies');
  const base = group === '' ? `/api/${version}` : `/apis/${group}/${version}`;
  return m.metadata.namespace ? `${base}/namespaces/${m.metadata.namespace}/${plural}` : `${base}/${plural}`;
}

describe('deploy/kubernetes/xlb.yaml', () => {
  let kube: KubeApiServer;

  before(async () => {
    kube = await KubeApiServer.start();
  });

  after(async () => {
    await kube?.stop();
  });

  test('every object is accepted by a real apiserver (dry run)', async () => {
    assert.deepEqual(manifests.map((m) => m.kind), ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'DaemonSet']);
    try {
      await kube.rest.createNamespace('kube-system');
    } catch (error) {
      if (!(error instanceof KubeApiError && error.status === 409)) throw error;
    }
    for (const m of manifests) await kube.rest.request('POST', `${collectionPath(m)}?dryRun=All`, m);
  });

  test('the ClusterRole grants what the agent watches and the events it writes', () => {
    const role = manifests.find((m) => m.kind === 'ClusterRole');
    const allows = (group: string, resource: string, verb: string): boolean =>
      (role?.rules ?? []).some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));
    const watched = [['', 'services'], ['', 'nodes'], ['', 'pods'], ['', 'namespaces'], ['discovery.k8s.io', 'endpointslices'], ['networking.k8s.io', 'networkpolicies']] as const;
    for (const [group, resource] of watched) {
      for (const verb of ['list', 'watch']) assert.ok(allows(group, resource, verb), `${verb} ${group}/${resource}`);
    }
    assert.ok(allows('', 'events', 'create'), 'create events');
  });

  test('the DaemonSet runs xlb-agent in Kubernetes mode with flags the agent accepts', () => {
    const container = manifests.find((m) => m.kind === 'DaemonSet')?.spec?.template.spec.containers[0];
    assert.ok(container);
    assert.deepEqual(container.command, ['xlb-agent']);
    const env = new Map(container.env.map((e) => [e.name, e.value ?? 'node-1']));
    const args = container.args.map((a) => a.replace(/\$\((\w+)\)/g, (_, name: string) => env.get(name) ?? `$(${name})`));
    const parsed = parseAgentFlags(args);
    assert.equal(parsed.help, false);
    if (parsed.help) return;
    assert.ok(parsed.flags.kubernetes, 'Kubernetes mode (in-cluster credentials)');
    assert.equal(parsed.flags.kubernetes.apiServer, env.get('XLB_K8S_API_SERVER'));
    assert.equal(parsed.flags.nodeName, 'node-1');
    assert.deepEqual(parsed.flags.kubernetes.healthzAddr, { host: '0.0.0.0', port: 10256 });
  });
});
