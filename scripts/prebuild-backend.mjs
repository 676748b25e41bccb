#!/usr/bin/env node
// Stands in for node-gyp when prebuildify calls it (`prebuildify --node-gyp <this>`): builds
// with cmake-js into build/Release, incrementally, whatever arguments prebuildify passes.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { buildNative } from './build-native.mjs';
import { findTorch, TORCH_FIXES } from './torch-discovery.mjs';
import { log } from './torch-setup.mjs';

const pkgRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const torch = findTorch(pkgRoot);
if (!torch) {
  log(`libtorch was not found. ${TORCH_FIXES}`);
  process.exit(1);
}
buildNative(torch);
