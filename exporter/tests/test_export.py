"""The exporter against the golden data of test/fixtures/tiny-a (the released pipeline's numbers).

One CLI export of the tiny-a release (a subprocess, as the Node CLI runs it) serves most tests;
every comparison goes through the traced modules loaded back from that directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fastcomposer_export import checkpoint as ck
from fastcomposer_export import cli, tiny
from fastcomposer_export import trace as tr

EXPORTER = Path(__file__).resolve().parents[1]
TOL = 1e-5
RUNS = ["two_subjects_pndm", "two_subjects_ddim", "two_subjects_euler", "two_subjects_dpmpp2m", "one_subject_batch2"]
MODULES = ["text_encoder", "image_encoder", "postfuse", "unet", "vae_decoder"]


def rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return tr.relative_error(got, want)


def run_cli(*args: str, env: Dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(EXPORTER) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("FASTCOMPOSER_DEBUG", None)
    e["OMP_NUM_THREADS"] = "1"
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "fastcomposer_export", *args],
        capture_output=True,
        text=True,
        env=e,
        timeout=600,
    )


def release_args(tiny_a: Path, checkpoint: Path | None = None) -> list:
    r = tiny_a / "release"
    return [
        "--checkpoint",
        str(checkpoint or r / "fastcomposer" / "pytorch_model.bin"),
        "--base",
        str(r / "sd"),
        "--image-encoder",
        str(r / "clip"),
    ]


@pytest.fixture(scope="module")
def export(tiny_a, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model"
    proc = run_cli(*release_args(tiny_a), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.fixture(scope="module")
def loaded(export):
    out, _ = export
    return {m: torch.jit.load(str(out / f"{m}.pt")).eval() for m in MODULES}


@pytest.fixture(scope="module")
def eager(tiny_a):
    """The same weights in eager modules (float32), built by the exporter's own load path."""
    r = tiny_a / "release"
    configs = cli.Configs(r / "sd", r / "clip")
    weights = cli.weights_from_state_dict(ck.load_checkpoint(r / "fastcomposer" / "pytorch_model.bin"), configs)
    f = configs.factories()
    mods = {}
    for stage, prefix in [
        ("text_encoder", "text_encoder"),
        ("image_encoder", "image_encoder"),
        ("postfuse", "postfuse_module"),
        ("unet", "unet"),
        ("vae_decoder", "vae"),
    ]:
        mods[stage] = ck.build_and_load(f[prefix], weights.take(prefix), prefix + ".")
    return mods


@pytest.fixture(scope="module")
def expected(tiny_a):
    return {name: load_file(str(tiny_a / "expected" / f"{name}.safetensors")) for name in RUNS}


@pytest.fixture(scope="module")
def runs(tiny_a):
    return {r["name"]: r for r in json.loads((tiny_a / "expected" / "runs.json").read_text())}


def subject_pixels(tiny_a: Path, names) -> torch.Tensor:
    arrays = [np.asarray(Image.open(tiny_a / "release" / "subjects" / n).convert("RGB"), dtype=np.uint8) for n in names]
    return torch.from_numpy(np.stack(arrays))


def positions(mask: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(mask[0]).flatten().to(torch.int64)


# --------------------------------------------------------------- the export itself


def test_progress_lines_and_files(export):
    out, proc = export
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert lines[0]["status"] == "plan"
    started = [e["stage"] for e in lines if e.get("status") == "start"]
    done = [e["stage"] for e in lines if e.get("status") == "done" and "stage" in e]
    assert started == lines[0]["stages"] == done
    assert all(isinstance(e["seconds"], float) for e in lines if e.get("status") == "done")
    assert lines[-1]["status"] == "done" and Path(lines[-1]["out"]) == out.resolve()
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["model.json", "tokenizer.json", "scheduler_config.json"] + [f"{m}.pt" for m in MODULES])
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_manifest(export, tiny_a):
    out, _ = export
    m = json.loads((out / "model.json").read_text())
    assert m["format"] == "fastcomposer-model" and m["version"] == 1
    assert m["imageToken"] == "<|image|>" and m["maxLength"] == 77
    assert (m["textHiddenSize"], m["objectEmbedSize"], m["latentChannels"], m["vaeScaleFactor"]) == (32, 32, 4, 8)
    assert m["latentScale"] == pytest.approx(0.18215) and m["imageSize"] == 224
    assert m["supervisedAttentionLayers"] == ["down_blocks.1", "down_blocks.2", "mid_block", "up_blocks.1", "up_blocks.2"]
    for name in MODULES:
        mod = m["modules"][name]
        assert (out / mod["file"]).is_file() and mod["inputs"] and mod["outputs"]
    assert m["modules"]["unet"]["methods"] == ["forward", "forward_localized"]
    assert m["modules"]["image_encoder"]["inputs"][0]["dtype"] == "uint8"
    assert m["tokenizer"] == "tokenizer.json" and m["scheduler"] == "scheduler_config.json"
    src = tiny_a / "release" / "sd" / "scheduler" / "scheduler_config.json"
    assert json.loads((out / "scheduler_config.json").read_text()) == json.loads(src.read_text())


