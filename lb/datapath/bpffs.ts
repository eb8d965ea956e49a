/**
 * A bpffs of a run's own (demo, tests), mounted on a directory the run made: its pins go with it, and
 * so do progs.debug and maps.debug, which the kernel's bpf_preload puts into every bpffs it mounts and
 * which cannot be unlinked. A run that used the host's /sys/fs/bpf would leave those behind.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { run } from './topology.js';

const BPF_FS_MAGIC = 0xcafe4a11;
const FILESYSTEMS: Record<number, string> = { 0x62656572: 'sysfs', 0x9fa0: 'procfs', 0x01021994: 'tmpfs', 0xef53: 'ext4', 0x794c7630: 'overlayfs' };
/** Where systemd and Cilium mount the node's bpffs. */
export const NODE_BPFFS = '/sys/fs/bpf';
const MOUNT_HINT = `mount one with: mount -t bpf bpf ${NODE_BPFFS} (inside \`ip netns exec\`, /sys is a fresh sysfs: mount a bpffs elsewhere and point --bpffs below it)`;

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

function filesystemOf(path: string): string {
  const type = Number(statfsSync(path).type);
  return FILESYSTEMS[type] ?? `a filesystem of type 0x${type.toString(16)}`;
}

function isBpffs(path: string): boolean {
  return Number(statfsSync(path).type) === BPF_FS_MAGIC;
}

/** Creates the missing directories from `from` (which exists) down to `dir`, one level at a time. */
function createBelow(from: string, dir: string): void {
  const missing: string[] = [];
  for (let path = dir; path !== from; path = dirname(path)) missing.unshift(path);
  for (const path of missing) mkdirSync(path, { mode: 0o700 });
}

/**
 * Makes `dir` a directory on a bpffs, where maps can be pinned, or throws naming the path and how to
 * mount one — within a second, never touching a filesystem that is not a bpffs (a recursive mkdir on
 * sysfs never returns). If `mount` is allowed and `dir` is on no bpffs, one is mounted as Cilium's
 * agent does: on /sys/fs/bpf when `dir` is below it, else on `dir` itself; `log` is told.
 */
export function prepareBpffs(target: string, options: { mount: boolean; log?: (line: string) => void }): void {
  const dir = resolve(target);
  let ancestor = dir;
  while (!exists(ancestor)) ancestor = dirname(ancestor);
  if (isBpffs(ancestor)) {
    createBelow(ancestor, dir);
    return;
  }
  const where = `--bpffs ${dir}: ${ancestor} is on ${filesystemOf(ancestor)}, not on a bpffs`;
  if (!options.mount) throw new Error(`${where}; ${MOUNT_HINT}`);
  const mountPoint = dir === NODE_BPFFS || dir.startsWith(`${NODE_BPFFS}/`) ? NODE_BPFFS : dir;
  if (!exists(mountPoint)) {
    if (filesystemOf(ancestor) === 'sysfs' || filesystemOf(ancestor) === 'procfs') throw new Error(`${where}, and nothing can be created there; ${MOUNT_HINT}`);
    createBelow(ancestor, mountPoint);
  }
  try {
    run('mount', ['-t', 'bpf', 'bpf', mountPoint]);
  } catch (error) {
    throw new Error(`${where}, and mounting one on ${mountPoint} failed: ${error instanceof Error ? error.message : String(error)}; ${MOUNT_HINT}`);
  }
  options.log?.(`mounted a bpffs on ${mountPoint} (${dir} was on no bpffs); remove it with: umount ${mountPoint}`);
  createBelow(mountPoint, dir);
}

export function mountBpffs(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  run('mount', ['-t', 'bpf', 'bpf', dir]);
}

export function isMounted(dir: string): boolean {
  return readFileSync('/proc/mounts', 'utf8').split('\n').some((line) => line.split(' ')[1] === dir);
}

export function unmountBpffs(dir: string): void {
  try {
    run('umount', [dir]);
  } catch {
    // Still busy (an exiting process's mount namespace): detach it now, the kernel frees it after.
    run('umount', ['-l', dir]);
  }
}

/** A bpffs on a fresh temp dir (xlb-bpffs-<tag>-…); remove() unmounts it and deletes the dir. */
export class TempBpffs {
  private constructor(readonly dir: string) {}

  static mount(tag: string): TempBpffs {
    const dir = mkdtempSync(join(tmpdir(), `xlb-bpffs-${tag}-`));
    try {
      mountBpffs(dir);
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
    return new TempBpffs(dir);
  }

  remove(): void {
    if (isMounted(this.dir)) unmountBpffs(this.dir);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
