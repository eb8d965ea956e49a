import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseAgentFlags } from '../../agent/flags.js';
import { formatBandwidth, parseBandwidth } from '../../lb/bandwidth.js';

test('Kubernetes quantities of bits per second become bytes per second', () => {
  const cases: [string, number][] = [
    ['10M', 1_250_000],
    ['1G', 125_000_000],
    ['500k', 62_500],
    ['100Mi', (100 * 1024 * 1024) / 8],
    ['1000000', 125_000],
    ['1.5M', 187_500],
    ['1e6', 125_000],
    ['1E9', 125_000_000],
    ['2.5e3', 312],
    ['+8k', 1_000],
    ['1P', 125_000_000_000_000],
    ['1k', 125],
    ['1000000000m', 125_000],
    [' 10M ', 1_250_000],
    ['.5M', 62_500],
  ];
  for (const [quantity, bytes] of cases) assert.equal(parseBandwidth(quantity), bytes, quantity);
});

test('bytes per second are rounded down: never more than allowed', () => {
  assert.equal(parseBandwidth('1001'), 125);
  assert.equal(parseBandwidth('1Ki'), 128);
});

test('garbage, zero, negative and out-of-range quantities are refused, saying why', () => {
  assert.throws(() => parseBandwidth('fast'), /bandwidth "fast" is not a quantity of bits per second \(Kubernetes units: 10M/);
  assert.throws(() => parseBandwidth('10 M'), /not a quantity/);
  assert.throws(() => parseBandwidth('10Mb'), /not a quantity/);
  assert.throws(() => parseBandwidth('10mi'), /not a quantity/);
  assert.throws(() => parseBandwidth(''), /not a quantity/);
  assert.throws(() => parseBandwidth('0'), /bandwidth "0" is zero/);
  assert.throws(() => parseBandwidth('0.0M'), /is zero/);
  assert.throws(() => parseBandwidth('-10M'), /bandwidth "-10M" is negative: a rate is 1k \(1 kbit\/s\) to 1P \(1 Pbit\/s\)/);
  assert.throws(() => parseBandwidth('999'), /bandwidth "999" is below 1k \(1 kbit\/s\) to 1P/);
  assert.throws(() => parseBandwidth('500m'), /is below/);
  assert.throws(() => parseBandwidth('2P'), /bandwidth "2P" is above 1k \(1 kbit\/s\) to 1P/);
  assert.throws(() => parseBandwidth('1Ei'), /is above/);
  assert.throws(() => parseBandwidth('1e400'), /outside 1k/);
});

test('rates read back as bandwidth', () => {
  assert.equal(formatBandwidth(1_250_000), '10 Mbit/s');
  assert.equal(formatBandwidth(187_500), '1.5 Mbit/s');
  assert.equal(formatBandwidth(125), '1 kbit/s');
  assert.equal(formatBandwidth(125_000_000), '1 Gbit/s');
});

test('xlb-agent --edt-horizon and --no-bandwidth-manager', () => {
  const flags = (...extra: string[]) => {
    const parsed = parseAgentFlags(['--standalone', '--device', 'eth0', ...extra]);
    assert.equal(parsed.help, false);
    return parsed.help ? undefined : parsed.flags;
  };
  assert.deepEqual([flags()?.bandwidthManager, flags()?.edtHorizonNs], [true, 2_000_000_000]);
  assert.equal(flags('--edt-horizon', '500ms')?.edtHorizonNs, 500_000_000);
  assert.equal(flags('--edt-horizon', '1.5s')?.edtHorizonNs, 1_500_000_000);
  assert.equal(flags('--no-bandwidth-manager')?.bandwidthManager, false);
  for (const bad of ['2', '0s', '0.5ms', '61s', 'fast', '1m']) {
    assert.throws(() => flags('--edt-horizon', bad), new RegExp(`--edt-horizon: ${JSON.stringify(bad)} is not a duration from 1ms to 60s`), bad);
  }
  assert.throws(() => flags('--no-bandwidth-manager', '--edt-horizon', '1s'), /--edt-horizon: the bandwidth manager is off \(--no-bandwidth-manager\)/);
});
