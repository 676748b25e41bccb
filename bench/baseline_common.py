"""What the Python bench baselines share (bench/python_eager.py, bench/diffusers_reference.py):
the job's inputs, the common command-line options, the `--serve` protocol, the latents checksum
and the one-shot summary. Bench-only: it imports torch and nothing of the project, so the
diffusers baseline stays independent of the exporter.

The `--serve` protocol: load once, print {"type": "ready", "loadSeconds", "config", "maxRssBytes"},
then one timed generation per "run" line on stdin (one JSON line back each, {"type": "run", ...})
until "quit" or EOF; "run {JSON}" overrides steps, width, height or seed for that run (so one loaded
process serves several sizes); an unknown command gets {"type": "error", "message"}.
bench/served-baseline.mjs is the other end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

BOS, EOS = 49406, 49407
CONTEXT_LENGTH = 77  # CLIP's text context length (model.json maxLength)


class BenchError(Exception):
    """An expected failure (bad arguments, files): reported as one line."""


class Inputs:
    """One generation's inputs: the three prompts' ids, the subject positions and 224x224 pixels;
    optionally the prompt texts (the diffusers baseline tokenizes them as a cross-check)."""

    def __init__(
        self,
        input_ids: torch.Tensor,
        text_only_ids: torch.Tensor,
        negative_ids: torch.Tensor,
        positions: List[int],
        pixels: Optional[torch.Tensor],
        prompt: Optional[str] = None,
        negative_prompt: Optional[str] = None,
    ) -> None:
        self.input_ids, self.text_only_ids, self.negative_ids = input_ids, text_only_ids, negative_ids
        self.positions, self.pixels = positions, pixels
        self.prompt, self.negative_prompt = prompt, negative_prompt


def ids_tensor(xs: List[int], length: int = CONTEXT_LENGTH) -> torch.Tensor:
    if len(xs) != length:
        raise BenchError(f"token id lists must have {length} entries, got {len(xs)}")
    return torch.tensor([xs], dtype=torch.int64)


def load_job(path: Path, image_size: int, length: int = CONTEXT_LENGTH) -> Inputs:
    """The JSON bench/cpu.mjs writes: inputIds, textOnlyIds, negativeIds, subjectPositions, pixels (the
    path of raw uint8 [S,size,size,3]); optionally prompt and negativePrompt."""
    job = json.loads(path.read_text(encoding="utf-8"))
    positions = [int(p) for p in job.get("subjectPositions", [])]
    pixels = None
    if positions:
        raw = Path(job["pixels"]).read_bytes()
        want = len(positions) * image_size * image_size * 3
        if len(raw) != want:
            raise BenchError(f"{job['pixels']}: {len(raw)} bytes, expected {want} for {len(positions)} subjects")
        pixels = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(len(positions), image_size, image_size, 3)
    return Inputs(
        ids_tensor(job["inputIds"], length),
        ids_tensor(job["textOnlyIds"], length),
        ids_tensor(job["negativeIds"], length),
        positions,
        pixels,
        job.get("prompt"),
        job.get("negativePrompt"),
    )


def synthetic_inputs(subjects: int, image_size: int, seed: int, length: int = CONTEXT_LENGTH) -> Inputs:
    """Ids shaped like "a man <|image|> and a woman <|image|> ..." (bos, words, eos, eos padding) and
    seeded random subject pixels: the cost of a real job, other numbers."""
    words = [320, 786, 537, 320, 2308, 536, 518, 2117]  # arbitrary real-vocabulary ids
    prompt = [BOS] + words + [EOS]

    def pad(xs: List[int]) -> List[int]:
        return xs + [EOS] * (length - len(xs))

    positions = [2, 5][:subjects] + [6 + i for i in range(max(0, subjects - 2))]
    g = torch.Generator().manual_seed(seed + 12345)
    pixels = torch.randint(0, 256, (subjects, image_size, image_size, 3), generator=g, dtype=torch.uint8) if subjects else None
    return Inputs(ids_tensor(pad(prompt), length), ids_tensor(pad(prompt), length), ids_tensor(pad([BOS, EOS]), length), positions, pixels)


def checksum(latents: torch.Tensor) -> Dict[str, Any]:
    x = latents.to(torch.float32).contiguous()
    d = x.to(torch.float64)
    return {
        "shape": list(x.shape),
        "sum": d.sum().item(),
        "absSum": d.abs().sum().item(),
        "sha256": hashlib.sha256(x.numpy().tobytes()).hexdigest(),
    }


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The options both baselines take (and bench/cpu.mjs passes)."""
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--alpha", type=float, default=0.7, help="share of subject-conditioned steps")
    p.add_argument("--subjects", type=int, default=1, help="synthetic subjects (without --job)")
    p.add_argument("--job", type=Path, help="JSON with token ids, subject positions, pixels file")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--save-latents", type=Path, help="write the final latents, raw float32, here")
    p.add_argument("--serve", action="store_true", help="one timed run per 'run' line on stdin")
    p.add_argument("--json", action="store_true", help="print JSON only")


