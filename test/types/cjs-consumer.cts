// Compiled (not run) by test/package.test.ts: the public types as a CommonJS user sees them.
import fastcomposer = require('fastcomposer');

async function main(): Promise<void> {
  await using fc = await fastcomposer.FastComposer.load(fastcomposer.defaultModelDir);
  const r = await fc.generate({ prompt: 'a photo', steps: 2 });
  const seed: number = r.seed;
  const pulled = await fastcomposer.pull({ downloadOnly: true });
  const checkpoint: string = pulled.checkpoint;
  void [seed, checkpoint];
}
void main;
