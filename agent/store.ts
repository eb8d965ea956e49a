/**
 * The agent's services: id → service, each with its origin ('config': the standalone config file,
 * 'api': created through the REST API and kept in the state file).
 *
 * Every change runs through one serialized queue: compute the next full service map, have the
 * datapath apply it, and only when that succeeded commit it to memory and persist it. A failed apply
 * changes nothing (the datapath keeps its previous state too) and the error reaches the caller.
 *
 * Rules worth knowing (also in the API's and CLI's usage texts):
 * - PUT of a service the config file defined is allowed: it becomes an 'api' service, persisted.
 *   Putting content identical to what is served is a no-op (no apply, origin unchanged).
 * - DELETE of a 'config' service removes it until the next restart, when the config file brings it back.
 * - Two services cannot share a frontend (address, port, protocol): such a PUT is refused (409).
 * - A change that needs more room than a table has (service ids, backend ids, a datapath map) is
 *   refused whole (TableFullError, 507); that table reads as full (fullTable) until a change is applied.
 * - At start-up the config file wins over the state file for an id both define, or a frontend both
 *   use (logged, and the state file is rewritten without the API copy).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parse as parseYaml } from 'yaml';
import {
  ServiceValidationError,
  serviceToJSON,
  validateService,
  validateServiceId,
  type Service,
  type ValidationIssue,
} from '../lb/service.js';
import { TableFullError } from '../lb/lbmap/ids.js';
import type { ApplyResult, ServiceDatapath } from './datapath.js';
import type { Logger } from './log.js';
import { endpointText } from '../lb/codec.js';

/** config: the standalone config file; api: the REST API (kept in the state file); kubernetes: the apiserver (read-only here). */
export type ServiceOrigin = 'config' | 'api' | 'kubernetes';

export interface StoredService {
  id: string;
  origin: ServiceOrigin;
  service: Service;
}

export type ChangeResult = 'created' | 'updated' | 'unchanged' | 'deleted';

export interface StoreChange {
  result: ChangeResult;
  entry: StoredService;
  /** The store's revision after the change (unchanged for a no-op). */
  revision: number;
}

/** One datapath apply, from the moment the change was queued until the datapath answered. */
export interface ApplyObservation {
  seconds: number;
  ok: boolean;
  result?: ApplyResult;
}

/** The datapath refused the next state; nothing changed. (A table without room is a TableFullError instead.) */
export class DatapathApplyError extends Error {
  override name = 'DatapathApplyError';

  constructor(readonly failure: unknown) {
    super(`datapath apply failed: ${failure instanceof Error ? failure.message : String(failure)}`);
  }
}

/** Two services cannot share a frontend (address, port, protocol): the datapath looks services up by it. */
export class FrontendConflictError extends Error {
  override name = 'FrontendConflictError';
  readonly issues: ValidationIssue[];

  constructor(id: string, frontend: string, heldBy: string) {
    const message = `${frontend} is already the frontend of service ${heldBy}`;
    super(`service ${id}: ${message}`);
    this.issues = [{ field: 'frontend', message }];
  }
}

const MAP_FULL_CODES = new Set(['E2BIG', 'ENOSPC']);
const MAP_FULL_ERRNOS = new Set([7, 28]);

function isMapFull(error: unknown): error is Error {
  if (!(error instanceof Error)) return false;
  const { code, errno } = error as Error & { code?: unknown; errno?: unknown };
  if (typeof code === 'string' && MAP_FULL_CODES.has(code)) return true;
  if (typeof errno === 'number' && MAP_FULL_ERRNOS.has(Math.abs(errno))) return true;
  return /\b(E2BIG|ENOSPC)\b/.test(error.message);
}

/** The map a refused write names: LbWriteError's `map`, else "map NAME" in the message. */
function mapOf(error: Error): string {
  const { map } = error as Error & { map?: unknown };
  if (typeof map === 'string' && map !== '') return map;
  return /\bmap (\S+)/.exec(error.message)?.[1] ?? 'a datapath map';
}

