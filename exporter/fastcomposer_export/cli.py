"""``python -m fastcomposer_export``: a FastComposer release -> a model directory.

    python -m fastcomposer_export --checkpoint fastcomposer/pytorch_model.bin \\
        --base stable-diffusion-v1-5 --image-encoder clip-vit-large-patch14 --out model
    python -m fastcomposer_export --tiny --out model-tiny
    python -m fastcomposer_export --preset sd15-random --out model-sd15-random

Progress goes to stdout as one JSON object per line::

    {"status": "plan", "stages": ["load", "text_encoder", ...]}
    {"stage": "unet", "status": "start"}
    {"stage": "unet", "status": "done", "seconds": 1.2, "maxRelativeError": 0.0}
    {"status": "done", "out": "/abs/model", "seconds": 9.8}

On failure: exit code 1 and one message on stderr (a traceback too with FASTCOMPOSER_DEBUG=1).
The model directory is written under a temporary name next to ``--out`` and renamed at the
end, so ``--out`` is either the complete export or untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from . import checkpoint as ck
from . import clip as clip_mod
from . import manifest as mf
from . import trace as tr
from .postfuse import Postfuse
from .quiet import quiet_nnpack

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# model.json "configs" keys, in the order of the modules
CONFIG_KEYS = ("textEncoder", "imageEncoder", "unet", "vae")
STAGES = ["load", "text_encoder", "image_encoder", "postfuse", "unet", "vae_decoder", "tokenizer", "manifest"]


class ExportError(Exception):
    """An expected failure: bad arguments, files, configs. Reported as one line."""


# ----------------------------------------------------------------- progress


class Progress:
    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.stage: Optional[str] = None
        self._t0 = 0.0

    def emit(self, **fields: Any) -> None:
        self.stream.write(json.dumps(fields) + "\n")
        self.stream.flush()

    def start(self, stage: str) -> None:
        self.stage = stage
        self._t0 = time.perf_counter()
        self.emit(stage=stage, status="start")

    def done(self, **extra: Any) -> None:
        self.emit(stage=self.stage, status="done", seconds=round(time.perf_counter() - self._t0, 3), **extra)


# ----------------------------------------------------------- module factories


def _read_json(path: Path, what: str) -> Dict[str, Any]:
    if not path.is_file():
        raise ExportError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ExportError(f"{what} is not valid JSON: {path}: {e}") from e


def make_unet(cfg: Dict[str, Any]) -> nn.Module:
    from . import unet as unet_mod

    return unet_mod.UNet.from_config(cfg)


def make_vae_decoder(cfg: Dict[str, Any]) -> nn.Module:
    from . import vae as vae_mod

    return vae_mod.VAEDecoder.from_config(cfg)


class Configs:
    """The four model configs of a release, read from the SD folder and the CLIP folder.

    ``raw`` holds them as read, keyed like model.json's ``configs`` (textEncoder, imageEncoder,
    unet, vae); ``Configs.from_dicts(raw)`` rebuilds the same object from that field alone.
    """

    def __init__(self, base: Path, image_encoder: Path) -> None:
        self.base = base
        self.image_encoder = image_encoder
        if not base.is_dir():
            raise ExportError(f"--base is not a folder: {base}")
        if not image_encoder.is_dir():
            raise ExportError(f"--image-encoder is not a folder: {image_encoder}")
        self.scheduler_path: Optional[Path] = base / "scheduler" / "scheduler_config.json"
        self.tokenizer_dir: Optional[Path] = base / "tokenizer"
        self._set(
            {
                "textEncoder": _read_json(base / "text_encoder" / "config.json", "text encoder config"),
                "imageEncoder": _read_json(image_encoder / "config.json", "image encoder config"),
                "unet": _read_json(base / "unet" / "config.json", "UNet config"),
                "vae": _read_json(base / "vae" / "config.json", "VAE config"),
            }
        )

    @classmethod
    def from_dicts(cls, raw: Dict[str, Dict[str, Any]]) -> "Configs":
        """From model.json's ``configs`` (no folders: no scheduler or tokenizer files)."""
        missing = [k for k in CONFIG_KEYS if not isinstance(raw.get(k), dict)]
        if missing:
            raise ExportError(f"configs lack {', '.join(missing)}")
        self = cls.__new__(cls)
        self.base = self.image_encoder = None
        self.scheduler_path = self.tokenizer_dir = None
        self._set(raw)
        return self

    def _set(self, raw: Dict[str, Dict[str, Any]]) -> None:
        self.raw = {k: raw[k] for k in CONFIG_KEYS}
        self.text = clip_mod.text_config(raw["textEncoder"])
        self.clip = clip_mod.image_config(raw["imageEncoder"])
        self.unet = raw["unet"]
        self.vae = raw["vae"]
        self.text_dim = int(self.text["hidden_size"])
        self.object_dim = int(self.clip.get("projection_dim", self.clip["vision_config"].get("projection_dim", 0)))
        if self.object_dim != self.text_dim:
            raise ExportError(
                f"image encoder projection_dim ({self.object_dim}) differs from the text encoder's "
                f"hidden_size ({self.text_dim}); FastComposer needs them equal"
            )
        ctx = self.unet.get("cross_attention_dim")
        if ctx is not None and int(ctx) != self.text_dim:
            raise ExportError(f"UNet cross_attention_dim ({ctx}) differs from the text encoder's hidden_size ({self.text_dim})")

    def factories(self) -> Dict[str, Callable[[], nn.Module]]:
        """Checkpoint prefix (without the dot) -> module builder."""
        return {
            "text_encoder": lambda: clip_mod.CLIPTextTower(self.text),
            "image_encoder": lambda: clip_mod.CLIPImageEncoder(self.clip),
            "postfuse_module": lambda: Postfuse(self.text_dim),
            "unet": lambda: make_unet(self.unet),
            "vae": lambda: make_vae_decoder(self.vae),
        }

    @property
    def latent_channels(self) -> int:
        return int(self.vae.get("latent_channels", 4))

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.get("block_out_channels", [128, 256, 512, 512])) - 1)

    @property
    def latent_scale(self) -> float:
        return float(self.vae.get("scaling_factor", 0.18215))


