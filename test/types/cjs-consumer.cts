// Compiled (not run) by test/package.test.ts: the public types as a CommonJS user sees them.
import fastcomposer = require('fastcomposer');

export async function main(): Promise<number> {
  await using fc = await fastcomposer.FastComposer.load(fastcomposer.defaultModelDir);
  const r = await fc.generate({ prompt: 'a photo', steps: 2 });
  const seed: number = r.seed;
  const v: fastcomposer.ModelVerification = await fastcomposer.FastComposer.verify(fastcomposer.defaultModelDir);
  return v.ok ? seed : -1;
}
