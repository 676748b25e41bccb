// Compiled (not run) by test/package.test.ts: the public types as an ESM user sees them.
import { FastComposer, FastComposerError, type GenerateOptions, type GenerateResult, type PullResult, type Tensor, listModels, pull } from 'fastcomposer';

async function main(): Promise<void> {
  const fc = await FastComposer.load('model', { device: 'cuda:1', dtype: 'float16' });
  const options: GenerateOptions = { prompt: 'a man <|image|>', subjects: ['man.png'], steps: 30, scheduler: 'dpmpp-2m' };
  const r: GenerateResult = await fc.generate(options);
  const latents: Tensor = r.latents;
  const shape: number[] = latents.shape;
  const png: Buffer = await r.images[0]!.toPng();
  const ids: number[] = fc.tokenize('a man <|image|>').inputIds;
  const mmagic: number[] = fc.tokenize('a man img', { imageToken: 'img' }).inputIds;
  await fc.generate({ prompt: 'a man img', subjects: ['man.png'], imageToken: 'img' });
  const pulled: PullResult = await pull({ name: 'fastcomposer', revision: 'main', onProgress: (e) => void e.type });
  const named = await FastComposer.load(pulled.dir ?? 'fastcomposer');
  const sizes: number[] = (await listModels()).map((m) => m.size);
  void [shape, png, ids, mmagic, named, sizes];
  // @ts-expect-error: not a subject marker
  await fc.generate({ prompt: 'x', imageToken: '[img]' });
  // @ts-expect-error: not a scheduler
  await fc.generate({ prompt: 'x', scheduler: 'lms' });
  // @ts-expect-error: not a device
  await FastComposer.load('model', { device: 'tpu' });
  try {
    await fc.dispose();
  } catch (error) {
    if (error instanceof FastComposerError) {
      const code: string = error.code;
      void code;
    }
  }
}
void main;
