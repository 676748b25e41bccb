// Compiled (not run) by test/package.test.ts: the public types as a CommonJS user sees them.
import fastcomposer = require('fastcomposer');
import server = require('fastcomposer/server');

async function main(): Promise<void> {
  await using fc = await fastcomposer.FastComposer.load(fastcomposer.defaultModelDir);
  const r = await fc.generate({ prompt: 'a photo', steps: 2 });
  const seed: number = r.seed;
  void seed;
  const s = await server.startServer({ backend: fc, info: { model: 'tiny', device: fc.device, dtype: fc.dtype }, port: 0 });
  const url: string | undefined = s.url;
  void url;
  await s.close();
}
void main;
