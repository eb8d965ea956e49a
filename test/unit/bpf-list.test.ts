/**
 * `xlb bpf lb list` / `ct list` decoding: map contents computed from services (lb/lbmap/desired.ts, the
 * bytes the agent writes) and conntrack entries encoded with lb/layouts.ts, decoded back into listings.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ctList, ctListText, lbList, lbListText } from '../../agent/cli/bpf.js';
import type { LbMapDump } from '../../lb/lbmap/desired.js';
import { AF_INET, AF_INET6, CtEntry, CtFlag, IPPROTO_TCP, IPPROTO_UDP, XlbTuple } from '../../lb/layouts.js';
import { desiredLbState, type LbState } from '../../lb/lbmap/desired.js';
import { IdAllocator } from '../../lb/lbmap/ids.js';
import { DEFAULT_MAGLEV_SEED, parseMaglevSeed } from '../../lb/maglev/index.js';
import { validateService } from '../../lb/service.js';

const M = 251;

function mapsOf(state: LbState): LbMapDump {
  const pairs = (entries: Iterable<{ key: Buffer; value: Buffer }>): [Buffer, Buffer][] => [...entries].map((e) => [e.key, e.value]);
  const services = [...state.services.values()];
  return {
    svc: services.flatMap((s) => pairs(s.frontends.values())),
    be: pairs(state.backends.values()),
    slot: services.flatMap((s) => pairs(s.slots.values())),
    maglev: services.flatMap((s) => (s.maglev ? pairs([s.maglev]) : [])),
    srcrng: services.flatMap((s) => pairs(s.sourceRanges.values())),
  };
}

describe('xlb bpf lb list', () => {
  const services = new Map(
    Object.entries({
      web4: {
        frontend: { address: '198.18.10.10', port: 80, protocol: 'TCP' },
        mode: 'dsr',
        sourceRanges: ['198.18.0.0/28'],
        backends: [
          { address: '198.18.0.11', port: 8080 },
          { address: '198.18.0.12', port: 8080, weight: 300 },
          { address: '198.18.0.13', port: 8080, state: 'maintenance' },
        ],
      },
      web6: {
        frontend: { address: '2001:db8:10::10', port: 80, protocol: 'TCP' },
        algorithm: 'random',
        sessionAffinity: { type: 'ClientIP', timeoutSeconds: 600 },
        backends: [{ address: '2001:db8::b', port: 8080 }],
      },
      empty: { frontend: { address: '198.18.10.11', port: 53, protocol: 'UDP' }, mode: 'snat', backends: [] },
    }).map(([id, raw]) => [id, validateService(raw, id)]),
  );
  const state = desiredLbState(
    services,
    { addresses: ['198.18.0.2'], maglevTableSize: M, maglevSeed: parseMaglevSeed(DEFAULT_MAGLEV_SEED), defaultMode: 'snat' },
    new IdAllocator(),
  );
  const list = lbList(mapsOf(state));

  test('each frontend with its mode, flags, source ranges and usable backends in slot order', () => {
    assert.deepEqual(list.map((e) => e.frontend), ['198.18.10.10:80/TCP', '198.18.10.11:53/UDP', '[2001:db8:10::10]:80/TCP']);
    const [web4, empty, web6] = list;
    assert.ok(web4 && empty && web6);
    assert.equal(web4.mode, 'dsr');
    assert.deepEqual(web4.flags, ['maglev', 'source-ranges']);
    assert.deepEqual(web4.sourceRanges, ['198.18.0.0/28']);
    // The backend in maintenance gets no slot.
    assert.deepEqual(web4.backends.map((b) => [b.slot, b.backend]), [[0, '198.18.0.11:8080'], [1, '198.18.0.12:8080']]);
    assert.deepEqual(web6.flags, ['random']);
    assert.equal(web6.affinityTimeoutSeconds, 600);
    assert.deepEqual(web6.backends.map((b) => b.backend), ['[2001:db8::b]:8080']);
    assert.equal(web6.backends[0]?.maglevShare, undefined);
    assert.equal(empty.mode, 'snat');
    assert.deepEqual(empty.backends, []);
  });

  test('Maglev shares follow the weights and cover the whole table', () => {
    const web4 = list[0];
    assert.ok(web4);
    const shares = web4.backends.map((b) => b.maglevShare ?? 0);
    assert.ok(Math.abs(shares.reduce((a, b) => a + b, 0) - 1) < 1e-9);
    assert.ok(Math.abs((shares[1] ?? 0) / (shares[0] ?? 1) - 3) < 0.2, `shares ${shares.join(', ')} for weights 100 and 300`);
  });

  test('text: one row per backend, the frontend on the first', () => {
    const text = lbListText(list);
    assert.match(text, /^service address/);
    assert.match(text, /198\.18\.10\.10:80\/TCP\s+\d+\s+dsr\s+maglev source-ranges from 198\.18\.0\.0\/28\s+198\.18\.0\.11:8080 \(\d+\) \(0\)\s+\d+\.\d%/);
    assert.match(text, /\n\s+198\.18\.0\.12:8080 \(\d+\) \(1\)/);
    assert.match(text, /198\.18\.10\.11:53\/UDP .*\(no backends: new flows are rejected\)/);
    assert.equal(lbListText([]), 'no services in the LB maps\n');
  });
});

describe('xlb bpf ct list', () => {
  const tuple = (family: number, saddr: string, daddr: string, sport: number, dport: number, proto: number): Buffer =>
    XlbTuple.encode({ saddr, daddr, sport, dport, proto, family, kind: 0 });
  const nexthop = { ifindex: 2, updated: 0, dmac: Buffer.alloc(6), smac: Buffer.alloc(6), mtu: 1500 };
  const entry = (lastSeen: bigint, backend: { addr: string; port: number; family: number }, flags: number, nat = { addr: '0.0.0.0', port: 0 }): Buffer =>
    CtEntry.encode({ lastSeen, serviceId: 3, slot: { backendId: 7, backend }, natAddr: nat.addr, natPort: nat.port, flags, nexthop });
  const now = 10_000_000_000n;

  const list = ctList(
    [
      [tuple(AF_INET, '198.18.0.100', '198.18.10.10', 41000, 80, IPPROTO_TCP), entry(now - 2_500_000_000n, { addr: '198.18.0.11', port: 8080, family: AF_INET }, CtFlag.Dsr | CtFlag.Opening | CtFlag.Handshake)],
      [
        tuple(AF_INET6, '2001:db8::64', '2001:db8:10::10', 41001, 53, IPPROTO_UDP),
        entry(now - 500_000_000n, { addr: '2001:db8::b', port: 5353, family: AF_INET6 }, CtFlag.Snat, { addr: '2001:db8::2', port: 61000 }),
      ],
    ],
    now,
  );

  test('flows decoded by their family, most recently used first', () => {
    assert.deepEqual(list, [
      {
        protocol: 'UDP',
        source: '[2001:db8::64]:41001',
        destination: '[2001:db8:10::10]:53',
        serviceId: 3,
        backendId: 7,
        backend: '[2001:db8::b]:5353',
        flags: ['snat'],
        nat: '[2001:db8::2]:61000',
        idleSeconds: 0.5,
      },
      {
        protocol: 'TCP',
        source: '198.18.0.100:41000',
        destination: '198.18.10.10:80',
        serviceId: 3,
        backendId: 7,
        backend: '198.18.0.11:8080',
        flags: ['dsr', 'opening', 'handshake'],
        idleSeconds: 2.5,
      },
    ]);
  });

  test('text', () => {
    const text = ctListText(list);
    assert.match(text, /^proto\s+source\s+destination/);
    assert.match(text, /TCP\s+198\.18\.0\.100:41000\s+198\.18\.10\.10:80\s+3\s+198\.18\.0\.11:8080 \(7\)\s+dsr,opening,handshake\s+-\s+2\.5s/);
    assert.equal(ctListText([]), 'no tracked flows\n');
  });
});
