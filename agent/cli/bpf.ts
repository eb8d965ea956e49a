/**
 * `xlb bpf ...`: look at the datapath's programs and maps.
 *   objects   load each compiled object, print its programs and maps, unload it
 *   lb list   the pinned LB maps as frontends → backends (as `cilium bpf lb list`)
 *   ct list   the pinned conntrack map: the flows the LB node tracks and the backend each one got
 * The two lists read the maps an agent pinned under --bpffs and decode them with lb/layouts.ts; the
 * decoding is pure (lbList, ctList) so it can be tested without a kernel.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONNTRACK_MAPS, ctFlows } from '../../lb/datapath/conntrack.js';
import { LB_MAPS } from '../../lb/datapath/lb-writer.js';
import { innerTables } from '../../lb/datapath/maglev-tables.js';
import { nsPerJiffy } from '../../lb/datapath/lb-datapath.js';
import { BpfMap } from '../../lb/datapath/map.js';
import { BpfObject } from '../../lb/datapath/object.js';
import { bpfObjectPath, listBpfObjects } from '../../lb/datapath/objects.js';
import {
  CtEntry,
  CtFlag,
  ForwardingMode,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  LbBackend,
  LbService,
  LbServiceKey,
  LbSlotKey,
  LbSourceRangeKey,
  ServiceFlag,
  XlbTuple,
  decodeU32,
  decodeXlbAddr,
} from '../../lb/layouts.js';
import { lbStateFromMaps, type LbMapDump } from '../../lb/lbmap/desired.js';
import { DEFAULT_BPFFS } from '../flags.js';
import { EXIT_FAILURE, EXIT_OK, UsageError, parseCliArgs, type CliCommand, type CliIO } from './command.js';
import { formatTable } from './table.js';
import { hostPort } from '../../lb/codec.js';

const mapTypeNames: Record<number, string> = {
  1: 'hash', 2: 'array', 3: 'prog_array', 5: 'percpu_hash', 6: 'percpu_array', 9: 'lru_hash',
  10: 'lru_percpu_hash', 11: 'lpm_trie', 12: 'array_of_maps', 13: 'hash_of_maps', 27: 'ringbuf',
};

const PROTOCOL_NAMES: Record<number, string> = { [IPPROTO_TCP]: 'TCP', [IPPROTO_UDP]: 'UDP', [IPPROTO_SCTP]: 'SCTP' };
const MODE_NAMES = new Map<number, string>(Object.entries(ForwardingMode).map(([name, value]) => [value, name]));

/** Load every compiled object into the kernel (verifier included), print what it holds, unload. */
function showObjects(json: boolean, io: CliIO): number {
  const names = listBpfObjects();
  if (names.length === 0) {
    io.err('no compiled BPF objects: run deploy/setup.sh\n');
    return EXIT_FAILURE;
  }
  const report = names.map((name) => {
    const object = BpfObject.load(bpfObjectPath(name));
    try {
      return {
        object: name,
        programs: [...object.programs.values()].map((p) => ({ name: p.name, section: p.section })),
        maps: [...object.maps.values()].map((m) => ({
          name: m.name,
          type: mapTypeNames[m.type] ?? String(m.type),
          keySize: m.keySize,
          valueSize: m.valueSize,
          maxEntries: m.maxEntries,
        })),
      };
    } finally {
      object.close();
    }
  });
  if (json) {
    io.out(`${JSON.stringify(report, null, 2)}\n`);
    return EXIT_OK;
  }
  for (const entry of report) {
    io.out(`${entry.object}: loaded and verified by the kernel\n`);
    io.out(formatTable(['program', 'section'], entry.programs.map((p) => [p.name, p.section])));
    io.out(formatTable(['map', 'type', 'key', 'value', 'max entries'], entry.maps.map((m) => [m.name, m.type, m.keySize, m.valueSize, m.maxEntries])));
    io.out('\n');
  }
  return EXIT_OK;
}

// ---- xlb bpf lb list ----

