"""Attention building blocks shared by the UNet and the VAE decoder.

Parameter names follow the layout of diffusers checkpoints (``to_q``, ``to_k``, ``to_v``,
``to_out.0``, ``group_norm``, ``ff.net.0.proj``, ``ff.net.2``) so that state dicts load without
renaming.  Every shape is read from the tensors at run time; nothing here creates a tensor on a
particular device or with a particular dtype, so the modules can be traced once on CPU float32 and
then run on any device, dtype, batch size and resolution.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, N, heads*d] -> [B, heads, N, d]."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, heads, N, d] -> [B, N, heads*d]."""
    return x.transpose(1, 2).flatten(2)


class Attention(nn.Module):
    """Multi-head attention of a token sequence over itself or over a context sequence.

    ``to_q``/``to_k``/``to_v`` have no bias by default (as in SD's transformer blocks); ``to_out`` is
    ``[Linear, Dropout]`` so its weight is named ``to_out.0.weight``.
    """

    def __init__(
        self,
        query_dim: int,
        heads: int,
        dim_head: int,
        context_dim: Optional[int] = None,
        qkv_bias: bool = False,
        out_bias: bool = True,
    ):
        super().__init__()
        inner = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.dim_head = dim_head
        self.scale = dim_head**-0.5
        self.to_q = nn.Linear(query_dim, inner, bias=qkv_bias)
        self.to_k = nn.Linear(context_dim, inner, bias=qkv_bias)
        self.to_v = nn.Linear(context_dim, inner, bias=qkv_bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim, bias=out_bias), nn.Dropout(0.0)])

    def _qkv(self, x: torch.Tensor, context: Optional[torch.Tensor]):
        context = x if context is None else context
        q = _split_heads(self.to_q(x), self.heads)
        k = _split_heads(self.to_k(context), self.heads)
        v = _split_heads(self.to_v(context), self.heads)
        return q, k, v

    def _project_out(self, out: torch.Tensor) -> torch.Tensor:
        return self.to_out[1](self.to_out[0](_merge_heads(out)))

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        q, k, v = self._qkv(x, context)
        return self._project_out(F.scaled_dot_product_attention(q, k, v))

    def forward_biased(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        token_index: torch.Tensor,
        log_bias: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention with an additive logit bias on a few context tokens.

        token_index: int64 [S], the context token (column) each bias applies to.
        log_bias: float [B, S, N], added to the logits of column ``token_index[s]`` for every
            query n, the same for every head (``-inf`` removes the token for that query).
        Returns (output [B, N, query_dim], probs float32 [B, S, N]): the softmax probability of
        column ``token_index[s]``, averaged over heads.

        The logits are computed explicitly (q k^T * scale in the module's dtype); the bias, the
        softmax and the returned probabilities are float32, then the probabilities are cast back
        to the value dtype for p v.
        """
        q, k, v = self._qkv(x, context)
        logits = torch.matmul(q, k.transpose(-1, -2)) * self.scale  # [B, H, N, T]
        logits = logits.float()
        # [B, 1, N, T] zeros (same device as the logits, nothing baked), with the bias added at
        # the chosen columns; broadcast over the heads.
        bias = torch.zeros_like(logits[:, :1])
        bias = bias.index_add(3, token_index, log_bias.float().transpose(1, 2).unsqueeze(1))
        probs = torch.softmax(logits + bias, dim=-1)
        maps = probs.index_select(3, token_index).mean(dim=1).transpose(1, 2)  # [B, S, N]
        out = torch.matmul(probs.type_as(v), v)
        return self._project_out(out), maps


class GEGLU(nn.Module):
    """Linear projection to 2*dim_out, then value * gelu(gate) (exact gelu)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """``net = [GEGLU, Dropout, Linear]`` (keys ``net.0.proj.*`` and ``net.2.*``)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class SpatialSelfAttention(nn.Module):
    """Self-attention over the pixels of a [B, C, H, W] map with a group norm in front and a
    residual connection (the VAE's mid-block attention).

    Keys: ``group_norm``, ``to_q``, ``to_k``, ``to_v`` (with bias), ``to_out.0``.  The output is
    ``(attention(norm(x)) + x) / rescale_output_factor``.
    """

    def __init__(
        self,
        channels: int,
        dim_head: Optional[int] = None,
        norm_groups: int = 32,
        eps: float = 1e-6,
        rescale_output_factor: float = 1.0,
    ):
        super().__init__()
        dim_head = channels if dim_head is None else dim_head
        self.heads = channels // dim_head
        self.rescale_output_factor = rescale_output_factor
        inner = self.heads * dim_head
        self.group_norm = nn.GroupNorm(norm_groups, channels, eps=eps, affine=True)
        self.to_q = nn.Linear(channels, inner, bias=True)
        self.to_k = nn.Linear(channels, inner, bias=True)
        self.to_v = nn.Linear(channels, inner, bias=True)
        self.to_out = nn.ModuleList([nn.Linear(inner, channels, bias=True), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.group_norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        q = _split_heads(self.to_q(tokens), self.heads)
        k = _split_heads(self.to_k(tokens), self.heads)
        v = _split_heads(self.to_v(tokens), self.heads)
        out = _merge_heads(F.scaled_dot_product_attention(q, k, v))
        out = self.to_out[1](self.to_out[0](out))
        out = out.transpose(1, 2).reshape(b, c, h, w)
        return (out + x) / self.rescale_output_factor