/** A Kubernetes service cannot be changed through the API: the apiserver owns it. */
export class ReadOnlyServiceError extends Error {
  override name = 'ReadOnlyServiceError';
  readonly issues: ValidationIssue[];

  constructor(id: string) {
    const message = `service ${id} comes from Kubernetes: change its Service or EndpointSlices through the apiserver`;
    super(message);
    this.issues = [{ field: 'id', message }];
  }
}

/** What one Kubernetes sync did: services applied, and the ones the datapath refused (the others are served). */
export interface KubernetesSyncResult {
  /** Ids created, updated or removed. */
  applied: string[];
  /** Ids refused, with why; their previous state (if any) is still served. */
  failed: { id: string; error: string }[];
  durationMs: number;
}

/** A config or state file that cannot be used: the message names the file and every bad field. */
export class ServiceFileError extends Error {
  override name = 'ServiceFileError';

  constructor(
    readonly kind: 'config file' | 'state file',
    readonly file: string,
    readonly issues: ValidationIssue[],
  ) {
    super(`${kind} ${file}: ${issues.map((i) => (i.field ? `${i.field}: ${i.message}` : i.message)).join('; ')}`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Validates `raw` as a service, or adds its issues to `issues` and returns undefined. */
function collectService(
  raw: unknown,
  at: string,
  issues: ValidationIssue[],
): Service | undefined {
  try {
    return validateService(raw, at);
  } catch (error) {
    if (!(error instanceof ServiceValidationError)) throw error;
    issues.push(...error.issues);
    return undefined;
  }
}

/**
 * The standalone config file's services. Format (YAML, or JSON which is YAML too):
 *   services:
 *     - id: web                       # a DNS label, unique in the file
 *       frontend: { address: 198.18.0.10, port: 80, protocol: TCP }
 *       backends: [ { address: 198.18.1.2, port: 8080 } ]
 */
export function parseConfigText(text: string, file: string): Map<string, Service> {
  let document: unknown;
  try {
    document = parseYaml(text) as unknown;
  } catch (error) {
    throw new ServiceFileError('config file', file, [{ field: '', message: `not valid YAML/JSON: ${error instanceof Error ? error.message : String(error)}` }]);
  }
  if (!isObject(document)) {
    throw new ServiceFileError('config file', file, [{ field: '', message: 'expected a mapping with a "services:" list' }]);
  }
  const issues: ValidationIssue[] = [];
  for (const key of Object.keys(document)) {
    if (key !== 'services') issues.push({ field: key, message: 'unknown field (allowed: services)' });
  }
  const list = document.services ?? [];
  if (!Array.isArray(list)) {
    issues.push({ field: 'services', message: 'must be a list of service objects, each with an "id"' });
    throw new ServiceFileError('config file', file, issues);
  }
  const services = new Map<string, Service>();
  const firstIndex = new Map<string, number>();
  const frontendIndex = new Map<string, number>();
  list.forEach((item: unknown, index) => {
    const at = `services[${index}]`;
    if (!isObject(item)) {
      issues.push({ field: at, message: 'must be a service object with an "id"' });
      return;
    }
    const { id: rawId, ...fields } = item;
    let id: string | undefined;
    if (rawId === undefined) {
      issues.push({ field: `${at}.id`, message: 'required: the service id (a DNS label)' });
    } else {
      try {
        id = validateServiceId(rawId);
      } catch (error) {
        if (!(error instanceof ServiceValidationError)) throw error;
        issues.push(...error.issues.map((i) => ({ ...i, field: `${at}.id` })));
      }
    }
    const service = collectService(fields, at, issues);
    if (id === undefined) return;
    const earlier = firstIndex.get(id);
    if (earlier !== undefined) {
      issues.push({ field: `${at}.id`, message: `${JSON.stringify(id)} is also the id of services[${earlier}]` });
      return;
    }
    firstIndex.set(id, index);
    if (!service) return;
    const frontend = frontendText(service);
    const holder = frontendIndex.get(frontend);
    if (holder !== undefined) {
      issues.push({ field: `${at}.frontend`, message: `${frontend} is also the frontend of services[${holder}]` });
      return;
    }
    frontendIndex.set(frontend, index);
    services.set(id, service);
  });
  if (issues.length > 0) throw new ServiceFileError('config file', file, issues);
  return services;
}

export async function loadConfigFile(file: string): Promise<Map<string, Service>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ServiceFileError('config file', file, [{ field: '', message: `cannot read: ${error instanceof Error ? error.message : String(error)}` }]);
  }
  return parseConfigText(text, file);
}

export const STATE_FILE_VERSION = 1;

/** The state file: {"version": 1, "services": {id: service}} — the API's services. Missing: none. */
export async function readStateFile(file: string): Promise<Map<string, Service>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw new ServiceFileError('state file', file, [{ field: '', message: `cannot read: ${error instanceof Error ? error.message : String(error)}` }]);
  }
  let document: unknown;
  try {
    document = JSON.parse(text) as unknown;
  } catch (error) {
    throw new ServiceFileError('state file', file, [{ field: '', message: `not valid JSON: ${error instanceof Error ? error.message : String(error)}` }]);
  }
  if (!isObject(document) || document.version !== STATE_FILE_VERSION || !isObject(document.services)) {
    throw new ServiceFileError('state file', file, [
      { field: '', message: `expected {"version": ${STATE_FILE_VERSION}, "services": {id: service}}` },
    ]);
  }
  const issues: ValidationIssue[] = [];
  const services = new Map<string, Service>();
  for (const [id, raw] of Object.entries(document.services)) {
    try {
      validateServiceId(id);
    } catch (error) {
      if (!(error instanceof ServiceValidationError)) throw error;
      issues.push(...error.issues.map((i) => ({ ...i, field: `services.${id}` })));
      continue;
    }
    const service = collectService(raw, `services.${id}`, issues);
    if (service) services.set(id, service);
  }
  if (issues.length > 0) throw new ServiceFileError('state file', file, issues);
  return services;
}

