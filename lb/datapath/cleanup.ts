/**
 * Taking xlb off a node (xlb-agent --cleanup): its programs off every device, its pins out of the
 * bpffs. Programs are recognised by name in the slots xlb attaches to, so another project's XDP or
 * tc programs stay where they are.
 */
import { readdirSync, rmSync } from 'node:fs';
import { check } from './errors.js';
import { libbpf, libcCalls } from './libbpf.js';
import { detachTc, queryTc, type TcDirection } from './tc.js';
import { detachXdp, queryXdp } from './xdp.js';

/** What xlb attaches, by hook. */
const XDP_PROGRAMS = new Set(['xdp_lb']);
const TC_PROGRAMS: Record<TcDirection, string> = { ingress: 'tc_dsr_ingress', egress: 'tc_dsr_egress' };
const BPF_PROG_INFO_SIZE = 232;
const BPF_PROG_INFO_NAME_OFFSET = 64;
const BPF_OBJ_NAME_LEN = 16;

/** The name a loaded program was given (bpf_prog_info.name). */
export function programNameById(id: number): string {
  const fd = libbpf.bpf_prog_get_fd_by_id(id) as number;
  check(fd, 'bpf_prog_get_fd_by_id', `program id ${id}`);
  try {
    const info = Buffer.alloc(BPF_PROG_INFO_SIZE);
    const length = [BPF_PROG_INFO_SIZE];
    check(libbpf.bpf_obj_get_info_by_fd(fd, info, length) as number, 'bpf_obj_get_info_by_fd', `program id ${id}`);
    const name = info.subarray(BPF_PROG_INFO_NAME_OFFSET, BPF_PROG_INFO_NAME_OFFSET + BPF_OBJ_NAME_LEN);
    const end = name.indexOf(0);
    return name.toString('latin1', 0, end === -1 ? BPF_OBJ_NAME_LEN : end);
  } finally {
    libcCalls.close(fd);
  }
}

/** The devices of the calling thread's network namespace. */
export function netDevices(): string[] {
  return readdirSync('/sys/class/net');
}

/** Detaches xlb's programs from `devices`; one line per program removed. */
export function detachXlbPrograms(devices: readonly string[]): string[] {
  const removed: string[] = [];
  for (const dev of devices) {
    const xdp = queryXdp(dev);
    if (xdp.programId !== 0 && (xdp.mode === 'native' || xdp.mode === 'generic')) {
      const name = programNameById(xdp.programId);
      if (XDP_PROGRAMS.has(name)) {
        detachXdp(dev, xdp.mode);
        removed.push(`${dev}: XDP ${name} (${xdp.mode})`);
      }
    }
    for (const direction of ['ingress', 'egress'] as const) {
      const id = queryTc(dev, direction);
      if (id === 0) continue;
      const name = programNameById(id);
      if (name !== TC_PROGRAMS[direction]) continue;
      detachTc(dev, direction);
      removed.push(`${dev}: tc ${direction} ${name}`);
    }
  }
  return removed;
}

/** Unpins everything below `dir` (a directory on a bpffs) and removes it; the number of pins. */
export function removePins(dir: string): number {
  let pins = 0;
  try {
    pins = readdirSync(dir, { recursive: true, withFileTypes: true }).filter((entry) => !entry.isDirectory()).length;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  rmSync(dir, { recursive: true });
  return pins;
}
