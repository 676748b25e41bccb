"""Tracing each module to TorchScript and proving the trace generalises.

Every module is traced on CPU in float32 with small example inputs, then run again, traced
and eager side by side, on inputs of *other* shapes (batch, subject count, resolution): a
trace that baked a shape in fails there. The graph is also scanned for device constants and
tensor constants (both would pin CPU). The traced module is saved as is (not frozen), so its
parameters stay parameters and C++ can ``module.to(device, dtype)``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

Inputs = Tuple[torch.Tensor, ...]


class TraceError(Exception):
    pass


def _as_tuple(x: Any) -> Tuple[torch.Tensor, ...]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want| (computed in float64)."""
    got = got.detach().to(torch.float64)
    want = want.detach().to(torch.float64)
    if got.shape != want.shape:
        return float("inf")
    if want.numel() == 0:
        return 0.0
    scale = want.abs().max().item()
    diff = (got - want).abs().max().item()
    return diff / scale if scale > 0 else diff


def portability_issues(traced: torch.jit.ScriptModule, methods: Sequence[str]) -> List[str]:
    """Constants in the traced graphs that would pin the module to CPU."""
    issues: List[str] = []
    for name in methods:
        graph = getattr(traced, name).inlined_graph if name != "forward" else traced.inlined_graph
        for node in graph.nodes():
            if node.kind() != "prim::Constant":
                continue
            out = node.output()
            kind = out.type().kind()
            where = node.sourceRange().strip().splitlines()[0] if node.sourceRange() else ""
            if kind == "DeviceObjType":
                issues.append(f"{name}: device constant {node.s('value') if node.hasAttribute('value') else ''} at {where}".strip())
            elif kind == "TensorType":
                t = node.t("value")
                if t.dim() > 0:
                    issues.append(f"{name}: tensor constant of shape {tuple(t.shape)} at {where}")
    return issues


def trace_module(
    module: nn.Module,
    examples: Dict[str, Inputs],
    checks: Sequence[Dict[str, Inputs]] = (),
    tol: float = 1e-4,
    allow_constants: bool = False,
) -> Tuple[torch.jit.ScriptModule, Dict[str, Any]]:
    """Trace ``module``'s methods (``examples``: method name -> example inputs).

    ``checks``: further input sets (method -> inputs) that traced and eager must agree on,
    relative error <= ``tol``. Returns the traced module and a report
    (``maxRelativeError``, ``warnings``).
    """
    module = module.eval().requires_grad_(False)
    caught: List[str] = []
    with torch.no_grad(), warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        if list(examples) == ["forward"]:
            traced = torch.jit.trace(module, examples["forward"], check_trace=False)
        else:
            traced = torch.jit.trace_module(module, examples, check_trace=False)
        for w in rec:
            # torch's own group_norm batch-size check converts a size to bool: harmless
            if issubclass(w.category, torch.jit.TracerWarning) and not str(w.filename).endswith(("nn/functional.py", "nn\\functional.py")):
                msg = str(w.message).splitlines()[0]
                if msg not in caught:
                    caught.append(msg)
    issues = portability_issues(traced, list(examples))
    if issues and not allow_constants:
        raise TraceError(f"tracing {type(module).__name__} baked CPU-only constants: " + "; ".join(issues[:5]))
    worst = 0.0
    with torch.no_grad():
        for case in [examples, *checks]:
            for method, inputs in case.items():
                inputs = _as_tuple(inputs)
                want = _as_tuple(getattr(module, method)(*inputs))
                got = _as_tuple(getattr(traced, method)(*inputs))
                if len(want) != len(got):
                    raise TraceError(f"{type(module).__name__}.{method}: traced returns {len(got)} outputs, eager {len(want)}")
                for i, (g, w) in enumerate(zip(got, want)):
                    err = relative_error(g, w)
                    shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
                    if not err <= tol:
                        raise TraceError(
                            f"{type(module).__name__}.{method} output {i}: traced and eager differ "
                            f"(relative error {err:.3g}) for inputs of shapes {shapes}; the trace baked in a shape"
                        )
                    worst = max(worst, err)
    return traced, {"maxRelativeError": worst, "warnings": caught}


def save(traced: torch.jit.ScriptModule, path: Path, dtype: Optional[torch.dtype] = None) -> None:
    """Save; with ``dtype`` the floating parameters are cast first (the graph stays dtype-free)."""
    if dtype is not None and dtype != torch.float32:
        traced = traced.to(dtype)
    torch.jit.save(traced, str(path))


# ------------------------------------------------------ per-module example inputs


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def text_encoder_inputs(vocab: int, length: int = 77) -> Tuple[Dict[str, Inputs], List[Dict[str, Inputs]]]:
    g = _gen(1)
    ex = {"forward": (torch.randint(0, vocab, (1, length), generator=g),)}
    checks = [{"forward": (torch.randint(0, vocab, (3, length), generator=g),)}]
    return ex, checks


def image_encoder_inputs(size: int) -> Tuple[Dict[str, Inputs], List[Dict[str, Inputs]]]:
    g = _gen(2)

    def px(n: int) -> torch.Tensor:
        return torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8)

    return {"forward": (px(2),)}, [{"forward": (px(1),)}]


def postfuse_inputs(dim: int, length: int = 77) -> Tuple[Dict[str, Inputs], List[Dict[str, Inputs]]]:
    g = _gen(3)

    def case(b: int, positions: List[int]) -> Dict[str, Inputs]:
        return {
            "forward": (
                torch.randn(b, length, dim, generator=g),
                torch.randn(len(positions), dim, generator=g),
                torch.tensor(positions, dtype=torch.int64),
            )
        }

    return case(1, [3, 9]), [case(2, [5]), case(3, [1, 4, 20]), case(2, [])]


def unet_inputs(
    in_channels: int, ctx_dim: int, localized: bool = True, length: int = 77
) -> Tuple[Dict[str, Inputs], List[Dict[str, Inputs]]]:
    g = _gen(4)

    def case(b: int, h: int, w: int, positions: List[int]) -> Dict[str, Inputs]:
        x = torch.randn(b, in_channels, h, w, generator=g)
        t = torch.rand(b, generator=g) * 999.0
        ctx = torch.randn(b, length, ctx_dim, generator=g)
        out: Dict[str, Inputs] = {"forward": (x, t, ctx)}
        if localized:
            pos = torch.tensor(positions, dtype=torch.int64)
            weight = torch.rand(b, len(positions), h, w, generator=g)
            out["forward_localized"] = (x, t, ctx, pos, weight)
        return out

    # the check differs in batch, both sides (10 is not a multiple of 4: odd sizes inside) and S
    return case(2, 8, 8, [2, 5]), [case(3, 12, 10, [1, 4, 7])]


def vae_decoder_inputs(latent_channels: int) -> Tuple[Dict[str, Inputs], List[Dict[str, Inputs]]]:
    g = _gen(5)
    ex = {"forward": (torch.randn(1, latent_channels, 8, 8, generator=g),)}
    checks = [{"forward": (torch.randn(2, latent_channels, 12, 10, generator=g),)}]
    return ex, checks
