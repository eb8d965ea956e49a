import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

/** The repository root, from dist/test/support/ at run time. */
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const bpfObject = (name: string): string => join(repoRoot, 'build', 'bpf', name);
