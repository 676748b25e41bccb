/** What `npx fastcomposer info` prints: the torch in use, the binary, the devices. */
import { loadNative } from './native.js';

export interface RuntimeInfo {
  torchVersion: string;
  torchSource: string;
  torchRoot: string;
  builtAgainst: string;
  addonPath: string;
  cudaDevices: number;
  threads: number;
}

export function runtimeInfo(): RuntimeInfo {
  const { binding, torch, addonPath } = loadNative();
  return {
    torchVersion: torch.version,
    torchSource: torch.source,
    torchRoot: torch.root,
    builtAgainst: binding.torchVersion,
    addonPath,
    cudaDevices: binding.cudaDeviceCount(),
    threads: binding.getNumThreads(),
  };
}
