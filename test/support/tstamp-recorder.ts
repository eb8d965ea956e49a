/**
 * bpf/test/tstamp_recorder.c: what a peer received at tc ingress, with the departure time each packet
 * was given. load() puts it on a device's ingress in a namespace; records() reads what came, in order.
 */
import { defineStruct, pad, u32, u64, u8 } from '../../lb/codec.js';
import { BpfObject } from '../../lb/datapath/object.js';
import { bpfObjectPath } from '../../lb/datapath/objects.js';
import { inNetns } from '../../lb/datapath/netns.js';
import { attachTc } from '../../lb/datapath/tc.js';

export const TstampRecord = defineStruct('tstamp_record', { tstamp: u64, len: u32, tstampType: u8, pad: pad(3) });
export const TstampCount = defineStruct('tstamp_count', { lock: pad(4), packets: u32 });
/** BPF_SKB_TSTAMP_DELIVERY_MONO: the time is a departure time on the monotonic clock. */
export const TSTAMP_DELIVERY_MONO = 1;

export interface Recorded {
  tstamp: bigint;
  len: number;
  tstampType: number;
}

export class TstampRecorder {
  private constructor(private readonly object: BpfObject) {}

  /** Record the IPv4 UDP packets to `port` arriving on `device` (tc ingress) in namespace `ns`. */
  static attach(ns: string, device: string, port: number): TstampRecorder {
    const object = BpfObject.load(bpfObjectPath('test/tstamp_recorder.o'), { constants: { tstamp_port: port } });
    try {
      inNetns(ns, () => attachTc(device, 'ingress', object.program('tstamp_record')));
      return new TstampRecorder(object);
    } catch (error) {
      object.close();
      throw error;
    }
  }

  /** Packets seen so far (also those past the records' room). */
  count(): number {
    const value = this.object.map('tstamp_count').lookup(Buffer.alloc(4));
    return value ? TstampCount.decode(value).packets : 0;
  }

  records(): Recorded[] {
    const map = this.object.map('tstamp_records');
    const out: Recorded[] = [];
    const key = Buffer.alloc(4);
    for (let i = 0; i < Math.min(this.count(), map.maxEntries); i++) {
      key.writeUInt32LE(i);
      const value = map.lookup(key);
      if (value) out.push(TstampRecord.decode(value));
    }
    return out;
  }

  /** Our handle goes; the program goes with the namespace's device (the test removes both). */
  close(): void {
    this.object.close();
  }
}
