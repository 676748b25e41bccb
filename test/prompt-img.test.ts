// The `img` subject marker of MMagic's FastComposer port. img_token_cases.json holds MMagic's own
// tokenization of each prompt (transformers' CLIPTokenizer with `img` added as a special token,
// its masking and its text-only prompt; scripts/dev/make_img_token_cases.py wrote it).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { FastComposer, FastComposerError } from '../lib/index.js';
import { IMAGE_TOKEN, MMAGIC_IMAGE_TOKEN, PromptTokenizer, maskNounPhraseEnds } from '../lib/prompt.js';
import { float32View } from '../lib/tensor.js';

const fixtures = join(import.meta.dirname, 'fixtures');
interface Case {
  prompt: string;
  raw_ids: number[];
  input_ids: number[];
  subject_token_mask: boolean[];
  text_only_ids: number[];
}
const { image_token_id: mmagicImageId, cases } = JSON.parse(readFileSync(join(fixtures, 'img_token_cases.json'), 'utf8')) as {
  image_token_id: number;
  cases: Case[];
};
const byPrompt = (p: string): Case => cases.find((c) => c.prompt === p)!;
// MMagic accepts a marker on bos or right after another one; tokenize() refuses both, as it does for <|image|>.
const refused = ['img a man', 'a man img img'];
const valid = cases.filter((c) => !refused.includes(c.prompt));
/** The same prompt in the released pipeline's dialect. */
const twin = (prompt: string): string => prompt.split('img').join(IMAGE_TOKEN);

let tok: PromptTokenizer;
beforeAll(async () => {
  tok = await PromptTokenizer.load(join(fixtures, 'tokenizer.json'));
});

function promptError(fn: () => unknown): FastComposerError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(FastComposerError);
    return e as FastComposerError;
  }
  throw new Error('expected an error');
}

describe('imageToken img tokenizes as MMagic does', () => {
  it('uses the same id as <|image|> (img alone is not in the vocabulary)', () => {
    expect(tok.imageTokenId).toBe(mmagicImageId);
    expect(cases.length).toBeGreaterThanOrEqual(15);
  });

  it.each(cases.map((c) => [JSON.stringify(c.prompt), c] as const))('%s: raw ids and masking', (_, c) => {
    const raw = tok.encodeRaw(c.prompt, MMAGIC_IMAGE_TOKEN);
    expect(raw).toEqual(c.raw_ids);
    const { inputIds, subjectTokenMask } = maskNounPhraseEnds(raw, tok.imageTokenId);
    expect(inputIds).toEqual(c.input_ids);
    expect(subjectTokenMask).toEqual(c.subject_token_mask);
  });

  it.each(valid.map((c) => [JSON.stringify(c.prompt), c] as const))('%s: tokenize()', (_, c) => {
    const t = tok.tokenize(c.prompt, MMAGIC_IMAGE_TOKEN);
    expect(t.inputIds).toEqual(c.input_ids);
    expect(t.subjectTokenMask).toEqual(c.subject_token_mask);
    expect(t.textOnlyIds).toEqual(c.text_only_ids);
    expect(t.subjectCount).toBe(c.subject_token_mask.filter(Boolean).length);
  });

  it('refuses a marker with no noun before it, or right after another, naming img', () => {
    expect(promptError(() => tok.tokenize('img a man', MMAGIC_IMAGE_TOKEN)).message).toContain(
      'img at character 0 of the prompt has no noun',
    );
    expect(promptError(() => tok.tokenize('a man img img', MMAGIC_IMAGE_TOKEN)).message).toContain('directly follows another img');
  });
});

