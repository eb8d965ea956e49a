/**
 * cgroup v2 for socket-level load balancing: where the unified hierarchy is mounted (or mounting one,
 * as Cilium's agent does), and attaching programs to a cgroup directory by BPF links.
 *
 * Why links, pinned beside the maps, and not bpf_prog_attach(BPF_F_ALLOW_MULTI): a pinned link keeps
 * its program attached after the agent exits (traffic goes on through a restart, as the XDP and tc
 * programs do), and the next agent opens the pin and swaps the new program in with BPF_LINK_UPDATE —
 * one atomic step, with no moment where the hook has no program or two of them (with ALLOW_MULTI a
 * restart would attach a second copy before it could detach the first, and a crashed agent's copy
 * would stay forever with nothing naming it). A link is also ours alone: no other program's
 * BPF_F_REPLACE or detach can take it away. Removing the pin (xlb-agent --cleanup) detaches it.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { BpfError, check } from './errors.js';
import { libbpf, libcCalls } from './libbpf.js';
import type { BpfProgram } from './program.js';
import { run } from './topology.js';

const CGROUP2_SUPER_MAGIC = 0x63677270;
/** Where the agent mounts a cgroup v2 hierarchy of its own when the node has none (Cilium: /run/cilium/cgroupv2). */
export const XLB_CGROUP2_MOUNT = '/run/xlb/cgroupv2';

/** The cgroup hooks socket-LB uses, by the libbpf section suffix (SEC("cgroup/connect4")). */
export const CgroupHook = {
  connect4: 10, // BPF_CGROUP_INET4_CONNECT
  connect6: 11,
  sendmsg4: 14, // BPF_CGROUP_UDP4_SENDMSG
  sendmsg6: 15,
  recvmsg4: 19, // BPF_CGROUP_UDP4_RECVMSG
  recvmsg6: 20,
  getpeername4: 29, // BPF_CGROUP_INET4_GETPEERNAME
  getpeername6: 30,
  sock_release: 34, // BPF_CGROUP_INET_SOCK_RELEASE
} as const;
export type CgroupHookName = keyof typeof CgroupHook;

const BPF_LINK_TYPE_CGROUP = 3;
const BPF_LINK_INFO_SIZE = 128;
const ENOENT = 2;

