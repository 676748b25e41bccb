// A module file nested deeper than a stack holds is refused with ERR_MODEL, never a crash
// (native/module_limits.h, native/large_stack.h). Reading TorchScript recurses as deep as the
// file nests (the unpickler's values and their destruction, the compiler's chain of calls, the
// parser's expressions): each crafted file here ended the reading process with a stack overflow
// before, in `info --verify` as in load(). The files come from
// test/fixtures/security/craft_nesting.py and are read in a child process.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { findPython } from '../lib/python.js';
import { runChild } from './helpers/child.js';

const root = join(import.meta.dirname, '..');
const dist = join(root, 'dist', 'esm');
type Read = { operators?: string[]; code?: string; message?: string };

let scratch: string;
let results: Record<string, Read>;
beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'fastcomposer-limits-'));
  const craft = spawnSync(findPython(), [join(root, 'test', 'fixtures', 'security', 'craft_nesting.py'), scratch], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (craft.status !== 0) throw new Error(`crafting the nested modules failed (${craft.status}):\n${craft.stderr}`);
  const cases = join(scratch, 'cases.json');
  writeFileSync(cases, craft.stdout);
  const r = await runChild<Record<string, Read>>(join(root, 'test', 'fixtures', 'security', 'audit-files.mjs'), [dist, cases], 300_000);
  if (r.result === undefined) throw new Error(`the reader died (${r.signal ?? r.code}) at ${r.lastCase}:\n${r.stderr}`);
  results = r.result;
}, 600_000);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const refused = (what: RegExp) => ({ code: 'ERR_MODEL', message: expect.stringMatching(what) });

it('files within the limits are read: the plain module, values 200 deep, calls 100 deep, a statement 1000 operators deep, a type tag', () => {
  for (const name of [
    'plain',
    'values_200_deep',
    'calls_100_deep',
    'statement_1000_deep',
    'type_name_short',
    'blocks_100_deep_behind_interface',
  ]) {
    expect(results[name]?.message, name).toBeUndefined();
    expect(results[name]?.operators?.length, name).toBeGreaterThan(0);
  }
});

it.each([
  ['values_100k_deep', /data\.pkl nests values .* more than 256 deep/],
  ['value_holding_itself', /data\.pkl holds a value that contains itself/],
  ['archive_over_2mib', /archive data\.pkl is \d+ bytes, more than the 2097152/],
  ['calls_3000_deep', /function __torch__\.Small\.forward calls functions \(or nests blocks\) more than 256 deep/],
  ['too_many_functions', /defines more than 16384 functions/],
  ['statement_50k_deep', /statement of \d+ tokens, more than the 4096/],
  ['type_name_deep', /names a class or type of 500000 characters, more than the 1024/],
  ['statement_behind_cr', /statement of \d+ tokens, more than the 4096/],
  ['type_comment_deep', /statement of \d+ tokens, more than the 4096/],
  ['code_of_blank_lines', /code code\/__torch__\.py is \d+ bytes, more than the 524288/],
  ['memo_index_huge', /data\.pkl puts a value at memo index 100000000, past the archive's size/],
  ['string_past_end', /data\.pkl ends inside an instruction/],
  ['archive_bomb', /record data\.pkl unpacks to \d+ bytes, more than the whole file holds/],
  ['storage_past_record', /a tensor's storage claims 1073741824 bytes, but its record holds 8/],
  ['blocks_300_deep_behind_interface', /function __torch__\.Branches\.forward calls functions \(or nests blocks\) more than 256 deep/],
])('%s: refused with ERR_MODEL naming the file and the limit', (name, what) => {
  expect(results[name]).toEqual(refused(what));
  expect(results[name]!.message).toContain(join(scratch, `${name}.pt`));
});

it.each(['broken_after_1m_lists', 'broken_after_2m_tuples'])(
  '%s: a pickle that ends after building a value a million deep fails as a broken file, and the process lives',
  (name) => {
    expect(results[name]).toEqual(refused(/Cannot load TorchScript module .*expected 1 element on the stack/));
  },
);
