import { BpfError, check } from './errors.js';
import { libbpf } from './libbpf.js';
import { ifindexOf } from './netif.js';
import type { BpfProgram } from './program.js';

const XDP_FLAGS_SKB_MODE = 1 << 1;
const XDP_FLAGS_DRV_MODE = 1 << 2;
const XDP_FLAGS_REPLACE = 1 << 4;

export type XdpMode = 'native' | 'generic';
export type XdpAttachedMode = XdpMode | 'none' | 'offload' | 'multi';

const modeFlags: Record<XdpMode, number> = { native: XDP_FLAGS_DRV_MODE, generic: XDP_FLAGS_SKB_MODE };
const attachedModes: XdpAttachedMode[] = ['none', 'native', 'generic', 'offload', 'multi'];

export interface XdpAttachOptions {
  mode: XdpMode | 'auto';
  /** Compare-and-swap: replace exactly this program, fail with EEXIST-like errors if another is attached. */
  replacing?: BpfProgram;
  /** Told when 'auto' falls back from native to generic. */
  onFallback?: (reason: BpfError) => void;
}

/** Attach (or atomically replace) the XDP program of an interface; returns the mode in effect. */
export function attachXdp(ifname: string, program: BpfProgram, options: XdpAttachOptions): XdpMode {
  const ifindex = ifindexOf(ifname);
  const opts = Buffer.alloc(16);
  opts.writeBigUInt64LE(16n, 0);
  let replaceFlag = 0;
  if (options.replacing) {
    opts.writeInt32LE(options.replacing.fd, 8);
    replaceFlag = XDP_FLAGS_REPLACE;
  }
  const tryMode = (mode: XdpMode): void => {
    check(
      libbpf.bpf_xdp_attach(ifindex, program.fd, modeFlags[mode] | replaceFlag, opts) as number,
      `bpf_xdp_attach (${mode})`,
      `program ${program.name} on interface ${ifname}`,
    );
  };
  if (options.mode !== 'auto') {
    tryMode(options.mode);
    return options.mode;
  }
  try {
    tryMode('native');
    return 'native';
  } catch (error) {
    if (!(error instanceof BpfError) || !['EOPNOTSUPP', 'ENOTSUPP', 'EINVAL'].includes(error.code)) throw error;
    options.onFallback?.(error);
    tryMode('generic');
    return 'generic';
  }
}

export function detachXdp(ifname: string, mode: XdpMode): void {
  check(libbpf.bpf_xdp_detach(ifindexOf(ifname), modeFlags[mode], null) as number, `bpf_xdp_detach (${mode})`, `interface ${ifname}`);
}

export interface XdpQuery {
  mode: XdpAttachedMode;
  /** id of the attached program, 0 when none */
  programId: number;
}

export function queryXdp(ifname: string): XdpQuery {
  const opts = Buffer.alloc(32);
  opts.writeBigUInt64LE(32n, 0);
  check(libbpf.bpf_xdp_query(ifindexOf(ifname), 0, opts) as number, 'bpf_xdp_query', `interface ${ifname}`);
  return { programId: opts.readUInt32LE(8), mode: attachedModes[opts.readUInt8(24)] ?? 'multi' };
}