# ---------------------------------------------------------------- weights


class Weights:
    """Where each module's weights come from: a checkpoint's parts, or a random generator."""

    def __init__(
        self,
        parts: Optional[Dict[str, Dict[str, torch.Tensor]]] = None,
        generate: Optional[Callable[[str], Dict[str, torch.Tensor]]] = None,
    ) -> None:
        self.parts = parts
        self.generate = generate

    def take(self, name: str) -> Dict[str, torch.Tensor]:
        if self.parts is not None:
            return self.parts.pop(name, {})
        assert self.generate is not None
        return self.generate(name)


def weights_from_state_dict(sd: Dict[str, torch.Tensor], configs: Configs) -> Weights:
    """Released key layout -> per-module parts, all checks done before any tracing."""
    ck.normalize_keys(sd)
    unknown: List[str] = []
    parts = ck.split_checkpoint(sd, unknown)
    ck.check_all(configs.factories(), parts, unknown)
    return Weights(parts=parts)


# ----------------------------------------------------------------- export


@contextlib.contextmanager
def _sigint_ignored():
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals go elsewhere
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _prepare_out(out: Path) -> Path:
    out = out.resolve()
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"--out exists and is not a folder: {out}")
        if any(out.iterdir()) and not (out / mf.MANIFEST_FILE).exists():
            raise ExportError(f"--out is a folder that is not empty and holds no model.json; refusing to replace it: {out}")
    if not out.parent.is_dir():
        raise ExportError(f"the folder for --out does not exist: {out.parent}")
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def _finish_out(tmp: Path, out: Path) -> None:
    out = out.resolve()
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _stage_module(
    progress: Progress,
    stage: str,
    prefix: str,
    factory: Callable[[], nn.Module],
    weights: Weights,
    inputs: Any,
    path: Path,
    dtype: torch.dtype,
    tol: float,
) -> None:
    progress.start(stage)
    module = ck.build_and_load(factory, weights.take(prefix), prefix + ".")
    examples, checks = inputs
    traced, report = tr.trace_module(module, examples, checks, tol=tol)
    del module
    tr.save(traced, path, dtype)
    del traced
    gc.collect()
    extra: Dict[str, Any] = {"maxRelativeError": report["maxRelativeError"]}
    if report["warnings"]:
        extra["warnings"] = report["warnings"][:5]
    progress.done(**extra)


