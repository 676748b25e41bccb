"""Our UNet and VAE decoder against the golden numbers of test/fixtures/tiny-a, plus tracing.

The checkpoint's ``unet.*`` / ``vae.*`` tensors load strictly into fastcomposer_export.unet.UNet and
fastcomposer_export.vae.VAEDecoder; the expected tensors were computed by the reference pipeline.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from fastcomposer_export import attention as attention_mod
from fastcomposer_export.unet import LOCALIZED_BLOCKS, UNet, normalize_unet_config
from fastcomposer_export.vae import VAEDecoder, rename_vae_attention_keys, vae_attention_key_renames

TOL = 1e-5


def rel(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want|, in float64."""
    got, want = got.double(), want.double()
    return ((got - want).abs().max() / want.abs().max()).item()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The tiny model is dominated by per-op overhead; on a small shared CPU several intra-op
    # threads only fight each other (seconds instead of milliseconds per UNet call).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def release(tiny_a: Path) -> Path:
    return tiny_a / "release"


@pytest.fixture(scope="module")
def weights(release):
    return torch.load(release / "fastcomposer" / "pytorch_model.bin", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def unet_config(release):
    return json.loads((release / "sd" / "unet" / "config.json").read_text())


@pytest.fixture(scope="module")
def vae_config(release):
    return json.loads((release / "sd" / "vae" / "config.json").read_text())


def _with_prefix(sd, prefix, keep=("",)):
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix) and k[len(prefix) :].startswith(keep)}


@pytest.fixture(scope="module")
def unet(weights, unet_config):
    m = UNet.from_config(unet_config).eval()
    m.load_state_dict(_with_prefix(weights, "unet."), strict=True)
    return m


@pytest.fixture(scope="module")
def vae(weights, vae_config):
    m = VAEDecoder.from_config(vae_config).eval()
    sd = rename_vae_attention_keys(_with_prefix(weights, "vae.", ("decoder.", "post_quant_conv.")))
    m.load_state_dict(sd, strict=True)
    return m


@pytest.fixture(scope="module")
def expected(tiny_a):
    return load_file(str(tiny_a / "expected" / "two_subjects_pndm.safetensors"))


def _inputs(batch, h, w, dim=32, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, h, w, generator=g).to(dtype)
    t = (torch.rand(batch, generator=g) * 999).round()
    ctx = torch.randn(batch, 77, dim, generator=g).to(dtype)
    return x, t, ctx


# ---------------------------------------------------------------------------------- loading


def test_state_dict_keys_are_diffusers(weights, unet, vae):
    assert set(unet.state_dict()) == set(_with_prefix(weights, "unet."))
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.weight" in unet.state_dict()
    vae_keys = set(vae.state_dict())
    assert "decoder.mid_block.attentions.0.to_out.0.weight" in vae_keys
    assert "post_quant_conv.weight" in vae_keys
    # the frequency-index buffer is not part of the checkpoint format
    assert not any("freq_index" in k for k in unet.state_dict())


