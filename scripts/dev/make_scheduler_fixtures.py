#!/usr/bin/env python3
"""Developer tool: writes the golden scheduler numbers the native scheduler tests compare with.

Not run by the tests. It needs diffusers and torch (for example
`PYTHONPATH=/path/to/diffusers/src python scripts/dev/make_scheduler_fixtures.py`) and writes
test/fixtures/schedulers/schedulers.safetensors from the reference implementation: for every
case, the diffusers scheduler class is built with `from_config` of the SD folder's
scheduler_config.json (plus the case's overrides) and driven the way a Stable Diffusion
pipeline drives it:

    gen = torch.Generator("cpu").manual_seed(SEED)
    x_0 = randn(SHAPE, generator=gen, float32) * init_noise_sigma
    for i, t in enumerate(timesteps):
        s_i = scale_model_input(x_i, t)
        x_{i+1} = step(eps[i], t, x_i, generator=gen).prev_sample   (eta = 0 for DDIM)

The model outputs eps are one fixed random pool shared by every case (they do not depend on x).

Tensors in the file (N = len(timesteps) of the case; PNDM has one more than the step count):
    eps                     float32 [31, *SHAPE]   model output of step i is eps[i]
    <case>.timesteps        float32 [N]            the scheduler's timesteps (what the UNet gets)
    <case>.init_noise_sigma float64 [1]
    <case>.x                float32 [N + 1, *SHAPE] x[0] = initial latents, x[i + 1] after step i
    <case>.scaled           float32 [N, *SHAPE]    scale_model_input(x[i]) (Euler family only;
                                                   the others return x unchanged)
with <case> = "<scheduler>.<steps>" (scheduler: pndm, ddim, euler, euler-ancestral, dpmpp-2m),
or "<scheduler>.<steps>.<variant>" for the extended set. The safetensors metadata holds "seed",
"shape", "base_config" (JSON) and "cases" (JSON list of {case, scheduler, class, steps,
overrides}).

  --extended     also write variants (v_prediction, other spacings, PRK warm-up, DPM-Solver
                 orders and algorithms, ...) to the --out file; not needed by the repo's tests.
  --manifest P   also write a plain-text list of the cases with their full configs to P.
"""

import argparse
import json
import os
import sys

import diffusers
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
)
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "test/fixtures/tiny-a/release/sd/scheduler/scheduler_config.json")
OUT = os.path.join(ROOT, "test/fixtures/schedulers/schedulers.safetensors")

SEED = 42
EPS_SEED = 1234
SHAPE = (2, 4, 6, 8)  # small on purpose (file size); the math is elementwise
POOL = 31

CLASSES = {
    "pndm": PNDMScheduler,
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler-ancestral": EulerAncestralDiscreteScheduler,
    "dpmpp-2m": DPMSolverMultistepScheduler,
}

BASE_CASES = [
    ("pndm", 20, None, {}),
    ("pndm", 25, None, {}),
    ("pndm", 30, None, {}),
    ("ddim", 20, None, {}),
    ("ddim", 30, None, {}),
    ("euler", 20, None, {}),
    ("euler", 30, None, {}),
    ("euler-ancestral", 20, None, {}),
    ("euler-ancestral", 30, None, {}),
    ("dpmpp-2m", 20, None, {}),
    ("dpmpp-2m", 30, None, {}),
]

