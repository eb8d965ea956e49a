/**
 * `xlb status`: the agent's version, uptime, devices, services, how full its id spaces and maps are,
 * and in Kubernetes mode its connection to the apiserver.
 */
import type { KubernetesStatus } from '../kubernetes-status.js';
import type { EdtStatus } from '../edt-datapath.js';
import { formatBandwidth } from '../../lb/bandwidth.js';
import { EXIT_OK, parseCliArgs, type CliCommand, type CliIO } from './command.js';
import { API_SOCKET_USAGE, apiCall, apiSocketPath } from './api-client.js';
import { formatTable } from './table.js';

const USAGE = `xlb status [--json]

  --json             print the agent's /v1/status answer as JSON
${API_SOCKET_USAGE}

Exit codes: 0 the agent answered, 1 it failed or is unreachable, 2 bad arguments.`;

interface Status {
  version: string;
  uptimeSeconds: number;
  revision: number;
  /** `kubernetes` is absent from agents older than Kubernetes mode. */
  services: { total: number; config: number; api: number; kubernetes?: number };
  /** Kubernetes mode only. */
  kubernetes?: KubernetesStatus;
  /** The EDT bandwidth manager; absent with --no-bandwidth-manager (and from older agents). */
  bandwidth?: EdtStatus;
  datapath: {
    devices: { name: string; mode: string }[];
    maglevTableSize: number;
    defaultMode: string;
    /** Sysctls the datapath needs that were unmet at start-up; changedFrom when the agent set them. */
    nodeSettings?: { sysctl: string; value: string; wanted: string; changedFrom?: string; effect: string }[];
  };
  /** Absent from agents older than the id spaces in /v1/status. */
  ids?: { table: string; used: number; capacity: number; full: boolean }[];
  maps: { map: string; entries: number; maxEntries: number; full?: boolean }[];
}

function isStatus(value: unknown): value is Status {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.version === 'string' && typeof v.services === 'object' && typeof v.datapath === 'object' && Array.isArray(v.maps);
}

/** 3725 → "1h2m5s". */
export function formatDuration(seconds: number): string {
  let rest = Math.floor(seconds);
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60]] as const) {
    if (rest >= size || parts.length > 0) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  parts.push(`${rest}s`);
  return parts.join('');
}

/** "2025-01-01T00:00:00.000Z (5m3s ago)"; the time alone when it cannot be read. */
function sinceText(time: string, now: number): string {
  const at = Date.parse(time);
  return Number.isNaN(at) ? time : `${time} (${formatDuration(Math.max(0, (now - at) / 1000))} ago)`;
}

