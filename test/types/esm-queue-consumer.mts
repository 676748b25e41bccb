// Compiled (not run) by test/package.test.ts: the fastcomposer/queue types as an ESM user sees them.
import type { GenerateResult } from 'fastcomposer';
import { FastComposerError, FastComposerQueue, FastComposerWorker, type QueueGenerateResult } from 'fastcomposer/queue';

async function main(): Promise<void> {
  await using queue = new FastComposerQueue({ connection: 'redis://127.0.0.1:6379', name: 'images', timeout: 60_000 });
  const r: QueueGenerateResult = await queue.generate({
    prompt: 'a man <|image|>',
    subjects: ['man.png'],
    onStep: ({ step }) => void step,
  });
  // The queue's result is a FastComposer.generate() result.
  const plain: GenerateResult = r;
  const where: string = `${r.jobId} on ${r.worker} in ${r.timings.workerMs} ms`;
  void [plain, where];
  // @ts-expect-error: not a scheduler
  await queue.generate({ prompt: 'x', scheduler: 'lms' });
  // @ts-expect-error: the connection is required
  new FastComposerQueue({ name: 'images' });
  const worker = await FastComposerWorker.start({ connection: { host: 'redis', port: 6379 }, device: 'cuda:1', grace: 5000 });
  try {
    await worker.close();
  } catch (error) {
    if (error instanceof FastComposerError) void error.code;
  }
}
void main;
