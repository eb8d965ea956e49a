/**
 * The body of a MaglevTablePool worker (pool.ts): it builds the tables of one batch of requests with
 * buildMaglevTable — the same code as the main thread, so the tables are the same — and sends them
 * back with their buffers transferred, not copied. The first request that fails ends its batch with
 * an error naming the request; the worker itself goes on serving batches.
 */
import { parentPort } from 'node:worker_threads';
import { buildMaglevTable, type MaglevTable } from './table.js';
import { parseMaglevSeed, type MaglevSeed } from './seed.js';
import type { MaglevWorkerBatch, MaglevWorkerReply } from './pool.js';

const port = parentPort;
if (port === null) throw new Error('lb/maglev/worker.js runs as a worker thread of MaglevTablePool, not as a program');

const seeds = new Map<string, MaglevSeed>();

function seedOf(base64: string): MaglevSeed {
  let seed = seeds.get(base64);
  if (seed === undefined) {
    seed = parseMaglevSeed(base64);
    seeds.set(base64, seed);
  }
  return seed;
}

function buildBatch(batch: MaglevWorkerBatch): { reply: MaglevWorkerReply; transfer: ArrayBuffer[] } {
  const tables: MaglevTable[] = [];
  for (let j = 0; j < batch.jobs.length; j++) {
    const job = batch.jobs[j];
    if (job === undefined) continue;
    try {
      const backends = job.keys.map((key, i) => ({ key, weight: job.weights[i] ?? 0 }));
      tables.push(buildMaglevTable(backends, job.size, seedOf(job.seed)));
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      return { reply: { batch: batch.batch, error: { job: j, message } }, transfer: [] };
    }
  }
  // Each table owns its whole buffer (allocated by populate), so moving it moves exactly the table.
  const transfer = tables.map((table) => table.buffer).filter((buffer): buffer is ArrayBuffer => buffer instanceof ArrayBuffer);
  return { reply: { batch: batch.batch, tables }, transfer };
}

port.on('message', (batch: MaglevWorkerBatch) => {
  const { reply, transfer } = buildBatch(batch);
  port.postMessage(reply, transfer);
});
