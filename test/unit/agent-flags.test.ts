import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { hostname, type NetworkInterfaceInfo } from 'node:os';
import {
  DEFAULT_API_SOCKET,
  DEFAULT_BPFFS,
  DEFAULT_STATE_FILE,
  FlagError,
  deviceAddresses,
  nodeDatapathOptions,
  parseAgentFlags,
  type AgentFlags,
} from '../../agent/flags.js';
import { DEFAULT_MAGLEV_SEED, DEFAULT_MAGLEV_TABLE_SIZE } from '../../lb/maglev/index.js';
import { repoRoot } from '../support/paths.js';
import { runNode, type NodeRun } from '../support/run-node.js';

function flags(...args: string[]): AgentFlags {
  const parsed = parseAgentFlags(['--standalone', '--device', 'eth0', ...args]);
  assert.equal(parsed.help, false);
  if (parsed.help) throw new Error('unreachable');
  return parsed.flags;
}

function assertFlagError(args: string[], pattern: RegExp): void {
  assert.throws(
    () => parseAgentFlags(args),
    (error: unknown) => {
      assert.ok(error instanceof FlagError, `expected FlagError for ${args.join(' ')}, got ${String(error)}`);
      assert.match(error.message, pattern);
      return true;
    },
  );
}

test('defaults follow DESIGN.md', () => {
  const f = flags();
  assert.deepEqual(f.devices, ['eth0']);
  assert.equal(f.mode, 'snat');
  assert.equal(f.xdp, 'native');
  assert.equal(f.maglevTableSize, DEFAULT_MAGLEV_TABLE_SIZE);
  assert.equal(f.maglevSeed.base64, DEFAULT_MAGLEV_SEED);
  assert.equal(f.bpffs, DEFAULT_BPFFS);
  assert.equal(f.apiSocket, DEFAULT_API_SOCKET);
  assert.equal(f.stateFile, DEFAULT_STATE_FILE);
  assert.equal(f.config, undefined);
  assert.equal(f.apiAddr, undefined);
  assert.equal(f.metricsAddr, undefined);
  assert.equal(f.nodeAddresses, undefined, 'absent: the devices\' addresses are used');
});

test('every flag is parsed', () => {
  const f = parseAgentFlags([
    '--standalone', '--config', '/etc/xlb/services.yaml',
    '--device', 'veth0,veth1', '--device', 'eth2',
    '--mode', 'dsr', '--xdp', 'generic',
    '--maglev-table-size', '1021', '--maglev-seed', 'AAAAAAAAAAAAAAAA',
    '--bpffs', '/mnt/bpf/xlb', '--api-socket', '/tmp/x/xlb.sock',
    '--api-addr', '[2001:db8::1]:8443', '--api-token-file', '/etc/xlb/token',
    '--metrics-addr', '198.18.0.1:9090', '--state-file', '/tmp/x/state.json',
    '--node-address', '198.18.0.1,2001:db8:0:0::5', '--node-name', 'worker-1.example', '--conntrack-entries', '65536',
    '--snat-port-range', '40000-40999', '--no-node-setup', '--dsr-service-ranges', '198.18.10.0/24,2001:db8:10:0::/64',
  ]);
  assert.equal(f.help, false);
  if (f.help) return;
  assert.deepEqual(f.flags, {
    config: '/etc/xlb/services.yaml',
    devices: ['veth0', 'veth1', 'eth2'],
    mode: 'dsr',
    xdp: 'generic',
    maglevTableSize: 1021,
    maglevSeed: f.flags.maglevSeed,
    bpffs: '/mnt/bpf/xlb',
    apiSocket: '/tmp/x/xlb.sock',
    apiAddr: { host: '2001:db8::1', port: 8443 },
    apiTokenFile: '/etc/xlb/token',
    metricsAddr: { host: '198.18.0.1', port: 9090 },
    stateFile: '/tmp/x/state.json',
    nodeAddresses: ['198.18.0.1', '2001:db8::5'],
    nodeName: 'worker-1.example',
    conntrackEntries: 65536,
    snatPorts: { min: 40000, max: 40999 },
    nodeSetup: false,
    cleanup: false,
    dsrServiceRanges: ['198.18.10.0/24', '2001:db8:10::/64'],
    capacity: { services: 65536, backends: 262144 },
    socketLb: true,
    podDevices: [],
    bandwidthManager: true,
    edtHorizonNs: 2_000_000_000,
  });
  assert.equal(f.flags.maglevSeed.murmur, 0);
});

