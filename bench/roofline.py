#!/usr/bin/env python3
"""The two numbers behind bench/full.mjs's share-of-peak figures, as one JSON line on stdout.

    PYTHONPATH=exporter .venv/bin/python bench/roofline.py flops --model DIR --width 256 --height 256 \\
        --unet-calls 5 --subjects 2 [--guidance 5]
    .venv/bin/python bench/roofline.py peak [--threads 2] [--size 2048] [--dtype float32,bfloat16]

flops: the floating-point operations of one generation, per module, counted by
torch.utils.flop_counter on the meta device (nothing is computed, no weights are read). The
modules are the exporter's eager ones, configured from model.json, so the count is that of the
exported graphs. What is counted: matrix products (linear layers, attention's QK^T and PV) and
convolutions, each multiply-add as 2 FLOPs. Not counted: element-wise work, norms, softmax, the
scheduler (memory-bound, a few percent of the time at most). One generation is: the text encoder on
3 prompts, the image encoder on the subjects, the postfuse MLP (negligible: not counted), the UNet
`unet-calls` times on a batch of 2 (1 without guidance), and the VAE decoder once.

peak: the rate of a large square matrix product (best of a few), with torch.mm (the BLAS torch was
built with) and with oneDNN (weights prepacked, as the addon runs its linear layers and
convolutions); the faster float32 one is the roofline that the share of peak divides by. (On CPUs
where the BLAS takes a generic code path, as MKL does on some AMD CPUs, oneDNN is the faster one.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict

import torch


def _count(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            fn()
    return int(counter.get_total_flops())


def job_flops(model_dir: Path, width: int, height: int, unet_calls: int, subjects: int, cfg: bool) -> Dict[str, Any]:
    import python_eager  # bench/python_eager.py: the exporter's modules, configured from model.json

    manifest = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    factories = python_eager.module_factories(model_dir, manifest)
    with torch.device("meta"):
        modules = {name: factory().eval() for name, factory in factories.items()}
    meta = {"device": "meta"}
    length, hidden = int(manifest["maxLength"]), int(manifest["textHiddenSize"])
    size, factor, channels = int(manifest["imageSize"]), int(manifest["vaeScaleFactor"]), int(manifest["latentChannels"])
    h, w = height // factor, width // factor
    batch = 2 if cfg else 1
    out: Dict[str, Any] = {
        "textEncoder": _count(lambda: modules["text_encoder"](torch.zeros(3, length, dtype=torch.long, **meta))),
        "imageEncoder": _count(lambda: modules["image_encoder"](torch.zeros(subjects, size, size, 3, dtype=torch.uint8, **meta)))
        if subjects
        else 0,
        "unetCall": _count(
            lambda: modules["unet"](
                torch.zeros(batch, channels, h, w, **meta), torch.zeros(batch, **meta), torch.zeros(batch, length, hidden, **meta)
            )
        ),
        "vaeDecoder": _count(lambda: modules["vae_decoder"](torch.zeros(1, channels, h, w, **meta))),
    }
    out["unetCalls"] = unet_calls
    out["unet"] = out["unetCall"] * unet_calls
    out["total"] = out["textEncoder"] + out["imageEncoder"] + out["unet"] + out["vaeDecoder"]
    return out


def peak_rate(threads: int, size: int, dtype: torch.dtype, onednn: bool, seconds: float = 3.0) -> Dict[str, Any]:
    """torch.mm (the BLAS torch was built with), or oneDNN's matrix product with the weight
    prepacked (what the addon runs linear layers and convolutions with)."""
    if threads:
        torch.set_num_threads(threads)
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    if onednn:
        packed = torch.ops.mkldnn._reorder_linear_weight(b, size)

        def product() -> Any:
            return torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")
    else:

        def product() -> Any:
            return torch.mm(a, b)

    product()  # first call: library set-up, packing buffers
    best = float("inf")
    start = time.perf_counter()
    runs = 0
    while runs < 5 or (time.perf_counter() - start < seconds and runs < 50):
        t0 = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return {
        "dtype": str(dtype).replace("torch.", ""),
        "library": "oneDNN" if onednn else "torch.mm",
        "size": size,
        "threads": torch.get_num_threads(),
        "runs": runs,
        "bestSeconds": best,
        "flopsPerSecond": 2 * size**3 / best,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("flops")
    f.add_argument("--model", type=Path, required=True)
    f.add_argument("--width", type=int, required=True)
    f.add_argument("--height", type=int, required=True)
    f.add_argument("--unet-calls", type=int, required=True)
    f.add_argument("--subjects", type=int, default=2)
    f.add_argument("--guidance", type=float, default=5.0)
    k = sub.add_parser("peak")
    k.add_argument("--threads", type=int, default=0)
    k.add_argument("--size", type=int, default=2048)
    k.add_argument("--dtype", default="float32,float32-onednn,bfloat16", help="dtype[-onednn],...")
    args = p.parse_args()
    if args.command == "flops":
        result = job_flops(args.model, args.width, args.height, args.unet_calls, args.subjects, args.guidance > 1)
    else:
        dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        result = {}
        for name in args.dtype.split(","):
            dtype, _, library = name.partition("-")
            result[name] = peak_rate(args.threads, args.size, dtypes[dtype], library == "onednn")
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
