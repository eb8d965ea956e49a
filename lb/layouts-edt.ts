/**
 * Codecs of the EDT bandwidth manager's maps (bpf/include/edt.h), checked against tc_edt.o's BTF by
 * test/datapath/edt.test.ts.
 */
import { defineStruct, u32, u64 } from './codec.js';

/** xlb_edt's key: the ifindex of the pod's host-side device. */
export function edtKey(ifindex: number): Buffer {
  const key = Buffer.alloc(4);
  u32.write(key, 0, ifindex);
  return key;
}

/** xlb_edt's value (its key is the pod's host-side ifindex, a __u32). */
export const EdtRate = defineStruct('edt_rate', { rate: u64, tLast: u64 });

export const EdtConfig = defineStruct('edt_config', { horizonNs: u64 });

export const edtCodecs = [EdtRate, EdtConfig];
