/**
 * `xlb monitor`: the datapath's events, live, one line each, as `cilium monitor` prints them:
 *   xx drop (source_range) 198.18.0.9:41000 -> 198.18.0.10:80 tcp service web
 *   -> new-flow (new_flow) 198.18.0.9:41001 -> 198.18.0.10:80 tcp service web backend 2
 *   xx drop (policy_ingress) 198.18.60.2:41000 -> 198.18.61.2:8080 tcp identity 256 (app=client) -> 257 (app=server)
 * --json prints the agent's NDJSON lines unchanged. Runs until Ctrl-C (exit 0) or the agent stops (1).
 */
import { EXIT_FAILURE, EXIT_OK, UsageError, parseCliArgs, type CliCommand, type CliIO } from './command.js';
import { API_SOCKET_USAGE, apiSocketPath, apiStream } from './api-client.js';
import { hostPort } from '../../lb/codec.js';
import { labelsText } from './policy.js';

const TYPES = ['drop', 'new-flow', 'reject'] as const;

const USAGE = `xlb monitor [--json] [--type drop|new-flow|reject]

  --type T           only events of this type
  --json             one JSON object per line (timestamp: kernel ns, as a string)
${API_SOCKET_USAGE}

Runs until interrupted (Ctrl-C: exit 0); exit 1 when the agent is unreachable or stops.`;

const PROTOCOLS: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6', 132: 'sctp' };
const PREFIX: Record<string, string> = { drop: 'xx', reject: '<-', 'new-flow': '->', lost: '!!' };

function endpoint(address: unknown, port: unknown, withPort: boolean): string {
  return withPort ? hostPort(String(address), String(port)) : String(address);
}

/** "256 (app=client, tier=front)": a security identity and its labels, when the agent sent them. */
function identityText(id: unknown, labels: unknown): string {
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) return String(id ?? 0);
  return `${String(id)} (${labelsText(labels as Record<string, string>)})`;
}

/** One event (a line of GET /v1/monitor) as text. */
export function formatMonitorEvent(event: Record<string, unknown>): string {
  const type = String(event.type);
  if (type === 'lost') return `!! lost ${String(event.count)} events (the monitor could not keep up)`;
  const proto = typeof event.proto === 'number' ? event.proto : -1;
  const name = PROTOCOLS[proto] ?? `proto ${proto}`;
  const ports = proto === 6 || proto === 17 || proto === 132;
  const reason = typeof event.reasonLabel === 'string' ? event.reasonLabel : `reason ${String(event.reason)}`;
  let line = `${PREFIX[type] ?? '??'} ${type} (${reason}) ${endpoint(event.saddr, event.sport, ports)} -> ${endpoint(event.daddr, event.dport, ports)} ${name}`;
  if (typeof event.service === 'string') line += ` service ${event.service}`;
  else if (typeof event.serviceId === 'number' && event.serviceId !== 0) line += ` service #${event.serviceId}`;
  if (type === 'new-flow' && typeof event.backendId === 'number' && event.backendId !== 0) line += ` backend ${event.backendId}`;
  if (typeof event.srcIdentity === 'number' || typeof event.dstIdentity === 'number') {
    line += ` identity ${identityText(event.srcIdentity, event.srcLabels)} -> ${identityText(event.dstIdentity, event.dstLabels)}`;
  }
  if (event.direction === 1) line += ' egress';
  return line;
}

function formatLine(line: string): string {
  try {
    const parsed: unknown = JSON.parse(line);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) return formatMonitorEvent(parsed as Record<string, unknown>);
  } catch {
    // fall through: print what the agent sent
  }
  return line;
}

export const monitorCommand: CliCommand = {
  name: 'monitor',
  summary: 'print datapath events (drops, new flows, rejects) as they happen',
  usage: USAGE,
  async run(args: string[], io: CliIO): Promise<number> {
    const values: { json?: boolean; type?: string; 'api-socket'?: string; help?: boolean } = parseCliArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        json: { type: 'boolean' },
        type: { type: 'string' },
        'api-socket': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
    if (values.help === true) {
      io.out(`${USAGE}\n`);
      return EXIT_OK;
    }
    const type = values.type;
    if (type !== undefined && !(TYPES as readonly string[]).includes(type)) {
      throw new UsageError(`--type ${JSON.stringify(type)}: must be one of ${TYPES.join(', ')}`);
    }
    const socket = apiSocketPath(values['api-socket']);
    const json = values.json === true;
    const abort = new AbortController();
    const stop = (): void => abort.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      const outcome = await apiStream(
        socket,
        `/v1/monitor${type === undefined ? '' : `?type=${encodeURIComponent(type)}`}`,
        {
          onOpen: () => io.err(`Listening for datapath events on ${socket}${type === undefined ? '' : ` (type ${type})`}... Press Ctrl-C to quit\n`),
          onLine: (line) => io.out(`${json ? line : formatLine(line)}\n`),
        },
        abort.signal,
      );
      if (outcome === 'aborted') return EXIT_OK;
      io.err('xlb monitor: the agent closed the event stream (stopped?)\n');
      return EXIT_FAILURE;
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  },
};
