"""Loading a FastComposer checkpoint safely, and fitting its weights into our modules.

* ``load_checkpoint`` reads ``pytorch_model.bin`` with ``weights_only=True`` (a pickle that
  tries to build anything but tensors is refused before any of it runs) and memory-maps it
  when the file is a zip archive, so the weights stay on disk until used.
* ``normalize_keys`` renames the diffusers-0.16 VAE attention keys and drops the keys we
  know to be useless (stale ``position_ids`` buffers, the VAE encoder side).
* ``split_checkpoint`` cuts the dict by prefix and refuses keys that belong to nothing.
* ``load_into`` fills a module (built on the ``meta`` device or not) with
  ``load_state_dict(assign=True)`` after checking missing keys and shapes, naming each
  offending key in the error.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, MutableMapping, Optional

import torch
from torch import nn

StateDict = MutableMapping[str, torch.Tensor]

PREFIXES = ("unet.", "vae.", "text_encoder.", "image_encoder.", "postfuse_module.")

# keys a release carries that we never use
IGNORED_KEYS = frozenset(
    {
        "text_encoder.embeddings.position_ids",
        "image_encoder.vision_model.embeddings.position_ids",
        "text_encoder.text_model.embeddings.position_ids",
    }
)
# we export only the VAE decoder
IGNORED_PREFIXES = ("vae.encoder.", "vae.quant_conv.")

_OLD_VAE_ATTN = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says why and names the keys."""


def _list_keys(keys: Iterable[str], limit: int = 20) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    if len(keys) > limit:
        shown += f", ... ({len(keys) - limit} more)"
    return shown