def test_manifest_records_every_file_size_and_sha256(export):
    out, _ = export
    m = json.loads((out / "model.json").read_text())
    others = sorted(p.name for p in out.iterdir() if p.name != "model.json")
    assert sorted(m["files"]) == others
    for name in others:
        data = (out / name).read_bytes()
        assert m["files"][name] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}, name


def test_export_keeps_the_nnpack_notice_off_stderr(export):
    # libtorch logs this line for every float32 CPU convolution on CPUs NNPACK does not support
    _, proc = export
    assert "NNPACK" not in proc.stderr


def test_manifest_records_configs_that_rebuild_the_modules(export, tiny_a):
    """model.json "configs" holds the four configs as read, and they alone rebuild eager modules
    into which each traced file's state_dict loads strictly (bench/python_eager.py relies on it)."""
    out, _ = export
    m = json.loads((out / "model.json").read_text())
    r = tiny_a / "release"
    read = lambda p: json.loads(p.read_text())  # noqa: E731
    assert m["configs"] == {
        "textEncoder": read(r / "sd" / "text_encoder" / "config.json"),
        "imageEncoder": read(r / "clip" / "config.json"),
        "unet": read(r / "sd" / "unet" / "config.json"),
        "vae": read(r / "sd" / "vae" / "config.json"),
    }
    f = cli.Configs.from_dicts(m["configs"]).factories()
    prefixes = {
        "text_encoder": "text_encoder",
        "image_encoder": "image_encoder",
        "postfuse": "postfuse_module",
        "unet": "unet",
        "vae_decoder": "vae",
    }
    for name in MODULES:
        module = f[prefixes[name]]()
        traced = torch.jit.load(str(out / m["modules"][name]["file"])).state_dict()
        own = module.state_dict()
        # the traced file also holds non-persistent buffers (the UNet's freq_index); nothing else
        extra = set(traced) - set(own)
        assert extra <= {k for k, _ in module.named_buffers()}, (name, sorted(extra)[:5])
        module.load_state_dict({k: v for k, v in traced.items() if k in own}, strict=True)
        assert all(torch.equal(module.state_dict()[k], traced[k]) for k in own)


def test_no_cpu_constants_in_graphs(loaded):
    for name, module in loaded.items():
        methods = ["forward", "forward_localized"] if name == "unet" else ["forward"]
        assert tr.portability_issues(module, methods) == [], name


def test_no_integer_state(loaded):
    """libtorch's Module::to(dtype) casts every buffer; only float state may be saved, except
    small exact integer tables (the UNet's frequency indices survive a cast to fp16/bf16)."""
    for name, module in loaded.items():
        for key, t in list(module.named_parameters()) + list(module.named_buffers()):
            if not t.is_floating_point():
                assert t.numel() <= 256 and t.abs().max() <= 256, f"{name}.{key}"


# ----------------------------------------------------------- golden comparisons


@pytest.mark.parametrize("run", RUNS)
def test_text_encoder_matches_reference(loaded, expected, run):
    e = expected[run]
    with torch.no_grad():
        for ids, want in (("input_ids", "text_embeds"), ("text_only_ids", "text_only_embeds"), ("negative_ids", "negative_embeds")):
            err = rel(loaded["text_encoder"](e[ids]), e[want])
            assert err <= TOL, (run, want, err)


@pytest.mark.parametrize("run", ["two_subjects_pndm", "one_subject_batch2"])
def test_image_encoder_matches_reference(loaded, expected, runs, tiny_a, run):
    px = subject_pixels(tiny_a, runs[run]["subjects"])
    with torch.no_grad():
        err = rel(loaded["image_encoder"](px), expected[run]["object_embeds"])
    assert err <= TOL, err


