"""CLIP text and vision towers, written for tracing.

Parameter names follow the FastComposer checkpoint once its prefix is stripped:

* ``CLIPTextTower`` <- ``text_encoder.*``  (``embeddings``, ``encoder``, ``final_layer_norm``)
* ``CLIPImageEncoder`` <- ``image_encoder.*`` (``vision_model.*``, ``visual_projection.weight``)

No module here owns an integer buffer: libtorch's ``Module::to(dtype)`` casts every buffer,
integer ones included, so position ids are taken by slicing the position table instead.
No buffer or constant fixes a device or dtype either, so a traced tower can be moved with
``.to(device, dtype)`` after loading.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List

import torch
import torch.nn.functional as F
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_activation(name: str) -> nn.Module:
    if name == "quick_gelu":
        return QuickGELU()
    if name == "gelu":
        return nn.GELU()
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate="tanh")
    raise ValueError(f"unsupported CLIP hidden_act {name!r}")


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        b, n, d = x.shape
        # [b, n, d] -> [b, heads, n, head_dim]
        q = self.q_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=1.0 / math.sqrt(self.head_dim))
        out = out.transpose(1, 2).reshape(b, n, d)
        return self.out_proj(out)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_activation(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EncoderLayer(nn.Module):
    """Pre-norm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, dim: int, heads: int, hidden: int, act: str, eps: float) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(dim, eps=eps)
        self.self_attn = SelfAttention(dim, heads)
        self.layer_norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = FeedForward(dim, hidden, act)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), causal)
        x = x + self.mlp(self.layer_norm2(x))
        return x


class Encoder(nn.Module):
    def __init__(self, cfg: Dict[str, Any]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(
                cfg["hidden_size"],
                cfg["num_attention_heads"],
                cfg["intermediate_size"],
                cfg.get("hidden_act", "quick_gelu"),
                cfg.get("layer_norm_eps", 1e-5),
            )
            for _ in range(cfg["num_hidden_layers"])
        )

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, causal)
        return x


# ---------------------------------------------------------------- text tower


class TextEmbeddings(nn.Module):
    def __init__(self, vocab: int, positions: int, dim: int) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, dim)
        self.position_embedding = nn.Embedding(positions, dim)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[1]
        # positions 0..n-1: a slice of the table (no id buffer, see module docstring)
        return self.token_embedding(input_ids) + self.position_embedding.weight[:n].unsqueeze(0)


class CLIPTextTower(nn.Module):
    """``forward(input_ids int64 [B, L]) -> last_hidden_state [B, L, D]`` (final layer norm applied)."""

    def __init__(self, cfg: Dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(cfg)
        self.embeddings = TextEmbeddings(cfg["vocab_size"], cfg["max_position_embeddings"], cfg["hidden_size"])
        self.encoder = Encoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg["hidden_size"], eps=cfg.get("layer_norm_eps", 1e-5))

    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        x = self.encoder(x, True)
        return self.final_layer_norm(x)


# -------------------------------------------------------------- vision tower


class VisionEmbeddings(nn.Module):
    def __init__(self, cfg: Dict[str, Any]) -> None:
        super().__init__()
        dim = cfg["hidden_size"]
        patch = cfg["patch_size"]
        self.image_size = cfg["image_size"]
        self.num_patches = (self.image_size // patch) ** 2
        self.class_embedding = nn.Parameter(torch.randn(dim))
        self.patch_embedding = nn.Conv2d(cfg.get("num_channels", 3), dim, kernel_size=patch, stride=patch, bias=False)
        self.position_embedding = nn.Embedding(self.num_patches + 1, dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        b = pixels.shape[0]
        patches = self.patch_embedding(pixels).flatten(2).transpose(1, 2)  # [b, p, d]
        cls = self.class_embedding.view(1, 1, -1).expand(b, 1, -1)
        x = torch.cat([cls, patches], dim=1)
        return x + self.position_embedding.weight.unsqueeze(0)


class CLIPVisionTower(nn.Module):
    """``forward(normalised pixels [S,3,H,W]) -> pooled output [S, hidden]``."""

    def __init__(self, cfg: Dict[str, Any]) -> None:
        super().__init__()
        eps = cfg.get("layer_norm_eps", 1e-5)
        self.embeddings = VisionEmbeddings(cfg)
        # the checkpoint's spelling ("layrnorm") is kept so keys match
        self.pre_layrnorm = nn.LayerNorm(cfg["hidden_size"], eps=eps)
        self.encoder = Encoder(cfg)
        self.post_layernorm = nn.LayerNorm(cfg["hidden_size"], eps=eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.pre_layrnorm(self.embeddings(pixels))
        x = self.encoder(x, False)
        return self.post_layernorm(x[:, 0])


class CLIPImageEncoder(nn.Module):
    """``forward(pixels uint8 [S,224,224,3] RGB HWC) -> object embeddings [S, projection_dim]``.

    Pixels go to float32, ``/255``, CLIP mean/std per channel (in float32, whatever the
    module's dtype), then ``type_as`` the weights before the vision tower and projection.
    """

    def __init__(self, clip_cfg: Dict[str, Any]) -> None:
        super().__init__()
        vcfg = clip_cfg["vision_config"]
        proj = clip_cfg.get("projection_dim", vcfg.get("projection_dim", 512))
        self.config = {"vision_config": dict(vcfg), "projection_dim": proj}
        self.image_size = int(vcfg["image_size"])
        self.vision_model = CLIPVisionTower(vcfg)
        self.visual_projection = nn.Linear(vcfg["hidden_size"], proj, bias=False)

    @property
    def embed_size(self) -> int:
        return int(self.config["projection_dim"])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).to(torch.float32)
        # Python scalars, not tensors: nothing here pins a device or dtype.
        channels = [(x[:, c] / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c] for c in range(3)]
        x = torch.stack(channels, dim=1).contiguous()
        x = x.type_as(self.visual_projection.weight)
        pooled = self.vision_model(x)
        return self.visual_projection(pooled)


def _require(cfg: Dict[str, Any], need: List[str], what: str) -> None:
    missing = [k for k in need if k not in cfg]
    if missing:
        raise ValueError(f"{what} lacks {', '.join(missing)}")


def text_config(sd_text_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The text tower's settings from ``sd/text_encoder/config.json`` (or a CLIP config's ``text_config``)."""
    cfg = sd_text_cfg.get("text_config", sd_text_cfg)
    _require(
        cfg,
        ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings"],
        "text encoder config",
    )
    return cfg


def image_config(clip_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Validate a CLIP config (``clip/config.json``) for ``CLIPImageEncoder``."""
    if "vision_config" not in clip_cfg:
        raise ValueError("image encoder config.json has no vision_config")
    _require(
        clip_cfg["vision_config"],
        ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size"],
        "image encoder vision_config",
    )
    return clip_cfg