/** Replaces `file` atomically: temp file in the same directory, fsync, rename over, fsync the directory. */
export async function writeFileAtomic(file: string, data: string): Promise<void> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const temp = join(dir, `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  const directory = await open(dir, 'r');
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

function stateFileText(entries: ReadonlyMap<string, StoredService>): string {
  const services: Record<string, Service> = {};
  for (const entry of [...entries.values()].sort(byId)) {
    if (entry.origin === 'api') services[entry.id] = entry.service;
  }
  return `${JSON.stringify({ version: STATE_FILE_VERSION, services }, null, 2)}\n`;
}

function byId(a: { id: string }, b: { id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function sameService(a: Service, b: Service): boolean {
  return JSON.stringify(serviceToJSON(a)) === JSON.stringify(serviceToJSON(b));
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const member of Object.values(value)) deepFreeze(member);
    Object.freeze(value);
  }
  return value;
}

function entry(id: string, origin: ServiceOrigin, service: Service): StoredService {
  return deepFreeze({ id, origin, service: serviceToJSON(service) });
}

/** "198.18.0.10:80/TCP" or "[2001:db8::10]:80/TCP". */
export function frontendText(service: Service): string {
  const { address, port, protocol } = service.frontend;
  return endpointText(address, port, protocol);
}

export interface ServiceStoreOptions {
  datapath: ServiceDatapath;
  /** Where the API's services are kept (atomically replaced on every change). */
  stateFile: string;
  log: Logger;
}

/** id → the entry it becomes (undefined: removed). */
type EntryChanges = Map<string, StoredService | undefined>;

/**
 * Kubernetes services are applied this many at a time: each apply holds its services' Maglev tables
 * (32 KiB each at the default size) until written, and pays one RCU wait for their new tables.
 */
export const KUBERNETES_SYNC_CHUNK = 1024;

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class ServiceStore {
  private readonly entries = new Map<string, StoredService>();
  /** frontend text → the id holding it, for every entry. */
  private readonly frontends = new Map<string, string>();
  private queue: Promise<unknown> = Promise.resolve();
  private revisionCount = 0;
  private readonly applyListeners = new Set<(observation: ApplyObservation) => void>();
  private refusal: TableFullError | undefined;
  private readonly datapath: ServiceDatapath;
  readonly stateFile: string;
  private readonly log: Logger;

  constructor(options: ServiceStoreOptions) {
    this.datapath = options.datapath;
    this.stateFile = options.stateFile;
    this.log = options.log;
  }

  /**
   * Loads the state file, merges the config file's services over it and applies the result. Throws
   * (and the agent does not start) when the state file is unusable or the datapath refuses.
   */
  async start(configServices: ReadonlyMap<string, Service>): Promise<void> {
    const queued = performance.now();
    await this.serialized(async () => {
      const saved = await readStateFile(this.stateFile);
      const next: EntryChanges = new Map();
      const taken = new Map<string, string>();
      for (const [id, service] of configServices) {
        next.set(id, entry(id, 'config', service));
        taken.set(frontendText(service), id);
      }
      let overridden = false;
      for (const [id, service] of saved) {
        const holder = taken.get(frontendText(service));
        if (next.has(id)) {
          overridden = true;
          this.log.warn(`service ${id}: defined by the config file and by the state file ${this.stateFile}; the config file wins`);
        } else if (holder !== undefined) {
          overridden = true;
          this.log.warn(
            `service ${id} from the state file ${this.stateFile} dropped: ${frontendText(service)} is the frontend of service ${holder} in the config file`,
          );
        } else {
          next.set(id, entry(id, 'api', service));
          taken.set(frontendText(service), id);
        }
      }
      const result = await this.apply(next, queued);
      this.commit(next);
      if (overridden) await writeFileAtomic(this.stateFile, stateFileText(this.entries));
      const config = [...next.values()].filter((e) => e?.origin === 'config').length;
      this.log.info(
        `services loaded: ${config} from the config file, ${next.size - config} from ${this.stateFile}; ` +
          `datapath: ${result.written} written, ${result.deleted} deleted in ${result.durationMs.toFixed(1)} ms`,
      );
    });
  }

  /** Number of committed states, the start-up one included. */
  get revision(): number {
    return this.revisionCount;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The table that had no room for the last change, until a change is applied. */
  get fullTable(): string | undefined {
    return this.refusal?.table;
  }

  get(id: string): StoredService | undefined {
    return this.entries.get(id);
  }

  /** Every service, by id. */
  list(): StoredService[] {
    return [...this.entries.values()].sort(byId);
  }

  /** Creates or replaces a service (validated here too); identical content is a no-op. */
  async put(id: string, input: unknown): Promise<StoreChange> {
    const queued = performance.now();
    validateServiceId(id);
    const service = validateService(input);
    return this.serialized(async () => {
      const current = this.entries.get(id);
      if (current?.origin === 'kubernetes') throw new ReadOnlyServiceError(id);
      if (current && sameService(current.service, service)) {
        return { result: 'unchanged', entry: current, revision: this.revisionCount };
      }
      const holder = this.frontendHolder(id, service);
      if (holder !== undefined) throw new FrontendConflictError(id, frontendText(service), holder);
      const stored = entry(id, 'api', service);
      const result = await this.change(new Map([[id, stored]]), queued, `service ${id} ${current ? 'update' : 'create'}`);
      const change: StoreChange = { result: current ? 'updated' : 'created', entry: stored, revision: this.revisionCount };
      this.log.info(
        `service ${id} ${change.result} (api): ${frontendText(service)} ${service.type}, ${service.backends.length} backend(s); ` +
          `datapath: ${result.written} written, ${result.deleted} deleted in ${result.durationMs.toFixed(1)} ms`,
      );
      return change;
    });
  }

  /** Removes a service; undefined when there is none with this id. */
  async delete(id: string): Promise<StoreChange | undefined> {
    const queued = performance.now();
    return this.serialized(async () => {
      const current = this.entries.get(id);
      if (!current) return undefined;
      if (current.origin === 'kubernetes') throw new ReadOnlyServiceError(id);
      const result = await this.change(new Map([[id, undefined]]), queued, `service ${id} delete`);
      this.log.info(
        `service ${id} deleted (${current.origin}${current.origin === 'config' ? ', until the next restart' : ''}); ` +
          `datapath: ${result.written} written, ${result.deleted} deleted in ${result.durationMs.toFixed(1)} ms`,
      );
      return { result: 'deleted', entry: current, revision: this.revisionCount };
    });
  }

  /**
   * Serve Kubernetes' services as `changes` says (id → service; undefined: gone). Applied in groups;
   * a group the datapath refuses is split until the refused services stand alone, so one bad service
   * (a frontend another service holds, a full table) is refused alone and every other is served. Nothing is
   * persisted: after a restart the watcher lists them again. Ids that are not Kubernetes' are refused.
   */
  async syncKubernetes(changes: ReadonlyMap<string, Service | undefined>): Promise<KubernetesSyncResult> {
    const started = performance.now();
    return this.serialized(async () => {
      const outcome: KubernetesSyncResult = { applied: [], failed: [], durationMs: 0 };
      const pending: EntryChanges = new Map();
      for (const [id, service] of changes) {
        const current = this.entries.get(id);
        if (current && current.origin !== 'kubernetes') {
          outcome.failed.push({ id, error: `the id of a ${current.origin} service` });
        } else if (service === undefined) {
          if (current) pending.set(id, undefined);
        } else if (!current || !sameService(current.service, service)) {
          pending.set(id, entry(id, 'kubernetes', service));
        }
      }
      const ids = [...pending.keys()];
      // A refused group is halved until the refused services stand alone: a bad one among a
      // thousand costs about twenty applies, not a thousand.
      const apply = async (group: string[]): Promise<void> => {
        const changes: EntryChanges = new Map(group.map((id) => [id, pending.get(id)]));
        const result = await this.tryKubernetes(changes, started);
        if (result === true) {
          outcome.applied.push(...group);
        } else if (group.length === 1 && group[0] !== undefined) {
          outcome.failed.push({ id: group[0], error: result });
        } else {
          const half = Math.ceil(group.length / 2);
          await apply(group.slice(0, half));
          await apply(group.slice(half));
        }
      };
      for (let at = 0; at < ids.length; at += KUBERNETES_SYNC_CHUNK) await apply(ids.slice(at, at + KUBERNETES_SYNC_CHUNK));
      for (const { id, error } of outcome.failed) this.log.error(`kubernetes service ${id} not served: ${error}`);
      outcome.durationMs = performance.now() - started;
      return outcome;
    });
  }

  /**
   * Remove from the datapath what it held at start-up (pinned maps) that no service has claimed since.
   * Called once every source of services has delivered its first full set.
   */
  async pruneStale(): Promise<ApplyResult> {
    return this.serialized(async () => {
      const result = await this.datapath.pruneStale();
      if (result.deleted > 0) this.log.info(`removed ${result.deleted} map entries of services that no longer exist (pinned before this start)`);
      return result;
    });
  }

  /** Called after every datapath apply (metrics); returns an unsubscribe function. */
  onApply(listener: (observation: ApplyObservation) => void): () => void {
    this.applyListeners.add(listener);
    return () => void this.applyListeners.delete(listener);
  }

  /** Resolves when every change queued so far has finished (shutdown). */
  async idle(): Promise<void> {
    await this.serialized(async () => undefined);
  }

  /** true when applied and committed, else why not. Frontends held by other services are checked first. */
  private async tryKubernetes(changes: EntryChanges, queued: number): Promise<true | string> {
    for (const [id, change] of changes) {
      const holder = change && this.frontendHolder(id, change.service);
      if (change && holder !== undefined && !(changes.has(holder) && changes.get(holder) === undefined)) {
        return `${frontendText(change.service)} is already the frontend of service ${holder}`;
      }
    }
    try {
      await this.apply(changes, queued);
    } catch (error) {
      return message(error);
    }
    this.commit(changes);
    return true;
  }

  /** The id of another service with the same frontend as `service`, if any. */
  private frontendHolder(id: string, service: Service): string | undefined {
    const holder = this.frontends.get(frontendText(service));
    return holder === id ? undefined : holder;
  }

  /** Runs `task` after every earlier one, whether those succeeded or not. */
  private serialized<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Apply, persist, commit; on any failure the datapath is back on the current state and nothing changed. */
  private async change(changes: EntryChanges, queued: number, what: string): Promise<ApplyResult> {
    const result = await this.apply(changes, queued).catch((error: unknown) => {
      this.log.error(`${what} not applied: ${message(error)}`);
      throw error;
    });
    const previous: EntryChanges = new Map([...changes.keys()].map((id) => [id, this.entries.get(id)]));
    this.commit(changes);
    try {
      await writeFileAtomic(this.stateFile, stateFileText(this.entries));
    } catch (error) {
      this.commit(previous);
      const text = `${what}: cannot write the state file ${this.stateFile}: ${message(error)}`;
      try {
        await this.datapath.apply(servicesOf(previous));
      } catch (rollback) {
        this.log.error(`${text}; rolling the datapath back failed too: ${message(rollback)}`);
        throw new Error(`${text}; rolling the datapath back failed too`, { cause: error });
      }
      this.log.error(`${text}; the datapath was rolled back`);
      throw new Error(`${text}; nothing changed`, { cause: error });
    }
    return result;
  }

  private async apply(changes: EntryChanges, queued: number): Promise<ApplyResult> {
    const observe = (observation: ApplyObservation): void => {
      for (const listener of this.applyListeners) listener(observation);
    };
    try {
      const result = await this.datapath.apply(servicesOf(changes));
      observe({ seconds: (performance.now() - queued) / 1000, ok: true, result });
      return result;
    } catch (error) {
      observe({ seconds: (performance.now() - queued) / 1000, ok: false });
      // The datapath finds conflicts the store cannot see (a NodePort on a node address that is also
      // a LoadBalancer's frontend): those are the client's to fix (409), not the datapath's failure.
      if (error instanceof FrontendConflictError) throw error;
      if (error instanceof TableFullError) throw this.refused(error);
      if (isMapFull(error)) {
        // The kernel refused a write for want of room (the writer rolled the maps back).
        const table = mapOf(error);
        const capacity = this.datapath.mapPressure().find((m) => m.map === table)?.maxEntries;
        throw this.refused(new TableFullError(table, capacity, undefined, { cause: error, detail: error.message }));
      }
      throw new DatapathApplyError(error);
    }
  }

  private refused(error: TableFullError): TableFullError {
    this.refusal = error;
    return error;
  }

  /** The entries become what `changes` says, and the frontend index follows. */
  private commit(changes: EntryChanges): void {
    for (const id of changes.keys()) {
      const current = this.entries.get(id);
      if (current) this.frontends.delete(frontendText(current.service));
    }
    for (const [id, next] of changes) {
      if (next === undefined) {
        this.entries.delete(id);
        continue;
      }
      this.entries.set(id, next);
      this.frontends.set(frontendText(next.service), id);
    }
    this.revisionCount += 1;
    this.refusal = undefined;
  }
}

function servicesOf(changes: EntryChanges): Map<string, Service | undefined> {
  return new Map([...changes].map(([id, e]) => [id, e?.service]));
}
