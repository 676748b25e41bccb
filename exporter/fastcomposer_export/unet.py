"""A Stable Diffusion 1.x conditional UNet written for TorchScript tracing.

``UNet.from_config(cfg)`` takes the dict of an SD folder's ``unet/config.json`` (the
``UNet2DConditionModel`` layout: cross-attention down blocks, a cross-attention mid block and
cross-attention up blocks).  Parameter names are the ones of diffusers checkpoints, so the
``unet.*`` tensors of a FastComposer checkpoint load with ``load_state_dict(strict=True)`` once the
``unet.`` prefix is removed.

Two traced entry points (see docs/ARCHITECTURE.md, ``unet.pt``):

* ``forward(sample, timestep, encoder_hidden_states) -> eps``
* ``forward_localized(sample, timestep, encoder_hidden_states, subject_positions, region_weight)
  -> (eps, maps)``: on every cross-attention layer of the blocks in ``LOCALIZED_BLOCKS`` the logits
  of context token ``subject_positions[s]`` get ``log(area_resize(region_weight[:, s]))`` added,
  and ``maps`` is that token's attention probability (mean over heads), resized bilinearly to the
  latent size and averaged over those layers.

Trace both at once::

    traced = torch.jit.trace_module(unet, {
        "forward": (sample, t, ctx),
        "forward_localized": (sample, t, ctx, positions, region_weight),
    })

Nothing device-, dtype- or shape-specific is recorded: sizes come from tensor shapes, the only
constant tensor (the timestep frequency indices) is an int64 buffer, and dtype changes go through
``type_as``.

The config handling lives in ``unet_config.py`` and the blocks in ``unet_blocks.py``; their public
names are re-exported here.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .unet_blocks import DownBlock, Downsample, Localize, MidBlock, ResnetBlock, UpBlock, Upsample  # noqa: F401
from .unet_config import LOCALIZED_BLOCKS, UNET_DEFAULTS, normalize_unet_config  # noqa: F401

__all__ = [
    "UNet",
    "UNET_DEFAULTS",
    "LOCALIZED_BLOCKS",
    "ResnetBlock",
    "Downsample",
    "Upsample",
    "normalize_unet_config",
]


class TimestepEmbedding(nn.Module):
    """``linear_1``, SiLU, ``linear_2``."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


# ---------------------------------------------------------------------------------------------


