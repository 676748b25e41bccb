#!/usr/bin/env python3
"""The Python eager baseline: the exporter's own PyTorch modules, the weights of an exported
model directory, and the same pipeline as native/pipeline.cc (encoders, postfuse, PNDM with
classifier-free guidance and delayed subject conditioning, VAE decode).

    PYTHONPATH=exporter .venv/bin/python bench/python_eager.py --model models/tiny --json
    ... --device cuda --dtype float16 --steps 50 --width 512 --height 512 --runs 5

The weights come from the model directory's TorchScript files: a traced module's state_dict()
keeps the eager parameter names, so it loads straight into the eager module. The module configs
come from model.json ("configs", which the exporter records); for older exports, from the
exporter's preset data (source.preset), else from the SD / CLIP folders recorded in source.base /
source.imageEncoder.

Inputs: --job FILE (JSON written by bench/cpu.mjs: inputIds, textOnlyIds, negativeIds,
subjectPositions, pixels = path of raw uint8 [S,224,224,3]), or synthetic ids and seeded random
subject pixels (the cost is the same; only the numbers differ).

--serve: load once, print {"type":"ready"}, then run one timed generation per "run" line read on
stdin (printing one JSON line each) until "quit" or EOF, so a caller can alternate with Node.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from baseline_common import (
    BenchError,
    Inputs,
    add_run_arguments,
    check_run_arguments,
    emit,
    load_job,
    print_summary,
    run_main,
    serve,
    summarize,
    synthetic_inputs,
    timed_run,
)
from reference_scheduler import PNDM  # bench/reference_scheduler.py, beside this script
from torch import nn

from fastcomposer_export import cli as cli_mod
from fastcomposer_export import manifest as mf

DTYPES = cli_mod.DTYPES
MODULE_FILES = mf.FILES  # module name -> default file name (model.json 'modules' wins)


# ------------------------------------------------------------------ configs and weights


def module_factories(model_dir: Path, manifest: Dict[str, Any]) -> Dict[str, Callable[[], nn.Module]]:
    """Builders of the five eager modules, configured like the exported ones."""
    cfgs = manifest.get("configs")
    if isinstance(cfgs, dict) and all(k in cfgs for k in cli_mod.CONFIG_KEYS):
        c = cli_mod.Configs.from_dicts(cfgs)
    else:
        source = manifest.get("source") or {}
        if source.get("preset"):
            from fastcomposer_export import tiny

            base, clip_dir = tiny.preset_dirs(source["preset"])
        elif source.get("base") and source.get("imageEncoder") and Path(source["base"]).is_dir() and Path(source["imageEncoder"]).is_dir():
            base, clip_dir = Path(source["base"]), Path(source["imageEncoder"])
        else:
            raise BenchError(
                f"{model_dir / 'model.json'} records no module configs: need model.json 'configs' "
                "{textEncoder, imageEncoder, unet, vae} (the SD text_encoder/config.json, the CLIP config.json, "
                "unet/config.json, vae/config.json), or source.preset, or source.base + source.imageEncoder folders"
            )
        c = cli_mod.Configs(base, clip_dir)
    f = c.factories()
    return {
        "text_encoder": f["text_encoder"],
        "image_encoder": f["image_encoder"],
        "postfuse": f["postfuse_module"],
        "unet": f["unet"],
        "vae_decoder": f["vae"],
    }


def load_eager(factory: Callable[[], nn.Module], path: Path) -> nn.Module:
    """Build the eager module and load the traced file's parameters into it (strict)."""
    module = factory().eval().requires_grad_(False)
    traced_sd = torch.jit.load(str(path), map_location="cpu").state_dict()
    eager_keys = set(module.state_dict().keys())
    # Non-persistent buffers (e.g. the UNet's freq_index) are in the traced state dict but not
    # the eager one; they are rebuilt by the constructor, so drop them.
    buffers = {name for name, _ in module.named_buffers()}
    extra = [k for k in traced_sd if k not in eager_keys]
    unexplained = [k for k in extra if k not in buffers]
    if unexplained:
        raise BenchError(f"{path.name}: keys the eager module does not have: {unexplained[:5]}")
    sd = {k: v for k, v in traced_sd.items() if k in eager_keys}
    module.load_state_dict(sd, strict=True)
    return module


class EagerModel:
    def __init__(self, model_dir: Path, device: torch.device, dtype: torch.dtype) -> None:
        self.dir = model_dir
        manifest_path = model_dir / "model.json"
        if not manifest_path.is_file():
            raise BenchError(f"not a model directory (no model.json): {model_dir}")
        self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        self.scheduler_config = json.loads(
            (model_dir / self.manifest.get("scheduler", "scheduler_config.json")).read_text(encoding="utf-8")
        )
        self.device, self.dtype = device, dtype
        self.latent_scale = float(self.manifest["latentScale"])
        self.scale_factor = int(self.manifest["vaeScaleFactor"])
        self.latent_channels = int(self.manifest["latentChannels"])
        self.image_size = int(self.manifest.get("imageSize", 224))
        files = {k: (self.manifest.get("modules", {}).get(k, {}).get("file") or v) for k, v in MODULE_FILES.items()}
        factories = module_factories(model_dir, self.manifest)
        self.modules: Dict[str, nn.Module] = {}
        for name, factory in factories.items():
            self.modules[name] = load_eager(factory, model_dir / files[name]).to(device=device, dtype=dtype)

    def __getattr__(self, name: str) -> nn.Module:
        modules = self.__dict__.get("modules", {})
        if name in modules:
            return modules[name]
        raise AttributeError(name)


