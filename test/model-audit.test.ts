// A model directory is code: a module that does more than compute (writes or reads a file, prints,
// starts a thread, reseeds, profiles, talks to other processes, calls outside the allowed operator
// families, or runs code while it is read) is refused at load with ERR_MODEL naming the file, the
// operator and why, and nothing of it runs. The modules are crafted at test time from the golden
// model's text encoder (test/fixtures/security/craft_modules.py). Every model our exporter makes
// passes: the golden and tiny exports here, the full-size preset by hand (README, "Security").
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { FastComposer, FastComposerError } from '../lib/index.js';
import { defaultModelDir } from '../lib/paths.js';
import { type Crafted, craftModules, modelCopy, sha256 } from './helpers/security.js';

let scratch: string;
let golden: string;
let crafted: Crafted;
beforeAll(() => {
  golden = inject('goldenModelDir');
  scratch = mkdtempSync(join(tmpdir(), 'fastcomposer-audit-'));
  crafted = craftModules(golden, join(scratch, 'crafted'));
}, 600_000);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

async function loadError(dir: string): Promise<FastComposerError> {
  const error = await FastComposer.load(dir, { device: 'cpu' }).then(
    async (fc) => {
      await fc.dispose();
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(FastComposerError);
  return error as FastComposerError;
}

/** The golden model whose text encoder is the crafted module `name`, model.json recording it. */
function tampered(name: string): string {
  const module = readFileSync(crafted.cases[name]!.file);
  return modelCopy(golden, join(scratch, `model-${name}`), { 'text_encoder.pt': module }, true);
}

describe('crafted modules are refused before any of them runs', () => {
  // case, what the message names, why
  const cases: [string, string, string][] = [
    ['save', 'aten::save', 'writes a file'],
    ['from_file', 'aten::from_file', 'reads (memory-maps) a file'],
    ['print', 'prim::Print', 'prints to the terminal'],
    ['warn', 'aten::warn', 'writes a warning to the terminal'],
    ['manual_seed', 'aten::manual_seed', "reseeds the process's random generator"],
    ['fork', 'prim::fork', 'runs code on another thread'],
    ['profiler', 'profiler::_record_function_enter', 'drives the profiler'],
    ['distributed', '_c10d_functional::wait_tensor', 'communicates with other processes'],
    ['outside_families', 'mkldnn::_is_mkldnn_bf16_supported', 'outside the operator families'],
    ['class_attribute', '__torch__.Logger.log', 'calls aten::save, which writes a file'],
    ['hook', 'save_output', 'calls aten::save, which writes a file'],
    ['setstate', 'defines __setstate__', 'would run while the file is read'],
    ['torchbind', '__torch__.torch.classes.quantized.LinearPackedParamsBase', 'TorchBind'],
  ];

  it.each(cases)('%s: ERR_MODEL naming the file, %s, and why', async (name, names, why) => {
    const dir = tampered(name);
    const e = await loadError(dir);
    expect(e.code).toBe('ERR_MODEL');
    expect(e.message).toContain(join(dir, 'text_encoder.pt'));
    expect(e.message).toContain(names);
    expect(e.message).toContain(why);
    expect(e.message).toContain('A model directory is code');
  });

  it('the file-writing ones write nothing, though each wrote its file when Python ran it', async () => {
    const writers = Object.entries(crafted.cases).filter(([, c]) => c.marker);
    expect(writers.map(([name]) => name).sort()).toEqual(['class_attribute', 'hook', 'save', 'setstate']);
    for (const [name, c] of writers) {
      expect(c.provedLive, name).toBe(true);
      await loadError(tampered(name));
      expect(existsSync(c.marker!), name).toBe(false);
    }
  });

  it('verify() refuses the same module without loading it, and reports its files as recorded', async () => {
    const v = await FastComposer.verify(tampered('save'));
    expect(v.ok).toBe(false);
    expect(v.files.every((f) => f.status === 'ok')).toBe(true);
    const text = v.modules.find((m) => m.module === 'text_encoder')!;
    expect(text.error).toContain('aten::save');
    expect(text.operators).toBeUndefined();
    expect(v.modules.filter((m) => m.module !== 'text_encoder').every((m) => m.error === undefined)).toBe(true);
    expect(existsSync(crafted.cases.save!.marker!)).toBe(false);
  });
});

describe('every model our exporter makes passes', () => {
  it.each([
    ['the golden export', () => golden],
    ['the embedded tiny model', () => defaultModelDir],
  ])('%s: verify() finds every file recorded and matching, and every module allowed', async (_, dir) => {
    const v = await FastComposer.verify(dir());
    expect(v.files.map((f) => [f.file, f.status])).toEqual(
      ['text_encoder.pt', 'image_encoder.pt', 'postfuse.pt', 'unet.pt', 'vae_decoder.pt', 'tokenizer.json', 'scheduler_config.json'].map(
        (f) => [f, 'ok'],
      ),
    );
    expect(v.manifestSha256).toBe(sha256(readFileSync(join(dir(), 'model.json'))));
    for (const m of v.modules) {
      expect(m.error, m.file).toBeUndefined();
      expect(m.operators, m.file).toContain('aten::linear');
      expect(
        m.operators!.every((op) => /^(aten|prim)::/.test(op)),
        m.file,
      ).toBe(true);
    }
    expect(v.ok).toBe(true);
  });

  it('the golden export loads and generates with its hashes checked', async () => {
    const fc = await FastComposer.load(golden, { device: 'cpu', verifyHashes: true });
    try {
      const r = await fc.generate({
        prompt: 'a man <|image|>',
        subjects: [join(import.meta.dirname, '..', 'examples', 'subject-a.png')],
        steps: 2,
        width: 64,
        height: 64,
        seed: 1,
      });
      expect(r.latents.shape).toEqual([1, 4, 8, 8]);
    } finally {
      await fc.dispose();
    }
  });
});
