/**
 * A bpffs of a run's own (demo, tests), mounted on a directory the run made: its pins go with it, and
 * so do progs.debug and maps.debug, which the kernel's bpf_preload puts into every bpffs it mounts and
 * which cannot be unlinked. A run that used the host's /sys/fs/bpf would leave those behind.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './topology.js';

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