describe('which img prompts equal their <|image|> twin', () => {
  // Every prompt without a literal <|image|>: MMagic splits `img` out of the raw text wherever it
  // is, as the released tokenizer splits `<|image|>`, so writing one for the other changes nothing.
  const twins = valid.filter((c) => !c.prompt.includes(IMAGE_TOKEN));
  it.each(twins.map((c) => [JSON.stringify(c.prompt), c] as const))('%s', (_, c) => {
    expect(tok.tokenize(c.prompt, MMAGIC_IMAGE_TOKEN)).toEqual(tok.tokenize(twin(c.prompt)));
  });

  it('img inside a word is still a marker: "imgs" is a subject and the word "s"', () => {
    const t = tok.tokenize('a man imgs in a park', MMAGIC_IMAGE_TOKEN);
    expect(t.subjectCount).toBe(1);
    expect(t.inputIds.slice(0, 5)).toEqual([49406, 320, 786, 338, 530]); // bos a man s in
    expect(tok.tokenize('an imgur logo', MMAGIC_IMAGE_TOKEN).subjectPositions).toEqual([1]); // marks "an"
  });

  it('IMG and Img are plain words (the marker is matched before lowercasing)', () => {
    for (const p of ['a man IMG in a park', 'a man Img in a park']) {
      const t = tok.tokenize(p, MMAGIC_IMAGE_TOKEN);
      expect(t.subjectCount).toBe(0);
      expect(t.inputIds).toContain(byPrompt(p).raw_ids[3]); // img</w>
      expect(t.inputIds).toEqual(tok.tokenize(p).inputIds);
    }
  });

  it('a literal <|image|> is plain text in the img dialect, and img plain text in the default one', () => {
    const mixed = 'a man <|image|> and a woman img';
    expect(tok.tokenize(mixed, MMAGIC_IMAGE_TOKEN).subjectCount).toBe(1);
    expect(tok.tokenize(mixed).subjectCount).toBe(1);
    expect(tok.tokenize(mixed, MMAGIC_IMAGE_TOKEN).subjectPositions).not.toEqual(tok.tokenize(mixed).subjectPositions);
    expect(tok.tokenize('a man img').subjectCount).toBe(0);
  });

  it('punctuation before the marker is what gets marked, as with <|image|>', () => {
    const t = tok.tokenize('a man,img and a dog', MMAGIC_IMAGE_TOKEN);
    expect(t.inputIds[t.subjectPositions[0]!]).toBe(267); // ","
  });
});

describe('imageToken in the API', () => {
  let fc: FastComposer;
  beforeAll(async () => {
    fc = await FastComposer.load(inject('goldenModelDir'), { device: 'cpu' });
  });
  afterAll(() => fc?.dispose());
  const subjects = [
    join(fixtures, 'tiny-a', 'release', 'subjects', 's0_224x224.png'),
    join(fixtures, 'tiny-a', 'release', 'subjects', 's1_224x224.png'),
  ];
  const mmagic = 'A man img and a woman img in the snow';

  it('tokenize() takes it', () => {
    expect(fc.tokenize(mmagic, { imageToken: 'img' })).toEqual(fc.tokenize(twin(mmagic)));
    expect(fc.tokenize(mmagic).inputIds).not.toEqual(fc.tokenize(twin(mmagic)).inputIds);
  });

  it("encodePrompt() gives the twin's embeddings", async () => {
    const subjectEmbeds = await fc.encodeSubjects(subjects);
    const a = await fc.encodePrompt({ prompt: mmagic, imageToken: 'img', subjectEmbeds, negativePrompt: 'blurry img' });
    const b = await fc.encodePrompt({ prompt: twin(mmagic), subjectEmbeds, negativePrompt: 'blurry img' });
    expect(a.subjectPositions).toEqual([2, 5]);
    for (const key of ['fused', 'textOnly', 'negative'] as const) expect(float32View(a[key])).toEqual(float32View(b[key]));
  });

  it("generate() gives the twin's latents", async () => {
    const common = { subjects, steps: 3, width: 64, height: 64, seed: 7 };
    const a = await fc.generate({ ...common, prompt: mmagic, imageToken: 'img' });
    const b = await fc.generate({ ...common, prompt: twin(mmagic) });
    expect(float32View(a.latents)).toEqual(float32View(b.latents));
  });

  it('checks the option and names the marker in subject-count errors', async () => {
    await expect(fc.generate({ prompt: mmagic, subjects, imageToken: 'IMG' as never })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      message: expect.stringContaining('imageToken'),
    });
    expect(() => fc.tokenize(mmagic, { imageToken: '[img]' as never })).toThrow(/imageToken/);
    await expect(fc.generate({ prompt: mmagic, subjects: subjects.slice(0, 1), imageToken: 'img' })).rejects.toMatchObject({
      code: 'ERR_SUBJECT_COUNT',
      message: expect.stringContaining('one per img'),
    });
  });
});
