/**
 * A reader for raw BTF (the kernel's type format, as libbpf hands it over): enough to find struct
 * layouts, enum values and the variables of a data section (for `const volatile` load-time config).
 */

const BTF_MAGIC = 0xeb9f;

enum Kind {
  Int = 1, Ptr, Array, Struct, Union, Enum, Fwd, Typedef, Volatile, Const, Restrict,
  Func, FuncProto, Var, Datasec, Float, DeclTag, TypeTag, Enum64,
}

interface BtfType {
  id: number;
  name: string;
  kind: Kind;
  vlen: number;
  kindFlag: boolean;
  /** size for Int/Struct/Union/Enum/Datasec/Float; referenced type id for the others */
  sizeOrType: number;
  array?: { type: number; nelems: number };
  members?: { name: string; type: number; bitOffset: number; bitSize: number }[];
  enumValues?: { name: string; value: bigint }[];
  sectionVars?: { type: number; offset: number; size: number }[];
}

export interface BtfMember {
  name: string;
  offset: number;
  size: number;
}

export interface BtfStruct {
  name: string;
  size: number;
  members: BtfMember[];
}

export interface BtfVariable {
  name: string;
  offset: number;
  size: number;
}

export class Btf {
  private readonly types: BtfType[] = [];
  private readonly byName = new Map<string, BtfType[]>();

  constructor(raw: Buffer) {
    if (raw.length < 24 || raw.readUInt16LE(0) !== BTF_MAGIC) throw new Error('not little-endian BTF data');
    const headerLength = raw.readUInt32LE(4);
    const typeStart = headerLength + raw.readUInt32LE(8);
    const typeEnd = typeStart + raw.readUInt32LE(12);
    const stringStart = headerLength + raw.readUInt32LE(16);
    const stringEnd = stringStart + raw.readUInt32LE(20);
    const str = (offset: number): string => {
      const end = raw.indexOf(0, stringStart + offset);
      return raw.toString('utf8', stringStart + offset, end < 0 || end > stringEnd ? stringEnd : end);
    };

    let at = typeStart;
    let id = 1;
    while (at < typeEnd) {
      const info = raw.readUInt32LE(at + 4);
      const type: BtfType = {
        id,
        name: str(raw.readUInt32LE(at)),
        kind: (info >>> 24) & 0x1f,
        vlen: info & 0xffff,
        kindFlag: (info >>> 31) === 1,
        sizeOrType: raw.readUInt32LE(at + 8),
      };
      at += 12;
      switch (type.kind) {
        case Kind.Int:
        case Kind.Var:
        case Kind.DeclTag:
          at += 4;
          break;
        case Kind.Array:
          type.array = { type: raw.readUInt32LE(at), nelems: raw.readUInt32LE(at + 8) };
          at += 12;
          break;
        case Kind.Struct:
        case Kind.Union:
          type.members = [];
          for (let i = 0; i < type.vlen; i++, at += 12) {
            const offset = raw.readUInt32LE(at + 8);
            type.members.push({
              name: str(raw.readUInt32LE(at)),
              type: raw.readUInt32LE(at + 4),
              bitOffset: type.kindFlag ? offset & 0xffffff : offset,
              bitSize: type.kindFlag ? offset >>> 24 : 0,
            });
          }
          break;
        case Kind.Enum:
          type.enumValues = [];
          for (let i = 0; i < type.vlen; i++, at += 8) {
            type.enumValues.push({ name: str(raw.readUInt32LE(at)), value: BigInt(raw.readInt32LE(at + 4)) });
          }
          break;
        case Kind.Enum64:
          type.enumValues = [];
          for (let i = 0; i < type.vlen; i++, at += 12) {
            const value = (BigInt(raw.readUInt32LE(at + 8)) << 32n) | BigInt(raw.readUInt32LE(at + 4));
            type.enumValues.push({ name: str(raw.readUInt32LE(at)), value });
          }
          break;
        case Kind.FuncProto:
          at += 8 * type.vlen;
          break;
        case Kind.Datasec:
          type.sectionVars = [];
          for (let i = 0; i < type.vlen; i++, at += 12) {
            type.sectionVars.push({
              type: raw.readUInt32LE(at),
              offset: raw.readUInt32LE(at + 4),
              size: raw.readUInt32LE(at + 8),
            });
          }
          break;
        default:
          break;
      }
      this.types.push(type);
      const named = this.byName.get(type.name) ?? [];
      named.push(type);
      this.byName.set(type.name, named);
      id += 1;
    }
  }

  private type(id: number): BtfType {
    const type = this.types[id - 1];
    if (!type) throw new Error(`BTF type id ${id} out of range`);
    return type;
  }

  private find(name: string, kinds: Kind[]): BtfType | undefined {
    return this.byName.get(name)?.find((t) => kinds.includes(t.kind));
  }

  /** Size in bytes of a type, following typedefs, qualifiers and arrays. */
  sizeOf(id: number): number {
    const type = this.type(id);
    switch (type.kind) {
      case Kind.Int:
      case Kind.Struct:
      case Kind.Union:
      case Kind.Enum:
      case Kind.Enum64:
      case Kind.Datasec:
      case Kind.Float:
        return type.sizeOrType;
      case Kind.Ptr:
        return 8;
      case Kind.Array:
        return type.array ? type.array.nelems * this.sizeOf(type.array.type) : 0;
      case Kind.Typedef:
      case Kind.Volatile:
      case Kind.Const:
      case Kind.Restrict:
      case Kind.Var:
      case Kind.TypeTag:
        return this.sizeOf(type.sizeOrType);
      default:
        throw new Error(`BTF type ${type.name || id} (kind ${Kind[type.kind]}) has no size`);
    }
  }

  struct(name: string): BtfStruct | undefined {
    const type = this.find(name, [Kind.Struct, Kind.Union]);
    if (!type?.members) return undefined;
    return {
      name,
      size: type.sizeOrType,
      members: type.members.map((m) => ({
        name: m.name,
        offset: m.bitOffset / 8,
        size: m.bitSize ? m.bitSize / 8 : this.sizeOf(m.type),
      })),
    };
  }

  enumValues(name: string): Map<string, bigint> | undefined {
    const type = this.find(name, [Kind.Enum, Kind.Enum64]);
    return type?.enumValues ? new Map(type.enumValues.map((v) => [v.name, v.value])) : undefined;
  }

  /** Variables of a data section such as ".rodata" (matched by suffix: libbpf prefixes the object name). */
  sectionVariables(section: string): BtfVariable[] {
    const type = this.types.find((t) => t.kind === Kind.Datasec && t.name.endsWith(section));
    return (type?.sectionVars ?? []).map((v) => ({ name: this.type(v.type).name, offset: v.offset, size: v.size }));
  }
}
