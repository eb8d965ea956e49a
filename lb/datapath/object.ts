import { existsSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { Btf } from './btf.js';
import { BpfError, check } from './errors.js';
import { copyFromPointer, isNull, koffi, libbpf, readCString } from './libbpf.js';
import { installLibbpfLog, libbpfLogMark, libbpfLogSince } from './libbpf-log.js';
import { BpfMap } from './map.js';
import { BpfProgram } from './program.js';

export interface LoadOptions {
  /**
   * Pin every map of the object here; the next load reuses the pinned maps, so state survives restarts.
   * A pinned map whose layout no longer matches (an upgrade changed it) is replaced, and said so in
   * `replacedPins`: its state is lost, the agent still starts.
   */
  pinDir?: string;
  /** Values for `const volatile` globals, fixed at load so one verified object serves every configuration. */
  constants?: Record<string, number | bigint>;
  /** Override max_entries per map name (e.g. conntrack size from the command line). */
  maxEntries?: Record<string, number>;
  /** Override the value size of a map-in-map's inner maps, per outer map name (Maglev tables: 2·M bytes). */
  innerValueSize?: Record<string, number>;
}

/** One compiled BPF object file: opened, configured and loaded into the kernel in one step. */
export class BpfObject {
  readonly programs = new Map<string, BpfProgram>();
  readonly maps = new Map<string, BpfMap>();
  /** Pinned maps that did not match this object's layout and were replaced, with what differed. */
  readonly replacedPins: string[] = [];
  /** The value size of each map-in-map's inner maps, by outer map name. */
  readonly innerValueSizes = new Map<string, number>();
  private readonly pinnedPaths: string[] = [];
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly handle: unknown,
  ) {}

  static load(path: string, options: LoadOptions = {}): BpfObject {
    installLibbpfLog();
    const what = `object ${basename(path)}`;
    const openMark = libbpfLogMark();
    const handle = libbpf.bpf_object__open_file(path, null);
    if (isNull(handle)) {
      throw new BpfError('bpf_object__open_file', what, -Number(libbpf.libbpf_get_error(null)) || 2, libbpfLogSince(openMark) || undefined);
    }
    const object = new BpfObject(path, handle);
    try {
      object.configure(options);
      const mark = libbpfLogMark();
      check(libbpf.bpf_object__load(handle) as number, 'bpf_object__load', what, () => libbpfLogSince(mark));
      object.collect();
      return object;
    } catch (error) {
      object.close();
      throw error;
    }
  }

  private *rawMaps(): Generator<unknown> {
    for (let map = libbpf.bpf_object__next_map(this.handle, null); !isNull(map); map = libbpf.bpf_object__next_map(this.handle, map)) {
      yield map;
    }
  }

  private configure(options: LoadOptions): void {
    const what = `object ${basename(this.path)}`;
    for (const map of this.rawMaps()) {
      const name = readCString(libbpf.bpf_map__name(map));
      const maxEntries = options.maxEntries?.[name];
      if (maxEntries !== undefined) {
        check(libbpf.bpf_map__set_max_entries(map, maxEntries) as number, 'bpf_map__set_max_entries', `map ${name}`);
      }
      const inner = libbpf.bpf_map__inner_map(map); // libbpf frees it at load: read it now
      const innerValueSize = options.innerValueSize?.[name];
      if (innerValueSize !== undefined) {
        if (isNull(inner)) throw new Error(`map ${name} is not a map of maps: it has no inner map to size`);
        check(libbpf.bpf_map__set_value_size(inner, innerValueSize) as number, 'bpf_map__set_value_size', `inner map of ${name}`);
      }
      if (!isNull(inner)) this.innerValueSizes.set(name, libbpf.bpf_map__value_size(inner) as number);
      if (options.pinDir && !libbpf.bpf_map__is_internal(map)) {
        const pinPath = join(options.pinDir, name);
        const mismatch = existsSync(pinPath) ? pinnedMismatch(pinPath, map) : undefined;
        if (mismatch) {
          rmSync(pinPath, { force: true });
          this.replacedPins.push(`${name}: ${mismatch}`);
        }
        check(libbpf.bpf_map__set_pin_path(map, pinPath) as number, 'bpf_map__set_pin_path', `map ${name}`);
        this.pinnedPaths.push(pinPath);
      }
    }
    if (options.constants && Object.keys(options.constants).length > 0) this.setConstants(options.constants, what);
  }

  private setConstants(constants: Record<string, number | bigint>, what: string): void {
    const rodata = [...this.rawMaps()].find((m) => readCString(libbpf.bpf_map__name(m)).endsWith('.rodata'));
    if (!rodata) throw new Error(`${what} has no .rodata section: it declares no const volatile globals`);
    const size = [0];
    const pointer = libbpf.bpf_map__initial_value(rodata, size);
    const image = Buffer.from(koffi.view(pointer, Number(size[0])));
    const variables = new Map(this.btf().sectionVariables('.rodata').map((v) => [v.name, v]));
    for (const [name, value] of Object.entries(constants)) {
      const variable = variables.get(name);
      if (!variable) throw new Error(`${what} has no const volatile ${name} (has: ${[...variables.keys()].join(', ')})`);
      if (variable.size === 8) image.writeBigUInt64LE(BigInt(value), variable.offset);
      else image.writeUIntLE(Number(value), variable.offset, variable.size);
    }
  }

  private collect(): void {
    for (let prog = libbpf.bpf_object__next_program(this.handle, null); !isNull(prog); prog = libbpf.bpf_object__next_program(this.handle, prog)) {
      const name = readCString(libbpf.bpf_program__name(prog));
      this.programs.set(name, new BpfProgram(libbpf.bpf_program__fd(prog) as number, name, readCString(libbpf.bpf_program__section_name(prog))));
    }
    for (const map of this.rawMaps()) {
      const name = readCString(libbpf.bpf_map__name(map));
      this.maps.set(
        name,
        new BpfMap(
          libbpf.bpf_map__fd(map) as number,
          name,
          libbpf.bpf_map__type(map) as number,
          libbpf.bpf_map__key_size(map) as number,
          libbpf.bpf_map__value_size(map) as number,
          libbpf.bpf_map__max_entries(map) as number,
          false,
        ),
      );
    }
  }

  program(name: string): BpfProgram {
    const program = this.programs.get(name);
    if (!program) throw new Error(`object ${basename(this.path)} has no program ${name} (has: ${[...this.programs.keys()].join(', ')})`);
    return program;
  }

  map(name: string): BpfMap {
    const map = this.maps.get(name);
    if (!map) throw new Error(`object ${basename(this.path)} has no map ${name} (has: ${[...this.maps.keys()].join(', ')})`);
    return map;
  }

  /** The object's own BTF, as loaded (struct layouts, enums, .rodata variables). */
  btf(): Btf {
    const btf = libbpf.bpf_object__btf(this.handle);
    if (isNull(btf)) throw new Error(`object ${basename(this.path)} carries no BTF (compile with clang -g)`);
    return parseLibbpfBtf(btf);
  }

  /** Remove this object's map pins: the state is gone for good (used by cleanup, never by a restart). */
  unpinMaps(): void {
    for (const path of this.pinnedPaths) rmSync(path, { force: true });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libbpf.bpf_object__close(this.handle);
  }
}

