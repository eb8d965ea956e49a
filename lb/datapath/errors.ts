import { constants } from 'node:os';

const errnoNames = new Map<number, string>(
  Object.entries(constants.errno).map(([name, code]) => [code, name]),
);

/** Kernel/libbpf errno values the BPF paths return most, with what they mean for xlb's users. */
const errnoMeanings: Record<string, string> = {
  EPERM: 'operation not permitted (need root / CAP_BPF, or bpffs not mounted)',
  ENOENT: 'no such entry (key, map, program or pin path not found)',
  EEXIST: 'already exists',
  E2BIG: 'map is full or value too large',
  EINVAL: 'invalid argument (layout, flags or program type mismatch)',
  ENOMEM: 'out of memory',
  EBUSY: 'device or resource busy (another program is attached)',
  EACCES: 'permission denied (the verifier rejected the program)',
  ENODEV: 'no such device (interface missing in this network namespace)',
  EOPNOTSUPP: 'operation not supported by this kernel or driver',
  ENOTSUPP: 'operation not supported by this kernel or driver',
  ENOSPC: 'no space left (map or ring buffer full)',
  EBADF: 'bad file descriptor (map or program closed)',
  ENOTDIR: 'not a directory',
  EFAULT: 'bad address',
  ERANGE: 'value out of range',
  LIBBPF_ERRNO__RELOC: 'libbpf could not relocate the object (an unsupported call or map reference)',
  LIBBPF_ERRNO__FORMAT: 'not a BPF object libbpf understands',
  LIBBPF_ERRNO__LIBELF: 'libelf could not read the object file',
};

/* libbpf's own error numbers (enum libbpf_errno in libbpf.h), from 4000 on. */
const libbpfErrnos = ['LIBELF', 'FORMAT', 'KVERSION', 'ENDIAN', 'INTERNAL', 'RELOC', 'LOAD', 'VERIFY', 'PROG2BIG', 'KVER', 'PROGTYPE', 'WRNGPID', 'INVSEQ', 'NLPARSE'];

export function errnoName(errno: number): string {
  const libbpfName = libbpfErrnos[errno - 4000];
  if (libbpfName) return `LIBBPF_ERRNO__${libbpfName}`;
  return errnoNames.get(errno) ?? (errno === 524 ? 'ENOTSUPP' : `errno ${errno}`);
}

export function errnoMeaning(errno: number): string {
  const name = errnoName(errno);
  return errnoMeanings[name] ?? name;
}

/** A failed BPF operation: which operation, on which object, and the errno with its meaning. */
export class BpfError extends Error {
  override name = 'BpfError';
  readonly errno: number;
  readonly code: string;

  constructor(operation: string, object: string, errno: number, detail?: string) {
    const code = errnoName(errno);
    const meaning = errnoMeanings[code];
    super(
      `${operation} on ${object} failed: ${code}${meaning ? ` (${meaning})` : ''}` +
        (detail ? `\n${detail}` : ''),
    );
    this.errno = errno;
    this.code = code;
  }
}

/** libbpf returns negative errno; turn it into a BpfError, or return the non-negative result. */
export function check(result: number, operation: string, object: string, detail?: () => string): number {
  if (result < 0) throw new BpfError(operation, object, -result, detail?.());
  return result;
}
