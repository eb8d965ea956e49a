/**
 * A worker thread that runs xdp_lb on one CPU (a test's two-CPU race): pinned with sched_setaffinity,
 * inside the harness's network namespace, it waits at a shared barrier, then runs its frames through
 * the program by fd (fds are the process's, so the main thread's program serves) and posts the verdicts.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { koffi, libcCalls } from '../../lb/datapath/libbpf.js';
import { inNetns } from '../../lb/datapath/netns.js';
import { BpfProgram } from '../../lb/datapath/program.js';
import { TCP_FLAGS, buildFrame } from './packet.js';

export interface RaceWorkerData {
  cpu: number;
  ns: string;
  programFd: number;
  ifindex: number;
  client: string;
  vip: string;
  dport: number;
  firstPort: number;
  flows: number;
  /** Int32Array over a SharedArrayBuffer: [ready count, go, then one arrival count per frame] */
  barrier: SharedArrayBuffer;
}

/** The whole run's bound: a thread whose partner died must not spin forever. */
const SPIN_DEADLINE_MS = 60_000;

// `node --test dist/test/` loads every module under it: loaded outside a worker, this one does nothing.
if (!isMainThread) runRace(workerData as RaceWorkerData);

function runRace(data: RaceWorkerData): void {
  const mask = Buffer.alloc(128);
  mask[data.cpu >> 3] = 1 << (data.cpu & 7);
  if ((libcCalls.sched_setaffinity(0, mask.length, mask) as number) !== 0) throw new Error(`sched_setaffinity(cpu ${data.cpu}): errno ${koffi.errno()}`);

  const program = new BpfProgram(data.programFd, 'xdp_lb', 'xdp');
  const frames = Array.from({ length: data.flows }, (_, i) =>
    buildFrame({ eth: { src: '02:00:00:00:00:64', dst: '02:00:00:00:00:02' }, ip: { src: data.client, dst: data.vip }, l4: { proto: 'tcp', sport: data.firstPort + i, dport: data.dport, flags: TCP_FLAGS.SYN } }));
  const ctx = (frame: Buffer): Buffer => {
    const c = Buffer.alloc(24);
    c.writeUInt32LE(frame.length, 4);
    c.writeUInt32LE(data.ifindex, 12);
    return c;
  };
  const barrier = new Int32Array(data.barrier);
  const contexts = frames.map(ctx);
  const verdicts = inNetns(data.ns, () => {
    Atomics.add(barrier, 0, 1);
    Atomics.wait(barrier, 1, 0);
    // Frame by frame in step with the other CPU (a spin per frame), so both run each flow's first packet
    // at the same moment: the race is the test, not a rare accident of scheduling.
    const deadline = Date.now() + SPIN_DEADLINE_MS;
    return frames.map((frame, i) => {
      Atomics.add(barrier, 2 + i, 1);
      while (Atomics.load(barrier, 2 + i) < 2) {
        if (Date.now() > deadline) throw new Error(`cpu ${data.cpu}: the other CPU's thread stopped at frame ${i}`);
      }
      return program.testRun({ data: frame, ctx: contexts[i] }).retval;
    });
  });
  parentPort?.postMessage(verdicts);
}