export interface LbListBackend {
  slot: number;
  backendId: number;
  /** "198.18.0.11:8080", "[2001:db8::b]:8080"; "(missing)" when xlb_lb_be has no such id. */
  backend: string;
  /** Fraction of the service's Maglev table entries that name this slot (Maglev services only). */
  maglevShare?: number;
}

export interface LbListEntry {
  /** "198.18.10.10:80/TCP", "[2001:db8:10::10]:80/TCP" */
  frontend: string;
  serviceId: number;
  mode: string;
  flags: string[];
  affinityTimeoutSeconds: number;
  sourceRanges: string[];
  backends: LbListBackend[];
}

function protocolName(proto: number): string {
  return PROTOCOL_NAMES[proto] ?? `proto ${proto}`;
}

function serviceFlags(flags: number): string[] {
  const names = [flags & ServiceFlag.Maglev ? 'maglev' : 'random'];
  if (flags & ServiceFlag.SourceRanges) names.push('source-ranges');
  if (flags & ServiceFlag.NodePort) names.push('nodeport');
  if (flags & ServiceFlag.Local) names.push('local');
  return names;
}

/** The LB maps as frontends → backends, sorted by frontend. Pure: the maps' bytes in, a listing out. */
export function lbList(maps: LbMapDump): LbListEntry[] {
  const state = lbStateFromMaps(maps);
  const backends = new Map<number, string>();
  for (const { key, value } of state.backends.values()) {
    const b = LbBackend.decode(value);
    backends.set(decodeU32(key), hostPort(b.addr, b.port));
  }
  const entries: LbListEntry[] = [];
  for (const service of state.services.values()) {
    const slots = new Map([...service.slots.values()].map(({ key, value }) => [LbSlotKey.decode(key).slot, decodeU32(value)]));
    const table = service.maglev?.value;
    const maglevCounts = new Map<number, number>();
    for (let i = 0; table && i + 1 < table.length; i += 2) maglevCounts.set(table.readUInt16LE(i), (maglevCounts.get(table.readUInt16LE(i)) ?? 0) + 1);
    const sourceRanges = [...service.sourceRanges.values()].map(({ key }) => {
      const k = LbSourceRangeKey.decode(key);
      return `${k.addr}/${k.prefixlen - 32}`;
    });
    for (const { key, value } of service.frontends.values()) {
      const k = LbServiceKey.decode(key);
      const svc = LbService.decode(value);
      const usesTable = (svc.flags & ServiceFlag.Maglev) !== 0 && table !== undefined && table.length > 0;
      const list: LbListBackend[] = [];
      for (let slot = 0; slot < svc.backendCount; slot++) {
        const backendId = slots.get(slot) ?? 0;
        const entry: LbListBackend = { slot, backendId, backend: backends.get(backendId) ?? '(missing)' };
        if (usesTable) entry.maglevShare = (maglevCounts.get(slot) ?? 0) / (table.length / 2);
        list.push(entry);
      }
      entries.push({
        frontend: `${hostPort(k.addr, k.port)}/${protocolName(k.proto)}`,
        serviceId: svc.id,
        mode: MODE_NAMES.get(svc.mode) ?? `mode ${svc.mode}`,
        flags: serviceFlags(svc.flags),
        affinityTimeoutSeconds: svc.affinityTimeout,
        sourceRanges: [...sourceRanges].sort(),
        backends: list,
      });
    }
  }
  // IPv4 frontends first, then IPv6 ones; by address text within each.
  const v6 = (e: LbListEntry): number => (e.frontend.startsWith('[') ? 1 : 0);
  return entries.sort((a, b) => v6(a) - v6(b) || a.frontend.localeCompare(b.frontend) || a.serviceId - b.serviceId);
}

function percent(fraction: number | undefined): string {
  return fraction === undefined ? '-' : `${(100 * fraction).toFixed(1)}%`;
}

