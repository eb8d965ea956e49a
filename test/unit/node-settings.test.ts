import assert from 'node:assert/strict';
import { test } from 'node:test';
import { enforceSysctls } from '../../lb/datapath/sysctl.js';
import { datapathSysctls, podDeviceSysctls, sysctlName, unmetSysctls, type SysctlReader } from '../../lb/node-settings.js';

/** A node's /proc/sys as a map from dotted names (device names here hold no dots). */
function node(values: Record<string, string>): SysctlReader {
  return (path) => values[path.join('.')];
}

const FRESH_HOST = {
  'net.ipv4.conf.all.send_redirects': '1',
  'net.ipv4.conf.all.rp_filter': '0',
  'net.ipv4.conf.eth0.forwarding': '0',
  'net.ipv4.conf.eth0.send_redirects': '1',
  'net.ipv4.conf.eth0.rp_filter': '0',
  'net.ipv6.conf.eth0.forwarding': '0',
  'net.ipv6.conf.eth0.accept_ra': '1',
};

const unmet = (values: Record<string, string>, devices = ['eth0']): Record<string, string> =>
  Object.fromEntries(unmetSysctls(datapathSysctls(devices, node(values))).map((s) => [sysctlName(s.path), s.wanted]));

test('a fresh host: forwarding on, redirects off, router advertisements kept', () => {
  assert.deepEqual(unmet(FRESH_HOST), {
    'net.ipv4.conf.all.send_redirects': '0',
    'net.ipv4.conf.eth0.forwarding': '1',
    'net.ipv4.conf.eth0.send_redirects': '0',
    'net.ipv6.conf.eth0.forwarding': '1',
    'net.ipv6.conf.eth0.accept_ra': '2',
  });
});

test('a node already set up needs nothing', () => {
  assert.deepEqual(unmet({ ...FRESH_HOST, ...unmet(FRESH_HOST) }), {});
});

test('strict reverse-path filtering, on the device or on all, becomes loose on the device only', () => {
  assert.equal(unmet({ ...FRESH_HOST, 'net.ipv4.conf.all.rp_filter': '1' })['net.ipv4.conf.eth0.rp_filter'], '2');
  assert.equal(unmet({ ...FRESH_HOST, 'net.ipv4.conf.eth0.rp_filter': '1' })['net.ipv4.conf.eth0.rp_filter'], '2');
  assert.equal(unmet({ ...FRESH_HOST, 'net.ipv4.conf.all.rp_filter': '2' })['net.ipv4.conf.eth0.rp_filter'], undefined, 'loose is fine');
});

test('a device without IPv6 gets no IPv6 settings; accept_ra 0 or 2 is left alone', () => {
  const noV6 = Object.fromEntries(Object.entries(FRESH_HOST).filter(([name]) => !name.startsWith('net.ipv6')));
  assert.deepEqual(Object.keys(unmet(noV6)).filter((name) => name.startsWith('net.ipv6')), []);
  assert.equal(unmet({ ...FRESH_HOST, 'net.ipv6.conf.eth0.accept_ra': '0' })['net.ipv6.conf.eth0.accept_ra'], undefined);
});

test('every device gets its own settings, each with the effect of leaving it', () => {
  const values = { ...FRESH_HOST, 'net.ipv4.conf.eth1.forwarding': '0', 'net.ipv4.conf.eth1.send_redirects': '1', 'net.ipv4.conf.eth1.rp_filter': '0' };
  const settings = datapathSysctls(['eth0', 'eth1'], node(values));
  const eth1 = settings.find((s) => sysctlName(s.path) === 'net.ipv4.conf.eth1.forwarding');
  assert.ok(eth1);
  assert.match(eth1.effect, /every new IPv4 flow is dropped \(reason fib_fwd_disabled\)/);
  assert.ok(settings.every((s) => s.effect.length > 20));
});

test('a setting the agent cannot write is a warning naming it and its effect; nothing thrown', () => {
  const warnings: string[] = [];
  const changes: string[] = [];
  const reports = enforceSysctls(
    [{ path: ['net', 'xlb-test-no-such-sysctl'], current: '0', wanted: '1', effect: 'the test would notice' }],
    true,
    { info: (line) => changes.push(line), warn: (line) => warnings.push(line) },
  );
  assert.deepEqual(changes, []);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] ?? '', /^setting sysctl net\.xlb-test-no-such-sysctl=1: .*; it stays 0: the test would notice$/);
  assert.deepEqual(reports, [{ sysctl: 'net.xlb-test-no-such-sysctl', value: '0', wanted: '1', effect: 'the test would notice' }]);
});

test('a pod device: IPv4 forwarding on it, IPv6 by its force_forwarding unless the node forwards IPv6 already', () => {
  const pod = (values: Record<string, string>): Record<string, string> =>
    Object.fromEntries(unmetSysctls(podDeviceSysctls('lxc1', node(values))).map((s) => [sysctlName(s.path), s.wanted]));
  const fresh = { 'net.ipv4.conf.lxc1.forwarding': '0', 'net.ipv6.conf.all.forwarding': '0', 'net.ipv6.conf.lxc1.force_forwarding': '0' };
  assert.deepEqual(pod(fresh), { 'net.ipv4.conf.lxc1.forwarding': '1', 'net.ipv6.conf.lxc1.force_forwarding': '1' });
  assert.deepEqual(pod({ ...fresh, 'net.ipv6.conf.all.forwarding': '1' }), { 'net.ipv4.conf.lxc1.forwarding': '1' });
  // A kernel before 6.17 has no force_forwarding: nothing to set there (all.forwarding is the node's choice).
  const { ['net.ipv6.conf.lxc1.force_forwarding']: _, ...older } = fresh;
  assert.deepEqual(pod(older), { 'net.ipv4.conf.lxc1.forwarding': '1' });
  const effects = podDeviceSysctls('lxc1', node(fresh)).map((s) => s.effect);
  assert.ok(effects.every((e) => e.includes('lxc1') && e.includes('dropped')), effects.join('\n'));
});