test('--cleanup needs neither --standalone nor --device; the node is set up unless --no-node-setup', () => {
  const parsed = parseAgentFlags(['--cleanup', '--bpffs', '/mnt/bpf/xlb']);
  assert.equal(parsed.help, false);
  if (parsed.help) return;
  assert.equal(parsed.flags.cleanup, true);
  assert.deepEqual(parsed.flags.devices, [], 'every device of the node');
  assert.equal(flags().nodeSetup, true);
  assert.equal(flags('--no-node-setup').nodeSetup, false);
  assertFlagError(['--cleanup', '--kubeconfig', '/k'], /^--kubeconfig: Kubernetes mode only, cannot be combined with --cleanup/);
});

test('Kubernetes mode: without --standalone; kubeconfig, API server, NodePort addresses, health server', () => {
  const parse = (...args: string[]) => {
    const parsed = parseAgentFlags(['--device', 'eth0', ...args]);
    assert.equal(parsed.help, false);
    if (parsed.help) throw new Error('unreachable');
    return parsed.flags;
  };
  assert.equal(flags().kubernetes, undefined, '--standalone: no Kubernetes');
  assert.deepEqual(parse().kubernetes, { nodePortAddresses: { kind: 'all' }, healthzAddr: { host: '0.0.0.0', port: 10256 } }, 'in-cluster');
  const k = parse('--kubeconfig', 'kc.yaml', '--k8s-api-server', 'https://198.18.0.1:6443/', '--nodeport-addresses', '198.18.0.0/24,2001:db8::/64', '--healthz-addr', '127.0.0.1:0');
  assert.equal(k.kubernetes?.kubeconfig, join(process.cwd(), 'kc.yaml'));
  assert.equal(k.kubernetes?.apiServer, 'https://198.18.0.1:6443');
  assert.deepEqual(k.kubernetes?.healthzAddr, { host: '127.0.0.1', port: 0 });
  assert.equal(k.kubernetes?.nodePortAddresses.kind, 'cidrs');
  assert.equal(parse('--healthz-addr', '').kubernetes?.healthzAddr, undefined, '"" turns the health server off');
  assert.deepEqual(parse('--nodeport-addresses', 'primary').kubernetes?.nodePortAddresses, { kind: 'primary' });
  assert.deepEqual(flags().capacity, { services: 65536, backends: 262144 });
  assert.deepEqual(flags('--bpf-lb-service-map-max', '100000', '--bpf-lb-backend-map-max', '1000000').capacity, { services: 100000, backends: 1000000 });
  assert.equal(flags().socketLb, true);
  assert.deepEqual(flags('--pod-devices', 'lxc+,veth+', '--pod-devices', 'eth1').podDevices, ['lxc+', 'veth+', 'eth1']);
  assertFlagError(['--standalone', '--device', 'eth0', '--pod-devices', 'lx+c'], /^--pod-devices: "lx\+c" is not an interface name/);
  assert.equal(flags('--no-socket-lb').socketLb, false);
  assert.equal(flags('--cgroup-root', '/sys/fs/cgroup/unified/pods').cgroupRoot, '/sys/fs/cgroup/unified/pods');
  assertFlagError(['--standalone', '--device', 'eth0', '--no-socket-lb', '--cgroup-root', '/x'], /^--cgroup-root: socket-level load balancing is off/);
});

test('--dsr-service-ranges: CIDRs, repeatable, de-duplicated; none by default', () => {
  assert.deepEqual(flags().dsrServiceRanges, []);
  assert.deepEqual(flags('--dsr-service-ranges', '198.18.10.0/24', '--dsr-service-ranges', '198.18.0.2/32,198.18.10.0/24').dsrServiceRanges, ['198.18.10.0/24', '198.18.0.2/32']);
  assertFlagError(['--standalone', '--device', 'eth0', '--dsr-service-ranges', '198.18.10.1/24'], /^--dsr-service-ranges: 198\.18\.10\.1\/24 has host bits set: the network is 198\.18\.10\.0\/24/);
  assertFlagError(['--standalone', '--device', 'eth0', '--dsr-service-ranges', 'vip'], /^--dsr-service-ranges: "vip" is not a CIDR/);
});

