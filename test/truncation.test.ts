// Prompts longer than CLIP's 77 tokens are cut as the released pipeline cuts them, and the
// result says so in `warnings`; the negative prompt too.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { FastComposer, FastComposerError } from '../lib/index.js';
import { join } from 'node:path';

const s0 = join(import.meta.dirname, 'fixtures', 'tiny-a', 'release', 'subjects', 's0_224x224.png');
const small = { width: 64, height: 64, steps: 1, seed: 5, scheduler: 'ddim' as const };
const long = (n: number): string => Array.from({ length: n }, (_, i) => `word${i % 10}`).join(' ');

describe('prompts past 77 tokens', () => {
  let fc: FastComposer;
  beforeAll(async () => {
    fc = await FastComposer.load(inject('goldenModelDir'), { device: 'cpu' });
  });
  afterAll(() => fc?.dispose());

  it('a short prompt gives no warnings', async () => {
    const r = await fc.generate({ ...small, prompt: 'a man <|image|> in a park', subjects: [s0] });
    expect(r.warnings).toEqual([]);
  });

  it('a long prompt is truncated to 77 ids, with a warning in result.warnings', async () => {
    const prompt = `a man <|image|> in a park, ${long(120)}`;
    const t = fc.tokenize(prompt);
    expect(t.inputIds).toHaveLength(77);
    expect(t.textOnlyIds).toHaveLength(77);
    const r = await fc.generate({ ...small, prompt, subjects: [s0] });
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/prompt/i);
    expect(r.warnings[0]).toMatch(/truncat/i);
    expect(r.warnings[0]).toContain('77');
    expect(r.images).toHaveLength(1);
  });

  it('the truncated prompt gives the same picture as its first 77 tokens', async () => {
    // Everything past the cut is ignored: two prompts that differ only there give equal results.
    const head = `a man <|image|> in a park, ${long(100)}`;
    const a = await fc.generate({ ...small, prompt: `${head} red`, subjects: [s0] });
    const b = await fc.generate({ ...small, prompt: `${head} blue green`, subjects: [s0] });
    expect(Buffer.compare(a.latents.data, b.latents.data)).toBe(0);
  });

  it('a long negative prompt warns too', async () => {
    const r = await fc.generate({ ...small, prompt: 'a man <|image|>', subjects: [s0], negativePrompt: long(150) });
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(/negative prompt/i);
    expect(r.warnings[0]).toMatch(/truncat/i);
  });

  it('both long: two warnings', async () => {
    const r = await fc.generate({ ...small, prompt: `a house ${long(100)}`, negativePrompt: long(100) });
    expect(r.warnings).toHaveLength(2);
  });

  it('a text-only prompt past 77 tokens warns', async () => {
    const r = await fc.generate({ ...small, prompt: long(90) });
    expect(r.warnings.some((w) => /truncat/i.test(w))).toBe(true);
  });

  it('encodePrompt() reports the same warnings', async () => {
    const e = await fc.encodePrompt({ prompt: `a house ${long(100)}`, negativePrompt: long(100) });
    expect(e.warnings).toHaveLength(2);
  });

  it('a subject token past the cut is an ERR_PROMPT error, not a silent drop', async () => {
    const e = await fc.generate({ ...small, prompt: `${long(90)} a man <|image|>`, subjects: [s0] }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(FastComposerError);
    expect((e as FastComposerError).code).toBe('ERR_PROMPT');
    expect((e as FastComposerError).message).toContain('77');
  });
});