export function lbListText(entries: LbListEntry[]): string {
  if (entries.length === 0) return 'no services in the LB maps\n';
  const rows: string[][] = [];
  for (const e of entries) {
    const details = [...e.flags];
    if (e.affinityTimeoutSeconds > 0) details.push(`affinity ${e.affinityTimeoutSeconds}s`);
    if (e.sourceRanges.length > 0) details.push(`from ${e.sourceRanges.join(',')}`);
    const head = [e.frontend, String(e.serviceId), e.mode, details.join(' ')];
    const blank = head.map(() => '');
    if (e.backends.length === 0) rows.push([...head, '(no backends: new flows are rejected)', '']);
    e.backends.forEach((b, i) => rows.push([...(i === 0 ? head : blank), `${b.backend} (${b.backendId}) (${b.slot})`, percent(b.maglevShare)]));
  }
  return formatTable(['service address', 'id', 'mode', 'flags', 'backend address (id) (slot)', 'maglev share'], rows);
}

// ---- xlb bpf ct list ----

export interface CtListEntry {
  protocol: string;
  /** the client: "198.18.0.100:41000" */
  source: string;
  /** the frontend it addressed: "198.18.10.10:80" */
  destination: string;
  serviceId: number;
  backendId: number;
  backend: string;
  flags: string[];
  /** the SNAT address:port the flow leaves with (SNAT flows only) */
  nat?: string;
  /** seconds since the datapath last refreshed the entry (it does so at most every 250 ms) */
  idleSeconds: number;
}

function ctFlags(flags: number): string[] {
  const names: string[] = [];
  if (flags & CtFlag.Dsr) names.push('dsr');
  if (flags & CtFlag.Snat) names.push('snat');
  if (flags & CtFlag.Closing) names.push('closing');
  if (flags & CtFlag.Opening) names.push('opening');
  if (flags & CtFlag.Handshake) names.push('handshake');
  return names;
}

const SADDR_AT = XlbTuple.offsetOf('saddr');
const DADDR_AT = XlbTuple.offsetOf('daddr');
const NAT_ADDR_AT = CtEntry.offsetOf('natAddr');

/**
 * The conntrack table's flows (ctWays), most recently used first. `nowNs` is the datapath's clock (xlb_now():
 * jiffies × ns per jiffy) at the time of the dump.
 */
export function ctList(entries: Iterable<[Buffer, Buffer]>, nowNs: bigint): CtListEntry[] {
  const out: CtListEntry[] = [];
  for (const [key, value] of entries) {
    const t = XlbTuple.decode(key);
    // xlb_tuple carries its family: decode by it, never by guessing from the bytes.
    const saddr = decodeXlbAddr(key, SADDR_AT, t.family);
    const daddr = decodeXlbAddr(key, DADDR_AT, t.family);
    const ct = CtEntry.decode(value);
    const entry: CtListEntry = {
      protocol: protocolName(t.proto),
      source: hostPort(saddr, t.sport),
      destination: hostPort(daddr, t.dport),
      serviceId: ct.serviceId,
      backendId: ct.slot.backendId,
      backend: hostPort(ct.slot.backend.addr, ct.slot.backend.port),
      flags: ctFlags(ct.flags),
      idleSeconds: nowNs > ct.lastSeen ? Number(nowNs - ct.lastSeen) / 1e9 : 0,
    };
    if (ct.flags & CtFlag.Snat) entry.nat = hostPort(decodeXlbAddr(value, NAT_ADDR_AT, t.family), ct.natPort);
    out.push(entry);
  }
  return out.sort((a, b) => a.idleSeconds - b.idleSeconds || a.source.localeCompare(b.source));
}

export function ctListText(entries: CtListEntry[]): string {
  if (entries.length === 0) return 'no tracked flows\n';
  return formatTable(
    ['proto', 'source', 'destination', 'service', 'backend (id)', 'flags', 'nat', 'idle'],
    entries.map((e) => [
      e.protocol,
      e.source,
      e.destination,
      String(e.serviceId),
      `${e.backend} (${e.backendId})`,
      e.flags.join(',') || '-',
      e.nat ?? '-',
      `${e.idleSeconds.toFixed(1)}s`,
    ]),
  );
}

