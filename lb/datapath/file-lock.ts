/**
 * Exclusive advisory locks (flock(2)) that the kernel drops when their holder dies, however it dies:
 * the lock an agent takes on its bpffs directory and API socket, and a demo run on its temp dir.
 * Directories can be locked too (bpffs holds no regular files).
 */
import { closeSync, openSync, constants } from 'node:fs';
import { BpfError } from './errors.js';
import { koffi, libcCalls } from './libbpf.js';

const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;

export class FileLock {
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
  }

  /**
   * Takes the lock on `path` (a file, created 0600 if missing, or a directory) without waiting;
   * undefined when another open file description holds it.
   */
  static tryAcquire(path: string, options: { directory?: boolean } = {}): FileLock | undefined {
    const flags = options.directory ? constants.O_RDONLY | constants.O_DIRECTORY : constants.O_RDWR | constants.O_CREAT;
    // Node opens every file close-on-exec: a spawned child never inherits the lock.
    const fd = openSync(path, flags, 0o600);
    if ((libcCalls.flock(fd, LOCK_EX | LOCK_NB) as number) === 0) return new FileLock(path, fd);
    const errno = koffi.errno();
    closeSync(fd);
    if (errno === EWOULDBLOCK) return undefined;
    throw new BpfError('flock', path, errno);
  }

  /** True when someone holds the lock on `path` now (it exists and cannot be taken). */
  static isHeld(path: string, options: { directory?: boolean } = {}): boolean {
    const lock = FileLock.tryAcquire(path, options);
    lock?.release();
    return lock === undefined;
  }

  release(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}