@pytest.mark.parametrize("run", ["two_subjects_pndm", "one_subject_batch2"])
def test_postfuse_matches_reference(loaded, expected, run):
    e = expected[run]
    pos = positions(e["image_token_mask"])
    assert pos.numel() == e["object_embeds"].shape[0]
    with torch.no_grad():
        got = loaded["postfuse"](e["text_embeds"].clone(), e["object_embeds"], pos)
    err = rel(got, e["augmented_embeds"])
    assert err <= TOL, err
    # only the subject tokens changed
    changed = (got != e["text_embeds"]).any(-1)[0]
    assert torch.equal(torch.nonzero(changed).flatten(), pos)


def test_whole_conditioning_chain(loaded, expected, runs, tiny_a):
    """ids + pictures -> augmented embeddings through three exported modules."""
    e = expected["two_subjects_ddim"]
    with torch.no_grad():
        obj = loaded["image_encoder"](subject_pixels(tiny_a, runs["two_subjects_ddim"]["subjects"]))
        text = loaded["text_encoder"](e["input_ids"])
        got = loaded["postfuse"](text, obj, positions(e["image_token_mask"]))
    assert rel(got, e["augmented_embeds"]) <= TOL


@pytest.mark.parametrize("run", ["two_subjects_pndm", "two_subjects_ddim", "one_subject_batch2"])
def test_unet_probe(loaded, expected, run):
    # PNDM and DDIM leave the model input unscaled: the probe is the UNet on [x, x] at timesteps[0]
    e = expected[run]
    x = e["init_latents"]
    n = x.shape[0]
    sample = torch.cat([x, x])
    t = e["timesteps"][0].reshape(1).expand(2 * n).to(torch.float32).contiguous()
    ctx = torch.cat([e["negative_embeds"].expand(n, -1, -1), e["augmented_embeds"].expand(n, -1, -1)])
    with torch.no_grad():
        eps = loaded["unet"](sample, t, ctx)
        eps_loc, maps = loaded["unet"].forward_localized(
            sample,
            t,
            ctx,
            positions(e["image_token_mask"]),
            torch.ones(2 * n, e["object_embeds"].shape[0], x.shape[2], x.shape[3]),
        )
    err = rel(eps, e["unet_probe"])
    assert err <= TOL, err
    assert rel(eps_loc, e["unet_probe"]) <= TOL  # weight 1 everywhere = unchanged
    assert maps.shape == (2 * n, e["object_embeds"].shape[0], x.shape[2], x.shape[3])
    assert maps.dtype == torch.float32


@pytest.mark.parametrize("run", ["two_subjects_pndm", "one_subject_batch2"])
def test_vae_probe(loaded, expected, run):
    # vae_probe_in holds init_latents[:1]; the reference decoded vae_probe_in / 0.18215
    e = expected[run]
    assert torch.equal(e["vae_probe_in"], e["init_latents"][:1])
    with torch.no_grad():
        err = rel(loaded["vae_decoder"](e["vae_probe_in"] / 0.18215), e["vae_probe_out"])
    assert err <= TOL, err


# -------------------------------------------------- shapes and dtypes not baked in


def test_other_batches_and_sizes(loaded, eager, tiny_a):
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        ids = torch.randint(0, 49408, (4, 77), generator=g)
        assert rel(loaded["text_encoder"](ids), eager["text_encoder"](ids)) <= TOL
        batch = loaded["text_encoder"](ids)
        assert rel(loaded["text_encoder"](ids[2:3]), batch[2:3]) <= TOL

        px = torch.randint(0, 256, (3, 224, 224, 3), generator=g, dtype=torch.uint8)
        assert rel(loaded["image_encoder"](px), eager["image_encoder"](px)) <= TOL

        text = torch.randn(3, 77, 32, generator=g)
        obj = torch.randn(4, 32, generator=g)
        pos = torch.tensor([1, 5, 9, 30])
        assert rel(loaded["postfuse"](text, obj, pos), eager["postfuse"](text, obj, pos)) <= TOL
        # no subjects: unchanged
        assert torch.equal(loaded["postfuse"](text, obj[:0], pos[:0]), text)

        for b, h, w in [(1, 8, 8), (3, 9, 14), (2, 16, 12)]:
            x = torch.randn(b, 4, h, w, generator=g)
            t = torch.rand(b, generator=g) * 900
            ctx = torch.randn(b, 77, 32, generator=g)
            assert rel(loaded["unet"](x, t, ctx), eager["unet"](x, t, ctx)) <= 1e-4
            pos = torch.tensor([2, 6, 7])
            wgt = torch.rand(b, 3, h, w, generator=g)
            got = loaded["unet"].forward_localized(x, t, ctx, pos, wgt)
            want = eager["unet"].forward_localized(x, t, ctx, pos, wgt)
            assert rel(got[0], want[0]) <= 1e-4 and rel(got[1], want[1]) <= 1e-4
            z = torch.randn(b, 4, h, w, generator=g)
            img = loaded["vae_decoder"](z)
            assert img.shape == (b, 3, 8 * h, 8 * w)
            assert rel(img, eager["vae_decoder"](z)) <= 1e-4


