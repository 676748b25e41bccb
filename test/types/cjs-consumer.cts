// Compiled (not run) by test/package.test.ts: the public types as a CommonJS user sees them.
import fastcomposer = require('fastcomposer');
import server = require('fastcomposer/server');

export async function main(): Promise<number> {
  await using fc = await fastcomposer.FastComposer.load(fastcomposer.defaultModelDir);
  const r = await fc.generate({ prompt: 'a photo', steps: 2 });
  const seed: number = r.seed;
  const v: fastcomposer.ModelVerification = await fastcomposer.FastComposer.verify(fastcomposer.defaultModelDir);
  const s = await server.startServer({ backend: fc, info: { model: 'tiny', device: fc.device, dtype: fc.dtype }, port: 0 });
  const url: string | undefined = s.url;
  await s.close();
  const pulled = await fastcomposer.pull({ downloadOnly: true });
  const checkpoint: string = pulled.checkpoint;
  return v.ok && url !== undefined && checkpoint !== '' ? seed : -1;
}
