import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matchesPodDevice, parsePodDevicePatterns, planPodDevices } from '../../lb/datapath/pod-devices.js';

test('--pod-devices patterns: iptables-style prefixes and names, comma-separated, several flags', () => {
  const patterns = parsePodDevicePatterns(['lxc+, veth+', 'eth1']);
  assert.deepEqual(patterns, [
    { name: 'lxc', prefix: true },
    { name: 'veth', prefix: true },
    { name: 'eth1', prefix: false },
  ]);
  for (const [device, matches] of [['lxc12ab', true], ['lxc', true], ['veth0', true], ['eth1', true], ['eth10', false], ['eth0', false], ['cni0', false]] as const) {
    assert.equal(matchesPodDevice(patterns, device), matches, device);
  }
  assert.deepEqual(parsePodDevicePatterns(['', ' , ']), []);
});

test('--pod-devices refuses what is no device name or prefix, naming it', () => {
  for (const bad of ['+', 'lx+c+', 'a/b', 'ab cd', 'averyveryverylongname']) {
    assert.throws(() => parsePodDevicePatterns([bad]), (error: Error) => error.message.includes('--pod-devices') && error.message.includes(bad.trim()), bad);
  }
});

test('the plan attaches to new pod devices, detaches from devices no longer pods\', forgets gone ones, by ifindex', () => {
  const isPods = (name: string): boolean => name.startsWith('lxc');
  const attached = new Map([
    [5, 'lxc-a'], // still there
    [6, 'lxc-b'], // gone
    [7, 'lxc-c'], // renamed to something else
    [8, 'lxc-d'], // deleted and created again under the same name (new index)
  ]);
  const present = [
    { index: 1, name: 'lo' },
    { index: 5, name: 'lxc-a' },
    { index: 7, name: 'renamed' },
    { index: 9, name: 'lxc-d' },
    { index: 10, name: 'lxc-e' },
  ];
  assert.deepEqual(planPodDevices(present, attached, isPods), {
    attach: [{ index: 9, name: 'lxc-d' }, { index: 10, name: 'lxc-e' }],
    detach: [{ index: 7, name: 'renamed' }],
    forget: [{ index: 6, name: 'lxc-b' }, { index: 8, name: 'lxc-d' }],
  });
  assert.deepEqual(planPodDevices([{ index: 5, name: 'lxc-a' }], new Map([[5, 'lxc-a']]), isPods), { attach: [], detach: [], forget: [] });
});
