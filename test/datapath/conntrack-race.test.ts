/**
 * Two CPUs opening the same flows at once (issue 18 item 9): the same 20,000 SYNs run through xdp_lb on
 * CPU 0 and CPU 1 simultaneously, from two threads pinned there. Each flow must end with one conntrack
 * entry and one SNAT port, however the two CPUs interleave; a CPU that loses the race drops its copy
 * (the client's retransmission finds the winner's entry), it never stores a second one.
 */
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { Reason } from '../../lb/reasons.js';
import { BACKENDS, CLIENT, LbHarness, XDP } from '../support/lb-harness.js';
import type { RaceWorkerData } from '../support/race-worker.js';

const VIP = '198.18.10.70';
const FLOWS = 20_000;
const FIRST_PORT = 20_000;
const SERVICES = {
  snat: { frontend: { address: VIP, port: 80, protocol: 'TCP' }, mode: 'snat', backends: BACKENDS.map((b) => ({ address: b.v4, port: 8080 })) },
};

describe('conntrack with two CPUs opening the same flows', { skip: availableParallelism() < 2 ? 'needs two CPUs' : false }, () => {
  let h: LbHarness;
  before(() => {
    h = LbHarness.create('race', undefined, 1048576); // roomy: no flow is evicted for want of a way
    h.install(SERVICES);
  });
  after(() => h.destroy());

  test(`${FLOWS} SYNs on CPU 0 and CPU 1 at once: one entry and one SNAT port per flow`, async () => {
    const barrier = new SharedArrayBuffer(4 * (2 + FLOWS));
    const ifindex = h.context(Buffer.alloc(20)).readUInt32LE(12);
    const run = (cpu: number): Promise<number[]> => {
      const workerData: RaceWorkerData = {
        cpu, ns: h.ns, programFd: h.lb.object.program('xdp_lb').fd, ifindex, client: CLIENT.v4, vip: VIP, dport: 80,
        firstPort: FIRST_PORT, flows: FLOWS, barrier,
      };
      const worker = new Worker(new URL('../support/race-worker.js', import.meta.url), { workerData });
      return new Promise((resolve, reject) => {
        worker.once('message', (verdicts: number[]) => resolve(verdicts));
        worker.once('error', reject);
      });
    };
    const busyBefore = h.counter(Reason.DROP_CT_BUSY);
    const evictedBefore = h.counter(Reason.CT_EVICTED);
    const results = Promise.all([run(0), run(1)]);
    const shared = new Int32Array(barrier);
    while (Atomics.load(shared, 0) < 2) await new Promise((resolve) => setTimeout(resolve, 5));
    Atomics.store(shared, 1, 1);
    Atomics.notify(shared, 1);
    const [cpu0, cpu1] = await results;
    assert.ok(cpu0 && cpu1);

    h.lb.conntrack.sweep(); // clears what was released (a loser's claimed port)
    const flows = h.flows().filter((f) => f.tuple.daddr === VIP);
    const bySource = new Map<number, number>();
    for (const flow of flows) bySource.set(flow.tuple.sport, (bySource.get(flow.tuple.sport) ?? 0) + 1);
    const stored = [...bySource.values()];
    assert.equal(stored.filter((n) => n > 1).length, 0, 'no flow stored twice');
    const replies = h.snatReplies();
    const portsByClient = new Map<number, Set<number>>();
    for (const reply of replies) {
      const ports = portsByClient.get(reply.reverse.clientPort) ?? new Set<number>();
      ports.add(reply.tuple.dport);
      portsByClient.set(reply.reverse.clientPort, ports);
    }
    assert.equal([...portsByClient.values()].filter((ports) => ports.size > 1).length, 0, 'no flow with two SNAT ports');
    assert.equal(replies.length, flows.length, 'one reply entry per flow, none left over');
    // Every SYN forwarded by at least one CPU has its flow stored, unless a later store evicted it (counted:
    // two flows in one bucket with a claim under way can fill its ways); a flow both CPUs dropped is a
    // retransmission away.
    const forwarded = new Set([...cpu0.keys(), ...cpu1.keys()].filter((i) => cpu0[i] === XDP.TX || cpu1[i] === XDP.TX));
    const evicted = Number(h.counter(Reason.CT_EVICTED) - evictedBefore);
    assert.equal(flows.length + evicted, forwarded.size);
    assert.ok(evicted < FLOWS / 1000, `${evicted} flows evicted`);
    const lost = FLOWS - forwarded.size;
    assert.ok(lost < FLOWS / 100, `${lost} flows dropped on both CPUs`);
    const busy = h.counter(Reason.DROP_CT_BUSY) - busyBefore;
    process.stdout.write(`# two CPUs, ${FLOWS} flows: ${flows.length} stored once, ${busy} first packets lost the race (ct_busy), ${lost} dropped on both, ${evicted} evicted\n`);
  });
});
