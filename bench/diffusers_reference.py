#!/usr/bin/env python3
"""The diffusers baseline: what the released FastComposer pipeline runs, built from a release folder
with diffusers and transformers, timed by stage.

    PYTHONPATH=path/to/diffusers/src python-with-diffusers bench/diffusers_reference.py \
        --release test/fixtures/tiny-a/release --steps 20 --width 128 --height 96 --json

Optional: it needs a Python with diffusers and transformers (not the project's .venv). It imports
no project code, so it checks the exporter and native pipeline against an independent build.

A release folder is laid out like test/fixtures/tiny-a/release: sd/ (a Stable Diffusion 1.5 folder
in diffusers layout; only its configs are read, the checkpoint carries every weight), clip/config.json
(the image encoder's CLIP config) and fastcomposer/pytorch_model.bin. The checkpoint's quirks are
handled on load: VAE attention weights under the pre-0.17 diffusers names (query/key/value/
proj_attn), text encoder keys without the `text_model.` level, and position_ids buffers that
current transformers no longer stores.

--model DIR instead builds the same modules from an exported model directory: the configs model.json
records and the weights of its TorchScript files (their state dicts keep the release's module
names; read with torch.jit.load, no project code). That is how the full-size bench compares the
released pipeline with Node on one random SD1.5 export. The VAE encoder is not in a model directory
and is never run: it stays unloaded.

What one generation runs, in the released pipeline's order and granularity (StableDiffusionPipeline
encode_prompt plus FastComposer's augmented prompt and delayed subject conditioning):
  encoders  text encoder on the text-only prompt, then on the negative prompt (two batch-1 calls);
            CLIP vision tower + projection on the subjects; text encoder on the prompt ids (a third
            batch-1 call); the postfuse MLP at the subject-token positions
  denoise   per scheduler timestep i: cat([x, x]), scale_model_input, embeddings cat([negative,
            text-only]) while i <= (1 - alpha) * steps else cat([negative, augmented]), UNet on the
            batch of 2, eps = u + guidance * (c - u), PNDMScheduler.step
  decode    AutoencoderKL.decode(latents / scaling_factor), (x / 2 + 0.5).clamp(0, 1), to a uint8
            HWC array
The initial noise is torch.randn from a CPU generator seeded with --seed, times init_noise_sigma.
Not included: the release's safety checker (a release folder has none), tqdm progress bars, PIL
conversion and subject image preprocessing (the job's pixels are already 224x224).

Inputs: --job FILE, the JSON bench/cpu.mjs writes (inputIds, textOnlyIds, negativeIds,
subjectPositions, pixels = path of raw uint8 [S,224,224,3]; optionally prompt / negativePrompt,
which are then tokenized inside the timed run as the release does and checked against the ids),
or synthetic ids and seeded random subject pixels.

--serve: load once, print {"type":"ready"}, then one timed generation per "run" line on stdin (one
JSON line each) until "quit" or EOF (bench/baseline_common.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from baseline_common import (
    BenchError,
    Inputs,
    add_run_arguments,
    check_run_arguments,
    emit,
    load_job,
    print_summary,
    run_main,
    serve,
    summarize,
    synthetic_inputs,
    timed_run,
)
from torch import nn

try:
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPConfig, CLIPTextConfig, CLIPTextModel, CLIPVisionModelWithProjection
except ImportError as e:  # an optional baseline: say what is missing, plainly
    sys.stderr.write(
        f"diffusers_reference: {e}\nThis baseline needs diffusers and transformers, e.g. "
        "PYTHONPATH=path/to/diffusers/src python-with-diffusers bench/diffusers_reference.py ...\n"
    )
    sys.exit(2)

IMAGE_TOKEN = "<|image|>"
# OpenAI CLIP's pixel statistics, which the release normalises subjects with.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ------------------------------------------------------------------------ the postfuse MLP


class _Block(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear, optionally plus its input (checkpoint names kept)."""

    def __init__(self, dim_in: int, dim_out: int, dim_hidden: int, residual: bool) -> None:
        super().__init__()
        self.layernorm = nn.LayerNorm(dim_in)
        self.fc1 = nn.Linear(dim_in, dim_hidden)
        self.fc2 = nn.Linear(dim_hidden, dim_out)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc2(nn.functional.gelu(self.fc1(self.layernorm(x))))
        return y + x if self.residual else y