def test_float64_matches_eager(loaded, eager):
    """After .double() the traced modules compute in float64 (no float32 constant or cast left)."""
    g = torch.Generator().manual_seed(12)
    tol = 1e-10
    with torch.no_grad():
        td = {k: v.double() for k, v in loaded.items()}
        ed = {k: v.double() for k, v in eager.items()}
        try:
            ids = torch.randint(0, 49408, (2, 77), generator=g)
            out = td["text_encoder"](ids)
            assert out.dtype == torch.float64 and rel(out, ed["text_encoder"](ids)) <= tol
            px = torch.randint(0, 256, (2, 224, 224, 3), generator=g, dtype=torch.uint8)
            out = td["image_encoder"](px)
            assert out.dtype == torch.float64 and rel(out, ed["image_encoder"](px)) <= tol
            text = torch.randn(2, 77, 32, generator=g, dtype=torch.float64)
            obj = torch.randn(2, 32, generator=g, dtype=torch.float64)
            pos = torch.tensor([3, 4])
            out = td["postfuse"](text, obj, pos)
            assert out.dtype == torch.float64 and rel(out, ed["postfuse"](text, obj, pos)) <= tol
            x = torch.randn(2, 4, 8, 12, generator=g, dtype=torch.float64)
            t = torch.tensor([10.0, 500.0])
            ctx = torch.randn(2, 77, 32, generator=g, dtype=torch.float64)
            out = td["unet"](x, t, ctx)
            assert out.dtype == torch.float64 and rel(out, ed["unet"](x, t, ctx)) <= tol
            out = td["vae_decoder"](x)
            assert out.dtype == torch.float64 and rel(out, ed["vae_decoder"](x)) <= tol
        finally:
            for v in list(loaded.values()) + list(eager.values()):
                v.float()


