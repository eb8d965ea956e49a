import { BpfError, check } from './errors.js';
import { copyFromPointer, isNull, koffi, libbpf, libcCalls, NativeBuffer, ringBufferSampleFn } from './libbpf.js';
import type { BpfMap } from './map.js';

const POLL_TIMEOUT_MS = 100;

/**
 * Consumes a BPF ring buffer map without blocking the event loop: a libuv worker waits on the ring
 * buffer's epoll fd, and records are read on the main thread, where `onRecord` runs.
 */
export class RingBufferReader {
  private readonly callback: koffi.IKoffiRegisteredCallback;
  private readonly ring: unknown;
  private readonly epollFd: number;
  private readonly events = new NativeBuffer(12);
  private running = true;
  private readonly loop: Promise<void>;

  constructor(
    private readonly map: BpfMap,
    onRecord: (record: Buffer) => void,
  ) {
    this.callback = koffi.register((_ctx: unknown, data: unknown, size: number | bigint) => {
      onRecord(copyFromPointer(data, Number(size)));
      return 0;
    }, koffi.pointer(ringBufferSampleFn));
    this.ring = libbpf.ring_buffer__new(map.fd, this.callback, null, null);
    if (isNull(this.ring)) {
      koffi.unregister(this.callback);
      this.events.free();
      throw new BpfError('ring_buffer__new', `map ${map.name}`, -Number(libbpf.libbpf_get_error(null)) || 22);
    }
    this.epollFd = libbpf.ring_buffer__epoll_fd(this.ring) as number;
    this.loop = this.run();
  }

  /** Read whatever is in the ring now; returns the number of records. */
  drain(): number {
    return check(libbpf.ring_buffer__consume(this.ring) as number, 'ring_buffer__consume', `map ${this.map.name}`);
  }

  private async run(): Promise<void> {
    while (this.running) {
      const ready = await new Promise<number>((resolve, reject) => {
        libcCalls.epoll_wait.async(this.epollFd, this.events.pointer, 1, POLL_TIMEOUT_MS, (error: unknown, result: number) => {
          if (error) reject(error);
          else resolve(result);
        });
      });
      // A negative answer is an interrupted wait (the fd stays open until close() has stopped this
      // loop): wait again.
      if (this.running && ready > 0) this.drain();
    }
  }

  /** Stop polling, deliver what is left, and free the ring buffer. */
  async close(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    try {
      await this.loop;
    } finally {
      this.drain();
      libbpf.ring_buffer__free(this.ring);
      koffi.unregister(this.callback);
      this.events.free();
    }
  }
}
