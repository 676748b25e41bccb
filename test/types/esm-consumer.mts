// Compiled (not run) by test/package.test.ts: the public types as an ESM user sees them.
import {
  FastComposer,
  FastComposerError,
  type GenerateOptions,
  type GenerateResult,
  type ModelVerification,
  type PullResult,
  type Tensor,
  listModels,
  pull,
} from 'fastcomposer';
import { createServer, type GenerateBackend, type JobJson } from 'fastcomposer/server';

export async function main(): Promise<unknown[]> {
  const fc = await FastComposer.load('model', { device: 'cuda:1', dtype: 'float16' });
  const options: GenerateOptions = { prompt: 'a man <|image|>', subjects: ['man.png'], steps: 30, scheduler: 'dpmpp-2m' };
  const r: GenerateResult = await fc.generate(options);
  const latents: Tensor = r.latents;
  const shape: number[] = latents.shape;
  const png: Buffer = await r.images[0]!.toPng();
  const ids: number[] = fc.tokenize('a man <|image|>').inputIds;
  // A loaded model is a backend; so is anything with the same generate().
  const backend: GenerateBackend = fc;
  const server = await createServer({
    backend,
    info: { model: 'm', device: 'cpu', dtype: 'float32' },
    concurrency: 2,
    limits: { maxQueued: 4 },
  });
  const url: string = await server.listen({ port: 0 });
  const status: JobJson['status'] = 'queued';
  // @ts-expect-error: not a limit
  await createServer({ backend, info: { model: 'm', device: 'cpu', dtype: 'float32' }, limits: { maxQueue: 4 } });
  const mmagic: number[] = fc.tokenize('a man img', { imageToken: 'img' }).inputIds;
  await fc.generate({ prompt: 'a man img', subjects: ['man.png'], imageToken: 'img' });
  const pulled: PullResult = await pull({ name: 'fastcomposer', revision: 'main', onProgress: (e) => void e.type });
  const named = await FastComposer.load(pulled.dir ?? 'fastcomposer');
  const sizes: number[] = (await listModels()).map((m) => m.size);
  const seen: unknown[] = [shape, png, ids, url, status, mmagic, named, sizes];
  // @ts-expect-error: not a subject marker
  await fc.generate({ prompt: 'x', imageToken: '[img]' });
  // @ts-expect-error: not a scheduler
  await fc.generate({ prompt: 'x', scheduler: 'lms' });
  // @ts-expect-error: not a device
  await FastComposer.load('model', { device: 'tpu' });
  await FastComposer.load('model', { verifyHashes: true });
  const batching = await FastComposer.load('model', { maxBatchSize: 4 });
  const load: { waiting: number; running: number } = batching.counters();
  const shared: number = r.timings.batchedCalls;
  seen.push(load, shared, batching.maxBatchSize);
  // @ts-expect-error: a number
  await FastComposer.load('model', { maxBatchSize: '4' });
  const v: ModelVerification = await FastComposer.verify('model');
  const fingerprint: string = v.manifestSha256;
  const fileStatus: 'ok' | 'missing' | 'size-mismatch' | 'hash-mismatch' | 'unrecorded' = v.files[0]!.status;
  seen.push(fingerprint, fileStatus, v.modules[0]?.operators);
  // @ts-expect-error: a boolean
  await FastComposer.load('model', { verifyHashes: 'yes' });
  try {
    await fc.dispose();
  } catch (error) {
    if (error instanceof FastComposerError) {
      const code: string = error.code;
      seen.push(code);
    }
  }
  return seen;
}
