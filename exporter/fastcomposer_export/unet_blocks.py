"""The UNet's building blocks, with diffusers' parameter names: the convolutional pieces
(``ResnetBlock``, ``Downsample``, ``Upsample``; the VAE decoder uses them too), the
cross-attention transformer (``Transformer2D``) and the down / mid / up blocks that wire them
together.  ``forward_localized`` paths thread a ``Localize`` tuple through the localized blocks
(see ``unet.py``)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import Attention, FeedForward

__all__ = [
    "ResnetBlock",
    "Downsample",
    "Upsample",
    "Localize",
    "TransformerBlock",
    "Transformer2D",
    "DownBlock",
    "MidBlock",
    "UpBlock",
]


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
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

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
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, heads, dim_head, context_dim) for _ in range(num_layers)])

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
                ResnetBlock(in_channels if i == 0 else out_channels, out_channels, temb_channels, groups, eps, output_scale_factor)
                for i in range(num_layers)
            ]
        )
        if cross_attention is not None:
            self.attentions = nn.ModuleList([Transformer2D(out_channels, groups=groups, **cross_attention) for _ in range(num_layers)])
        else:
            self.attentions = None
        self.downsamplers = nn.ModuleList([Downsample(out_channels, downsample_padding)]) if add_downsample else None

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
        self.attentions = nn.ModuleList([Transformer2D(channels, groups=groups, **cross_attention) for _ in range(num_layers)])
        self.resnets = nn.ModuleList(
            [ResnetBlock(channels, channels, temb_channels, groups, eps, output_scale_factor) for _ in range(num_layers + 1)]
        )

    def forward(self, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor, loc: Optional[Localize] = None) -> torch.Tensor:
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
            resnets.append(ResnetBlock(running + skip_channels, out_channels, temb_channels, groups, eps, output_scale_factor))
        self.resnets = nn.ModuleList(resnets)
        if cross_attention is not None:
            self.attentions = nn.ModuleList([Transformer2D(out_channels, groups=groups, **cross_attention) for _ in range(num_layers)])
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