/** The datapath's clock now (xlb_now() in conntrack.h): jiffies × ns per jiffy, or the monotonic clock. */
function datapathNowNs(): bigint {
  const perJiffy = nsPerJiffy();
  if (perJiffy > 0) {
    const match = /^jiffies: (\d+)$/m.exec(readFileSync('/proc/timer_list', 'utf8'));
    if (match?.[1] !== undefined) return BigInt(match[1]) * BigInt(perJiffy);
  }
  return process.hrtime.bigint();
}

// ---- reading the pins ----

function openPinned(bpffs: string, name: string): BpfMap {
  const path = join(bpffs, name);
  try {
    return BpfMap.openPinned(path);
  } catch (error) {
    throw new Error(
      `cannot open the pinned map ${path} (is xlb-agent running with --bpffs ${bpffs}?): ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

/** Open the named pinned maps, run `read` over them, close them. */
function withPinned<T>(bpffs: string, names: string[], read: (maps: Map<string, BpfMap>) => T): T {
  const maps = new Map<string, BpfMap>();
  try {
    for (const name of names) maps.set(name, openPinned(bpffs, name));
    return read(maps);
  } finally {
    for (const map of maps.values()) map.close();
  }
}

function mapOf(maps: Map<string, BpfMap>, name: string): BpfMap {
  const map = maps.get(name);
  if (!map) throw new Error(`map ${name} is not open`);
  return map;
}

function entriesOf(maps: Map<string, BpfMap>, name: string): [Buffer, Buffer][] {
  return [...mapOf(maps, name).entries()];
}

function showLbList(bpffs: string, json: boolean, io: CliIO): number {
  const names = [LB_MAPS.service, LB_MAPS.backend, LB_MAPS.slot, LB_MAPS.maglev, LB_MAPS.sourceRange];
  const entries = withPinned(bpffs, names, (maps) =>
    lbList({
      svc: entriesOf(maps, LB_MAPS.service),
      be: entriesOf(maps, LB_MAPS.backend),
      slot: entriesOf(maps, LB_MAPS.slot),
      maglev: [...innerTables(mapOf(maps, LB_MAPS.maglev))],
      srcrng: entriesOf(maps, LB_MAPS.sourceRange),
    }),
  );
  io.out(json ? `${JSON.stringify(entries, null, 2)}\n` : lbListText(entries));
  return EXIT_OK;
}

function showCtList(bpffs: string, json: boolean, io: CliIO): number {
  const entries = withPinned(bpffs, [CONNTRACK_MAPS.table], (maps) =>
    ctList(ctFlows(entriesOf(maps, CONNTRACK_MAPS.table).map(([, bucket]) => bucket)), datapathNowNs()),
  );
  io.out(json ? `${JSON.stringify(entries, null, 2)}\n` : ctListText(entries));
  return EXIT_OK;
}

const USAGE = `xlb bpf objects [--json]                load each compiled object, print its programs and maps, unload it
xlb bpf lb list [--bpffs DIR] [--json]  services in the LB maps: frontend → backends (slot, Maglev share)
xlb bpf ct list [--bpffs DIR] [--json]  flows in the conntrack map: client → frontend, backend, flags, idle time

  --bpffs DIR   where the agent pinned its maps (its --bpffs; default ${DEFAULT_BPFFS})
  --json        print JSON instead of text`;

export const bpfCommand: CliCommand = {
  name: 'bpf',
  summary: 'inspect the datapath: compiled objects, the LB maps, the conntrack table',
  usage: USAGE,
  async run(args, io) {
    const { values, positionals } = parseCliArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: { json: { type: 'boolean' }, bpffs: { type: 'string' } },
    });
    const what = positionals.join(' ');
    const json = values.json === true;
    if (what === 'objects') {
      if (values.bpffs !== undefined) throw new UsageError('--bpffs: not an option of objects (it loads the compiled objects, it reads no pins)');
      return showObjects(json, io);
    }
    const bpffs = values.bpffs ?? DEFAULT_BPFFS;
    if (what === 'lb list') return showLbList(bpffs, json, io);
    if (what === 'ct list') return showCtList(bpffs, json, io);
    throw new UsageError(`unknown subcommand ${what === '' ? '(none)' : JSON.stringify(what)}; expected objects, lb list or ct list`);
  },
};
