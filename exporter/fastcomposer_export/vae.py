"""The decoding half of Stable Diffusion's ``AutoencoderKL``, written for TorchScript tracing.

``VAEDecoder.from_config(cfg)`` takes the dict of an SD folder's ``vae/config.json``.  It holds
``post_quant_conv`` and ``decoder`` with diffusers' parameter names, so the checkpoint tensors
``vae.post_quant_conv.*`` and ``vae.decoder.*`` load once the ``vae.`` prefix is removed and the
old attention names are renamed (see ``vae_attention_key_renames`` and
``rename_vae_attention_keys``).

``forward(latents [B, latent_channels, h, w]) -> image [B, out_channels, 8h, 8w]`` in about
[-1, 1] (for 4 blocks); the caller divides the latents by the config's ``scaling_factor`` first.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import SpatialSelfAttention
from .unet_blocks import ResnetBlock, Upsample

__all__ = [
    "VAEDecoder",
    "Decoder",
    "VAE_DEFAULTS",
    "vae_attention_key_renames",
    "rename_vae_attention_keys",
]

VAE_DEFAULTS: Dict[str, Any] = {
    "out_channels": 3,
    "up_block_types": ["UpDecoderBlock2D"],
    "block_out_channels": [64],
    "layers_per_block": 1,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "scaling_factor": 0.18215,
    "use_post_quant_conv": True,
    "mid_block_add_attention": True,
}

# The VAE's norms use eps 1e-6 everywhere (not configurable in AutoencoderKL).
_VAE_EPS = 1e-6


def vae_attention_key_renames() -> Dict[str, str]:
    """Old (diffusers <= 0.16) -> current names of the VAE mid-block attention parameters.

    Applies to the part after ``...mid_block.attentions.<i>.``, for the encoder and the decoder
    alike, for both ``.weight`` and ``.bias``::

        query     -> to_q
        key       -> to_k
        value     -> to_v
        proj_attn -> to_out.0
        group_norm   (unchanged)

    The old weights are [C, C] linears (some original-SD conversions store them as [C, C, 1, 1]
    1x1 convs; squeeze those to [C, C]).
    """
    return {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


_OLD_ATTN = re.compile(r"^(.*\bmid_block\.attentions\.\d+\.)(query|key|value|proj_attn)(\.(?:weight|bias))$")


def rename_vae_attention_keys(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Return a copy of a VAE state dict (any prefix) with the old attention names renamed and
    1x1-conv attention weights squeezed to linears; other keys are passed through unchanged."""
    renames = vae_attention_key_renames()
    out: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = _OLD_ATTN.match(key)
        if m:
            key = m.group(1) + renames[m.group(2)] + m.group(3)
        if (
            ".mid_block.attentions." in key
            and key.endswith(".weight")
            and value.dim() == 4
            and (".to_q." in key or ".to_k." in key or ".to_v." in key or ".to_out.0." in key)
        ):
            value = value[:, :, 0, 0]
        out[key] = value
    return out


def normalize_vae_config(config: Dict[str, Any]) -> Dict[str, Any]:
    cfg = dict(VAE_DEFAULTS)
    cfg.update({k: v for k, v in config.items() if not k.startswith("_")})
    if cfg["act_fn"] != "silu":
        raise ValueError(f"vae config: act_fn={cfg['act_fn']!r} is not supported (only 'silu')")
    for t in cfg["up_block_types"]:
        if t != "UpDecoderBlock2D":
            raise ValueError(f"vae config: up block type {t!r} is not supported (only 'UpDecoderBlock2D')")
    if len(cfg["up_block_types"]) != len(cfg["block_out_channels"]):
        raise ValueError("vae config: up_block_types and block_out_channels differ in length")
    if cfg.get("norm_type", "group") != "group":
        raise ValueError(f"vae config: norm_type={cfg['norm_type']!r} is not supported (only 'group')")
    return cfg


class DecoderMidBlock(nn.Module):
    """resnet, attention, resnet (``resnets.0``, ``attentions.0``, ``resnets.1``)."""

    def __init__(self, channels: int, groups: int, add_attention: bool = True):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, None, groups, _VAE_EPS) for _ in range(2)])
        self.attentions = nn.ModuleList([SpatialSelfAttention(channels, channels, groups, _VAE_EPS)]) if add_attention else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.resnets[0](h)
        if self.attentions is not None:
            h = self.attentions[0](h)
        return self.resnets[1](h)


class DecoderUpBlock(nn.Module):
    """``UpDecoderBlock2D``: resnets, then an optional x2 upsampler."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, groups: int, add_upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock(in_channels if i == 0 else out_channels, out_channels, None, groups, _VAE_EPS) for i in range(num_layers)]
        )
        self.upsamplers = nn.ModuleList([Upsample(out_channels)]) if add_upsample else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            h = resnet(h)
        if self.upsamplers is not None:
            h = self.upsamplers[0](h)
        return h


class Decoder(nn.Module):
    """``conv_in``, ``mid_block``, ``up_blocks``, ``conv_norm_out``, SiLU, ``conv_out``."""

    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        ch = [int(c) for c in cfg["block_out_channels"]]
        groups = int(cfg["norm_num_groups"])
        layers = int(cfg["layers_per_block"])
        self.conv_in = nn.Conv2d(int(cfg["latent_channels"]), ch[-1], 3, padding=1)
        self.mid_block = DecoderMidBlock(ch[-1], groups, bool(cfg["mid_block_add_attention"]))
        rev = list(reversed(ch))
        self.up_blocks = nn.ModuleList()
        out_c = rev[0]
        for i in range(len(rev)):
            in_c, out_c = out_c, rev[i]
            self.up_blocks.append(DecoderUpBlock(in_c, out_c, layers + 1, groups, add_upsample=i != len(rev) - 1))
        self.conv_norm_out = nn.GroupNorm(groups, ch[0], eps=_VAE_EPS, affine=True)
        self.conv_out = nn.Conv2d(ch[0], int(cfg["out_channels"]), 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            h = block(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class VAEDecoder(nn.Module):
    """``post_quant_conv`` (1x1, when the config uses it) followed by ``decoder``."""

    def __init__(self, config: Dict[str, Any]):
        super().__init__()
        cfg = normalize_vae_config(config)
        self.config = cfg
        self.scaling_factor = float(cfg["scaling_factor"])
        c = int(cfg["latent_channels"])
        self.post_quant_conv = nn.Conv2d(c, c, 1) if cfg["use_post_quant_conv"] else None
        self.decoder = Decoder(cfg)

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "VAEDecoder":
        return cls(config)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        z = self.post_quant_conv(latents) if self.post_quant_conv is not None else latents
        return self.decoder(z)
