/** `xlb bpf ...`: look at the datapath's programs and maps. */
import { BpfObject } from '../../lb/datapath/object.js';
import { bpfObjectPath, listBpfObjects } from '../../lb/datapath/objects.js';
import { EXIT_FAILURE, EXIT_OK, UsageError, type CliCommand, type CliIO } from './command.js';
import { formatTable } from './table.js';

const mapTypeNames: Record<number, string> = {
  1: 'hash', 2: 'array', 3: 'prog_array', 5: 'percpu_hash', 6: 'percpu_array', 9: 'lru_hash',
  10: 'lru_percpu_hash', 11: 'lpm_trie', 12: 'array_of_maps', 13: 'hash_of_maps', 27: 'ringbuf',
};

/** Load every compiled object into the kernel (verifier included), print what it holds, unload. */
function showObjects(json: boolean, io: CliIO): number {
  const names = listBpfObjects();
  if (names.length === 0) {
    io.err('no compiled BPF objects: run deploy/setup.sh\n');
    return EXIT_FAILURE;
  }
  const report = names.map((name) => {
    const object = BpfObject.load(bpfObjectPath(name));
    try {
      return {
        object: name,
        programs: [...object.programs.values()].map((p) => ({ name: p.name, section: p.section })),
        maps: [...object.maps.values()].map((m) => ({
          name: m.name,
          type: mapTypeNames[m.type] ?? String(m.type),
          keySize: m.keySize,
          valueSize: m.valueSize,
          maxEntries: m.maxEntries,
        })),
      };
    } finally {
      object.close();
    }
  });
  if (json) {
    io.out(`${JSON.stringify(report, null, 2)}\n`);
    return EXIT_OK;
  }
  for (const entry of report) {
    io.out(`${entry.object}: loaded and verified by the kernel\n`);
    io.out(formatTable(['program', 'section'], entry.programs.map((p) => [p.name, p.section])));
    io.out(formatTable(['map', 'type', 'key', 'value', 'max entries'], entry.maps.map((m) => [m.name, m.type, m.keySize, m.valueSize, m.maxEntries])));
    io.out('\n');
  }
  return EXIT_OK;
}

export const bpfCommand: CliCommand = {
  name: 'bpf',
  summary: 'inspect the datapath: compiled objects, programs and maps',
  usage: `xlb bpf objects [--json]   load each compiled object, print its programs and maps, unload it`,
  async run(args, io) {
    const [sub, ...rest] = args;
    const json = rest.includes('--json');
    const unknown = rest.filter((a) => a !== '--json');
    if (unknown.length > 0) throw new UsageError(`xlb bpf ${sub ?? ''}: unknown argument ${unknown[0]}`);
    if (sub === 'objects') return showObjects(json, io);
    throw new UsageError(`xlb bpf: unknown subcommand ${sub ?? '(none)'}; expected: objects`);
  },
};