EXTENDED_CASES = [
    ("pndm", 20, "prk", {"skip_prk_steps": False}),
    ("pndm", 13, "linspace", {"timestep_spacing": "linspace"}),
    ("pndm", 17, "trailing-v", {"timestep_spacing": "trailing", "prediction_type": "v_prediction"}),
    ("pndm", 10, "alpha1-linear", {"set_alpha_to_one": True, "beta_schedule": "linear"}),
    ("ddim", 20, "clip", {"clip_sample": True, "clip_sample_range": 0.5}),
    ("ddim", 15, "trailing-v-zsnr", {"timestep_spacing": "trailing", "prediction_type": "v_prediction", "rescale_betas_zero_snr": True}),
    ("ddim", 12, "linspace-sample", {"timestep_spacing": "linspace", "prediction_type": "sample"}),
    ("ddim", 9, "cosine", {"beta_schedule": "squaredcos_cap_v2"}),
    ("euler", 25, "leading", {"timestep_spacing": "leading"}),
    ("euler", 17, "trailing-v", {"timestep_spacing": "trailing", "prediction_type": "v_prediction"}),
    ("euler", 14, "sigmamin", {"final_sigmas_type": "sigma_min"}),
    ("euler", 11, "continuous-v", {"timestep_type": "continuous", "prediction_type": "v_prediction"}),
    ("euler", 13, "zsnr-v", {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction", "timestep_spacing": "trailing"}),
    ("euler-ancestral", 25, "leading", {"timestep_spacing": "leading"}),
    ("euler-ancestral", 17, "trailing-v", {"timestep_spacing": "trailing", "prediction_type": "v_prediction"}),
    ("dpmpp-2m", 10, "short", {}),
    ("dpmpp-2m", 25, "o3", {"solver_order": 3}),
    ("dpmpp-2m", 12, "o3short", {"solver_order": 3}),
    ("dpmpp-2m", 20, "heun", {"solver_type": "heun"}),
    ("dpmpp-2m", 20, "v-leading", {"prediction_type": "v_prediction", "timestep_spacing": "leading"}),
    ("dpmpp-2m", 21, "trailing", {"timestep_spacing": "trailing"}),
    ("dpmpp-2m", 20, "o1", {"solver_order": 1}),
    ("dpmpp-2m", 20, "dpmsolver", {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}),
    (
        "dpmpp-2m",
        18,
        "dpmsolver-o3-heun",
        {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min", "solver_order": 3, "solver_type": "heun"},
    ),
    ("dpmpp-2m", 20, "sde", {"algorithm_type": "sde-dpmsolver++"}),
    ("dpmpp-2m", 16, "sde-heun", {"algorithm_type": "sde-dpmsolver++", "solver_type": "heun"}),
    ("dpmpp-2m", 20, "sde-plain", {"algorithm_type": "sde-dpmsolver", "final_sigmas_type": "sigma_min"}),
    ("dpmpp-2m", 20, "eulerfinal-sample", {"euler_at_final": True, "prediction_type": "sample", "final_sigmas_type": "sigma_min"}),
]


def run_case(cls, config, steps, eps):
    sched = cls.from_config(config)
    sched.set_timesteps(steps, device="cpu")
    gen = torch.Generator("cpu").manual_seed(SEED)
    x = torch.randn(SHAPE, generator=gen, dtype=torch.float32) * sched.init_noise_sigma
    xs, scaled = [x], []
    import inspect

    accepted = set(inspect.signature(sched.step).parameters)
    kwargs = {}
    if "generator" in accepted:
        kwargs["generator"] = gen
    if "eta" in accepted:
        kwargs["eta"] = 0.0
    for i, t in enumerate(sched.timesteps):
        scaled.append(sched.scale_model_input(x, t))
        x = sched.step(eps[i], t, x, return_dict=False, **kwargs)[0]
        xs.append(x)
    init_sigma = float(sched.init_noise_sigma)
    return (
        sched.timesteps.to(torch.float32).contiguous(),
        torch.tensor([init_sigma], dtype=torch.float64),
        torch.stack(xs).contiguous(),
        torch.stack(scaled).contiguous(),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--extended", action="store_true")
    ap.add_argument("--manifest", default=None)
    args = ap.parse_args()

    with open(CONFIG) as f:
        base = json.load(f)
    eps = torch.randn((POOL,) + SHAPE, generator=torch.Generator("cpu").manual_seed(EPS_SEED))
    tensors = {"eps": eps.contiguous()}
    cases = []
    manifest = []
    for name, steps, variant, overrides in BASE_CASES + (EXTENDED_CASES if args.extended else []):
        key = f"{name}.{steps}" + (f".{variant}" if variant else "")
        cls = CLASSES[name]
        config = dict(base)
        config.update(overrides)
        ts, sigma, xs, scaled = run_case(cls, config, steps, eps)
        tensors[f"{key}.timesteps"] = ts
        tensors[f"{key}.init_noise_sigma"] = sigma
        tensors[f"{key}.x"] = xs
        if name in ("euler", "euler-ancestral"):
            tensors[f"{key}.scaled"] = scaled
        cases.append({"case": key, "scheduler": name, "class": cls.__name__, "steps": steps, "overrides": overrides})
        manifest.append(f"{key} {name} {steps} {json.dumps(config, separators=(',', ':'))}")
    meta = {
        "seed": str(SEED),
        "eps_seed": str(EPS_SEED),
        "shape": json.dumps(list(SHAPE)),
        "base_config": json.dumps(base, sort_keys=True),
        "cases": json.dumps(cases),
        "generator": f"scripts/dev/make_scheduler_fixtures.py, diffusers {diffusers.__version__}, torch {torch.__version__}",
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    save_file(tensors, args.out, metadata=meta)
    if args.manifest:
        with open(args.manifest, "w") as f:
            f.write("\n".join(manifest) + "\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes, {len(cases)} cases)", file=sys.stderr)


if __name__ == "__main__":
    main()