# --------------------------------------------------------------------------- pipeline


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generate(
    m: EagerModel, inp: Inputs, *, steps: int, width: int, height: int, seed: int, guidance: float, text_only_until: float
) -> Dict[str, Any]:
    """One image, timed by stage. Returns latents (float32 CPU), image (uint8 CPU) and timings (s)."""
    dev, dtype = m.device, m.dtype
    clock = time.perf_counter
    timings: Dict[str, Any] = {}
    with torch.inference_mode():
        _sync(dev)
        t_start = clock()
        # subjects: uint8 [S,224,224,3] -> [S,D]
        objects = None
        if inp.positions:
            objects = m.image_encoder(inp.pixels.to(dev))
        _sync(dev)
        t_subjects = clock()
        # prompts: one batch of 3, then fuse the subjects into the first
        ids = torch.cat([inp.input_ids, inp.text_only_ids, inp.negative_ids], 0).to(dev)
        text = m.text_encoder(ids)
        fused, text_only, negative = text[0:1], text[1:2], text[2:3]
        if inp.positions:
            positions = torch.tensor(inp.positions, dtype=torch.int64).to(dev)
            fused = m.postfuse(fused, objects.to(dev, dtype), positions)
        _sync(dev)
        t_prompt = clock()

        sched = PNDM.from_config(m.scheduler_config)
        sched.set_timesteps(steps)
        timesteps = sched.timesteps.to(torch.float32).to(dev)
        h, w = height // m.scale_factor, width // m.scale_factor
        gen = torch.Generator("cpu").manual_seed(seed)
        x = torch.randn((1, m.latent_channels, h, w), generator=gen, dtype=torch.float32)
        x = (x * sched.init_noise_sigma).to(dev)
        cfg = guidance > 1.0
        cond_text = torch.cat([negative, text_only], 0).contiguous() if cfg else text_only.contiguous()
        cond_fused = torch.cat([negative, fused], 0).contiguous() if cfg else fused.contiguous()
        batch = 2 if cfg else 1
        step_s: List[float] = []
        unet_s: List[float] = []
        for i in range(len(sched.all_steps)):
            _sync(dev)
            s0 = clock()
            subject_step = float(i) > text_only_until
            model_in = torch.cat([x, x], 0) if cfg else x
            model_in = sched.scale_model_input(model_in, i).to(dtype)
            t = timesteps[i : i + 1].expand(batch)
            eps = m.unet(model_in, t, cond_fused if subject_step else cond_text)
            _sync(dev)
            s1 = clock()
            eps = eps.to(torch.float32)
            if cfg:
                u, c = eps.chunk(2, 0)
                eps = u + guidance * (c - u)
            x = sched.step(eps, i, x)
            _sync(dev)
            s2 = clock()
            unet_s.append(s1 - s0)
            step_s.append(s2 - s0)
        latents = x.to("cpu")
        t_denoise = clock()
        z = latents.to(dev) / m.latent_scale
        image = m.vae_decoder(z.to(dtype)).to(torch.float32)
        image = ((image / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        image = image.permute(0, 2, 3, 1).contiguous().to("cpu")
        t_end = clock()
    timings = {
        "encodeSubjects": t_subjects - t_start,
        "encodePrompt": t_prompt - t_subjects,
        "encoders": t_prompt - t_start,
        "denoise": t_denoise - t_prompt,
        "unetCalls": len(step_s),
        "meanStep": sum(step_s) / len(step_s),
        "meanUnet": sum(unet_s) / len(unet_s),
        "decode": t_end - t_denoise,
        "total": t_end - t_start,
    }
    return {"latents": latents, "image": image, "timings": timings}


# -------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="exported model directory")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    add_run_arguments(p)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    check_run_arguments(args)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda, but this torch has no CUDA device")
    t0 = time.perf_counter()
    model = EagerModel(args.model, device, DTYPES[args.dtype])
    load_s = time.perf_counter() - t0
    length = int(model.manifest.get("maxLength", 77))
    inp = load_job(args.job, model.image_size, length) if args.job else synthetic_inputs(args.subjects, model.image_size, args.seed, length)
    settings = dict(
        steps=args.steps,
        width=args.width,
        height=args.height,
        seed=args.seed,
        guidance=args.guidance,
        text_only_until=(1 - args.alpha) * args.steps,
    )
    config = {
        "model": str(args.model.resolve()),
        "device": str(device),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "subjects": len(inp.positions),
        "steps": args.steps,
        "width": args.width,
        "height": args.height,
        "seed": args.seed,
        "guidance": args.guidance,
        "alpha": args.alpha,
    }

    def one_run(overrides: Optional[Dict[str, int]] = None) -> Dict[str, Any]:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        run = {**settings, **(overrides or {})}
        run["text_only_until"] = (1 - args.alpha) * run["steps"]
        rec = timed_run(lambda: generate(model, inp, **run), args.save_latents)
        if device.type == "cuda":
            rec["peakCudaMemoryBytes"] = torch.cuda.max_memory_allocated(device)
        return rec

    if args.serve:
        return serve(load_s, config, one_run)
    for _ in range(args.warmup):
        generate(model, inp, **settings)
    runs = [one_run() for _ in range(args.runs)]
    result = summarize(runs, config, load_s)
    if device.type == "cuda":
        result["peakCudaMemoryBytes"] = max(r["peakCudaMemoryBytes"] for r in runs)
    if args.json:
        emit(result)
    else:
        print_summary(
            f"{config['model']} on {config['device']} ({args.dtype}, {config['threads']} threads)",
            result,
            args.width,
            args.height,
            args.steps,
        )
    return 0


if __name__ == "__main__":
    run_main(main, "python_eager")
