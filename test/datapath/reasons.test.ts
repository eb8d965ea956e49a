import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readObjectBtf } from '../../lb/datapath/object.js';
import { bpfObjectPath } from '../../lb/datapath/objects.js';
import { DROP_FIRST, Direction, REASON_MAX, Reason, reasonLabel } from '../../lb/reasons.js';

const prefixed = (name: string): string => `XLB_${name}`;

test('the TypeScript reasons mirror enum xlb_reason exactly', () => {
  const values = readObjectBtf(bpfObjectPath('xdp/xdp_lb.o')).enumValues('xlb_reason');
  assert.ok(values, 'enum xlb_reason is in the BTF');
  const fromC = new Map([...values].filter(([name]) => !['XLB_FORWARD_REASON_MAX', 'XLB_DROP_FIRST', 'XLB_REASON_MAX'].includes(name)));
  const fromTs = new Map(Object.entries(Reason).map(([name, value]) => [prefixed(name), BigInt(value)]));
  assert.deepEqual(fromTs, fromC);
  assert.equal(values.get('XLB_REASON_MAX'), BigInt(REASON_MAX));
  assert.equal(values.get('XLB_DROP_FIRST'), BigInt(DROP_FIRST));
});

test('directions mirror enum xlb_direction', () => {
  const values = readObjectBtf(bpfObjectPath('xdp/xdp_lb.o')).enumValues('xlb_direction');
  assert.equal(values?.get('XLB_DIR_INGRESS'), BigInt(Direction.INGRESS));
  assert.equal(values?.get('XLB_DIR_EGRESS'), BigInt(Direction.EGRESS));
});

test('every reason has a label of its own (metrics and monitor tell them apart)', () => {
  const labels = Object.values(Reason).map(reasonLabel);
  assert.equal(new Set(labels).size, labels.length, labels.join(' '));
  assert.equal(reasonLabel(Reason.DROP_SOURCE_RANGE), 'source_range');
  assert.equal(reasonLabel(Reason.DSR_REPLY), 'dsr_reply');
});