class Postfuse(nn.Module):
    """Replaces each subject token's embedding t (with its image embedding o) by
    LN(block2(block1([t, o]) + t)); other tokens pass through."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp1 = _Block(2 * dim, dim, dim, residual=False)
        self.mlp2 = _Block(dim, dim, dim, residual=True)
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, text: torch.Tensor, objects: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        # text [1,L,D]; objects [S,D]; positions [S] ascending, subject k at positions[k]
        out = text.clone()
        tokens = text[0, positions]
        fused = self.mlp1(torch.cat([tokens, objects.to(text.dtype)], -1)) + tokens
        out[0, positions] = self.layer_norm(self.mlp2(fused))
        return out


# ------------------------------------------------------------------------------ loading


def _split(state: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    n = len(prefix)
    return {k[n:]: v for k, v in state.items() if k.startswith(prefix)}


def _load(module: nn.Module, state: Dict[str, torch.Tensor], what: str, unused: tuple = ()) -> None:
    """Strict load, except for stored buffers the current module keeps non-persistent (position_ids)
    and parameters under the `unused` prefixes (never run: left as built). The tensors are assigned,
    not copied, so a module built on the meta device costs no memory until then."""
    own = module.state_dict().keys()
    buffers = {name for name, _ in module.named_buffers()}
    stale = [k for k in state if k not in own and (k in buffers or k.endswith("position_ids"))]
    for k in stale:
        del state[k]
    missing, unexpected = module.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not k.startswith(unused)]
    if missing or unexpected:
        raise BenchError(f"{what}: checkpoint does not fit (missing {missing[:5]}, unexpected {unexpected[:5]})")


def _vae_keys(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Renames diffusers<0.17 VAE attention weights to the current Attention module's names."""
    renamed = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}
    out = {}
    for k, v in state.items():
        if ".attentions." in k:
            for old, new in renamed.items():
                if old in k:
                    k = k.replace(old, new)
                    break
        out[k] = v
    return out


def _read_json(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


class Release:
    """The released pipeline's modules and scheduler, float32 on the CPU, from four configs (keyed
    unet, vae, textEncoder, imageEncoder), a state dict in the release checkpoint's key layout and a
    scheduler config. Built by `from_release_folder` or `from_model_dir`."""

    def __init__(
        self,
        configs: Dict[str, Dict[str, Any]],
        state: Dict[str, torch.Tensor],
        scheduler_config: Dict[str, Any],
        tokenizer_dir: Optional[Path] = None,
        vae_decoder_only: bool = False,
    ) -> None:
        # UNet and VAE built on the meta device: their tensors come from `state` (no random init).
        with torch.device("meta"):
            self.unet = UNet2DConditionModel.from_config(configs["unet"])
            self.vae = AutoencoderKL.from_config(configs["vae"])
        _load(self.unet, _split(state, "unet."), "unet")
        # A model directory holds the VAE decoder only; the encoder is never run here.
        _load(self.vae, _vae_keys(_split(state, "vae.")), "vae", ("encoder.", "quant_conv.") if vae_decoder_only else ())

        self.text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(configs["textEncoder"]))
        # The checkpoint has no `text_model.` level; transformers 4.x's CLIPTextModel has one, 5.x not.
        nested = any(k.startswith("text_model.") for k in self.text_encoder.state_dict())
        text_state = {}
        for k, v in _split(state, "text_encoder.").items():
            k = k[len("text_model.") :] if k.startswith("text_model.") else k
            text_state[("text_model." + k) if nested else k] = v
        _load(self.text_encoder, text_state, "text_encoder")

        clip_cfg = CLIPConfig.from_dict(configs["imageEncoder"])
        vision_cfg = clip_cfg.vision_config
        vision_cfg.projection_dim = clip_cfg.projection_dim
        self.image_encoder = CLIPVisionModelWithProjection(vision_cfg)
        _load(self.image_encoder, _split(state, "image_encoder."), "image_encoder")
        self.image_size = int(vision_cfg.image_size)

        self.postfuse = Postfuse(self.text_encoder.config.hidden_size)
        _load(self.postfuse, _split(state, "postfuse_module."), "postfuse_module")

        for m in (self.unet, self.vae, self.text_encoder, self.image_encoder, self.postfuse):
            m.eval().requires_grad_(False)
        self.scheduler = PNDMScheduler.from_config(scheduler_config)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)

        self.tokenizer = self.special_tokenizer = None
        if tokenizer_dir is not None and (tokenizer_dir / "vocab.json").is_file():
            try:
                from transformers import CLIPTokenizer

                self.tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
                self.special_tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
                self.special_tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
                self.image_token_id = self.special_tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
            except Exception as e:  # tokenizing is a cross-check, not needed for the timing
                sys.stderr.write(f"diffusers_reference: no tokenizer ({e}); using the job's ids\n")
                self.tokenizer = self.special_tokenizer = None

    @classmethod
    def from_release_folder(cls, release: Path, sd: Optional[Path], clip: Optional[Path], checkpoint: Optional[Path]) -> "Release":
        sd = sd or release / "sd"
        clip = clip or release / "clip"
        checkpoint = checkpoint or release / "fastcomposer" / "pytorch_model.bin"
        for p in (
            sd / "unet" / "config.json",
            sd / "vae" / "config.json",
            sd / "text_encoder" / "config.json",
            sd / "scheduler" / "scheduler_config.json",
            clip / "config.json",
            checkpoint,
        ):
            if not p.is_file():
                raise BenchError(f"not a FastComposer release folder: {p} is missing")
        configs = {
            "unet": _read_json(sd / "unet" / "config.json"),
            "vae": _read_json(sd / "vae" / "config.json"),
            "textEncoder": _read_json(sd / "text_encoder" / "config.json"),
            "imageEncoder": _read_json(clip / "config.json"),
        }
        state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
        return cls(configs, state, _read_json(sd / "scheduler" / "scheduler_config.json"), sd / "tokenizer")

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> "Release":
        """The same weights as an exported model directory: its TorchScript files' state dicts (the
        module names are the release's) and the configs model.json records. Read with torch only."""
        manifest_path = model_dir / "model.json"
        if not manifest_path.is_file():
            raise BenchError(f"not a model directory (no model.json): {model_dir}")
        manifest = _read_json(manifest_path)
        configs = manifest.get("configs")
        if not isinstance(configs, dict) or not all(k in configs for k in ("unet", "vae", "textEncoder", "imageEncoder")):
            raise BenchError(f"{manifest_path} records no module configs (re-export it)")
        prefixes = {
            "unet": "unet.",
            "vae_decoder": "vae.",
            "text_encoder": "text_encoder.",
            "image_encoder": "image_encoder.",
            "postfuse": "postfuse_module.",
        }
        state: Dict[str, torch.Tensor] = {}
        for name, prefix in prefixes.items():
            file = (manifest.get("modules", {}).get(name) or {}).get("file") or f"{name}.pt"
            module = torch.jit.load(str(model_dir / file), map_location="cpu")
            params = {k for k, _ in module.named_parameters()}
            # Buffers the traced module computed at export (not weights) are rebuilt by the modules here.
            state.update({prefix + k: v for k, v in module.state_dict().items() if k in params})
            del module
        scheduler = _read_json(model_dir / manifest.get("scheduler", "scheduler_config.json"))
        return cls(configs, state, scheduler, None, vae_decoder_only=True)


