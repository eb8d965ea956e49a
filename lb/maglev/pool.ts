/**
 * Maglev tables built off the main thread. A full sync of 10,000 services needs 10,000 tables, each
 * ~0.3 ms of CPU at M = 16381 (table.ts): seconds during which the agent's main thread — which serves
 * the API, the watches and the map writes, and whose map-in-map updates already wait an RCU grace
 * period each — would do nothing else. The pool spreads the builds over worker threads (one per CPU
 * by default) and leaves the main thread free; MaglevTableCache.warm() puts what it builds where the
 * synchronous cache.table() finds it.
 *
 * - Lazy: no thread exists until the first build(); close() terminates them.
 * - A process never hangs on the pool: a worker is ref'd only while it has a batch, so an idle pool
 *   does not keep the event loop alive.
 * - The tables are the main thread's: workers run the same buildMaglevTable, and send each table's
 *   buffer back transferred, not copied.
 * - What it costs (bench/maglev.ts, "pool"): ~20% more CPU than the same builds on the main thread
 *   (each thread's own JIT, the messages), and the main thread's event loop stays 75–95% idle. Its
 *   wall time gains only what free cores allow: on this shared 2-core machine, with other processes
 *   running, warm() of 1,000 tables took about as long as building them on the main thread.
 * - A request that fails (bad size, duplicate key, bad weight) rejects its build() with an Error
 *   naming the request; a worker that dies rejects the build it was serving and is replaced on the
 *   next batch.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { assertMaglevTableSize, type MaglevBackend, type MaglevTable } from './table.js';
import { type MaglevSeed } from './seed.js';

/** One table to build: the arguments of buildMaglevTable / MaglevTableCache.table. */
export interface MaglevTableRequest {
  readonly backends: readonly MaglevBackend[];
  readonly size: number;
  readonly seed: MaglevSeed;
}

export interface MaglevTablePoolOptions {
  /** Worker threads; default os.availableParallelism(). */
  workers?: number;
  /**
   * Requests per message to a worker; default about four batches per worker, at most 32 requests:
   * big enough that messages cost little next to the builds, small enough to even out the workers.
   */
  batchSize?: number;
}

/** What the pool sends a worker (worker.ts). */
export interface MaglevWorkerBatch {
  readonly batch: number;
  readonly jobs: readonly { keys: string[]; weights: number[]; size: number; seed: string }[];
}

/** What a worker answers: the batch's tables in order, or the first request that failed. */
export type MaglevWorkerReply =
  | { readonly batch: number; readonly tables: MaglevTable[] }
  | { readonly batch: number; readonly error: { readonly job: number; readonly message: string } };

const MAX_BATCH = 32;
const BATCHES_PER_WORKER = 4;

interface Build {
  readonly requests: readonly MaglevTableRequest[];
  readonly tables: MaglevTable[];
  batchesLeft: number;
  failed: boolean;
  readonly resolve: (tables: MaglevTable[]) => void;
  readonly reject: (err: Error) => void;
}

interface Batch {
  readonly id: number;
  readonly build: Build;
  /** Index in build.requests of the batch's first request. */
  readonly first: number;
  readonly message: MaglevWorkerBatch;
}

interface WorkerSlot {
  readonly index: number;
  readonly worker: Worker;
  busy: Batch | undefined;
  /** Set once the worker is terminated or dead: its events are ignored from then on. */
  gone: boolean;
}

export class MaglevTablePool {
  /** Threads the pool runs once started. */
  readonly workerCount: number;
  private readonly batchSize: number | undefined;
  private readonly slots: WorkerSlot[] = [];
  private readonly queue: Batch[] = [];
  private nextBatchId = 0;
  private nextWorkerIndex = 0;
  private closed = false;

  constructor(options: MaglevTablePoolOptions = {}) {
    const workers = options.workers ?? availableParallelism();
    if (!Number.isInteger(workers) || workers < 1) {
      throw new Error(`MaglevTablePool workers ${workers} must be a positive integer`);
    }
    if (options.batchSize !== undefined && (!Number.isInteger(options.batchSize) || options.batchSize < 1)) {
      throw new Error(`MaglevTablePool batchSize ${options.batchSize} must be a positive integer`);
    }
    this.workerCount = workers;
    this.batchSize = options.batchSize;
  }

  /** Worker threads running now (0 until the first build, and after close()). */
  get threads(): number {
    return this.slots.length;
  }