def test_vae_attention_renames():
    assert vae_attention_key_renames() == {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
    w = torch.zeros(8, 8, 1, 1)
    out = rename_vae_attention_keys(
        {
            "decoder.mid_block.attentions.0.query.weight": w,
            "decoder.mid_block.attentions.0.proj_attn.bias": torch.zeros(8),
            "decoder.mid_block.attentions.0.group_norm.weight": torch.zeros(8),
            "decoder.conv_in.weight": w,
        }
    )
    assert set(out) == {
        "decoder.mid_block.attentions.0.to_q.weight",
        "decoder.mid_block.attentions.0.to_out.0.bias",
        "decoder.mid_block.attentions.0.group_norm.weight",
        "decoder.conv_in.weight",
    }
    assert out["decoder.mid_block.attentions.0.to_q.weight"].shape == (8, 8)
    assert out["decoder.conv_in.weight"].shape == (8, 8, 1, 1)


# ---------------------------------------------------------------------------------- golden data


def test_unet_probe(unet, expected):
    # First PNDM step: model input = init_latents twice (scale_model_input is the identity),
    # conditioned on [negative, augmented] at timesteps[0].
    x = expected["init_latents"].repeat(2, 1, 1, 1)
    t = expected["timesteps"][:1].repeat(2)
    ctx = torch.cat([expected["negative_embeds"], expected["augmented_embeds"]])
    with torch.no_grad():
        eps = unet(x, t, ctx)
    assert eps.shape == expected["unet_probe"].shape
    assert rel(eps, expected["unet_probe"]) <= TOL


def test_vae_probe(vae, vae_config, expected):
    # The reference decoded vae_probe_in / scaling_factor.
    with torch.no_grad():
        img = vae(expected["vae_probe_in"] / vae_config["scaling_factor"])
    assert img.shape == expected["vae_probe_out"].shape
    assert rel(img, expected["vae_probe_out"]) <= TOL


# ---------------------------------------------------------------------------------- tracing


def _region(batch, subjects, h, w, value=1.0):
    return torch.full((batch, subjects, h, w), value)


def test_unet_trace_is_generic(unet):
    x, t, ctx = _inputs(2, 12, 16)
    pos = torch.tensor([3, 7])
    # A traced module shares its parameters with the module it was traced from: trace a copy so
    # that .double() / .to(bfloat16) below leave the fixture alone.
    traced = torch.jit.trace_module(
        copy.deepcopy(unet),
        {"forward": (x, t, ctx), "forward_localized": (x, t, ctx, pos, _region(2, 2, 12, 16))},
        check_trace=False,
    )
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        # other batch sizes and resolutions, odd latent sizes included
        for batch, h, w in [(3, 9, 7), (1, 8, 8), (2, 11, 13)]:
            x, t, ctx = _inputs(batch, h, w, seed=batch * 100 + h)
            assert rel(traced(x, t, ctx), unet(x, t, ctx)) <= TOL
            pos = torch.tensor([1, 5, 9])
            rw = torch.rand(batch, 3, h, w, generator=g)
            rw[:, 0, :, : w // 2] = 0.0
            eps_t, maps_t = traced.forward_localized(x, t, ctx, pos, rw)
            eps_e, maps_e = unet.forward_localized(x, t, ctx, pos, rw)
            assert maps_t.shape == (batch, 3, h, w) and maps_t.dtype == torch.float32
            assert rel(eps_t, eps_e) <= TOL
            assert rel(maps_t, maps_e) <= TOL

        # float64 (the graph holds no dtype): traced.double() against eager.double()
        traced64, eager64 = traced.double(), copy.deepcopy(unet).double()
        x, t, ctx = _inputs(2, 10, 6, seed=9, dtype=torch.float64)
        out = traced64(x, t, ctx)
        assert out.dtype == torch.float64
        assert rel(out, eager64(x, t, ctx)) <= 1e-10
        eps_t, maps_t = traced64.forward_localized(x, t, ctx, pos[:2], _region(2, 2, 10, 6, 0.5).double())
        eps_e, maps_e = eager64.forward_localized(x, t, ctx, pos[:2], _region(2, 2, 10, 6, 0.5).double())
        assert eps_t.dtype == torch.float64 and maps_t.dtype == torch.float32
        assert rel(eps_t, eps_e) <= 1e-10 and rel(maps_t, maps_e) <= 1e-6


def test_unet_trace_bakes_no_device_or_dtype(unet):
    x, t, ctx = _inputs(1, 8, 8)
    # A traced module shares its parameters with the module it was traced from: trace a copy so
    # that .double() / .to(bfloat16) below leave the fixture alone.
    traced = torch.jit.trace_module(
        copy.deepcopy(unet),
        {"forward": (x, t, ctx), "forward_localized": (x, t, ctx, torch.tensor([2]), _region(1, 1, 8, 8))},
        check_trace=False,
    )
    code = traced.code + traced.forward_localized.code
    assert "torch.device(" not in code
    # bfloat16 on CPU: runs in that dtype and stays close to float32
    bf = traced.to(torch.bfloat16)
    x, t, ctx = _inputs(2, 12, 16, seed=3)
    with torch.no_grad():
        ref = unet(x, t, ctx)
        out = bf(x.bfloat16(), t, ctx.bfloat16())
        assert out.dtype == torch.bfloat16
        assert rel(out.float(), ref) < 0.1
        _, maps = bf.forward_localized(x.bfloat16(), t, ctx.bfloat16(), torch.tensor([4]), _region(2, 1, 12, 16).bfloat16())
        assert maps.dtype == torch.float32 and torch.isfinite(maps).all()


def test_vae_trace_is_generic(vae):
    g = torch.Generator().manual_seed(1)
    traced = torch.jit.trace(copy.deepcopy(vae), (torch.randn(1, 4, 12, 16, generator=g),), check_trace=False)
    assert "torch.device(" not in traced.code
    with torch.no_grad():
        for shape in [(2, 4, 9, 7), (3, 4, 8, 8)]:
            z = torch.randn(*shape, generator=g)
            out = traced(z)
            assert out.shape == (shape[0], 3, shape[2] * 8, shape[3] * 8)
            assert rel(out, vae(z)) <= TOL
        z = torch.randn(2, 4, 6, 10, generator=g, dtype=torch.float64)
        assert rel(traced.double()(z), copy.deepcopy(vae).double()(z)) <= 1e-10


# ---------------------------------------------------------------------------------- localization


def test_localized_with_unit_weights_equals_forward(unet, expected):
    x = expected["init_latents"].repeat(2, 1, 1, 1)
    t = expected["timesteps"][:1].repeat(2)
    ctx = torch.cat([expected["negative_embeds"], expected["augmented_embeds"]])
    pos = torch.tensor([2, 5])
    with torch.no_grad():
        eps, maps = unet.forward_localized(x, t, ctx, pos, _region(2, 2, 12, 16))
        ref = unet(x, t, ctx)
    assert rel(eps, ref) <= 5e-6
    assert maps.shape == (2, 2, 12, 16) and maps.dtype == torch.float32
    assert (maps >= 0).all() and (maps <= 1).all() and maps.sum() > 0


def test_localized_layers_and_count(unet):
    # tiny-a: one transformer block per attention; 1 + 1 + 1 + 2 + 2 attentions in those blocks
    assert unet.localized_blocks == LOCALIZED_BLOCKS
    assert unet.num_localized_layers == 7


def test_region_weight_confines_the_maps(unet, monkeypatch):
    h, w = 16, 16
    x, t, ctx = _inputs(2, h, w, seed=4)
    pos = torch.tensor([3, 8])
    # subject 0: left half; subject 1: the bottom-right quarter (aligned with every biased
    # layer's grid: 8x8, 4x4 and 2x2 for this size, so outside cells get exactly log(0))
    rw = torch.zeros(2, 2, h, w)
    rw[:, 0, :, : w // 2] = 1.0
    rw[:, 1, h // 2 :, w // 2 :] = 1.0

    # Record every biased layer's own probabilities (before the bilinear resize).
    recorded = []
    original = attention_mod.Attention.forward_biased

    def spy(self, x, context, token_index, log_bias):
        out, probs = original(self, x, context, token_index, log_bias)
        recorded.append((probs, log_bias))
        return out, probs

    monkeypatch.setattr(attention_mod.Attention, "forward_biased", spy)
    with torch.no_grad():
        _, maps = unet.forward_localized(x, t, ctx, pos, rw)
        _, free = unet.forward_localized(x, t, ctx, pos, torch.ones_like(rw))

    assert len(recorded) == 2 * unet.num_localized_layers
    for probs, log_bias in recorded[: unet.num_localized_layers]:
        outside = torch.isneginf(log_bias)
        assert outside.any()
        assert probs[outside].abs().max() == 0.0  # hard suppression at every layer

    inside = rw > 0
    share = (maps * inside).sum(dim=(2, 3)) / maps.sum(dim=(2, 3))
    free_share = (free * inside).sum(dim=(2, 3)) / free.sum(dim=(2, 3))
    # What lies outside the box is only the bilinear spill of the coarse layers' edge cells: at
    # most half a 2x2-grid cell (4 latent pixels here) beyond the box, and nothing further out.
    near = F.max_pool2d(inside.float(), 9, stride=1, padding=4) > 0
    assert maps[~near].abs().max() == 0.0
    assert (share > 0.8).all(), share
    assert (share > free_share + 0.3).all(), (share, free_share)


def test_region_weight_area_resize_matches_pooling():
    # A single biased attention: the log bias of a half-covered cell is log(0.5).
    torch.manual_seed(0)
    attn = attention_mod.Attention(8, 2, 4, context_dim=6).eval()
    x = torch.randn(1, 4, 8)
    ctx = torch.randn(1, 5, 6)
    pos = torch.tensor([1])
    bias = torch.log(torch.tensor([1.0, 0.5, 0.25, 1.0])).reshape(1, 1, 4)
    with torch.no_grad():
        out, probs = attn.forward_biased(x, ctx, pos, bias)
        q = attn.to_q(x).reshape(1, 4, 2, 4).transpose(1, 2)
        k = attn.to_k(ctx).reshape(1, 5, 2, 4).transpose(1, 2)
        v = attn.to_v(ctx).reshape(1, 5, 2, 4).transpose(1, 2)
        logits = q @ k.transpose(-1, -2) / 2.0
        logits[..., 1] += bias[0, 0][None, :]
        p = logits.softmax(-1)
        want = attn.to_out[0]((p @ v).transpose(1, 2).reshape(1, 4, 8))
    assert rel(out, want) <= 1e-6
    assert rel(probs, p[..., 1].mean(1)[:, None, :]) <= 1e-6


# ---------------------------------------------------------------------------------- configs


def test_config_defaults_and_heads():
    cfg = normalize_unet_config({})
    assert cfg["block_out_channels"] == [320, 640, 1280, 1280]
    assert cfg["num_heads"] == [8, 8, 8, 8] and cfg["cross_attention_dim"] == [1280] * 4
    cfg = normalize_unet_config({"attention_head_dim": [5, 10, 20, 20]})
    assert cfg["num_heads"] == [5, 10, 20, 20]
    cfg = normalize_unet_config({"attention_head_dim": 8, "num_attention_heads": 4})
    assert cfg["num_heads"] == [4] * 4


def _small(**over):
    cfg = {
        "block_out_channels": [8, 16],
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "cross_attention_dim": 8,
        "attention_head_dim": 2,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    }
    cfg.update(over)
    return cfg


@pytest.mark.parametrize(
    "over",
    [
        {"down_block_types": ["SimpleCrossAttnDownBlock2D", "DownBlock2D"]},
        {"up_block_types": ["UpBlock2D", "AttnUpBlock2D"]},
        {"mid_block_type": "UNetMidBlock2DSimpleCrossAttn"},
        {"act_fn": "gelu"},
        {"class_embed_type": "timestep"},
        {"addition_embed_type": "text_time"},
        {"upcast_attention": True},
        {"only_cross_attention": True},
        {"resnet_time_scale_shift": "scale_shift"},
        {"time_cond_proj_dim": 256},
    ],
)
def test_unsupported_configs_raise(over):
    with pytest.raises(ValueError):
        UNet(_small(**over), localized_blocks=())


def test_localized_blocks_must_have_attention():
    with pytest.raises(ValueError, match="localized"):
        UNet(_small())  # the default needs down_blocks.2, which this 2-block UNet lacks
    m = UNet(_small(), localized_blocks=("down_blocks.0", "up_blocks.1")).eval()
    x, t, ctx = _inputs(1, 6, 5, dim=8)
    with torch.no_grad():
        eps, maps = m.forward_localized(x, t, ctx, torch.tensor([0]), torch.ones(1, 1, 6, 5))
        assert rel(eps, m(x, t, ctx)) <= 1e-5
    assert maps.shape == (1, 1, 6, 5)


def test_other_vae_layouts(vae_config):
    cfg = dict(vae_config, block_out_channels=[8, 8], up_block_types=["UpDecoderBlock2D"] * 2, norm_num_groups=4, layers_per_block=2)
    m = VAEDecoder.from_config(cfg).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 4, 3, 5)).shape == (1, 3, 6, 10)
    with pytest.raises(ValueError):
        VAEDecoder.from_config(dict(cfg, up_block_types=["UpDecoderBlock2D", "AttnUpDecoderBlock2D"]))


def test_frequency_buffer_survives_low_precision_casts(unet):
    # libtorch's Module::to(dtype) may cast integer buffers too; the indices stay exact in
    # float16/bfloat16 (they are < 256 for every SD width), so the features do not change.
    t = torch.tensor([1.0, 500.0, 999.0])
    want = unet.time_features(t)
    m = copy.deepcopy(unet)
    for dt in (torch.float16, torch.bfloat16):
        m.freq_index = unet.freq_index.to(dt)
        assert torch.equal(m.time_features(t), want)
    assert unet.freq_index.dtype == torch.int64
    assert copy.deepcopy(unet).half().freq_index.dtype == torch.int64