test('relative paths are made absolute', () => {
  const f = flags('--state-file', 'state.json', '--config', 'svc.yaml');
  assert.equal(f.stateFile, join(process.cwd(), 'state.json'));
  assert.equal(f.config, join(process.cwd(), 'svc.yaml'));
});

test('--help wins over everything else', () => {
  assert.deepEqual(parseAgentFlags(['--help']), { help: true });
  assert.deepEqual(parseAgentFlags(['--bogus', '-h']), { help: true });
});

test('errors name the flag', () => {
  const base = ['--standalone', '--device', 'eth0'];
  const cases: [string[], RegExp][] = [
    [['--device', 'eth0', '--config', '/c'], /^--config: standalone mode only/],
    [['--standalone', '--kubeconfig', '/k'], /^--kubeconfig: Kubernetes mode only, cannot be combined with --standalone/],
    [['--device', 'eth0', '--k8s-api-server', 'apiserver:6443'], /^--k8s-api-server: "apiserver:6443" must be an http\(s\) URL/],
    [['--device', 'eth0', '--k8s-api-server', 'nonsense'], /^--k8s-api-server: "nonsense" is not a URL/],
    [['--device', 'eth0', '--nodeport-addresses', 'eth0'], /^--nodeport-addresses: /],
    [['--device', 'eth0', '--healthz-addr', ':10256'], /^--healthz-addr: /],
    [[...base, '--bpf-lb-service-map-max', '10'], /^--bpf-lb-service-map-max: "10" is not a number in 16\.\./],
    [[...base, '--bpf-lb-backend-map-max', '1e6'], /^--bpf-lb-backend-map-max: /],
    [['--standalone'], /^--device: required/],
    [['--standalone', '--device', 'eth0,,eth1'], /^--device: empty item/],
    [['--standalone', '--device', 'a/b'], /^--device: "a\/b" is not an interface name/],
    [['--standalone', '--device', 'averyveryverylongname'], /^--device: .* is not an interface name/],
    [['--standalone', '--device', 'eth0', '--device', 'eth0'], /^--device: eth0 is given twice/],
    [[...base, '--mode', 'tunnel'], /^--mode: "tunnel" is not one of snat, dsr, hybrid/],
    [[...base, '--xdp', 'offload'], /^--xdp: "offload" is not one of native, generic, off/],
    [[...base, '--maglev-table-size', '1000'], /^--maglev-table-size: "1000" is not one of the primes/],
    [[...base, '--maglev-table-size', '0x3fd'], /^--maglev-table-size/],
    [[...base, '--maglev-seed', 'short'], /^--maglev-seed: .*base64/],
    [[...base, '--maglev-seed', 'AAAA'], /^--maglev-seed: .*3 bytes/],
    [[...base, '--api-addr', '127.0.0.1:8443'], /^--api-addr: a TCP listener needs --api-token-file/],
    [[...base, '--api-token-file', '/t'], /^--api-token-file: only used with --api-addr/],
    [[...base, '--api-addr', 'localhost:1', '--api-token-file', '/t'], /^--api-addr: "localhost:1" is not HOST:PORT/],
    [[...base, '--api-addr', '2001:db8::1:80', '--api-token-file', '/t'], /^--api-addr: .*IPv6 in brackets/],
    [[...base, '--api-addr', '[198.18.0.1]:80', '--api-token-file', '/t'], /^--api-addr/],
    [[...base, '--metrics-addr', '198.18.0.1:70000'], /^--metrics-addr: .*0\.\.65535/],
    [[...base, '--metrics-addr', '0.0.0.0:9000', '--api-addr', '198.18.0.1:9000', '--api-token-file', '/t'], /^--metrics-addr: 0\.0\.0\.0:9000 is also --api-addr/],
    [[...base, '--api-socket', `/${'x'.repeat(120)}`], /^--api-socket: .* longer than the 107 bytes/],
    [[...base, '--state-file', ' '], /^--state-file: empty path/],
    [[...base, '--node-address', '198.18.0.300'], /^--node-address: "198.18.0.300" is not an IPv4 or IPv6 address/],
    [[...base, '--node-address', '::'], /^--node-address: :: is the unspecified address/],
    [[...base, '--node-address', '198.18.0.1,198.18.0.1'], /^--node-address: 198.18.0.1 is given twice/],
    [[...base, '--devic', 'eth0'], /'--devic'/],
    [[...base, '--mode'], /'--mode/],
    [[...base, 'extra'], /extra/],
  ];
  for (const [args, pattern] of cases) assertFlagError(args, pattern);
});

test('the default node addresses are the devices\' global addresses, in device order', () => {
  const info = (address: string, family: 'IPv4' | 'IPv6', internal = false): NetworkInterfaceInfo =>
    family === 'IPv4'
      ? { address, family, internal, netmask: '255.255.255.0', mac: '00:00:00:00:00:00', cidr: null }
      : { address, family, internal, netmask: 'ffff::', mac: '00:00:00:00:00:00', cidr: null, scopeid: 0 };
  const interfaces = {
    lo: [info('127.0.0.1', 'IPv4', true)],
    eth1: [info('198.18.1.1', 'IPv4'), info('fe80::1', 'IPv6')],
    eth0: [info('198.18.0.1', 'IPv4'), info('2001:db8:0::1', 'IPv6'), info('169.254.0.3', 'IPv4')],
  };
  assert.deepEqual(deviceAddresses(['eth0', 'eth1', 'missing'], interfaces), ['198.18.0.1', '2001:db8::1', '198.18.1.1']);
  assert.deepEqual(deviceAddresses(['lo'], interfaces), []);
});

test('nodeDatapathOptions carries what createNodeDatapath needs', () => {
  const f = flags('--mode', 'hybrid', '--xdp', 'off', '--maglev-table-size', '251');
  const log = (): void => undefined;
  const options = nodeDatapathOptions(f, ['198.18.0.1'], log);
  assert.deepEqual(
    { ...options, maglevSeed: options.maglevSeed.base64 },
    { devices: ['eth0'], xdp: 'off', mode: 'hybrid', maglevTableSize: 251, maglevSeed: DEFAULT_MAGLEV_SEED, bpffs: DEFAULT_BPFFS, nodeAddresses: ['198.18.0.1'], nodeName: hostname().toLowerCase(), conntrackEntries: 262144, snatPorts: { min: 1024, max: 29999 }, nodeSetup: true, dsrServiceRanges: [], capacity: { services: 65536, backends: 262144 }, log },
  );
});

test('--conntrack-entries: 4 × a power of two, default 262144', () => {
  assert.equal(flags().conntrackEntries, 262144);
  assert.equal(flags('--conntrack-entries', '16384').conntrackEntries, 16384);
  for (const bad of ['1000', '12', '0', 'lots', '262144.5']) {
    assert.throws(() => flags('--conntrack-entries', bad), (e: unknown) => e instanceof FlagError && e.message.startsWith('--conntrack-entries:'), bad);
  }
});

test('--snat-port-range: MIN-MAX within 1..65535, default 1024-29999 (below Linux ephemeral ports and NodePorts)', () => {
  assert.deepEqual(flags().snatPorts, { min: 1024, max: 29999 });
  assert.deepEqual(flags('--snat-port-range', '1024-65535').snatPorts, { min: 1024, max: 65535 });
  assert.deepEqual(flags('--snat-port-range', '40000-40000').snatPorts, { min: 40000, max: 40000 });
  for (const bad of ['0-100', '100-65536', '5000-4000', '61000', '61000-', 'a-b', '1024 - 2048']) {
    assert.throws(() => flags('--snat-port-range', bad), (e: unknown) => e instanceof FlagError && e.message.startsWith('--snat-port-range:'), bad);
  }
});

test('--node-name: a lower-case DNS name; the host name when absent', () => {
  assert.equal(flags('--node-name', 'lb-7').nodeName, 'lb-7');
  assert.equal(flags().nodeName, hostname().toLowerCase());
  for (const bad of ['Worker', 'a_b', 'x-', '']) {
    assert.throws(() => flags('--node-name', bad), (e: unknown) => e instanceof FlagError && e.message.startsWith('--node-name:'), bad);
  }
});

function runAgent(args: string[]): Promise<NodeRun> {
  return runNode(join(repoRoot, 'dist', 'agent', 'main.js'), args);
}

test('xlb-agent: --help exits 0, a bad flag exits 2 naming it', async () => {
  const help = await runAgent(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.out, /^usage: xlb-agent --standalone/);
  assert.match(help.out, /--api-token-file FILE/);

  const bad = await runAgent(['--standalone', '--device', 'eth0', '--mode', 'fast']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /^xlb-agent: --mode: "fast" is not one of snat, dsr, hybrid/);
});