/** The hook a program was compiled for, from its section ("cgroup/connect4" → connect4). */
export function cgroupHookOf(program: Pick<BpfProgram, 'name' | 'section'>): CgroupHookName {
  const name = program.section.replace(/^cgroup\//, '');
  if (!(name in CgroupHook)) throw new Error(`program ${program.name} (section ${program.section}) is not for a cgroup hook socket-LB knows`);
  return name as CgroupHookName;
}

/** Mount points of cgroup v2 hierarchies in /proc/self/mountinfo's text, in its order. */
export function cgroup2MountPoints(mountinfo: string): string[] {
  const points: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const [mounted, fs] = line.split(' - ');
    const fields = mounted?.split(' ') ?? [];
    const mountPoint = fields[4];
    if (fs?.split(' ')[0] === 'cgroup2' && mountPoint) points.push(unescapeMountPath(mountPoint));
  }
  return points;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo octal. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Whether `dir` is a directory of a cgroup v2 hierarchy. */
export function isCgroup2(dir: string): boolean {
  try {
    return Number(statfsSync(dir).type) === CGROUP2_SUPER_MAGIC;
  } catch {
    return false;
  }
}

/** The unified hierarchy's root as this process sees it mounted (/sys/fs/cgroup first), or undefined. */
export function findCgroup2Root(mountinfo = '/proc/self/mountinfo'): string | undefined {
  const points = cgroup2MountPoints(readFileSync(mountinfo, 'utf8'));
  return points.find((p) => p === '/sys/fs/cgroup') ?? points[0];
}

/**
 * The cgroup socket-LB attaches to: `wanted` (--cgroup-root) when given — it must be a cgroup v2
 * directory, else this throws — or the unified hierarchy's root. A node without one gets one mounted
 * at XLB_CGROUP2_MOUNT when `mount` is allowed (the agent's node setup), logged; when it is not
 * (--no-node-setup), `warn` is told what to mount and the answer is undefined: no socket-LB.
 */
export function resolveCgroupRoot(
  wanted: string | undefined,
  options: { mount: boolean; log?: (line: string) => void; warn?: (line: string) => void },
): string | undefined {
  if (wanted !== undefined) {
    const dir = resolve(wanted);
    if (!isCgroup2(dir)) throw new Error(`--cgroup-root ${dir} is not a cgroup v2 directory (cgroup v2 is mounted at: ${cgroup2MountPoints(readFileSync('/proc/self/mountinfo', 'utf8')).join(', ') || 'nowhere'})`);
    return dir;
  }
  const found = findCgroup2Root();
  if (found !== undefined) return found;
  const hint = `mount one with: mkdir -p ${XLB_CGROUP2_MOUNT} && mount -t cgroup2 none ${XLB_CGROUP2_MOUNT}`;
  if (!options.mount) {
    options.warn?.(`no cgroup v2 hierarchy is mounted: socket-level load balancing is off (ClusterIPs from this node's processes are not served by it); ${hint}`);
    return undefined;
  }
  mkdirSync(XLB_CGROUP2_MOUNT, { recursive: true, mode: 0o755 });
  try {
    run('mount', ['-t', 'cgroup2', 'none', XLB_CGROUP2_MOUNT]);
  } catch (error) {
    throw new Error(`no cgroup v2 hierarchy is mounted, and mounting one on ${XLB_CGROUP2_MOUNT} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
  options.log?.(`mounted the cgroup v2 hierarchy on ${XLB_CGROUP2_MOUNT} (the node had none); remove it with: umount ${XLB_CGROUP2_MOUNT}`);
  return XLB_CGROUP2_MOUNT;
}

/** The kernel's id of a cgroup directory (what link and event info name it by): its inode number. */
export function cgroupId(dir: string): bigint {
  return statSync(dir, { bigint: true }).ino;
}

function withCgroupFd<T>(dir: string, fn: (fd: number) => T): T {
  const fd = openSync(dir, 'r');
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

/** What a cgroup link is: the link, its program, where it is attached. */
export interface CgroupLinkInfo {
  linkId: number;
  programId: number;
  cgroupId: bigint;
  attachType: number;
}

/** bpf_link_info of a cgroup link (undefined for a link of another kind). */
function cgroupLinkInfo(fd: number, what: string): CgroupLinkInfo | undefined {
  const info = Buffer.alloc(BPF_LINK_INFO_SIZE);
  check(libbpf.bpf_obj_get_info_by_fd(fd, info, [BPF_LINK_INFO_SIZE]) as number, 'bpf_obj_get_info_by_fd', what);
  if (info.readUInt32LE(0) !== BPF_LINK_TYPE_CGROUP) return undefined;
  // struct bpf_link_info: type, id, prog_id, then the 8-aligned union: cgroup { cgroup_id, attach_type }.
  return { linkId: info.readUInt32LE(4), programId: info.readUInt32LE(8), cgroupId: info.readBigUInt64LE(16), attachType: info.readUInt32LE(24) };
}

/** The cgroup link pinned at `pinPath`, or undefined when nothing (or no cgroup link) is pinned there. */
export function pinnedCgroupLink(pinPath: string): CgroupLinkInfo | undefined {
  if (!existsSync(pinPath)) return undefined;
  const fd = libbpf.bpf_obj_get(pinPath) as number;
  if (fd < 0) return undefined;
  try {
    return cgroupLinkInfo(fd, `link ${pinPath}`);
  } catch {
    return undefined; // a map or program pinned there: not a link
  } finally {
    libcCalls.close(fd);
  }
}

export type LinkOutcome = 'attached' | 'replaced' | 'moved';

/**
 * Attach `program` to the cgroup `dir` on its hook by a link pinned at `pinPath`. A link already
 * pinned there on the same cgroup and hook gets the program swapped in atomically ('replaced': a
 * restarted agent); one on another cgroup (--cgroup-root changed) is detached once the new one is
 * attached ('moved'). Anything else pinned there is replaced.
 */
export function attachCgroupLink(dir: string, program: BpfProgram, pinPath: string): LinkOutcome {
  const hook = cgroupHookOf(program);
  const attachType = CgroupHook[hook];
  const what = `program ${program.name} on cgroup ${dir} (${hook})`;
  const target = cgroupId(dir);
  let outcome: LinkOutcome = 'attached';
  if (existsSync(pinPath)) {
    const fd = libbpf.bpf_obj_get(pinPath) as number;
    if (fd >= 0) {
      try {
        let info: CgroupLinkInfo | undefined;
        try {
          info = cgroupLinkInfo(fd, `link ${pinPath}`);
        } catch {
          info = undefined;
        }
        if (info && info.cgroupId === target && info.attachType === attachType) {
          check(libbpf.bpf_link_update(fd, program.fd, null) as number, 'bpf_link_update', what);
          return 'replaced';
        }
        if (info) outcome = 'moved';
      } finally {
        libcCalls.close(fd);
      }
    }
  }
  const link = withCgroupFd(dir, (cgroupFd) => check(libbpf.bpf_link_create(program.fd, cgroupFd, attachType, null) as number, 'bpf_link_create', what));
  try {
    if (existsSync(pinPath)) detachCgroupLink(pinPath);
    mkdirSync(dirname(pinPath), { recursive: true, mode: 0o700 });
    check(libbpf.bpf_obj_pin(link, pinPath) as number, 'bpf_obj_pin', `link of ${what} at ${pinPath}`);
  } catch (error) {
    libbpf.bpf_link_detach(link);
    throw error;
  } finally {
    libcCalls.close(link);
  }
  return outcome;
}

/** Detach the link pinned at `pinPath` (whoever else holds it) and remove the pin; false when none was there. */
export function detachCgroupLink(pinPath: string): boolean {
  if (!existsSync(pinPath)) return false;
  const fd = libbpf.bpf_obj_get(pinPath) as number;
  if (fd >= 0) {
    try {
      const result = libbpf.bpf_link_detach(fd) as number;
      // Already detached (its cgroup went away) is as good as detached; a pin of something else just goes.
      if (result < 0 && result !== -ENOENT && result !== -22 && result !== -67) check(result, 'bpf_link_detach', `link ${pinPath}`);
    } finally {
      libcCalls.close(fd);
    }
  }
  rmSync(pinPath, { force: true });
  return true;
}

/** Ids of the programs attached directly to the cgroup `dir` on `hook` (not inherited ones). */
export function queryCgroup(dir: string, hook: CgroupHookName): number[] {
  const max = 64;
  return withCgroupFd(dir, (fd) => {
    const ids = new Uint32Array(max);
    const count = [max];
    check(libbpf.bpf_prog_query(fd, CgroupHook[hook], 0, [0], ids, count) as number, 'bpf_prog_query', `cgroup ${dir} (${hook})`);
    return [...ids.subarray(0, count[0] ?? 0)];
  });
}

/**
 * Detach one program from the cgroup `dir` on `hook`, however it was attached: by the link that holds
 * it (found among the kernel's links), or by bpf_prog_detach2. False when it was not attached there.
 */
export function detachCgroupProgram(dir: string, hook: CgroupHookName, programId: number): boolean {
  const target = cgroupId(dir);
  for (const link of cgroupLinks()) {
    if (link.programId !== programId || link.cgroupId !== target || link.attachType !== CgroupHook[hook]) continue;
    const fd = check(libbpf.bpf_link_get_fd_by_id(link.linkId) as number, 'bpf_link_get_fd_by_id', `link id ${link.linkId}`);
    try {
      check(libbpf.bpf_link_detach(fd) as number, 'bpf_link_detach', `link id ${link.linkId} (program id ${programId} on cgroup ${dir})`);
    } finally {
      libcCalls.close(fd);
    }
    return true;
  }
  const programFd = check(libbpf.bpf_prog_get_fd_by_id(programId) as number, 'bpf_prog_get_fd_by_id', `program id ${programId}`);
  try {
    const result = withCgroupFd(dir, (fd) => libbpf.bpf_prog_detach2(programFd, fd, CgroupHook[hook]) as number);
    if (result === -ENOENT) return false;
    check(result, 'bpf_prog_detach2', `program id ${programId} on cgroup ${dir} (${hook})`);
    return true;
  } finally {
    libcCalls.close(programFd);
  }
}

/** Every cgroup link the kernel has. */
export function cgroupLinks(): CgroupLinkInfo[] {
  const links: CgroupLinkInfo[] = [];
  const next = [0];
  for (let id = 0; (libbpf.bpf_link_get_next_id(id, next) as number) === 0; id = next[0] ?? 0) {
    const linkId = next[0] ?? 0;
    const fd = libbpf.bpf_link_get_fd_by_id(linkId) as number;
    if (fd < 0) continue; // gone meanwhile
    try {
      const info = cgroupLinkInfo(fd, `link id ${linkId}`);
      if (info) links.push(info);
    } catch (error) {
      if (!(error instanceof BpfError)) throw error;
    } finally {
      libcCalls.close(fd);
    }
  }
  return links;
}
