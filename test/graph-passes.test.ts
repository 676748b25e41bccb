// The load-time rewrites of native/graph_passes.cc: aten::group_norm (+ silu) becomes
// fastcomposer::group_norm, and in channels_last models the transformer's NCHW .contiguous()
// goes. On CPU the op runs ATen's group norm and silu, so the numbers must stay those of the
// unrewritten graphs (the CUDA kernel is checked by bench/gpu-check.sh).

import { afterEach, describe, expect, it } from 'vitest';

import { FastComposer } from '../lib/index.js';
import { float32View } from '../lib/tensor.js';
import { TWO_SUBJECT_JOB } from './helpers/jobs.js';
import { loadWithEnv as loadWith } from './helpers/load-with-env.js';
import { relativeError } from './helpers/safetensors.js';

const JOB = TWO_SUBJECT_JOB;

function passesOf(fc: FastComposer) {
  return (fc as unknown as { native: { info(): { graphPasses: Record<string, number | boolean> } } }).native.info().graphPasses;
}

describe('graph passes at load', () => {
  const open: FastComposer[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((fc) => fc.dispose()));
  });

  it('rewrite every group norm, fuse the silu after it, and drop the NCHW copies of channels_last models', async () => {
    const fc = await loadWith({});
    open.push(fc);
    const passes = passesOf(fc);
    // tiny-a: UNet forward and forward_localized, plus the VAE decoder.
    expect(passes.groupNorms).toBeGreaterThan(0);
    expect(passes.fusedSilus).toBeGreaterThan(0);
    expect(passes.fusedSilus).toBeLessThan(passes.groupNorms as number); // the transformers' norms have no silu
    expect(passes.droppedContiguous).toBeGreaterThan(0);
    expect(passes.nhwcGroupNormKernel).toBe(false); // a CPU build
  });

  it('keep the numbers of the unrewritten graphs on CPU', async () => {
    const rewritten = await loadWith({});
    const plain = await loadWith({ FASTCOMPOSER_GRAPH_PASSES: '0' });
    const plainNchw = await loadWith({ FASTCOMPOSER_CHANNELS_LAST: '0' });
    open.push(rewritten, plain, plainNchw);
    expect(passesOf(plain).groupNorms).toBe(0);
    expect(passesOf(plainNchw).droppedContiguous).toBe(0); // only channels_last models lose them
    expect(passesOf(plainNchw).groupNorms).toBe(passesOf(rewritten).groupNorms);
    const a = await rewritten.generate({ ...JOB, attentionMaps: true });
    const b = await plain.generate({ ...JOB, attentionMaps: true });
    // Dropping .contiguous() lets the 1x1 convolution read NHWC directly, which may round
    // differently (~1e-7); the group norm itself is the same ATen call.
    expect(relativeError(float32View(a.latents), float32View(b.latents))).toBeLessThan(1e-5);
    expect(relativeError(float32View(a.attentionMaps!), float32View(b.attentionMaps!))).toBeLessThan(1e-5);
    const pa = a.images[0]!.data,
      pb = b.images[0]!.data;
    let worst = 0;
    for (let i = 0; i < pb.length; i++) worst = Math.max(worst, Math.abs(pa[i]! - pb[i]!));
    expect(worst).toBeLessThanOrEqual(1); // a rounding flip at most
  });
});
