import { check } from './errors.js';
import { libbpf, NativeBuffer } from './libbpf.js';

/** BPF_F_TEST_XDP_LIVE_FRAMES: XDP_TX/XDP_REDIRECT verdicts really transmit the frames. */
export const BPF_F_TEST_XDP_LIVE_FRAMES = 2;

export interface TestRunInput {
  data?: Uint8Array;
  /** room for the output packet; default data length + 256 (programs may grow the packet) */
  dataOutSize?: number;
  ctx?: Uint8Array;
  ctxOutSize?: number;
  repeat?: number;
  flags?: number;
  cpu?: number;
  batchSize?: number;
}

export interface TestRunResult {
  retval: number;
  /** average ns per run, as the kernel measured it */
  duration: number;
  data: Buffer;
  /** ctx out when ctxOutSize asked for it, else the context as the kernel left it (syscall programs write theirs back) */
  ctx: Buffer;
}

/** A loaded program, by fd. */
export class BpfProgram {
  constructor(
    readonly fd: number,
    readonly name: string,
    readonly section: string,
  ) {}

  /** BPF_PROG_TEST_RUN: run the program on a packet (and context) without any device. */
  testRun(input: TestRunInput): TestRunResult {
    const data = input.data ? NativeBuffer.from(input.data) : undefined;
    const live = ((input.flags ?? 0) & BPF_F_TEST_XDP_LIVE_FRAMES) !== 0;
    const dataOut = data && !live ? new NativeBuffer(input.dataOutSize ?? data.length + 256) : undefined;
    const ctx = input.ctx ? NativeBuffer.from(input.ctx) : undefined;
    const ctxOut = input.ctxOutSize ? new NativeBuffer(input.ctxOutSize) : undefined;
    const opts = new NativeBuffer(80);
    try {
      const o = opts.bytes;
      o.writeBigUInt64LE(80n, 0);
      if (data) {
        o.writeBigUInt64LE(data.address, 8);
        o.writeUInt32LE(data.length, 24);
      }
      if (dataOut) {
        o.writeBigUInt64LE(dataOut.address, 16);
        o.writeUInt32LE(dataOut.length, 28);
      }
      if (ctx) {
        o.writeBigUInt64LE(ctx.address, 32);
        o.writeUInt32LE(ctx.length, 48);
      }
      if (ctxOut) {
        o.writeBigUInt64LE(ctxOut.address, 40);
        o.writeUInt32LE(ctxOut.length, 52);
      }
      o.writeInt32LE(input.repeat ?? 1, 60);
      o.writeUInt32LE(input.flags ?? 0, 68);
      o.writeUInt32LE(input.cpu ?? 0, 72);
      o.writeUInt32LE(input.batchSize ?? 0, 76);
      check(libbpf.bpf_prog_test_run_opts(this.fd, opts.pointer) as number, 'bpf_prog_test_run_opts', `program ${this.name}`);
      return {
        retval: o.readUInt32LE(56),
        duration: o.readUInt32LE(64),
        data: dataOut ? Buffer.from(dataOut.bytes.subarray(0, o.readUInt32LE(28))) : Buffer.alloc(0),
        ctx: ctxOut ? Buffer.from(ctxOut.bytes.subarray(0, o.readUInt32LE(52))) : ctx ? Buffer.from(ctx.bytes) : Buffer.alloc(0),
      };
    } finally {
      for (const b of [data, dataOut, ctx, ctxOut, opts]) b?.free();
    }
  }

  /**
   * Run a SEC("syscall") program once with `args` as its context; such a program answers by writing
   * its context, which the kernel copies back.
   */
  runSyscall(args: Uint8Array): { retval: number; args: Buffer } {
    const { retval, ctx } = this.testRun({ ctx: args, repeat: 0 });
    return { retval, args: ctx };
  }
}
