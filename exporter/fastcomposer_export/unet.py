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
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import Attention, FeedForward

__all__ = [
    "UNet",
    "UNET_DEFAULTS",
    "LOCALIZED_BLOCKS",
    "ResnetBlock",
    "Downsample",
    "Upsample",
    "normalize_unet_config",
]

# The blocks whose cross-attention FastComposer localizes (model.json "supervisedAttentionLayers").
LOCALIZED_BLOCKS: Tuple[str, ...] = (
    "down_blocks.1",
    "down_blocks.2",
    "mid_block",
    "up_blocks.1",
    "up_blocks.2",
)

# diffusers' defaults for the UNet2DConditionModel config keys we read.
UNET_DEFAULTS: Dict[str, Any] = {
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1.0,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 1280,
    "transformer_layers_per_block": 1,
    "attention_head_dim": 8,
    "num_attention_heads": None,
    "use_linear_projection": False,
    "resnet_out_scale_factor": 1.0,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "time_embedding_dim": None,
}

# Options that change the architecture in ways this module does not implement; a config may
# carry them only with the value listed here (or null / absent).
_UNSUPPORTED_UNLESS: Dict[str, Any] = {
    "only_cross_attention": False,
    "dual_cross_attention": False,
    "upcast_attention": False,
    "class_embed_type": None,
    "addition_embed_type": None,
    "num_class_embeds": None,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "resnet_time_scale_shift": "default",
    "resnet_skip_time_act": False,
    "time_embedding_type": "positional",
    "time_embedding_act_fn": None,
    "timestep_post_act": None,
    "time_cond_proj_dim": None,
    "projection_class_embeddings_input_dim": None,
    "attention_type": "default",
    "class_embeddings_concat": False,
    "cross_attention_norm": None,
    "reverse_transformer_layers_per_block": None,
    "addition_time_embed_dim": None,
}

_DOWN_TYPES = ("CrossAttnDownBlock2D", "DownBlock2D")
_UP_TYPES = ("CrossAttnUpBlock2D", "UpBlock2D")


def _per_block(value: Union[int, Sequence[int]], n: int, name: str) -> List[int]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"unet config: {name} has {len(value)} entries, expected {n} (one per down block)")
        return [int(v) for v in value]
    return [int(value)] * n


def normalize_unet_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """Fill in diffusers' defaults, check for unsupported options and expand per-block values.

    Returns a new dict with lists for ``block_out_channels``, ``layers_per_block``,
    ``transformer_layers_per_block``, ``cross_attention_dim`` and ``num_heads`` (the number of
    attention heads per down block: ``num_attention_heads`` when given, else the legacy
    ``attention_head_dim``, which in SD configs is the number of heads).
    """
    cfg = dict(UNET_DEFAULTS)
    cfg.update({k: v for k, v in config.items() if not k.startswith("_")})

    for key, allowed in _UNSUPPORTED_UNLESS.items():
        value = cfg.get(key, allowed)
        if value is None or value == allowed:
            continue
        if key == "only_cross_attention" and isinstance(value, (list, tuple)) and not any(value):
            continue
        raise ValueError(f"unet config: {key}={value!r} is not supported (only {allowed!r})")
    if cfg["act_fn"] != "silu":
        raise ValueError(f"unet config: act_fn={cfg['act_fn']!r} is not supported (only 'silu')")
    if cfg["mid_block_type"] != "UNetMidBlock2DCrossAttn":
        raise ValueError(
            f"unet config: mid_block_type={cfg['mid_block_type']!r} is not supported "
            "(only 'UNetMidBlock2DCrossAttn')"
        )
    down, up = list(cfg["down_block_types"]), list(cfg["up_block_types"])
    for t in down:
        if t not in _DOWN_TYPES:
            raise ValueError(f"unet config: down block type {t!r} is not supported (only {_DOWN_TYPES})")
    for t in up:
        if t not in _UP_TYPES:
            raise ValueError(f"unet config: up block type {t!r} is not supported (only {_UP_TYPES})")
    n = len(down)
    if len(up) != n:
        raise ValueError(f"unet config: {len(up)} up blocks for {n} down blocks")
    channels = [int(c) for c in cfg["block_out_channels"]]
    if len(channels) != n:
        raise ValueError(f"unet config: block_out_channels has {len(channels)} entries for {n} blocks")
    for key in ("transformer_layers_per_block", "cross_attention_dim"):
        if isinstance(cfg[key], (list, tuple)) and any(isinstance(v, (list, tuple)) for v in cfg[key]):
            raise ValueError(f"unet config: nested lists in {key} are not supported")

    heads = cfg["num_attention_heads"] if cfg["num_attention_heads"] is not None else cfg["attention_head_dim"]
    cfg["num_heads"] = _per_block(heads, n, "attention_head_dim/num_attention_heads")
    cfg["block_out_channels"] = channels
    cfg["down_block_types"], cfg["up_block_types"] = down, up
    cfg["layers_per_block"] = _per_block(cfg["layers_per_block"], n, "layers_per_block")
    cfg["transformer_layers_per_block"] = _per_block(
        cfg["transformer_layers_per_block"], n, "transformer_layers_per_block"
    )
    cfg["cross_attention_dim"] = _per_block(cfg["cross_attention_dim"], n, "cross_attention_dim")
    for k in ("conv_in_kernel", "conv_out_kernel"):
        if int(cfg[k]) % 2 != 1:
            raise ValueError(f"unet config: {k} must be odd")
    return cfg


