"""Random presets: a FastComposer release made up in memory.

* ``tiny``: shaped like ``test/fixtures/tiny-a`` (the configs in ``data/tiny``), a few MB,
  exports in seconds. Deterministic: the same seed gives the same weights.
* ``sd15-random``: full size (SD1.5 UNet/VAE/CLIP-L text, CLIP ViT-L/14 vision, ``data/sd15``)
  for GPU benchmarks; weights are random, so images are noise.

The tiny preset builds the whole state dict in the *released* key layout (old VAE attention
names, stale ``position_ids``, VAE encoder keys) so that its export goes through the very
renaming and checking a downloaded checkpoint does. The full-size preset builds one module at
a time instead, to keep memory at one module's weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Tuple

import torch
from torch import nn

from . import checkpoint as ck

DATA = Path(__file__).resolve().parent / "data"
PRESETS = {
    "tiny": DATA / "tiny",
    "sd15-random": DATA / "sd15",
}
# the CLIP BPE files, shipped once (both presets use the real vocabulary)
TOKENIZER_DIR = DATA / "tiny" / "sd" / "tokenizer"


def preset_dirs(name: str) -> Tuple[Path, Path]:
    """(base SD folder, image-encoder folder) of a preset."""
    root = PRESETS[name]
    return root / "sd", root / "clip"


def _perturb(module: nn.Module, g: torch.Generator, scale: float = 0.05) -> None:
    """Move every parameter off its init value (layer norms of exactly 1/0 hide key mix-ups)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)


def random_module(factory: Callable[[], nn.Module], seed: int, perturb: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    module = factory()
    if perturb:
        _perturb(module, torch.Generator().manual_seed(seed + 1))
    return module.eval().requires_grad_(False)


def _vae_encoder_extras(latent_channels: int, g: torch.Generator) -> Dict[str, torch.Tensor]:
    """A few keys of the VAE's encoder side, as a release carries them (and we ignore)."""
    c = latent_channels
    out = {
        "encoder.conv_in.weight": torch.randn(8, 3, 3, 3, generator=g),
        "encoder.conv_in.bias": torch.randn(8, generator=g),
        "quant_conv.weight": torch.randn(2 * c, 2 * c, 1, 1, generator=g),
        "quant_conv.bias": torch.randn(2 * c, generator=g),
    }
    for name in ("to_q", "to_k", "to_v", "to_out.0"):
        out[f"encoder.mid_block.attentions.0.{name}.weight"] = torch.randn(8, 8, generator=g)
        out[f"encoder.mid_block.attentions.0.{name}.bias"] = torch.randn(8, generator=g)
    return out


def release_state_dict(factories: Dict[str, Callable[[], nn.Module]], latent_channels: int, seed: int = 0) -> Dict[str, torch.Tensor]:
    """A whole random release, keyed like ``pytorch_model.bin`` (old VAE names included).

    ``factories``: ``text_encoder``, ``image_encoder``, ``postfuse_module``, ``unet``, ``vae``
    (the VAE factory builds the decoder side: ``post_quant_conv`` and ``decoder``).
    """
    parts: Dict[str, Dict[str, torch.Tensor]] = {}
    for i, (name, factory) in enumerate(factories.items()):
        module = random_module(factory, seed + 10 * i)
        parts[name] = {k: v.detach().clone() for k, v in module.state_dict().items()}
        del module
    parts["vae"].update(_vae_encoder_extras(latent_channels, torch.Generator().manual_seed(seed + 99)))
    sd = ck.state_dict_for_release(parts)
    # the buffers older transformers saved, which we must tolerate and ignore
    sd["text_encoder.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    n_pos = None
    for k, v in sd.items():
        if k == "image_encoder.vision_model.embeddings.position_embedding.weight":
            n_pos = v.shape[0]
    if n_pos is not None:
        sd["image_encoder.vision_model.embeddings.position_ids"] = torch.arange(n_pos).unsqueeze(0)
    return sd