/** BTF of an object file on disk, without loading it (the layout test reads it this way). */
export function readObjectBtf(path: string): Btf {
  const btf = libbpf.btf__parse(path, null);
  if (isNull(btf)) throw new BpfError('btf__parse', `object ${basename(path)}`, -Number(libbpf.libbpf_get_error(null)) || 2);
  try {
    return parseLibbpfBtf(btf);
  } finally {
    libbpf.btf__free(btf);
  }
}

function parseLibbpfBtf(btf: unknown): Btf {
  const size = [0];
  const pointer = libbpf.btf__raw_data(btf, size);
  return new Btf(copyFromPointer(pointer, Number(size[0])));
}

/** How a pinned map differs from what the object asks for (libbpf would refuse to reuse it), or undefined. */
function pinnedMismatch(path: string, map: unknown): string | undefined {
  const pinned = BpfMap.pinnedInfo(path);
  const wanted = {
    type: libbpf.bpf_map__type(map) as number,
    keySize: libbpf.bpf_map__key_size(map) as number,
    valueSize: libbpf.bpf_map__value_size(map) as number,
    maxEntries: libbpf.bpf_map__max_entries(map) as number,
    flags: libbpf.bpf_map__map_flags(map) as number,
  };
  const differ = (Object.keys(wanted) as (keyof typeof wanted)[]).filter((k) => pinned[k] !== wanted[k]);
  return differ.length === 0 ? undefined : differ.map((k) => `${k} ${pinned[k]} pinned, ${wanted[k]} now`).join(', ');
}
