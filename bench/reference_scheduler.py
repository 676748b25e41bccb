"""A plain-PyTorch PNDM scheduler for the Python baseline of the benchmarks (bench/python_eager.py).

Written from the PNDM paper (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models
on Manifolds") and the SD scheduler config keys, so that ``bench/python_eager.py`` can run the
same denoising loop as ``native/schedulers/pndm.cc`` without diffusers. It follows the same
numeric conventions the native scheduler documents: the noise schedule is built with float32
torch ops on the CPU, the timestep grid with integer arithmetic, and the per-step coefficients
are 0-dim float32 CPU tensors.

Usage::

    s = PNDM.from_config(json.load(open("scheduler_config.json")))
    s.set_timesteps(50)
    for i, t in enumerate(s.timesteps):
        x = s.step(eps, i, x)
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import numpy as np
import torch


def _betas(cfg: Dict[str, Any]) -> torch.Tensor:
    T = int(cfg.get("num_train_timesteps", 1000))
    trained = cfg.get("trained_betas")
    if trained is not None:
        return torch.tensor(trained, dtype=torch.float32)
    start = float(cfg.get("beta_start", 0.0001))
    end = float(cfg.get("beta_end", 0.02))
    kind = cfg.get("beta_schedule", "linear")
    if kind == "linear":
        return torch.linspace(start, end, T, dtype=torch.float32)
    if kind == "scaled_linear":
        # linear in sqrt(beta), then squared
        return torch.linspace(math.sqrt(start), math.sqrt(end), T, dtype=torch.float32) ** 2
    if kind == "squaredcos_cap_v2":
        # cosine alpha-bar schedule (Nichol & Dhariwal), each beta capped at 0.999
        def abar(u: float) -> float:
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

        vals = [min(1 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)]
        return torch.tensor(vals, dtype=torch.float32)
    raise ValueError(f"beta_schedule {kind!r} is not supported")


class PNDM:
    """PNDM with optional Runge-Kutta warm-up; skip_prk_steps=True gives the PLMS sampler SD uses."""

    init_noise_sigma = 1.0

    def __init__(self, cfg: Dict[str, Any]) -> None:
        self.num_train_timesteps = int(cfg.get("num_train_timesteps", 1000))
        self.skip_prk = bool(cfg.get("skip_prk_steps", False))
        self.prediction = cfg.get("prediction_type", "epsilon") or "epsilon"
        self.spacing = cfg.get("timestep_spacing", "leading") or "leading"
        self.offset = int(cfg.get("steps_offset", 0) or 0)
        if self.prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type {self.prediction!r} is not supported")
        if self.spacing not in ("linspace", "leading", "trailing"):
            raise ValueError(f"timestep_spacing {self.spacing!r} is not supported")
        self.alphas_cumprod = torch.cumprod(1.0 - _betas(cfg), dim=0)
        if cfg.get("set_alpha_to_one", False):
            self.final_alpha_cumprod = torch.tensor(1.0)
        else:
            self.final_alpha_cumprod = self.alphas_cumprod[0]
        self.timesteps = torch.zeros(0, dtype=torch.int64)
        self._reset()

    @classmethod
    def from_config(cls, cfg: Dict[str, Any]) -> "PNDM":
        return cls(cfg)

    def _reset(self) -> None:
        self.n = 0
        self.counter = 0
        self.history: List[torch.Tensor] = []
        self.saved_sample: Optional[torch.Tensor] = None
        self.rk_accum: Optional[torch.Tensor] = None
        self.rk_steps: List[int] = []
        self.all_steps: List[int] = []

    def _base_grid(self, n: int) -> List[int]:
        """Ascending inference timesteps before the PNDM-specific ordering."""
        T = self.num_train_timesteps
        if self.spacing == "linspace":
            return [int(v) for v in np.linspace(0, T - 1, n).round()]
        if self.spacing == "leading":
            stride = T // n
            return [i * stride + self.offset for i in range(n)]
        stride = T / n
        desc = np.round(np.arange(T, 0, -stride))
        return [int(v) - 1 for v in desc[::-1]]

    def set_timesteps(self, n: int, device: Any = None) -> None:
        if n < 1:
            raise ValueError("num_inference_steps must be >= 1")
        self._reset()
        self.n = n
        base = self._base_grid(n)
        if self.skip_prk:
            # PLMS only: the second-to-last grid point appears twice (the first multistep needs a
            # second model call at the start), then everything runs from high t to low t.
            seq = base[:-1] + base[-2:-1] + base[-1:]
            plms = seq[::-1]
            self.rk_steps = []
        else:
            if len(base) < 4:
                raise ValueError("with skip_prk_steps = false at least 4 inference steps are needed")
            half = self.num_train_timesteps // n // 2
            # the last four grid points, each followed by its half-step point
            pairs: List[int] = []
            for t in base[-4:]:
                pairs += [t, t + half]
            # each point except the last one twice (RK4 evaluates midpoints twice), trimmed
            doubled = [t for t in pairs[:-1] for _ in range(2)][1:-1]
            self.rk_steps = doubled[::-1]
            plms = base[:-3][::-1]
        self.all_steps = self.rk_steps + plms
        self.timesteps = torch.tensor(self.all_steps, dtype=torch.int64)
        if device is not None:
            self.timesteps = self.timesteps.to(device)

    def scale_model_input(self, x: torch.Tensor, i: int) -> torch.Tensor:
        return x

    # ------------------------------------------------------------------ stepping

    def step(self, eps: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        if not self.all_steps:
            raise RuntimeError("call set_timesteps first")
        if i != self.counter:
            raise ValueError(f"steps must run in order (expected {self.counter}, got {i})")
        t = self.all_steps[i]
        if not self.skip_prk and self.counter < len(self.rk_steps):
            out = self._runge_kutta(eps, t, x)
        else:
            out = self._multistep(eps, t, x)
        self.counter += 1
        return out

    def _runge_kutta(self, eps: torch.Tensor, t: int, x: torch.Tensor) -> torch.Tensor:
        stage = self.counter % 4
        prev_t = t - (0 if self.counter % 2 else self.num_train_timesteps // self.n // 2)
        start_t = self.rk_steps[self.counter - stage]
        direction = eps
        if stage == 0:
            # k1: remember the start point; weights 1/6, 1/3, 1/3, 1/6
            self.rk_accum = eps * (1.0 / 6)
            self.history.append(eps)
            self.saved_sample = x
        elif stage in (1, 2):
            self.rk_accum = self.rk_accum + eps * (1.0 / 3)
        else:
            direction = self.rk_accum + eps * (1.0 / 6)
            self.rk_accum = None
        base = self.saved_sample if self.saved_sample is not None else x
        return self._transfer(base, start_t, prev_t, direction)

    def _multistep(self, eps: torch.Tensor, t: int, x: torch.Tensor) -> torch.Tensor:
        stride = self.num_train_timesteps // self.n
        if not self.skip_prk and len(self.history) < 3:
            raise RuntimeError("multistep needs the Runge-Kutta warm-up first")
        from_t, to_t = t, t - stride
        if self.counter == 1:
            # second call of the doubled first point: redo the first step with the averaged slope
            from_t, to_t = t + stride, t
        else:
            self.history = self.history[-3:] + [eps]
        k = len(self.history)
        base = x
        if k == 1 and self.counter == 0:
            direction = eps
            self.saved_sample = x
        elif k == 1 and self.counter == 1:
            direction = (eps + self.history[0]) / 2
            base = self.saved_sample
            self.saved_sample = None
        elif k == 2:
            e = self.history
            direction = (3 * e[-1] - e[-2]) / 2
        elif k == 3:
            e = self.history
            direction = (23 * e[-1] - 16 * e[-2] + 5 * e[-3]) / 12
        else:
            e = self.history
            direction = (55 * e[-1] - 59 * e[-2] + 37 * e[-3] - 9 * e[-4]) * (1.0 / 24)
        return self._transfer(base, from_t, to_t, direction)

    def _transfer(self, x: torch.Tensor, t: int, prev_t: int, eps: torch.Tensor) -> torch.Tensor:
        """Formula (9) of the paper: move x from noise level t to prev_t along eps."""
        a = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        b = 1 - a
        b_prev = 1 - a_prev
        if self.prediction == "v_prediction":
            eps = a.sqrt() * eps + b.sqrt() * x
        scale = (a_prev / a) ** 0.5
        denom = a * b_prev**0.5 + (a * b * a_prev) ** 0.5
        return scale * x - (a_prev - a) * eps / denom
