// Types of torch-discovery.mjs (plain JS: the install scripts run it before anything is compiled).

export declare const TORCH_PIN: string;
export declare const VENV_DIR: string;
export declare const TORCH_LIBRARY: string;
export declare const TORCH_CUDA_LIBRARY: string;
export declare const TORCH_LIBRARIES: readonly string[];
export declare const TORCH_FIXES: string;

export type TorchSource = 'LIBTORCH' | 'FASTCOMPOSER_PYTHON' | '.venv' | 'python3';

export interface TorchLocation {
  /** The folder with include/ (in a development install) and lib/. */
  root: string;
  libDir: string;
  /** e.g. "2.13.0+cpu"; "unknown" when the folder does not say. */
  version: string;
  source: TorchSource;
  /** The Python that has this torch; undefined for LIBTORCH. */
  python: string | undefined;
}

type Env = Record<string, string | undefined>;

export declare function baseVersion(version: string): string;
export declare function hasCudaLibraries(root: string): boolean;
export declare function venvDir(pkgRoot: string): string;
export declare function venvPython(pkgRoot: string): string;
export declare function venvTorch(pkgRoot: string): TorchLocation | undefined;
export declare function torchRootOfPython(python: string): string | undefined;
export declare function findTorch(pkgRoot: string, env?: Env): TorchLocation | undefined;
export declare function findPython(pkgRoot: string, env?: Env): string;
export declare function exporterEnv(pkgRoot: string, env?: Env): Env;
