/**
 * The CLI's side of the REST API: HTTP over the agent's unix socket (node:http with socketPath).
 * The socket is --api-socket, else $XLB_API_SOCKET, else /run/xlb/xlb.sock.
 */
import { request, type IncomingMessage } from 'node:http';
import type { ValidationIssue } from '../../lb/service.js';
import { DEFAULT_API_SOCKET } from '../flags.js';

export const API_SOCKET_ENV = 'XLB_API_SOCKET';

/** Text for the --api-socket line of every command's usage. */
export const API_SOCKET_USAGE = `  --api-socket PATH  the agent's API socket (default $${API_SOCKET_ENV}, else ${DEFAULT_API_SOCKET})`;

export function apiSocketPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? (env[API_SOCKET_ENV] || DEFAULT_API_SOCKET);
}

/** The agent answered with an error status; the message is its {error}, with each invalid field. */
export class ApiError extends Error {
  override name = 'ApiError';

  constructor(
    readonly status: number,
    message: string,
    readonly issues: ValidationIssue[] = [],
  ) {
    super(message);
  }
}

/** The agent could not be reached at all; the message names the socket and the likely cause. */
export class AgentUnreachableError extends Error {
  override name = 'AgentUnreachableError';
}

const REQUEST_TIMEOUT_MS = 60_000;

function unreachable(socketPath: string, error: NodeJS.ErrnoException): AgentUnreachableError {
  const why: Record<string, string> = {
    ENOENT: 'no such socket — is xlb-agent running? (--api-socket PATH or $XLB_API_SOCKET to use another)',
    ECONNREFUSED: 'connection refused — xlb-agent is not running (stale socket)',
    EACCES: 'permission denied — the socket is mode 0600: run as the agent\'s user (root)',
    ENOTSOCK: 'not a socket',
  };
  return new AgentUnreachableError(
    `cannot reach xlb-agent at unix socket ${socketPath}: ${why[error.code ?? ''] ?? error.message}`,
  );
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function issuesOf(body: unknown): ValidationIssue[] {
  if (!isObject(body) || !Array.isArray(body.issues)) return [];
  return body.issues.filter(isObject).map((i) => ({ field: String(i.field ?? ''), message: String(i.message ?? '') }));
}

function apiError(status: number, body: unknown): ApiError {
  const text = isObject(body) && typeof body.error === 'string' ? body.error : typeof body === 'string' && body !== '' ? body : `HTTP ${status}`;
  return new ApiError(status, `xlb-agent answered ${status}: ${text}`, issuesOf(body));
}

async function readBody(response: IncomingMessage): Promise<unknown> {
  response.setEncoding('utf8');
  let text = '';
  for await (const chunk of response) text += chunk as string;
  if (/json/.test(response.headers['content-type'] ?? '') && text !== '') {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  }
  return text;
}

export interface ApiResponse {
  status: number;
  body: unknown;
}

/** One request; resolves with any status (the caller decides), rejects only when the agent is unreachable. */
export function apiRequest(socketPath: string, method: string, path: string, body?: unknown): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        socketPath,
        method,
        path,
        agent: false,
        timeout: REQUEST_TIMEOUT_MS,
        headers: payload === undefined ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json' },
      },
      (response) => {
        readBody(response).then((parsed) => resolve({ status: response.statusCode ?? 0, body: parsed }), reject);
      },
    );
    req.once('timeout', () => req.destroy(new Error(`xlb-agent at ${socketPath} did not answer ${method} ${path} within ${REQUEST_TIMEOUT_MS / 1000} s`)));
    req.once('error', (error: NodeJS.ErrnoException) => reject(error.code ? unreachable(socketPath, error) : error));
    req.end(payload);
  });
}

/** A request that must succeed (2xx); otherwise throws ApiError with the agent's message. */
export async function apiCall(socketPath: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const response = await apiRequest(socketPath, method, path, body);
  if (response.status < 200 || response.status > 299) throw apiError(response.status, response.body);
  return response.body;
}

export interface StreamHandlers {
  /** The agent accepted the stream (headers received). */
  onOpen(): void;
  onLine(line: string): void;
}

/**
 * Reads a line stream (NDJSON) until the agent ends it ('ended') or `signal` aborts it ('aborted').
 */
export function apiStream(socketPath: string, path: string, handlers: StreamHandlers, signal: AbortSignal): Promise<'ended' | 'aborted'> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method: 'GET', path, agent: false, signal, headers: { accept: 'application/x-ndjson' } }, (response) => {
      const status = response.statusCode ?? 0;
      if (status !== 200) {
        readBody(response).then((body) => reject(apiError(status, body)), reject);
        return;
      }
      handlers.onOpen();
      response.setEncoding('utf8');
      let pending = '';
      response.on('data', (chunk: string) => {
        pending += chunk;
        let newline: number;
        while ((newline = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          if (line.trim() !== '') handlers.onLine(line);
        }
      });
      response.once('end', () => resolve('ended'));
      response.once('error', (error) => (signal.aborted ? resolve('aborted') : reject(error)));
    });
    req.once('error', (error: NodeJS.ErrnoException) => {
      if (signal.aborted) resolve('aborted');
      else reject(error.code && error.code !== 'ECONNRESET' ? unreachable(socketPath, error) : error);
    });
    req.end();
  });
}
