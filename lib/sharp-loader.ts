/**
 * sharp (libvips) is imported on first use: a process that only passes raw pixels never loads
 * libvips, and `import 'fastcomposer'` stays fast.
 */
import type SharpFn from 'sharp';

type Sharp = typeof SharpFn;
let loaded: Promise<Sharp> | undefined;

export function loadSharp(): Promise<Sharp> {
  loaded ??= import('sharp').then((m) => (m as unknown as { default: Sharp }).default);
  return loaded;
}
