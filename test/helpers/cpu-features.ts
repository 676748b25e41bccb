// What this machine's CPU can do, read from /proc/cpuinfo (not from the addon, whose choices the
// tests check against it). Elsewhere than Linux on x86-64: no flags.
import { readFileSync } from 'node:fs';

function cpuFlags(): Set<string> {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('flags'));
    return new Set(
      line
        ? line
            .slice(line.indexOf(':') + 1)
            .trim()
            .split(/\s+/)
        : [],
    );
  } catch {
    return new Set();
  }
}

/**
 * Whether oneDNN runs bfloat16 (and so bfloat16 weights are prepacked): with AVX512BW+VL+DQ, or
 * AVX-NE-CONVERT, which Linux does not list in /proc/cpuinfo. undefined where only that could
 * tell: no AVX-512 but AVX-VNNI, which the CPUs with AVX-NE-CONVERT and no AVX-512 all have.
 */
export function cpuHasOneDnnBfloat16(): boolean | undefined {
  const flags = cpuFlags();
  if (['avx512bw', 'avx512vl', 'avx512dq'].every((f) => flags.has(f))) return true;
  return flags.has('avx_vnni') ? undefined : false;
}