def export(
    configs: Configs,
    load_weights: Callable[[], Weights],
    out: Path,
    *,
    name: str,
    source: Dict[str, Optional[str]],
    dtype: torch.dtype = torch.float32,
    progress: Optional[Progress] = None,
    tol: float = 1e-4,
) -> Path:
    """Write the model directory ``out``. ``load_weights`` runs as the "load" stage."""
    progress = progress or Progress()
    out = Path(out)
    t0 = time.perf_counter()
    tmp = _prepare_out(out)
    try:
        progress.emit(status="plan", stages=STAGES)
        progress.start("load")
        weights = load_weights()
        progress.done()

        f = configs.factories()
        vocab = int(configs.text["vocab_size"])
        length = int(configs.text.get("max_position_embeddings", 77))
        image_size = int(configs.clip["vision_config"]["image_size"])
        steps = [
            ("text_encoder", "text_encoder", tr.text_encoder_inputs(vocab, length)),
            ("image_encoder", "image_encoder", tr.image_encoder_inputs(image_size)),
            ("postfuse", "postfuse_module", tr.postfuse_inputs(configs.text_dim, length)),
            ("unet", "unet", tr.unet_inputs(int(configs.unet.get("in_channels", 4)), configs.text_dim, True, length)),
            ("vae_decoder", "vae", tr.vae_decoder_inputs(configs.latent_channels)),
        ]
        for stage, prefix, inputs in steps:
            _stage_module(progress, stage, prefix, f[prefix], weights, inputs, tmp / mf.FILES[stage], dtype, tol)
        del weights
        gc.collect()

        progress.start("tokenizer")
        if configs.scheduler_path is None or not configs.scheduler_path.is_file():
            raise ExportError(f"scheduler config not found: {configs.scheduler_path}")
        shutil.copyfile(configs.scheduler_path, tmp / mf.SCHEDULER_FILE)
        if configs.tokenizer_dir is None or not (configs.tokenizer_dir / "vocab.json").is_file():
            raise ExportError(f"tokenizer files not found (vocab.json, merges.txt): {configs.tokenizer_dir}")
        from . import tokenizer as tok_mod

        tok_mod.write_tokenizer_json(configs.tokenizer_dir, tmp / mf.TOKENIZER_FILE)
        progress.done()

        progress.start("manifest")
        manifest = mf.build_manifest(
            name=name,
            source=source,
            max_length=length,
            text_hidden_size=configs.text_dim,
            object_embed_size=configs.object_dim,
            latent_channels=configs.latent_channels,
            vae_scale_factor=configs.vae_scale_factor,
            latent_scale=configs.latent_scale,
            image_size=image_size,
            configs=configs.raw,
            weights_dtype=[k for k, v in DTYPES.items() if v == dtype][0],
            files=mf.file_records(tmp),
            extra={"exporter": {"torch": torch.__version__}},
        )
        mf.write_manifest(manifest, tmp)
        progress.done()
        _finish_out(tmp, out)
    except BaseException:
        # Ctrl-C reaches the exporter twice when it runs under `fastcomposer pull` (from the
        # terminal, and from pull stopping it): the second must not cut the clean-up short.
        with _sigint_ignored():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = out.resolve()
    progress.emit(status="done", out=str(final), seconds=round(time.perf_counter() - t0, 3))
    return final


# ------------------------------------------------------------- entry points


def export_checkpoint(
    checkpoint: Path,
    base: Path,
    image_encoder: Path,
    out: Path,
    *,
    name: Optional[str] = None,
    dtype: torch.dtype = torch.float32,
    progress: Optional[Progress] = None,
    source: Optional[Dict[str, Optional[str]]] = None,
) -> Path:
    """``source`` replaces the local paths model.json records (a download names where the
    files came from rather than the cache paths they were read at)."""
    configs = Configs(Path(base), Path(image_encoder))

    def load() -> Weights:
        return weights_from_state_dict(ck.load_checkpoint(checkpoint), configs)

    if source is None:
        source = {
            "checkpoint": str(Path(checkpoint).resolve()),
            "base": str(Path(base).resolve()),
            "imageEncoder": str(Path(image_encoder).resolve()),
        }
    return export(configs, load, out, name=name or Path(out).name, source=source, dtype=dtype, progress=progress)


