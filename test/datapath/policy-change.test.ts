/**
 * PolicyMapWriter.changeEndpoint on tc_pod's real policy maps (loaded as the agent loads them: pod-harness.ts):
 * a change applied to the policy written before leaves exactly the endpoint's allow entries, and a
 * change whose premise is wrong (the maps held other rules) still ends with them, by the whole compare.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PolicyMapWriter, type PolicyEndpointState } from '../../lb/datapath/policy-writer.js';
import type { PolicyRule } from '../../lb/policy/types.js';
import { loadPodHarness, type PodHarness } from '../support/pod-harness.js';

const DEVICE = 3;
const tcp = (identity: number, port: number): PolicyRule => ({ direction: 'ingress', identity, protocol: 6, port, portPrefixLen: 16 });
const text = (rules: readonly PolicyRule[]): string[] => rules.map((r) => JSON.stringify(r)).sort();

describe('policy writer: an endpoint changed by its rules added and removed', () => {
  let harness: PodHarness | undefined;
  let writer: PolicyMapWriter;
  before(() => {
    harness = loadPodHarness('policy-change', { v4: '198.18.0.2', v6: '2001:db8::2' }, new Map());
    writer = PolicyMapWriter.open(harness.pods.object);
  });
  after(async () => {
    writer?.prune(new Set());
    await harness?.pods.close();
    harness?.lb.close();
    harness?.bpffs.remove();
  });

  const held = (): PolicyEndpointState | undefined => writer.endpoints().get(DEVICE);

  test('the change applied to the policy written before gives the endpoint, identity and enforcement included', () => {
    const first: PolicyEndpointState = { identity: 300, ingressEnforced: true, egressEnforced: false, rules: [tcp(400, 80), tcp(401, 80), tcp(402, 443)] };
    writer.setEndpoint(DEVICE, first);
    const next: PolicyEndpointState = { identity: 301, ingressEnforced: true, egressEnforced: true, rules: [tcp(400, 80), tcp(402, 443), tcp(403, 80)] };
    writer.changeEndpoint(DEVICE, next, { added: [tcp(403, 80)], removed: [tcp(401, 80)] });
    const now = held();
    assert.deepEqual([now?.identity, now?.ingressEnforced, now?.egressEnforced], [301, true, true]);
    assert.deepEqual(text(now?.rules ?? []), text(next.rules));
  });

  test('a change whose premise is wrong ends with the endpoint’s rules all the same', () => {
    writer.setEndpoint(DEVICE, { identity: 300, ingressEnforced: true, egressEnforced: false, rules: [tcp(400, 80), tcp(404, 22)] });
    // As if the maps held [400/80] only: 404/22 would stay behind without the whole compare.
    const next: PolicyEndpointState = { identity: 300, ingressEnforced: true, egressEnforced: false, rules: [tcp(400, 80), tcp(405, 80)] };
    writer.changeEndpoint(DEVICE, next, { added: [tcp(405, 80)], removed: [] });
    assert.deepEqual(text(held()?.rules ?? []), text(next.rules));
  });

  test('an invalid added rule is refused before anything is written', () => {
    const before = held();
    const bad = { identity: 300, ingressEnforced: false, egressEnforced: false, rules: [] };
    assert.throws(() => writer.changeEndpoint(DEVICE, bad, { added: [tcp(406, 70000)], removed: [tcp(400, 80)] }), /added rules\[0\]\.port: 70000/);
    assert.deepEqual(held(), before);
  });
});
