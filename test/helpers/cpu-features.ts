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

/** oneDNN runs bfloat16 (and so prepacks bfloat16 weights) with AVX512BW+VL+DQ or AVX-NE-CONVERT. */
export function cpuHasOneDnnBfloat16(): boolean {
  const flags = cpuFlags();
  return flags.has('avx_ne_convert') || ['avx512bw', 'avx512vl', 'avx512dq'].every((f) => flags.has(f));
}