def load_checkpoint(path: os.PathLike | str) -> Dict[str, torch.Tensor]:
    """Read a FastComposer ``pytorch_model.bin`` without running any code from it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        raise CheckpointError(f"{path}: .safetensors checkpoints are not supported; pass the release's pytorch_model.bin")
    mmap = zipfile.is_zipfile(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} was refused: it is not a plain tensor checkpoint (its pickle asks to run "
            f"code or build objects that are not allowed). Nothing from it was executed. ({first})"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} could not be read as a PyTorch checkpoint: {e}") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not named tensors: {_list_keys(map(str, bad))}")
    return obj


def _rename(key: str) -> str:
    for side in ("vae.encoder.", "vae.decoder."):
        stem = side + "mid_block.attentions.0."
        if key.startswith(stem):
            rest = key[len(stem) :]
            name, dot, tail = rest.partition(".")
            if name in _OLD_VAE_ATTN and dot:
                return stem + _OLD_VAE_ATTN[name] + "." + tail
    if key.startswith("text_encoder.text_model."):
        # a checkpoint saved from a whole CLIPTextModel: same weights, one more level
        return "text_encoder." + key[len("text_encoder.text_model.") :]
    return key


def normalize_keys(sd: StateDict) -> StateDict:
    """Rename old names and drop ignorable keys, in place (no tensor is copied)."""
    for key in list(sd.keys()):
        if key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES):
            del sd[key]
            continue
        new = _rename(key)
        if new != key:
            if new in sd:
                raise CheckpointError(f"checkpoint has both {key} and {new}")
            sd[new] = sd.pop(key)
    return sd


def split_checkpoint(sd: StateDict, unknown_out: Optional[List[str]] = None) -> Dict[str, Dict[str, torch.Tensor]]:
    """``{"unet": {...}, "vae": {...}, ...}`` with prefixes stripped; empties ``sd`` as it goes.

    Keys under no known prefix raise, unless ``unknown_out`` is given to collect them.
    """
    parts: Dict[str, Dict[str, torch.Tensor]] = {p[:-1]: {} for p in PREFIXES}
    unknown: List[str] = []
    for key in list(sd.keys()):
        for p in PREFIXES:
            if key.startswith(p):
                parts[p[:-1]][key[len(p) :]] = sd.pop(key)
                break
        else:
            unknown.append(key)
    if unknown_out is not None:
        unknown_out.extend(unknown)
    elif unknown:
        raise CheckpointError(f"checkpoint has unknown keys: {_list_keys(unknown)}")
    return parts


def _has_meta(module: nn.Module) -> List[str]:
    names = [n for n, t in module.named_parameters() if t.is_meta]
    names += [n for n, t in module.named_buffers() if t.is_meta]
    return names


def check_weights(module: nn.Module, weights: Dict[str, torch.Tensor], prefix: str) -> List[str]:
    """Problems (missing keys, unknown keys, shape mismatches) naming the checkpoint keys."""
    expected = module.state_dict(keep_vars=True)
    missing = [k for k in expected if k not in weights]
    unknown = [k for k in weights if k not in expected]
    mismatched = [
        f"{prefix}{k} (checkpoint {tuple(weights[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append("missing keys: " + _list_keys(prefix + k for k in missing))
    if unknown:
        problems.append("unknown keys: " + _list_keys(prefix + k for k in unknown))
    if mismatched:
        problems.append("shape mismatches: " + _list_keys(mismatched))
    return problems


def check_all(
    factories: Dict[str, Callable[[], nn.Module]],
    parts: Dict[str, Dict[str, torch.Tensor]],
    unknown: Iterable[str] = (),
) -> None:
    """Check every part against its module (built on ``meta``: free) before any real work.

    ``unknown``: keys under no known prefix, reported along with the rest.
    """
    unknown = list(unknown)
    problems: List[str] = ["unknown keys: " + _list_keys(unknown)] if unknown else []
    for name, factory in factories.items():
        with torch.device("meta"):
            module = factory()
        problems += check_weights(module, parts.get(name, {}), name + ".")
        del module
    if problems:
        raise CheckpointError("checkpoint does not fit the model config: " + "; ".join(problems))


def load_into(
    module: nn.Module,
    weights: Dict[str, torch.Tensor],
    prefix: str,
    dtype: Optional[torch.dtype] = None,
) -> nn.Module:
    """Check ``weights`` against ``module``'s state dict and assign them.

    ``prefix`` (e.g. ``"unet."``) only serves the error messages, which name keys as they
    appear in the checkpoint. Consumes ``weights``. Floating tensors are cast to ``dtype``
    (default float32) when they differ; tensors already of that dtype are used as they are
    (for an mmap'd checkpoint: no copy in memory until a page is read).
    """
    dtype = dtype or torch.float32
    problems = check_weights(module, weights, prefix)
    if problems:
        raise CheckpointError("checkpoint does not fit the model config: " + "; ".join(problems))
    fitted = {}
    for k in list(weights.keys()):
        t = weights.pop(k)
        if t.is_floating_point() and t.dtype != dtype:
            t = t.to(dtype)
        fitted[k] = t
    module.load_state_dict(fitted, strict=True, assign=True)
    del fitted
    left = _has_meta(module)
    if left:
        raise CheckpointError(f"internal: {type(module).__name__} still has uninitialised tensors after loading: {_list_keys(left)}")
    return module


_INIT_FNS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
)


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Within: ``torch.nn.init`` functions do nothing (modules keep ``torch.empty`` memory)."""
    saved = {name: getattr(nn.init, name) for name in _INIT_FNS if hasattr(nn.init, name)}

    def noop(tensor, *args, **kwargs):
        return tensor

    try:
        for name in saved:
            setattr(nn.init, name, noop)
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


def build_and_load(
    factory: Callable[[], nn.Module],
    weights: Dict[str, torch.Tensor],
    prefix: str,
    dtype: Optional[torch.dtype] = None,
) -> nn.Module:
    """Build a module without allocating its weights (meta device), then assign ``weights``.

    A module whose buffers are computed in ``__init__`` and not saved in checkpoints cannot be
    filled from the meta device; it is then built on CPU instead (costs one random init).
    """
    with torch.device("meta"):
        module = factory()
    expected = set(module.state_dict().keys())
    unsaved = [n for n, t in module.named_buffers() if n not in expected]
    if unsaved:
        # build for real so those buffers get their values, but skip the random init of the
        # parameters: their memory is allocated, never touched, and replaced below
        with skip_init():
            module = factory()
    module = load_into(module, weights, prefix, dtype)
    return module.eval().requires_grad_(False)


def state_dict_for_release(parts: Dict[str, Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """The inverse of ``split_checkpoint`` + ``normalize_keys``: the released key layout.

    Used by the random presets so their weights travel the very path a real checkpoint does.
    """
    reverse = {v: k for k, v in _OLD_VAE_ATTN.items()}
    out: Dict[str, torch.Tensor] = {}
    for name, sd in parts.items():
        for k, v in sd.items():
            key = f"{name}.{k}"
            for side in ("vae.encoder.", "vae.decoder."):
                stem = side + "mid_block.attentions.0."
                if key.startswith(stem):
                    rest = key[len(stem) :]
                    for new, old in reverse.items():
                        if rest.startswith(new + "."):
                            key = stem + old + rest[len(new) :]
                            break
            out[key] = v
    return out
