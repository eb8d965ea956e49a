/**
 * `xlb bandwidth list|set|delete`: pods' egress bandwidth limits (standalone mode), through the
 * agent's /v1/bandwidth. RATE is bits per second in Kubernetes units, as the annotation
 * kubernetes.io/egress-bandwidth writes it.
 */
import { formatBandwidth, parseBandwidth } from '../../lb/bandwidth.js';
import { EXIT_FAILURE, EXIT_OK, UsageError, parseCliArgs, type CliCommand, type CliIO } from './command.js';
import { API_SOCKET_USAGE, ApiError, apiCall, apiSocketPath } from './api-client.js';
import { formatTable } from './table.js';

const USAGE = `xlb bandwidth list [--json]
xlb bandwidth set DEVICE RATE [--json]
xlb bandwidth delete DEVICE [--json]

  list                 every limited pod device: its ifindex, the rate as given and in bytes/s
  set DEVICE RATE      limit the egress of the pod behind DEVICE (a device the agent's --pod-devices
                       matches) to RATE bits per second: 10M, 1G, 500k, 100Mi, 1.5M (1k to 1P);
                       kept across agent restarts
  delete DEVICE        lift the limit

  Enforced by the EDT bandwidth manager on the agent's devices; pacing needs the fq qdisc there
  (xlb status says where it is missing). Kubernetes mode takes the Pods' annotations instead.

  --json               print the agent's JSON answer
${API_SOCKET_USAGE}

Exit codes: 0 done, 1 the agent failed or is unreachable (or no such device), 2 bad arguments.`;

interface BandwidthEntry {
  device: string;
  ifindex: number;
  egress: string;
  bytesPerSecond: number;
}

function isEntry(value: unknown): value is BandwidthEntry {
  const v = value as Partial<BandwidthEntry> | null;
  return typeof v === 'object' && v !== null && typeof v.device === 'string' && typeof v.egress === 'string' && typeof v.bytesPerSecond === 'number';
}

function entriesOf(body: unknown): BandwidthEntry[] {
  const list = (body as { bandwidth?: unknown } | null)?.bandwidth;
  if (!Array.isArray(list) || !list.every(isEntry)) throw new Error('unexpected answer from xlb-agent to GET /v1/bandwidth');
  return list;
}

export function bandwidthTable(entries: BandwidthEntry[]): string {
  if (entries.length === 0) return 'no pod has a bandwidth limit\n';
  return formatTable(
    ['device', 'ifindex', 'egress', 'bytes/s', 'rate'],
    entries.map((e) => [e.device, e.ifindex, e.egress, e.bytesPerSecond, formatBandwidth(e.bytesPerSecond)]),
  );
}

function devicePath(device: string): string {
  return `/v1/bandwidth/${encodeURIComponent(device)}`;
}

/** The positionals a subcommand takes, exactly. */
function positionalsOf(sub: string, positionals: string[], names: string[]): string[] {
  if (positionals.length < names.length) throw new UsageError(`xlb bandwidth ${sub}: ${names[positionals.length] ?? ''} is required`);
  if (positionals.length > names.length) throw new UsageError(`xlb bandwidth ${sub}: unexpected argument ${JSON.stringify(positionals[names.length])}`);
  return positionals;
}

/** A device without a limit, or no such device (404): a one-line message and exit code 1. */
async function notFoundAware(io: CliIO, run: () => Promise<unknown>): Promise<unknown> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      io.err(`xlb bandwidth: ${error.message.replace(/^xlb-agent answered \d+: /, '')}\n`);
      return EXIT_FAILURE;
    }
    throw error;
  }
}

export const bandwidthCommand: CliCommand = {
  name: 'bandwidth',
  summary: "list, set and delete pods' egress bandwidth limits (standalone mode)",
  usage: USAGE,
  async run(args: string[], io: CliIO): Promise<number> {
    const [sub, ...rest] = args;
    const { values, positionals } = parseCliArgs({
      args: rest,
      strict: true,
      allowPositionals: true,
      options: { json: { type: 'boolean' }, 'api-socket': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
    if (values.help === true) {
      io.out(`${USAGE}\n`);
      return EXIT_OK;
    }
    const socket = apiSocketPath(values['api-socket']);
    const json = values.json === true;
    let result: unknown;
    switch (sub) {
      case 'list': {
        positionalsOf(sub, positionals, []);
        const entries = entriesOf(await apiCall(socket, 'GET', '/v1/bandwidth'));
        io.out(json ? `${JSON.stringify(entries, null, 2)}\n` : bandwidthTable(entries));
        return EXIT_OK;
      }
      case 'set': {
        const [device = '', rate = ''] = positionalsOf(sub, positionals, ['DEVICE', 'RATE']);
        try {
          parseBandwidth(rate);
        } catch (error) {
          throw new UsageError(`RATE: ${(error as Error).message}`);
        }
        result = await notFoundAware(io, () => apiCall(socket, 'PUT', devicePath(device), { egress: rate }));
        break;
      }
      case 'delete': {
        const [device = ''] = positionalsOf(sub, positionals, ['DEVICE']);
        result = await notFoundAware(io, () => apiCall(socket, 'DELETE', devicePath(device)));
        break;
      }
      default:
        throw new UsageError(`xlb bandwidth: ${sub === undefined ? 'a subcommand is required' : `unknown subcommand ${JSON.stringify(sub)}`}; expected list, set or delete`);
    }
    if (typeof result === 'number') return result;
    if (json) io.out(`${JSON.stringify(result, null, 2)}\n`);
    else if (isEntry(result)) {
      const what = sub === 'delete' ? 'no longer limited' : `egress limited to ${result.egress} (${formatBandwidth(result.bytesPerSecond)}, ${result.bytesPerSecond} bytes/s)`;
      io.out(`${result.device} (ifindex ${result.ifindex}): ${what}\n`);
    }
    return EXIT_OK;
  },
};