# ------------------------------------------------------------- bad checkpoints


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_malicious_pickle_is_refused(tiny_a, tmp_path, fmt):
    marker = tmp_path / "pwned"
    bad = tmp_path / "pytorch_model.bin"
    payload = {"unet.conv_in.weight": _Evil(marker)}
    if fmt == "zip":
        torch.save(payload, bad)
    else:
        with open(bad, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    out = tmp_path / "model"
    proc = run_cli(*release_args(tiny_a, bad), "--out", str(out))
    assert proc.returncode == 1
    assert not marker.exists(), "the checkpoint's pickle ran code"
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "refused" in err and "Nothing from it was executed" in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _modified_checkpoint(tiny_a: Path, tmp_path: Path, edit) -> Path:
    sd = torch.load(tiny_a / "release" / "fastcomposer" / "pytorch_model.bin", map_location="cpu", weights_only=True)
    edit(sd)
    path = tmp_path / "pytorch_model.bin"
    torch.save(sd, path)
    return path


def _export_in_process(tiny_a, checkpoint, out, capsys):
    code = cli.main([*release_args(tiny_a, checkpoint), "--out", str(out)])
    return code, capsys.readouterr()


def test_missing_unet_key_is_named(tiny_a, tmp_path, capsys):
    key = "unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    path = _modified_checkpoint(tiny_a, tmp_path, lambda sd: sd.pop(key))
    code, cap = _export_in_process(tiny_a, path, tmp_path / "model", capsys)
    assert code == 1
    assert key in cap.err and "missing" in cap.err
    assert len(cap.err.strip().splitlines()) == 1
    assert not (tmp_path / "model").exists()


def test_unknown_keys_are_named(tiny_a, tmp_path, capsys):
    def edit(sd):
        sd["controlnet.zero_conv.weight"] = torch.zeros(3)

    path = _modified_checkpoint(tiny_a, tmp_path, edit)
    code, cap = _export_in_process(tiny_a, path, tmp_path / "model", capsys)
    assert code == 1 and "controlnet.zero_conv.weight" in cap.err and "unknown" in cap.err

    def edit2(sd):
        sd["unet.mid_block.extra.weight"] = torch.zeros(3)

    path = _modified_checkpoint(tiny_a, tmp_path, edit2)
    code, cap = _export_in_process(tiny_a, path, tmp_path / "model", capsys)
    assert code == 1 and "unet.mid_block.extra.weight" in cap.err


def test_shape_mismatch_is_named(tiny_a, tmp_path, capsys):
    key = "postfuse_module.mlp2.fc1.weight"

    def edit(sd):
        sd[key] = torch.zeros(7, 32)

    path = _modified_checkpoint(tiny_a, tmp_path, edit)
    code, cap = _export_in_process(tiny_a, path, tmp_path / "model", capsys)
    assert code == 1 and key in cap.err and "(7, 32)" in cap.err


def test_missing_files_are_one_line_errors(tiny_a, tmp_path):
    proc = run_cli(*release_args(tiny_a, tmp_path / "nope.bin"), "--out", str(tmp_path / "m"))
    assert proc.returncode == 1 and "not found" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("--out", str(tmp_path / "m"))
    assert proc.returncode == 1 and "--checkpoint" in proc.stderr


def test_refuses_to_replace_unrelated_folder(tiny_a, tmp_path, capsys):
    out = tmp_path / "stuff"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = cli.main(["--tiny", "--out", str(out)])
    assert code == 1 and "refusing" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


# -------------------------------------------------------------------- presets


def test_tiny_release_is_deterministic_and_keyed_like_a_release(tiny_a):
    base, clip_dir = tiny.preset_dirs("tiny")
    configs = cli.Configs(base, clip_dir)
    a = tiny.release_state_dict(configs.factories(), configs.latent_channels, seed=0)
    b = tiny.release_state_dict(configs.factories(), configs.latent_channels, seed=0)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    real = torch.load(tiny_a / "release" / "fastcomposer" / "pytorch_model.bin", map_location="cpu", weights_only=True, mmap=True)

    # same keys as the tiny-a release (old VAE names, position_ids), apart from the VAE encoder
    # side, of which the preset carries only a sample
    def dec(keys):
        return {k for k in keys if not k.startswith(("vae.encoder.", "vae.quant_conv."))}

    assert dec(a) == dec(real)
    assert all(a[k].shape == real[k].shape for k in dec(a))
    assert "vae.decoder.mid_block.attentions.0.query.weight" in a


def test_tiny_preset_export(tmp_path):
    out = tmp_path / "tiny"
    proc = run_cli("--tiny", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "model.json").read_text())
    assert m["source"]["preset"] == "tiny" and m["textHiddenSize"] == 32
    base, clip_dir = tiny.preset_dirs("tiny")
    assert m["configs"] == cli.Configs(base, clip_dir).raw
    te = torch.jit.load(str(out / "text_encoder.pt"))
    assert te(torch.zeros(2, 77, dtype=torch.int64)).shape == (2, 77, 32)
    tok = json.loads((out / "tokenizer.json").read_text())
    assert any(t["content"] == "<|image|>" for t in tok["added_tokens"])


def test_key_normalization():
    sd = {
        "vae.decoder.mid_block.attentions.0.query.weight": torch.zeros(1),
        "vae.decoder.mid_block.attentions.0.proj_attn.bias": torch.zeros(1),
        "vae.decoder.mid_block.attentions.0.group_norm.weight": torch.zeros(1),
        "vae.encoder.mid_block.attentions.0.key.weight": torch.zeros(1),
        "vae.quant_conv.weight": torch.zeros(1),
        "vae.post_quant_conv.weight": torch.zeros(1),
        "text_encoder.embeddings.position_ids": torch.zeros(1),
        "image_encoder.vision_model.embeddings.position_ids": torch.zeros(1),
        "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight": torch.zeros(1),
    }
    ck.normalize_keys(sd)
    assert sorted(sd) == sorted(
        [
            "vae.decoder.mid_block.attentions.0.to_q.weight",
            "vae.decoder.mid_block.attentions.0.to_out.0.bias",
            "vae.decoder.mid_block.attentions.0.group_norm.weight",
            "vae.post_quant_conv.weight",
            "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight",
        ]
    )
    unknown = []
    parts = ck.split_checkpoint(sd, unknown)
    assert not unknown and not sd
    assert "post_quant_conv.weight" in parts["vae"]


def test_source_json_is_checked():
    # `npx fastcomposer pull` records where the files came from (hf://repo@commit) this way.
    assert cli._source_json(None) is None
    assert cli._source_json('{"base": "hf://a/b@c", "preset": null}') == {"base": "hf://a/b@c", "preset": None}
    for bad in ("not json", "[1]", '{"base": 1}'):
        with pytest.raises(cli.ExportError, match="--source-json"):
            cli._source_json(bad)