/** The Kubernetes section: where the services come from and whether the agent still hears from there. */
export function kubernetesText(k: KubernetesStatus, now = Date.now()): string {
  const sync = k.lastSync;
  const lines = [
    'kubernetes:',
    `  apiserver:       ${k.apiServer}`,
    `  connection:      ${k.connection} since ${sinceText(k.since, now)}`,
    ...(k.lastError !== undefined && k.connection !== 'disconnected' ? [`  last error:      ${k.lastError}`] : []),
    `  endpointslices:  ${k.endpointSliceVersion === undefined ? 'not yet known' : `discovery.k8s.io/${k.endpointSliceVersion}`}`,
    `  node:            ${k.nodeName}`,
    `  services served: ${k.services}`,
    `  last sync:       ${
      sync === undefined
        ? 'none yet'
        : `${sinceText(sync.at, now)}: ${sync.changed} changed, ${sync.failed} failed, ${sync.durationMs.toFixed(1)} ms` +
          (sync.failed > 0 ? " (refused services are in the agent's log, and retried)" : '')
    }`,
    `  problems:        ${k.problems === 0 ? 'none' : `${k.problems} malformed object(s) or field(s), left out (see the agent's log and events)`}`,
    ...(k.connection === 'disconnected'
      ? [
          `WARNING: disconnected from the apiserver ${k.apiServer} since ${sinceText(k.since, now)}` +
            `${k.lastError === undefined ? '' : `: ${k.lastError}`}; the services of the last sync are still served, changes since are not`,
        ]
      : []),
  ];
  return `${lines.join('\n')}\n`;
}

/** The bandwidth section: where tc_edt_egress is, whether fq paces there, the rates in force. */
export function bandwidthText(b: EdtStatus): string {
  const rates = b.rates.map((r) => `${r.device ?? `ifindex ${r.ifindex} (gone)`} ${formatBandwidth(r.bytesPerSecond)}`);
  const lines = [
    'bandwidth:',
    `  devices:         ${b.devices.map((d) => `${d.name} (fq ${d.fq ? 'yes' : 'no'})`).join(', ') || 'none'}`,
    `  horizon:         ${b.horizonNs / 1e6} ms`,
    `  rates:           ${rates.join(', ') || 'none'}`,
    // Without fq the departure times only matter once a pod has a rate: then it is a warning.
    ...(b.rates.length > 0 ? b.warnings.map((w) => `WARNING: ${w}`) : b.warnings.map((w) => `  note:            ${w}`)),
  ];
  return `${lines.join('\n')}\n`;
}

function servicesText(status: Status): string {
  const { total, config, api, kubernetes } = status.services;
  const kube = status.kubernetes !== undefined || (kubernetes ?? 0) > 0 ? `, ${kubernetes ?? 0} from Kubernetes` : '';
  return `${total} (${config} from the config file, ${api} from the API${kube}), revision ${status.revision}`;
}

function statusText(status: Status): string {
  const devices = status.datapath.devices.map((d) => `${d.name} (${d.mode})`).join(', ') || 'none';
  const lines = [
    `xlb-agent ${status.version}, up ${formatDuration(status.uptimeSeconds)}`,
    `devices:           ${devices}`,
    `default mode:      ${status.datapath.defaultMode}`,
    `maglev table size: ${status.datapath.maglevTableSize}`,
    `services:          ${servicesText(status)}`,
    '',
    ...(status.kubernetes === undefined ? [] : [kubernetesText(status.kubernetes)]),
    ...(status.bandwidth === undefined ? [] : [bandwidthText(status.bandwidth)]),
  ];
  // Id spaces first: they are tables too, and the first to run out when services are many.
  const tables = [
    ...(status.ids ?? []).map((t) => ({ name: t.table, entries: t.used, max: t.capacity, full: t.full })),
    ...status.maps.map((m) => ({ name: m.map, entries: m.entries, max: m.maxEntries, full: m.full === true })),
  ];
  const full = tables.filter((t) => t.full).map((t) => t.name);
  const row = (t: (typeof tables)[number]): (string | number)[] => {
    const cells = [t.name, t.entries, t.max, t.max > 0 ? `${((100 * t.entries) / t.max).toFixed(1)}%` : '-'];
    return full.length === 0 ? cells : [...cells, t.full ? 'FULL' : ''];
  };
  const header = ['table', 'entries', 'max entries', 'pressure', ...(full.length === 0 ? [] : ['full'])];
  const maps = tables.length === 0 ? '' : formatTable(header, tables.map(row));
  const warning = full.length === 0 ? '' : `full: ${full.join(', ')} (changes needing room there are refused)\n`;
  return `${lines.join('\n')}${maps === '' ? '' : `\n${maps}`}${warning}${nodeSettingsText(status.datapath.nodeSettings ?? [])}`;
}

/** What the agent changed on the node at start-up, and, above all, what it was told not to change. */
function nodeSettingsText(settings: NonNullable<Status['datapath']['nodeSettings']>): string {
  const unmet = settings.filter((s) => s.changedFrom === undefined);
  const changed = settings.filter((s) => s.changedFrom !== undefined);
  const lines = [
    ...unmet.map((s) => `WARNING: sysctl ${s.sysctl} is ${s.value}, the datapath needs ${s.wanted}: ${s.effect}`),
    ...(changed.length === 0 ? [] : [`set at start-up: ${changed.map((s) => `${s.sysctl} ${s.changedFrom ?? ''} -> ${s.value}`).join(', ')}`]),
  ];
  return lines.length === 0 ? '' : `\n${lines.join('\n')}\n`;
}

export const statusCommand: CliCommand = {
  name: 'status',
  summary: "show the agent's status: devices, mode, services, how full the id spaces and maps are, the apiserver connection",
  usage: USAGE,
  async run(args: string[], io: CliIO): Promise<number> {
    const values: { json?: boolean; 'api-socket'?: string; help?: boolean } = parseCliArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: { json: { type: 'boolean' }, 'api-socket': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }).values;
    if (values.help === true) {
      io.out(`${USAGE}\n`);
      return EXIT_OK;
    }
    const status = await apiCall(apiSocketPath(values['api-socket']), 'GET', '/v1/status');
    if (values.json === true) {
      io.out(`${JSON.stringify(status, null, 2)}\n`);
      return EXIT_OK;
    }
    if (!isStatus(status)) throw new Error('unexpected answer from xlb-agent to GET /v1/status');
    io.out(statusText(status));
    return EXIT_OK;
  },
};
