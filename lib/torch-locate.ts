/**
 * libtorch as this package finds it at run time: the install scripts' own discovery
 * (scripts/torch-discovery.mjs, imported as '#torch-discovery'), bound to the package folder, so
 * that the set-up and the library agree on the order (LIBTORCH, FASTCOMPOSER_PYTHON's torch, the
 * package's .venv, python3's torch), the library names and the error text.
 */
import { findTorch, type TorchLocation } from '#torch-discovery';

import { packageRoot } from './paths.js';

export { baseVersion, hasCudaLibraries, TORCH_FIXES, TORCH_LIBRARIES, type TorchLocation } from '#torch-discovery';

export function locateTorch(env: NodeJS.ProcessEnv = process.env): TorchLocation | undefined {
  return findTorch(packageRoot, env);
}
