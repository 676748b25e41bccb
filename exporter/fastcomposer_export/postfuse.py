"""FastComposer's postfuse: mixes each subject's image embedding into its noun token.

Keys (checkpoint prefix ``postfuse_module.`` stripped): ``mlp1.{layernorm,fc1,fc2}.*``,
``mlp2.{layernorm,fc1,fc2}.*``, ``layer_norm.*``.

At subject token position ``p_s``::

    h   = mlp1(cat(text[p_s], object_s)) + text[p_s]     # mlp1: 2D -> D, no inner residual
    out = layer_norm(mlp2(h))                           # mlp2: D -> D, with inner residual

where ``mlpN(x) = fc2(gelu(fc1(layernorm(x)))) (+ x when residual)``. All other positions are
returned unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


class FuseMLP(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, residual: bool) -> None:
        super().__init__()
        if residual and in_dim != out_dim:
            raise ValueError("a residual MLP needs in_dim == out_dim")
        self.residual = residual
        self.layernorm = nn.LayerNorm(in_dim)
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc2(self.act(self.fc1(self.layernorm(x))))
        if self.residual:
            y = y + x
        return y


class Postfuse(nn.Module):
    """``forward(text_embeds [B,L,D], object_embeds [S,D], subject_positions int64 [S]) -> [B,L,D]``.

    The same subjects are fused into every batch row (the pipeline encodes one prompt and
    repeats it). ``S`` may be 0.
    """

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.mlp1 = FuseMLP(2 * embed_dim, embed_dim, embed_dim, residual=False)
        self.mlp2 = FuseMLP(embed_dim, embed_dim, embed_dim, residual=True)
        self.layer_norm = nn.LayerNorm(embed_dim)

    def fuse(self, text: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        h = self.mlp1(torch.cat([text, obj], dim=-1)) + text
        return self.layer_norm(self.mlp2(h))

    def forward(
        self,
        text_embeds: torch.Tensor,
        object_embeds: torch.Tensor,
        subject_positions: torch.Tensor,
    ) -> torch.Tensor:
        b = text_embeds.shape[0]
        s = object_embeds.shape[0]
        d = text_embeds.shape[2]
        obj = object_embeds.type_as(text_embeds)
        # text at the subject tokens: [B, S, D]
        text_at = text_embeds.index_select(1, subject_positions)
        fused = self.fuse(text_at, obj.unsqueeze(0).expand(b, s, d))
        index = subject_positions.view(1, s, 1).expand(b, s, d)
        return text_embeds.scatter(1, index, fused)