  /**
   * The tables of `requests`, in order, built on the worker threads; each equals
   * buildMaglevTable(backends, size, seed). Rejects with an Error naming the first failed request,
   * or if the pool is closed before the tables are in.
   */
  build(requests: readonly MaglevTableRequest[]): Promise<MaglevTable[]> {
    if (this.closed) return Promise.reject(new Error('MaglevTablePool is closed'));
    if (requests.length === 0) return Promise.resolve([]);
    try {
      requests.forEach((request, i) => {
        try {
          assertMaglevTableSize(request.size);
        } catch (err) {
          throw new Error(`maglev table request ${i}: ${err instanceof Error ? err.message : String(err)}`);
        }
      });
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<MaglevTable[]>((resolve, reject) => {
      const size = this.batchSize ?? Math.min(MAX_BATCH, Math.ceil(requests.length / (this.workerCount * BATCHES_PER_WORKER)));
      const build: Build = {
        requests,
        tables: new Array<MaglevTable>(requests.length),
        batchesLeft: Math.ceil(requests.length / size),
        failed: false,
        resolve,
        reject,
      };
      for (let first = 0; first < requests.length; first += size) {
        const jobs = requests.slice(first, first + size).map(({ backends, size: tableSize, seed }) => ({
          keys: backends.map((b) => b.key),
          weights: backends.map((b) => b.weight),
          size: tableSize,
          seed: seed.base64,
        }));
        const id = this.nextBatchId++;
        this.queue.push({ id, build, first, message: { batch: id, jobs } });
      }
      this.dispatch();
    });
  }

  /** Terminates the threads; builds still running reject. The pool cannot be used afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const error = new Error('MaglevTablePool closed before the tables were built');
    for (const batch of this.queue.splice(0)) this.fail(batch.build, error);
    const slots = this.slots.splice(0);
    for (const slot of slots) {
      slot.gone = true;
      if (slot.busy !== undefined) this.fail(slot.busy.build, error);
    }
    await Promise.all(slots.map((slot) => slot.worker.terminate()));
  }

  private dispatch(): void {
    this.dropFailed();
    while (this.queue.length > 0) {
      const slot = this.slots.find((s) => s.busy === undefined) ?? this.spawn();
      if (slot === undefined) return;
      const batch = this.queue.shift();
      if (batch === undefined) return;
      slot.busy = batch;
      slot.worker.ref();
      slot.worker.postMessage(batch.message);
      this.dropFailed();
    }
  }

  /** Batches of a build that already failed are dropped unsent. */
  private dropFailed(): void {
    while (this.queue[0]?.build.failed === true) this.queue.shift();
  }

  /** A new thread if the pool has fewer than workerCount, else undefined (all busy). */
  private spawn(): WorkerSlot | undefined {
    if (this.closed || this.slots.length >= this.workerCount) return undefined;
    // No inherited execArgv: a parent started with `--input-type=module -e …` would hand the worker
    // flags that make it fail, and worker.js needs none.
    const worker = new Worker(new URL('./worker.js', import.meta.url), { execArgv: [] });
    const slot: WorkerSlot = { index: this.nextWorkerIndex++, worker, busy: undefined, gone: false };
    worker.on('message', (reply: MaglevWorkerReply) => this.onReply(slot, reply));
    worker.on('error', (err: Error) => this.onDeath(slot, `failed: ${err.message}`));
    worker.on('exit', (code: number) => this.onDeath(slot, `exited with code ${code}`));
    this.slots.push(slot);
    return slot;
  }

  private onReply(slot: WorkerSlot, reply: MaglevWorkerReply): void {
    const batch = slot.busy;
    if (slot.gone || batch === undefined || batch.id !== reply.batch) return;
    slot.busy = undefined;
    const { build } = batch;
    if ('error' in reply) {
      const index = batch.first + reply.error.job;
      const request = build.requests[index];
      const what = request === undefined ? '' : ` (M=${request.size}, ${request.backends.length} backends)`;
      this.fail(build, new Error(`maglev table request ${index}${what}: ${reply.error.message}`));
    } else if (!build.failed) {
      reply.tables.forEach((table, j) => {
        build.tables[batch.first + j] = table;
      });
      if (--build.batchesLeft === 0) build.resolve(build.tables);
    }
    this.dispatch();
    if (slot.busy === undefined) slot.worker.unref();
  }

  private onDeath(slot: WorkerSlot, how: string): void {
    if (slot.gone) return;
    slot.gone = true;
    const at = this.slots.indexOf(slot);
    if (at >= 0) this.slots.splice(at, 1);
    const batch = slot.busy;
    slot.busy = undefined;
    if (batch !== undefined) {
      const request = batch.build.requests[batch.first];
      const what = request === undefined ? '' : ` (first request ${batch.first}, M=${request.size})`;
      this.fail(batch.build, new Error(`maglev table pool worker ${slot.index} ${how} while building a batch${what}`));
    }
    void slot.worker.terminate();
    this.dispatch();
  }

  private fail(build: Build, err: Error): void {
    if (build.failed) return;
    build.failed = true;
    build.reject(err);
  }
}
