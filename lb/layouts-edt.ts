/**
 * Codecs of the EDT bandwidth manager's maps (bpf/include/edt.h), checked against tc_edt.o's BTF by
 * test/datapath/edt.test.ts.
 */
import { defineStruct, u32, u64 } from './codec.js';

/** The key of xlb_edt (an array: the index of the pod's host-side device) and of xlb_edt_far (a hash: the indexes past the array). */
export function edtKey(ifindex: number): Buffer {
  const key = Buffer.alloc(4);
  u32.write(key, 0, ifindex);
  return key;
}

/** The value of xlb_edt and xlb_edt_far; a zero rate: no limit. */
export const EdtRate = defineStruct('edt_rate', { rate: u64, tLast: u64 });

export const EdtConfig = defineStruct('edt_config', { horizonNs: u64 });

export const edtCodecs = [EdtRate, EdtConfig];
