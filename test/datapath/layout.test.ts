import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { defineStruct, ipv4, u16, u8 } from '../../lb/codec.js';
import type { Btf } from '../../lb/datapath/btf.js';
import { readObjectBtf } from '../../lb/datapath/object.js';
import { layoutDifferences, type CodecLayout } from '../../lb/layout-check.js';
import { structCodecs } from '../../lb/layouts.js';
import { repoRoot } from '../support/paths.js';
import { XlbTestEvent, XlbTestKey, XlbTestValue } from '../support/test-layouts.js';

function objectFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? objectFiles(join(dir, e.name)) : e.name.endsWith('.o') ? [join(dir, e.name)] : [],
  );
}

const btfs: { path: string; btf: Btf }[] = objectFiles(join(repoRoot, 'build', 'bpf')).map((path) => ({ path, btf: readObjectBtf(path) }));

function checkAgainstBtf(codec: CodecLayout): string[] {
  const found = btfs.flatMap(({ path, btf }) => {
    const struct = btf.struct(codec.cName);
    return struct ? [{ path, struct }] : [];
  });
  if (found.length === 0) return [`${codec.cName}: no compiled object has this struct in its BTF`];
  return found.flatMap(({ path, struct }) => layoutDifferences(codec, struct).map((p) => `${p} (${path})`));
}

test('every production codec matches its C struct in every object that uses it', () => {
  for (const codec of structCodecs) assert.deepEqual(checkAgainstBtf(codec), [], codec.cName);
});

test('the binding tests’ codecs match bpf/test/xlb_test.h', () => {
  for (const codec of [XlbTestKey, XlbTestValue, XlbTestEvent]) assert.deepEqual(checkAgainstBtf(codec), []);
});

test('a codec that disagrees with its C struct is reported, naming the field', () => {
  const portAsU16Shifted = defineStruct('xlb_test_key', { addr: ipv4, proto: u8, port: u16 });
  const problems = checkAgainstBtf(portAsU16Shifted);
  assert.ok(problems.some((p) => p.includes('xlb_test_key.proto: offset 4 size 1 in TypeScript, offset 6 size 1 in C')), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes('xlb_test_key.port')), problems.join('\n'));

  const tooShort = defineStruct('xlb_test_event', { ifindex: u16 });
  const shortProblems = checkAgainstBtf(tooShort);
  assert.ok(shortProblems.some((p) => p.includes('size 2 in TypeScript, 16 in C')), shortProblems.join('\n'));
  assert.ok(shortProblems.some((p) => p.includes('xlb_test_event.len: C member has no TypeScript field')));
});