class UNet(nn.Module):
    """SD1.x ``UNet2DConditionModel`` with diffusers' state-dict keys.

    Build with ``UNet.from_config(config_dict)`` (or ``UNet(config_dict)``); ``localized_blocks``
    names the blocks whose cross-attention ``forward_localized`` biases (default
    ``LOCALIZED_BLOCKS``); each must exist and have attention layers.
    """

    def __init__(self, config: Dict[str, Any], localized_blocks: Sequence[str] = LOCALIZED_BLOCKS):
        super().__init__()
        cfg = normalize_unet_config(config)
        self.config = cfg
        ch = cfg["block_out_channels"]
        n = len(ch)
        groups, eps = int(cfg["norm_num_groups"]), float(cfg["norm_eps"])
        resnet_scale = float(cfg["resnet_out_scale_factor"])
        self.center_input_sample = bool(cfg["center_input_sample"])
        self.flip_sin_to_cos = bool(cfg["flip_sin_to_cos"])
        self.freq_shift = float(cfg["freq_shift"])

        def attn_cfg(i: int) -> Dict[str, Any]:
            return {
                "heads": cfg["num_heads"][i],
                "context_dim": cfg["cross_attention_dim"][i],
                "num_layers": cfg["transformer_layers_per_block"][i],
                "use_linear_projection": bool(cfg["use_linear_projection"]),
            }

        # Time embedding. The frequency indices 0..half-1 are an int64 buffer (not in the state
        # dict) so that module.to(float16) leaves them exact; forward converts them to float32.
        self.time_proj_channels = ch[0]
        temb_dim = int(cfg["time_embedding_dim"] or ch[0] * 4)
        self.register_buffer("freq_index", torch.arange(ch[0] // 2, dtype=torch.int64), persistent=False)
        self.time_embedding = TimestepEmbedding(ch[0], temb_dim)

        k_in, k_out = int(cfg["conv_in_kernel"]), int(cfg["conv_out_kernel"])
        self.conv_in = nn.Conv2d(int(cfg["in_channels"]), ch[0], k_in, padding=(k_in - 1) // 2)

        self.down_blocks = nn.ModuleList()
        out_c = ch[0]
        for i, kind in enumerate(cfg["down_block_types"]):
            in_c, out_c = out_c, ch[i]
            self.down_blocks.append(
                DownBlock(
                    in_c,
                    out_c,
                    temb_dim,
                    cfg["layers_per_block"][i],
                    groups,
                    eps,
                    add_downsample=i != n - 1,
                    downsample_padding=int(cfg["downsample_padding"]),
                    output_scale_factor=resnet_scale,
                    cross_attention=attn_cfg(i) if kind == "CrossAttnDownBlock2D" else None,
                )
            )

        mid_attn = attn_cfg(n - 1)
        self.mid_block = MidBlock(
            ch[-1],
            temb_dim,
            groups,
            eps,
            output_scale_factor=float(cfg["mid_block_scale_factor"]),
            cross_attention=mid_attn,
        )

        self.up_blocks = nn.ModuleList()
        rev_ch = list(reversed(ch))
        rev_layers = list(reversed(cfg["layers_per_block"]))
        out_c = rev_ch[0]
        for i, kind in enumerate(cfg["up_block_types"]):
            prev_c, out_c = out_c, rev_ch[i]
            in_c = rev_ch[min(i + 1, n - 1)]
            self.up_blocks.append(
                UpBlock(
                    in_c,
                    prev_c,
                    out_c,
                    temb_dim,
                    rev_layers[i] + 1,
                    groups,
                    eps,
                    add_upsample=i != n - 1,
                    output_scale_factor=resnet_scale,
                    cross_attention=attn_cfg(n - 1 - i) if kind == "CrossAttnUpBlock2D" else None,
                )
            )

        self.conv_norm_out = nn.GroupNorm(groups, ch[0], eps=eps, affine=True)
        self.conv_out = nn.Conv2d(ch[0], int(cfg["out_channels"]), k_out, padding=(k_out - 1) // 2)

        # Which blocks forward_localized biases, and how many cross-attention layers that is.
        self.localized_blocks = tuple(localized_blocks)
        self._localized_down = set()
        self._localized_up = set()
        self._localized_mid = False
        count = 0
        for name in self.localized_blocks:
            if name == "mid_block":
                block = self.mid_block
                self._localized_mid = True
            else:
                kind, _, idx = name.partition(".")
                if kind not in ("down_blocks", "up_blocks") or not idx.isdigit() or int(idx) >= n:
                    raise ValueError(f"localized block {name!r} does not exist in this UNet")
                block = getattr(self, kind)[int(idx)]
                (self._localized_down if kind == "down_blocks" else self._localized_up).add(int(idx))
            if block.attentions is None:
                raise ValueError(f"localized block {name!r} has no cross-attention layers")
            count += sum(len(a.transformer_blocks) for a in block.attentions)
        self.num_localized_layers = count

    @classmethod
    def from_config(cls, config: Dict[str, Any], **kwargs: Any) -> "UNet":
        return cls(config, **kwargs)

    def time_features(self, timestep: torch.Tensor) -> torch.Tensor:
        """Sinusoidal features [B, block_out_channels[0]] in float32 (diffusers' op order)."""
        half = self.time_proj_channels // 2
        exponent = -math.log(10000) * self.freq_index.float()
        exponent = exponent / (half - self.freq_shift)
        angles = timestep[:, None].float() * torch.exp(exponent)[None, :]
        emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
        if self.flip_sin_to_cos:
            emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
        if self.time_proj_channels % 2 == 1:
            emb = F.pad(emb, (0, 1, 0, 0))
        return emb

    def _run(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        loc: Optional[Localize],
    ) -> torch.Tensor:
        timestep = timestep.reshape(-1).expand(sample.shape[0])
        temb = self.time_embedding(self.time_features(timestep).type_as(sample))
        if self.center_input_sample:
            sample = 2 * sample - 1.0
        h = self.conv_in(sample)
        skips: List[torch.Tensor] = [h]
        for i, block in enumerate(self.down_blocks):
            if loc is not None and i in self._localized_down:
                # Plain method call: see Transformer2D.forward_localized.
                h, res = block.forward(h, temb, encoder_hidden_states, loc)
            else:
                h, res = block(h, temb, encoder_hidden_states)
            skips.extend(res)

        if loc is not None and self._localized_mid:
            h = self.mid_block.forward(h, temb, encoder_hidden_states, loc)
        else:
            h = self.mid_block(h, temb, encoder_hidden_states)

        for i, block in enumerate(self.up_blocks):
            n_res = len(block.resnets)
            res = skips[-n_res:]
            skips = skips[:-n_res]
            upsample_to = skips[-1] if block.upsamplers is not None else None
            if loc is not None and i in self._localized_up:
                h = block.forward(h, res, temb, encoder_hidden_states, upsample_to, loc)
            else:
                h = block(h, res, temb, encoder_hidden_states, upsample_to)

        h = F.silu(self.conv_norm_out(h))
        return self.conv_out(h)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """sample [B, C, h, w], timestep float [B], encoder_hidden_states [B, T, D] -> eps."""
        return self._run(sample, timestep, encoder_hidden_states, None)

    def forward_localized(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        subject_positions: torch.Tensor,
        region_weight: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """As ``forward``, with the localized cross-attention described in the module docstring.

        subject_positions: int64 [S]; region_weight: [B, S, h, w] (1 = unchanged, 0 = no
        attention).  Returns (eps, maps float32 [B, S, h, w]).
        """
        if self.num_localized_layers == 0:
            raise RuntimeError("this UNet was built with no localized blocks")
        maps: List[torch.Tensor] = []
        eps = self._run(sample, timestep, encoder_hidden_states, (subject_positions, region_weight, maps))
        total = maps[0]
        for m in maps[1:]:
            total = total + m
        return eps, total / self.num_localized_layers
