import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { EXIT_OK, EXIT_USAGE, UsageError, type CliIO } from '../../agent/cli/command.js';
import { maglevCommand } from '../../agent/cli/maglev.js';
import { buildMaglevTable, maglevBackendKey, parseMaglevSeed, DEFAULT_MAGLEV_SEED } from '../../lb/maglev/index.js';

interface Captured {
  code: number;
  out: string;
  err: string;
}

async function run(args: string[]): Promise<Captured> {
  let out = '';
  let err = '';
  const io: CliIO = {
    out: (text) => {
      out += text;
    },
    err: (text) => {
      err += text;
    },
  };
  const code = await maglevCommand.run(args, io);
  return { code, out, err };
}

async function runJson(args: string[]): Promise<number[]> {
  const { code, out } = await run([...args, '--json']);
  assert.equal(code, EXIT_OK);
  const parsed: unknown = JSON.parse(out);
  assert.ok(Array.isArray(parsed));
  return parsed.map((value) => {
    assert.equal(typeof value, 'number');
    return Number(value);
  });
}

async function assertUsageError(args: string[], names: RegExp): Promise<void> {
  await assert.rejects(run(args), (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected UsageError for ${args.join(' ')}, got ${String(err)}`);
    assert.match(err.message, names);
    return true;
  });
}

test('--json prints the table as backend indexes in the order given', async () => {
  const table = await runJson(['--size', '1021', '--backend', '198.18.1.2:8080/TCP', '--backend', '[2001:db8::2]:53/UDP@50']);
  const expected = buildMaglevTable(
    [
      { key: maglevBackendKey({ address: '198.18.1.2', port: 8080, protocol: 'TCP' }), weight: 100 },
      { key: maglevBackendKey({ address: '2001:db8::2', port: 53, protocol: 'UDP' }), weight: 50 },
    ],
    1021,
    parseMaglevSeed(DEFAULT_MAGLEV_SEED),
  );
  assert.deepEqual(table, Array.from(expected));
});

test('--json reproduces Cilium TestReproducible at --size 251', async () => {
  const table = await runJson([
    '--size', '251',
    '--backend', '0.0.0.1:1/TCP@2',
    '--backend', '0.0.0.3:3/TCP@13',
    '--backend', '0.0.0.4:4/TCP@111',
    '--backend', '0.0.0.5:5/TCP@10',
  ]);
  const runs: string[] = [];
  table.forEach((id, slot) => {
    if (slot > 0 && table[slot - 1] === id) return;
    let length = 1;
    while (table[slot + length] === id) length++;
    runs.push(`${id}(${length})`);
  });
  assert.equal(
    runs.join(','),
    '2(5),3(1),2(3),1(1),2(2),0(1),2(1),3(1),2(1),3(1),2(1),1(1),2(7),1(1),2(14),3(1),2(1),' +
      '1(2),2(12),3(1),2(3),1(1),2(4),3(1),2(8),3(1),2(2),1(1),2(16),1(2),2(3),3(1),2(11),1(2),2(4),3(1),2(3),' +
      '1(1),2(4),3(1),2(1),0(1),1(1),2(8),1(1),2(7),1(1),2(4),3(1),2(1),3(1),2(9),1(2),2(5),1(1),2(7),3(1),2(1),' +
      '3(1),1(1),2(8),1(1),2(4),0(1),2(1),1(1),2(5),3(1),2(3),1(1),2(4),3(1),2(3),1(1),2(12),0(1),3(1),2(3),3(1),' +
      '2(4),3(1),2(2),1(1),2(7)',
  );
});

test('defaults: size 16381, weight 100, the default seed; --seed changes the table', async () => {
  const table = await runJson(['--backend', '198.18.1.2:8080/TCP', '--backend', '198.18.1.3:8080/TCP']);
  assert.equal(table.length, 16381);
  const explicit = await runJson([
    '--size', '16381', '--seed', DEFAULT_MAGLEV_SEED,
    '--backend', '198.18.1.2:8080/TCP@100', '--backend', '198.18.1.3:8080/TCP@100',
  ]);
  assert.deepEqual(explicit, table);
  const reseeded = await runJson([
    '--seed', 'AAAAAAAAAAAAAAAA', '--backend', '198.18.1.2:8080/TCP', '--backend', '198.18.1.3:8080/TCP',
  ]);
  assert.notDeepEqual(reseeded, table);
});

test('summary: size, canonical backends, per-backend entries and share', async () => {
  const { code, out } = await run([
    '--size', '251',
    '--backend', '198.18.1.2:8080/tcp',
    '--backend', '[2001:DB8:0:0::2]:53/UDP@50',
    '--backend', '198.18.1.3:8080/SCTP@0',
  ]);
  assert.equal(code, EXIT_OK);
  assert.match(out, /size 251/);
  assert.match(out, /^\s+0\s+198\.18\.1\.2:8080\/TCP\s+100\s+\d+\s+[\d.]+%\s+66\.67%$/m);
  assert.match(out, /^\s+1\s+\[2001:db8::2\]:53\/UDP\s+50\s+\d+\s+[\d.]+%\s+33\.33%$/m);
  assert.match(out, /^\s+2\s+198\.18\.1\.3:8080\/SCTP\s+0\s+0\s+0\.00%\s+0\.00%$/m);
  assert.ok(out.endsWith('\n'));
});

test('--help prints usage', async () => {
  const { code, out } = await run(['--help']);
  assert.equal(code, EXIT_OK);
  assert.match(out, /--backend/);
});

test('bad input throws UsageError naming the argument', async () => {
  const one = ['--backend', '198.18.1.2:8080/TCP'];
  await assertUsageError(['--size', '1000', ...one], /--size "1000"/);
  await assertUsageError(['--size', '7', ...one], /--size "7".*251, 509/);
  await assertUsageError(['--size', 'big', ...one], /--size "big"/);
  await assertUsageError(['--size', '251.0', ...one], /--size "251.0"/);
  await assertUsageError(['--seed', 'not*base64', ...one], /--seed: .*not valid standard base64/);
  await assertUsageError(['--seed', 'AAAA', ...one], /--seed: .*3 bytes \(not 12 bytes\)/);
  await assertUsageError(['--backend', '198.18.1.2'], /--backend "198\.18\.1\.2": expected ADDR:PORT\/PROTO/);
  await assertUsageError(['--backend', '198.18.1.2:80'], /--backend "198\.18\.1\.2:80"/);
  await assertUsageError(['--backend', '198.18.1.256:80/TCP'], /--backend .*not an IPv4 address/);
  await assertUsageError(['--backend', '2001:db8::2:53/UDP'], /--backend .*IPv6 address goes in brackets/);
  await assertUsageError(['--backend', '[198.18.1.2]:53/UDP'], /--backend .*not an IPv6 address/);
  await assertUsageError(['--backend', '[fe80::1%eth0]:53/UDP'], /--backend .*zone/);
  await assertUsageError(['--backend', '198.18.1.2:0/TCP'], /--backend .*port "0"/);
  await assertUsageError(['--backend', '198.18.1.2:65536/TCP'], /--backend .*port "65536"/);
  await assertUsageError(['--backend', '198.18.1.2:80/ICMP'], /--backend .*protocol "ICMP"/);
  await assertUsageError(['--backend', '198.18.1.2:80/TCP@-1'], /--backend .*weight "-1"/);
  await assertUsageError(['--backend', '198.18.1.2:80/TCP@65536'], /--backend .*weight "65536"/);
  await assertUsageError(['--backend', '198.18.1.2:80/TCP@heavy'], /--backend .*weight "heavy"/);
  await assertUsageError(
    ['--backend', '[2001:db8::2]:53/UDP', '--backend', '[2001:DB8:0::2]:53/udp@7'],
    /--backend "\[2001:DB8:0::2\]:53\/udp@7": duplicate of backend 0/,
  );
  await assertUsageError(['--backend', '198.18.1.2:80/TCP@0'], /--backend: every backend has weight 0/);
  await assertUsageError([], /--backend: at least one backend/);
  await assertUsageError(['--json'], /--backend: at least one backend/);
  await assertUsageError(['--frobnicate', ...one], /--frobnicate/);
  await assertUsageError([...one, '--size'], /--size/);
  await assertUsageError([...one, 'extra'], /extra/);
});

test('xlb maglev as a process: exit 0 with JSON, exit 2 with the message on stderr', (t) => {
  const main = fileURLToPath(new URL('../../agent/cli/main.js', import.meta.url));
  if (!existsSync(main)) {
    t.skip(`${main} is not built yet (agent/cli/main.ts dispatches to maglevCommand)`);
    return;
  }
  const ok = spawnSync(process.execPath, [main, 'maglev', '--size', '251', '--backend', '198.18.1.2:8080/TCP', '--json'], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  assert.equal(ok.status, EXIT_OK, ok.stderr);
  const table: unknown = JSON.parse(ok.stdout);
  assert.ok(Array.isArray(table) && table.length === 251 && table.every((index) => index === 0));

  const bad = spawnSync(process.execPath, [main, 'maglev', '--size', '1000', '--backend', '198.18.1.2:8080/TCP'], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  assert.equal(bad.status, EXIT_USAGE);
  assert.match(bad.stderr, /--size/);
});
