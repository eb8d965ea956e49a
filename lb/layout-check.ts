import type { BtfStruct } from './datapath/btf.js';
import type { StructField } from './codec.js';

export interface CodecLayout {
  cName: string;
  size: number;
  fields: StructField[];
}

/** TypeScript fields are the C members in camelCase: last_len ↔ lastLen. */
const cMemberName = (field: string): string => field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Differences between a TypeScript codec and its C struct as BTF describes it; empty when they agree. */
export function layoutDifferences(codec: CodecLayout, struct: BtfStruct): string[] {
  const problems: string[] = [];
  if (codec.size !== struct.size) problems.push(`${codec.cName}: size ${codec.size} in TypeScript, ${struct.size} in C`);
  const members = new Map(struct.members.map((m) => [m.name, m]));
  for (const field of codec.fields) {
    if (field.padding) continue;
    const member = members.get(cMemberName(field.name));
    if (!member) {
      problems.push(`${codec.cName}.${cMemberName(field.name)}: no such member in C`);
    } else if (member.offset !== field.offset || member.size !== field.size) {
      problems.push(
        `${codec.cName}.${field.name}: offset ${field.offset} size ${field.size} in TypeScript, ` +
          `offset ${member.offset} size ${member.size} in C`,
      );
    }
  }
  const named = new Set(codec.fields.map((f) => cMemberName(f.name)));
  for (const member of struct.members) {
    if (!named.has(member.name) && !/^(pad|_pad|__pad|reserved)\d*$/.test(member.name)) {
      problems.push(`${codec.cName}.${member.name}: C member has no TypeScript field`);
    }
  }
  return problems;
}