def check_run_arguments(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.width % 8 or args.height % 8:
        raise BenchError("--width and --height must be multiples of 8")


def emit(obj: Dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def timed_run(generate: Callable[[], Dict[str, Any]], save_latents: Optional[Path]) -> Dict[str, Any]:
    """One generation: wall and CPU seconds, stages, the latents' checksum (and file)."""
    cpu0 = time.process_time()
    out = generate()
    cpu_s = time.process_time() - cpu0
    if save_latents:
        save_latents.write_bytes(out["latents"].contiguous().numpy().astype("float32").tobytes())
    return {
        "seconds": out["timings"]["total"],
        "cpuSeconds": cpu_s,
        "stages": out["timings"],
        "latents": checksum(out["latents"]),
        **out.get("extra", {}),
    }


RUN_OVERRIDES = ("steps", "width", "height", "seed")


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def serve(load_seconds: float, config: Dict[str, Any], one_run: Callable[[Dict[str, int]], Dict[str, Any]]) -> int:
    """`one_run(overrides)` runs one timed generation with some of RUN_OVERRIDES changed."""
    emit({"type": "ready", "loadSeconds": load_seconds, "config": config, "maxRssBytes": max_rss_bytes()})
    for line in sys.stdin:
        cmd, _, rest = line.strip().partition(" ")
        if cmd in ("quit", "exit"):
            break
        try:
            overrides = json.loads(rest) if rest else {}
            if cmd != "run" or not isinstance(overrides, dict) or not set(overrides) <= set(RUN_OVERRIDES):
                raise ValueError
            overrides = {k: int(v) for k, v in overrides.items()}
        except ValueError:
            emit({"type": "error", "message": f"unknown command {line.strip()!r} (run [{{{', '.join(RUN_OVERRIDES)}}}] | quit)"})
            continue
        emit({"type": "run", **one_run(overrides), "maxRssBytes": max_rss_bytes()})
    return 0


def summarize(runs: List[Dict[str, Any]], config: Dict[str, Any], load_seconds: float) -> Dict[str, Any]:
    """The one-shot mode's result: per-run seconds, means, stage means, the last latents."""
    keys = [k for k, v in runs[0]["stages"].items() if isinstance(v, float)]
    result: Dict[str, Any] = {
        "config": config,
        "loadSeconds": load_seconds,
        "runs": [r["seconds"] for r in runs],
        "meanSeconds": sum(r["seconds"] for r in runs) / len(runs),
        "meanCpuSeconds": sum(r["cpuSeconds"] for r in runs) / len(runs),
        "meanStages": {k: sum(r["stages"][k] for r in runs) / len(runs) for k in keys},
        "unetCalls": runs[0]["stages"]["unetCalls"],
        "perRun": [r["stages"] for r in runs],
        "latents": runs[-1]["latents"],
    }
    return result


def print_summary(title: str, result: Dict[str, Any], width: int, height: int, steps: int) -> None:
    mean = result["meanStages"]
    print(f"{title}, {width}x{height}, {steps} steps ({result['unetCalls']} UNet calls)")
    print(f"  per image: {result['meanSeconds']:.3f} s  (runs: {', '.join(f'{s:.3f}' for s in result['runs'])})")
    unet = f" (UNet {mean['meanUnet'] * 1e3:.1f} ms)" if "meanUnet" in mean else ""
    print(f"  encoders {mean['encoders'] * 1e3:.1f} ms, UNet step {mean['meanStep'] * 1e3:.1f} ms{unet}, VAE {mean['decode'] * 1e3:.1f} ms")
    if "peakCudaMemoryBytes" in result:
        print(f"  peak CUDA memory {result['peakCudaMemoryBytes'] / 2**20:.0f} MiB")
    print(f"  latents sum {result['latents']['sum']:.6g} sha256 {result['latents']['sha256'][:16]}")


def run_main(main: Callable[[], int], name: str) -> None:
    """sys.exit(main()), a BenchError as one line on stderr and exit 1."""
    try:
        sys.exit(main())
    except BenchError as e:
        sys.stderr.write(f"{name}: {e}\n")
        sys.exit(1)