# ---------------------------------------------------------------------------------------------
# Convolutional pieces (also used by the VAE decoder)


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with an optional time-embedding shift between the convs and a
    1x1 ``conv_shortcut`` when the channel count changes.  ``(skip + h) / output_scale_factor``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: Optional[int],
        groups: int,
        eps: float,
        output_scale_factor: float = 1.0,
    ):
        super().__init__()
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels) if temb_channels is not None else None
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps, affine=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = (
            nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor, temb: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        skip = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        return (skip + h) / self.output_scale_factor


class Downsample(nn.Module):
    """3x3 stride-2 conv (``conv``); padding 0 means pad right/bottom by one first."""

    def __init__(self, channels: int, padding: int = 1):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling (to ``size`` when given, else x2) followed by a 3x3 ``conv``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: Optional[Sequence[Any]] = None) -> torch.Tensor:
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)


# ---------------------------------------------------------------------------------------------
# Transformer pieces

# What forward_localized threads through the localized blocks:
# (subject_positions int64 [S], region_weight [B, S, h, w], list collecting maps [B, S, h, w])
Localize = Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]


class TransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention and GEGLU feed-forward, each with a residual."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = Attention(dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.attn2 = Attention(dim, heads, dim_head, context_dim=context_dim)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x

    def forward_localized(
        self, x: torch.Tensor, context: torch.Tensor, positions: torch.Tensor, log_bias: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.attn1(self.norm1(x)) + x
        out, probs = self.attn2.forward_biased(self.norm2(x), context, positions, log_bias)
        x = out + x
        return self.ff(self.norm3(x)) + x, probs


class Transformer2D(nn.Module):
    """GroupNorm, ``proj_in`` (1x1 conv or linear), transformer blocks over the pixels,
    ``proj_out``, plus the input as a residual."""

    def __init__(
        self,
        channels: int,
        heads: int,
        context_dim: int,
        groups: int,
        num_layers: int = 1,
        use_linear_projection: bool = False,
    ):
        super().__init__()
        dim_head = channels // heads
        inner = heads * dim_head
        self.use_linear_projection = use_linear_projection
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6, affine=True)
        if use_linear_projection:
            self.proj_in = nn.Linear(channels, inner)
            self.proj_out = nn.Linear(inner, channels)
        else:
            self.proj_in = nn.Conv2d(channels, inner, 1)
            self.proj_out = nn.Conv2d(inner, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            [TransformerBlock(inner, heads, dim_head, context_dim) for _ in range(num_layers)]
        )

    def _tokens_in(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        # [B, C, H, W] -> [B, H*W, C] tokens (a strided view, as diffusers has it, so the next
        # GEMM sees the same memory layout and rounds the same way).
        if self.use_linear_projection:
            return self.proj_in(h.permute(0, 2, 3, 1).flatten(1, 2))
        return self.proj_in(h).permute(0, 2, 3, 1).flatten(1, 2)

    def _tokens_out(self, tokens: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b, _, hh, ww = x.shape
        # Tokens back to a contiguous [B, C, H, W] map (a strided view would make the 1x1 conv
        # take its channels-last path and round differently).
        if self.use_linear_projection:
            tokens = self.proj_out(tokens)
            out = tokens.reshape(b, hh, ww, -1).permute(0, 3, 1, 2).contiguous()
        else:
            out = self.proj_out(tokens.reshape(b, hh, ww, -1).permute(0, 3, 1, 2).contiguous())
        return out + x

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        tokens = self._tokens_in(x)
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        return self._tokens_out(tokens, x)

    def forward_localized(self, x: torch.Tensor, context: torch.Tensor, loc: Localize) -> torch.Tensor:
        positions, region_weight, maps = loc
        b, _, hh, ww = x.shape
        # Area-average the region weight down to this layer's grid; log(0) = -inf on purpose.
        weight = F.adaptive_avg_pool2d(region_weight.float(), (hh, ww))
        log_bias = torch.log(weight).flatten(2)  # [B, S, hh*ww]
        out_size = (region_weight.shape[2], region_weight.shape[3])
        tokens = self._tokens_in(x)
        for block in self.transformer_blocks:
            # Called as a plain method (not through nn.Module.__call__) so that the tracer inlines
            # it: the same submodule then behaves differently in the two traced methods.
            tokens, probs = block.forward_localized(tokens, context, positions, log_bias)
            probs = probs.reshape(b, -1, hh, ww)
            maps.append(F.interpolate(probs, size=out_size, mode="bilinear", align_corners=False))
        return self._tokens_out(tokens, x)


# ---------------------------------------------------------------------------------------------
# UNet blocks


def _run_attention(attn: Transformer2D, h: torch.Tensor, context: torch.Tensor, loc: Optional[Localize]):
    if loc is None:
        return attn(h, context)
    return attn.forward_localized(h, context, loc)


class DownBlock(nn.Module):
    """``CrossAttnDownBlock2D`` (with ``attentions``) or ``DownBlock2D`` (without)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        num_layers: int,
        groups: int,
        eps: float,
        add_downsample: bool,
        downsample_padding: int,
        output_scale_factor: float,
        cross_attention: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            [
                ResnetBlock(in_channels if i == 0 else out_channels, out_channels, temb_channels, groups, eps,
                            output_scale_factor)
                for i in range(num_layers)
            ]
        )
        if cross_attention is not None:
            self.attentions = nn.ModuleList(
                [Transformer2D(out_channels, groups=groups, **cross_attention) for _ in range(num_layers)]
            )
        else:
            self.attentions = None
        self.downsamplers = (
            nn.ModuleList([Downsample(out_channels, downsample_padding)]) if add_downsample else None
        )

    def forward(
        self, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor, loc: Optional[Localize] = None
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        skips: List[torch.Tensor] = []
        for i, resnet in enumerate(self.resnets):
            h = resnet(h, temb)
            if self.attentions is not None:
                h = _run_attention(self.attentions[i], h, context, loc)
            skips.append(h)
        if self.downsamplers is not None:
            h = self.downsamplers[0](h)
            skips.append(h)
        return h, skips


class MidBlock(nn.Module):
    """``UNetMidBlock2DCrossAttn``: resnet, then (attention, resnet) pairs."""

    def __init__(
        self,
        channels: int,
        temb_channels: int,
        groups: int,
        eps: float,
        output_scale_factor: float,
        cross_attention: Dict[str, Any],
        num_layers: int = 1,
    ):
        super().__init__()
        self.attentions = nn.ModuleList(
            [Transformer2D(channels, groups=groups, **cross_attention) for _ in range(num_layers)]
        )
        self.resnets = nn.ModuleList(
            [ResnetBlock(channels, channels, temb_channels, groups, eps, output_scale_factor)
             for _ in range(num_layers + 1)]
        )

    def forward(
        self, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor, loc: Optional[Localize] = None
    ) -> torch.Tensor:
        h = self.resnets[0](h, temb)
        for attn, resnet in zip(self.attentions, self.resnets[1:]):
            h = _run_attention(attn, h, context, loc)
            h = resnet(h, temb)
        return h


class UpBlock(nn.Module):
    """``CrossAttnUpBlock2D`` (with ``attentions``) or ``UpBlock2D``: each resnet takes the
    running features concatenated with one skip connection (last in, first out)."""

    def __init__(
        self,
        in_channels: int,
        prev_output_channels: int,
        out_channels: int,
        temb_channels: int,
        num_layers: int,
        groups: int,
        eps: float,
        add_upsample: bool,
        output_scale_factor: float,
        cross_attention: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        resnets = []
        for i in range(num_layers):
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            running = prev_output_channels if i == 0 else out_channels
            resnets.append(
                ResnetBlock(running + skip_channels, out_channels, temb_channels, groups, eps, output_scale_factor)
            )
        self.resnets = nn.ModuleList(resnets)
        if cross_attention is not None:
            self.attentions = nn.ModuleList(
                [Transformer2D(out_channels, groups=groups, **cross_attention) for _ in range(num_layers)]
            )
        else:
            self.attentions = None
        self.upsamplers = nn.ModuleList([Upsample(out_channels)]) if add_upsample else None

    def forward(
        self,
        h: torch.Tensor,
        skips: List[torch.Tensor],
        temb: torch.Tensor,
        context: torch.Tensor,
        upsample_to: Optional[torch.Tensor] = None,
        loc: Optional[Localize] = None,
    ) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            h = resnet(torch.cat([h, skips.pop()], dim=1), temb)
            if self.attentions is not None:
                h = _run_attention(self.attentions[i], h, context, loc)
        if self.upsamplers is not None:
            # Upsample to the size of the next skip connection (2x, or 2x-1 for odd sizes).
            size = None if upsample_to is None else (upsample_to.shape[2], upsample_to.shape[3])
            h = self.upsamplers[0](h, size)
        return h


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
                    in_c, out_c, temb_dim, cfg["layers_per_block"][i], groups, eps,
                    add_downsample=i != n - 1,
                    downsample_padding=int(cfg["downsample_padding"]),
                    output_scale_factor=resnet_scale,
                    cross_attention=attn_cfg(i) if kind == "CrossAttnDownBlock2D" else None,
                )
            )

        mid_attn = attn_cfg(n - 1)
        self.mid_block = MidBlock(
            ch[-1], temb_dim, groups, eps,
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
                    in_c, prev_c, out_c, temb_dim, rev_layers[i] + 1, groups, eps,
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

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
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
