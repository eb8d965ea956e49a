import { be16, defineStruct, ipv4, pad, u32, u64, u8 } from '../../lb/codec.js';

/** Codecs for bpf/test/xlb_test.h: the binding tests' own map layouts. */
export const XlbTestKey = defineStruct('xlb_test_key', { addr: ipv4, port: be16, proto: u8, pad: pad(1) });
export const XlbTestValue = defineStruct('xlb_test_value', { packets: u64, bytes: u64, lastLen: u32, pad: pad(4) });
export const XlbTestEvent = defineStruct('xlb_test_event', { ifindex: u32, len: u32, proto: be16, pad: pad(6) });
