/**
 * The two requests the watcher makes, over node:http(s) with the KubeConfig's credentials (token,
 * client certificate, exec plugin, CA: client-node's applyToHTTPSOptions): a GET of JSON, and a
 * watch whose newline-separated JSON events are handed over one by one as they arrive.
 *
 * Why not client-node's Watch: it has no way to say when the watch was accepted (its informer's
 * 'connect' fires before anything was sent), no idle timeout (a watch to a vanished host hangs
 * forever), and swallows lines it cannot parse. Errors here name the method, URL and the
 * apiserver's Status message; credentials never appear in them.
 */
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Connection } from './connection.js';

/** A request that failed: no answer (status undefined) or a non-2xx one. */
export class KubeRequestError extends Error {
  override name = 'KubeRequestError';

  constructor(
    readonly url: string,
    message: string,
    /** The HTTP status, or a watch ERROR event's Status code. */
    readonly status?: number,
    /** The Status reason ("Expired", "Gone", "Forbidden") when the apiserver gave one. */
    readonly reason?: string,
    method = 'GET',
  ) {
    super(`${method} ${url}: ${message}`);
  }

  /** 410 Gone / Expired: the resourceVersion or continue token is too old; list again from scratch. */
  get gone(): boolean {
    return this.status === 410 || this.reason === 'Expired' || this.reason === 'Gone';
  }
}

/** One watch event as the apiserver sends it. */
export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: unknown;
}

const WATCH_TYPES = new Set(['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR']);
const LIST_TIMEOUT_MS = 60_000;
/** A body longer than this is not a Status message worth quoting. */
const STATUS_QUOTE_BYTES = 300;

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The apiserver's Status message and reason in an error body, else the body's start. */
export function statusOf(body: string): { message: string; reason?: string; code?: number } {
  try {
    const parsed = JSON.parse(body) as { message?: unknown; reason?: unknown; code?: unknown };
    if (typeof parsed.message === 'string') {
      return {
        message: parsed.message,
        ...(typeof parsed.reason === 'string' ? { reason: parsed.reason } : {}),
        ...(typeof parsed.code === 'number' ? { code: parsed.code } : {}),
      };
    }
  } catch {
    // not JSON: quote it
  }
  return { message: body.slice(0, STATUS_QUOTE_BYTES).trim() || '(empty body)' };
}

export class KubeClient {
  constructor(private readonly connection: Connection) {}

  get server(): string {
    return this.connection.server;
  }

  /** GET `path` (with its query) and parse the JSON answer. */
  async getJson(path: string, signal?: AbortSignal): Promise<unknown> {
    const url = this.server + path;
    const res = await this.open(url, LIST_TIMEOUT_MS, signal);
    const body = await readBody(res, url);
    try {
      return JSON.parse(body) as unknown;
    } catch (error) {
      throw new KubeRequestError(url, `answer is not JSON: ${message(error)}`);
    }
  }

  /** POST `body` as JSON to `path`; resolves with the parsed answer (the object created). */
  async postJson(path: string, body: unknown): Promise<unknown> {
    const url = this.server + path;
    const res = await this.open(url, LIST_TIMEOUT_MS, undefined, JSON.stringify(body));
    const text = await readBody(res, url, 'POST');
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw new KubeRequestError(url, `answer is not JSON: ${message(error)}`, undefined, undefined, 'POST');
    }
  }

  /**
   * Watch `path` (its query must hold watch=1): `onEvent` for each event; `onOpen` once the apiserver
   * accepted the watch. Resolves when the apiserver ends the watch (timeoutSeconds passed), rejects on
   * any error, a line that is not an event included. `idleMs`: no byte for that long is an error.
   */
  async watch(path: string, options: { idleMs: number; signal: AbortSignal; onOpen?: () => void; onEvent: (event: WatchEvent) => void }): Promise<void> {
    const url = this.server + path;
    const res = await this.open(url, options.idleMs, options.signal);
    if ((res.statusCode ?? 0) !== 200) {
      await readBody(res, url); // throws with the Status
      throw new KubeRequestError(url, `unexpected status ${res.statusCode}`, res.statusCode);
    }
    options.onOpen?.();
    await new Promise<void>((resolve, reject) => {
      let buffered = '';
      let settled = false;
      const fail = (error: Error): void => {
        if (settled) return;
        settled = true;
        res.destroy();
        reject(error);
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffered += chunk;
        let newline: number;
        while (!settled && (newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (line === '') continue;
          let event: unknown;
          try {
            event = JSON.parse(line) as unknown;
          } catch (error) {
            fail(new KubeRequestError(url, `watch sent a line that is not JSON: ${message(error)}`));
            return;
          }
          const { type, object } = (event ?? {}) as { type?: unknown; object?: unknown };
          if (typeof type !== 'string' || !WATCH_TYPES.has(type)) {
            fail(new KubeRequestError(url, `watch sent an event of unknown type ${JSON.stringify(type)}`));
            return;
          }
          try {
            options.onEvent({ type: type as WatchEvent['type'], object });
          } catch (error) {
            fail(error instanceof Error ? error : new Error(String(error)));
          }
        }
      });
      res.on('end', () => {
        if (settled) return;
        settled = true; // the 'close' that follows is no failure
        resolve();
      });
      res.on('error', (error) => fail(new KubeRequestError(url, `watch broke off: ${error.message}`)));
      res.on('close', () => fail(new KubeRequestError(url, 'watch connection closed before the answer ended')));
    });
  }

  /** Sends the GET (a POST when there is a body); resolves with the response once its headers arrived. */
  private async open(url: string, idleMs: number, signal?: AbortSignal, body?: string): Promise<IncomingMessage> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    const options: RequestOptions = { method: body === undefined ? 'GET' : 'POST', headers };
    try {
      await this.connection.kubeConfig.applyToHTTPSOptions(options);
    } catch (error) {
      throw new KubeRequestError(url, `cannot apply the kubeconfig's credentials: ${message(error)}`);
    }
    if (signal) options.signal = signal;
    const send = url.startsWith('https:') ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(url, options, resolve);
      req.setTimeout(idleMs, () => req.destroy(new Error(`no answer for ${(idleMs / 1000).toFixed(0)} s`)));
      req.on('error', (error) => reject(new KubeRequestError(url, message(error), undefined, undefined, options.method)));
      req.end(body);
    });
  }
}

/** The whole body of a 2xx answer; a KubeRequestError with the Status otherwise. */
function readBody(res: IncomingMessage, url: string, method = 'GET'): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => (body += chunk));
    res.on('error', (error) => reject(new KubeRequestError(url, `answer broke off: ${error.message}`)));
    res.on('end', () => {
      const status = res.statusCode ?? 0;
      if (status >= 200 && status <= 299) return resolve(body);
      const parsed = statusOf(body);
      reject(new KubeRequestError(url, `${status} ${parsed.message}`, status, parsed.reason, method));
    });
  });
}
