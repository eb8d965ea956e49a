import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where `make -C bpf` puts the compiled objects: build/bpf/ at the package root (we run from dist/lb/datapath). */
export const BPF_BUILD_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'build', 'bpf');

/** Path of a compiled object, e.g. bpfObjectPath('xdp/xdp_lb.o'); names the set-up step when it is missing. */
export function bpfObjectPath(name: string): string {
  const path = join(BPF_BUILD_DIR, name);
  if (!existsSync(path)) throw new Error(`BPF object ${name} not found in ${BPF_BUILD_DIR}: run deploy/setup.sh (or make -C bpf)`);
  return path;
}

/** Every compiled object, as names relative to the build directory. */
export function listBpfObjects(dir = BPF_BUILD_DIR): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.o'))
    .map((e) => relative(BPF_BUILD_DIR, join(e.parentPath ?? e.path, e.name)))
    .sort();
}