# ------------------------------------------------------------------------------- inputs


def tokenize_like_release(r: Release, prompt: str, negative: str) -> Dict[str, Any]:
    """The release's tokenization: plain CLIP ids (padded to 77 with the pad token, EOS for SD1.5)
    for the text-only and negative prompts; for the augmented prompt, the image token added as a
    special token, its occurrences dropped and the token before each one marked."""

    def plain(text: str) -> List[int]:
        return r.tokenizer(text, padding="max_length", max_length=r.tokenizer.model_max_length, truncation=True).input_ids

    ids = r.special_tokenizer.encode(prompt)
    kept: List[int] = []
    marks: List[int] = []
    for tok in ids:
        if tok == r.image_token_id:
            marks.append(len(kept) - 1)
        else:
            kept.append(tok)
    max_len = r.special_tokenizer.model_max_length
    kept = kept[:max_len] + [r.tokenizer.pad_token_id] * max(0, max_len - len(kept))
    return {
        "inputIds": kept,
        "subjectPositions": [m for m in marks if m < max_len],
        "textOnlyIds": plain(prompt.replace(IMAGE_TOKEN, "")),
        "negativeIds": plain(negative),
    }


# ----------------------------------------------------------------------------- pipeline


def generate(r: Release, inp: Inputs, *, steps: int, width: int, height: int, seed: int, guidance: float, alpha: float) -> Dict[str, Any]:
    clock = time.perf_counter
    token_check: Optional[Dict[str, bool]] = None
    with torch.no_grad():
        t_start = clock()
        if inp.prompt is not None and r.tokenizer is not None:
            tok = tokenize_like_release(r, inp.prompt, inp.negative_prompt or "")
            token_check = {
                "inputIds": tok["inputIds"] == inp.input_ids[0].tolist(),
                "textOnlyIds": tok["textOnlyIds"] == inp.text_only_ids[0].tolist(),
                "negativeIds": tok["negativeIds"] == inp.negative_ids[0].tolist(),
                "subjectPositions": tok["subjectPositions"] == inp.positions,
            }
        # The job's ids are used either way, so that the two pipelines see the same input.
        t_tok = clock()
        text_only = r.text_encoder(inp.text_only_ids)[0]
        negative = r.text_encoder(inp.negative_ids)[0]
        t_text = clock()
        objects = None
        if inp.positions:
            x = inp.pixels.permute(0, 3, 1, 2).to(torch.float32) / 255.0
            if x.shape[-1] != r.image_size or x.shape[-2] != r.image_size:
                x = nn.functional.interpolate(x, (r.image_size, r.image_size), mode="bilinear", antialias=True)
            objects = r.image_encoder(pixel_values=(x - r.mean) / r.std).image_embeds
        t_subjects = clock()
        augmented = r.text_encoder(inp.input_ids)[0]
        if inp.positions:
            augmented = r.postfuse(augmented, objects, torch.tensor(inp.positions, dtype=torch.int64))
        t_encoders = clock()

        sched = r.scheduler
        sched.set_timesteps(steps)
        h, w = height // r.vae_scale_factor, width // r.vae_scale_factor
        gen = torch.Generator("cpu").manual_seed(seed)
        latents = torch.randn((1, r.unet.config.in_channels, h, w), generator=gen, dtype=torch.float32)
        latents = latents * sched.init_noise_sigma
        text_only_until = (1 - alpha) * steps
        step_s: List[float] = []
        unet_s: List[float] = []
        for i, t in enumerate(sched.timesteps):
            s0 = clock()
            model_in = sched.scale_model_input(torch.cat([latents, latents]), t)
            cond = text_only if i <= text_only_until else augmented
            embeds = torch.cat([negative, cond])
            eps = r.unet(model_in, t, encoder_hidden_states=embeds).sample
            s1 = clock()
            uncond, text = eps.chunk(2)
            eps = uncond + guidance * (text - uncond)
            latents = sched.step(eps, t, latents).prev_sample
            s2 = clock()
            unet_s.append(s1 - s0)
            step_s.append(s2 - s0)
        t_denoise = clock()
        image = r.vae.decode(latents / r.vae.config.scaling_factor).sample
        image = (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().numpy()
        image = (image * 255).round().astype("uint8")
        t_end = clock()
    timings = {
        "tokenize": t_tok - t_start,
        "encodePrompt": (t_text - t_tok) + (t_encoders - t_subjects),
        "encodeSubjects": t_subjects - t_text,
        "encoders": t_encoders - t_tok,
        "denoise": t_denoise - t_encoders,
        "unetCalls": len(step_s),
        "meanStep": sum(step_s) / len(step_s),
        "meanUnet": sum(unet_s) / len(unet_s),
        "decode": t_end - t_denoise,
        "total": t_end - t_start,
    }
    return {"latents": latents, "image": image, "timings": timings, "extra": {"tokenizerMatches": token_check}}


# ---------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--release", type=Path, help="release folder (sd/, clip/, fastcomposer/)")
    source.add_argument("--model", type=Path, help="an exported model directory: its weights and configs")
    p.add_argument("--sd", type=Path, help="SD 1.5 folder (default RELEASE/sd)")
    p.add_argument("--clip", type=Path, help="CLIP config folder (default RELEASE/clip)")
    p.add_argument("--checkpoint", type=Path, help="default RELEASE/fastcomposer/pytorch_model.bin")
    p.add_argument("--device", default="cpu", help="cpu only (accepted for python_eager.py compatibility)")
    p.add_argument("--dtype", default="float32", help="float32 only (accepted for compatibility)")
    add_run_arguments(p)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.device != "cpu" or args.dtype != "float32":
        raise BenchError("this baseline runs float32 on the CPU only")
    check_run_arguments(args)
    t0 = time.perf_counter()
    if args.model:
        release = Release.from_model_dir(args.model)
    else:
        release = Release.from_release_folder(args.release, args.sd, args.clip, args.checkpoint)
    load_s = time.perf_counter() - t0
    inp = load_job(args.job, release.image_size) if args.job else synthetic_inputs(args.subjects, release.image_size, args.seed)
    settings = dict(steps=args.steps, width=args.width, height=args.height, seed=args.seed, guidance=args.guidance, alpha=args.alpha)
    import diffusers
    import transformers

    config = {
        "release": str((args.model or args.release).resolve()),
        "device": "cpu",
        "dtype": "float32",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "subjects": len(inp.positions),
        "steps": args.steps,
        "width": args.width,
        "height": args.height,
        "seed": args.seed,
        "guidance": args.guidance,
        "alpha": args.alpha,
    }

    def one_run(overrides: Optional[Dict[str, int]] = None) -> Dict[str, Any]:
        return timed_run(lambda: generate(release, inp, **{**settings, **(overrides or {})}), args.save_latents)

    if args.serve:
        return serve(load_s, config, one_run)
    for _ in range(args.warmup):
        generate(release, inp, **settings)
    runs = [one_run() for _ in range(args.runs)]
    result = summarize(runs, config, load_s)
    result["tokenizerMatches"] = runs[-1].get("tokenizerMatches")
    if args.json:
        emit(result)
    else:
        print_summary(
            f"{config['release']} (diffusers {config['diffusers']}, transformers {config['transformers']}, {config['threads']} threads)",
            result,
            args.width,
            args.height,
            args.steps,
        )
    return 0


if __name__ == "__main__":
    run_main(main, "diffusers_reference")