def export_preset(
    preset: str,
    out: Path,
    *,
    seed: int = 0,
    name: Optional[str] = None,
    dtype: torch.dtype = torch.float32,
    progress: Optional[Progress] = None,
) -> Path:
    from . import tiny

    base, clip_dir = tiny.preset_dirs(preset)
    configs = Configs(base, clip_dir)
    configs.tokenizer_dir = tiny.TOKENIZER_DIR
    source = {"checkpoint": None, "base": None, "imageEncoder": None, "preset": preset, "seed": seed}

    if preset == "tiny":

        def load() -> Weights:
            sd = tiny.release_state_dict(configs.factories(), configs.latent_channels, seed)
            return weights_from_state_dict(sd, configs)
    else:
        factories = configs.factories()
        order = list(factories)

        def generate(prefix: str) -> Dict[str, torch.Tensor]:
            module = tiny.random_module(factories[prefix], seed + 10 * order.index(prefix), perturb=False)
            return dict(module.state_dict())

        def load() -> Weights:
            return Weights(generate=generate)

    return export(configs, load, out, name=name or preset, source=source, dtype=dtype, progress=progress)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastcomposer_export",
        description="Export a FastComposer release to a TorchScript model directory.",
    )
    p.add_argument("--checkpoint", type=Path, help="the release's pytorch_model.bin")
    p.add_argument("--base", type=Path, help="Stable Diffusion 1.5 folder (diffusers layout)")
    p.add_argument("--image-encoder", type=Path, help="CLIP folder with config.json (vision_config, projection_dim)")
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    p.add_argument("--tiny", action="store_true", help="same as --preset tiny")
    p.add_argument("--preset", choices=["tiny", "sd15-random"], help="a random model instead of a checkpoint")
    p.add_argument("--seed", type=int, default=0, help="seed of a random preset")
    p.add_argument("--name", help="model name written to model.json")
    p.add_argument("--source-json", help="JSON object of strings recorded as model.json's source instead of the input paths")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32", help="dtype of the saved weights")
    p.add_argument("--threads", type=int, help="CPU threads for tracing (default: torch's; 1 for --tiny)")
    return p


def _source_json(text: Optional[str]) -> Optional[Dict[str, Optional[str]]]:
    if text is None:
        return None
    try:
        source = json.loads(text)
    except ValueError as e:
        raise ExportError(f"--source-json is not valid JSON: {e}") from e
    if not isinstance(source, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in source.items()):
        raise ExportError("--source-json must be a JSON object of strings")
    return source


def main(argv: Optional[List[str]] = None) -> int:
    debug = os.environ.get("FASTCOMPOSER_DEBUG") == "1"
    args = _parser().parse_args(argv)
    if not debug:
        warnings.simplefilter("ignore")
    quiet_nnpack()
    try:
        preset = "tiny" if args.tiny else args.preset
        if args.tiny and args.preset and args.preset != "tiny":
            raise ExportError("--tiny and --preset conflict")
        dtype = DTYPES[args.dtype]
        threads = args.threads if args.threads else (1 if preset == "tiny" else None)
        if threads:
            # small models gain nothing from threads, and lose a lot on a busy machine
            torch.set_num_threads(threads)
        if preset:
            if args.checkpoint or args.base or args.image_encoder:
                raise ExportError("a preset takes no --checkpoint, --base or --image-encoder")
            export_preset(preset, args.out, seed=args.seed, name=args.name, dtype=dtype)
        else:
            missing = [
                o
                for o, v in (("--checkpoint", args.checkpoint), ("--base", args.base), ("--image-encoder", args.image_encoder))
                if v is None
            ]
            if missing:
                raise ExportError(f"missing {', '.join(missing)} (or use --tiny / --preset)")
            export_checkpoint(
                args.checkpoint, args.base, args.image_encoder, args.out, name=args.name, dtype=dtype, source=_source_json(args.source_json)
            )
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("fastcomposer export: interrupted\n")
        return 1
    except Exception as e:  # one line for the user; the traceback only when debugging
        if debug:
            import traceback

            traceback.print_exc()
        expected = (ExportError, ck.CheckpointError, tr.TraceError, ValueError, OSError)
        msg = str(e).strip() or type(e).__name__
        if not isinstance(e, expected):
            msg = f"{type(e).__name__}: {msg}"
        if isinstance(e, MemoryError):
            msg = "out of memory while exporting"
        sys.stderr.write(f"fastcomposer export failed: {msg}\n")
        sys.stderr.flush()
        return 1
