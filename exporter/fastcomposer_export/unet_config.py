"""The UNet's config: diffusers' ``UNet2DConditionModel`` defaults, the options this exporter
does not implement, and ``normalize_unet_config`` (defaults filled in, checks done, per-block
values expanded).  ``LOCALIZED_BLOCKS`` names the blocks FastComposer localizes."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple, Union

__all__ = ["UNET_DEFAULTS", "LOCALIZED_BLOCKS", "normalize_unet_config"]

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
        raise ValueError(f"unet config: mid_block_type={cfg['mid_block_type']!r} is not supported (only 'UNetMidBlock2DCrossAttn')")
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
    cfg["transformer_layers_per_block"] = _per_block(cfg["transformer_layers_per_block"], n, "transformer_layers_per_block")
    cfg["cross_attention_dim"] = _per_block(cfg["cross_attention_dim"], n, "cross_attention_dim")
    for k in ("conv_in_kernel", "conv_out_kernel"):
        if int(cfg[k]) % 2 != 1:
            raise ValueError(f"unet config: {k} must be odd")
    return cfg
