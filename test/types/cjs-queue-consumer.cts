// Compiled (not run) by test/package.test.ts: the fastcomposer/queue types as a CommonJS user sees them.
import queue = require('fastcomposer/queue');

async function main(): Promise<void> {
  const q = new queue.FastComposerQueue({ connection: 'redis://127.0.0.1:6379' });
  const r = await q.generate({ prompt: 'a photo', steps: 2, signal: AbortSignal.timeout(1000) });
  const seed: number = r.seed;
  const image: queue.GeneratedImage = r.images[0]!;
  void [seed, image];
  await q.close();
}
void main;
