import type { CodecLayout } from './layout-check.js';

/** Every codec of a map key/value defined in bpf/include; the layout test checks each against BTF. */
export const structCodecs: CodecLayout[] = [];
