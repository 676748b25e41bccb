"""model.json, the manifest that lib/ and native/ read (format "fastcomposer-model", version 1)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

FORMAT = "fastcomposer-model"
VERSION = 1
IMAGE_TOKEN = "<|image|>"
SUPERVISED_ATTENTION_LAYERS = ["down_blocks.1", "down_blocks.2", "mid_block", "up_blocks.1", "up_blocks.2"]

FILES = {
    "text_encoder": "text_encoder.pt",
    "image_encoder": "image_encoder.pt",
    "postfuse": "postfuse.pt",
    "unet": "unet.pt",
    "vae_decoder": "vae_decoder.pt",
}
TOKENIZER_FILE = "tokenizer.json"
SCHEDULER_FILE = "scheduler_config.json"
MANIFEST_FILE = "model.json"
# every file of a model directory but model.json itself
RECORDED_FILES = [*FILES.values(), TOKENIZER_FILE, SCHEDULER_FILE]


def _io(name: str, shape: List[Any], dtype: str) -> Dict[str, Any]:
    return {"name": name, "shape": shape, "dtype": dtype}


def build_manifest(
    *,
    name: str,
    source: Dict[str, Optional[str]],
    max_length: int,
    text_hidden_size: int,
    object_embed_size: int,
    latent_channels: int,
    vae_scale_factor: int,
    latent_scale: float,
    image_size: int,
    configs: Optional[Dict[str, Dict[str, Any]]] = None,
    weights_dtype: str = "float32",
    files: Optional[Dict[str, Dict[str, Any]]] = None,
    extra: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    L, D, E, C = max_length, text_hidden_size, object_embed_size, latent_channels
    f = vae_scale_factor
    unet_in = [
        _io("sample", ["B", C, "h", "w"], "float"),
        _io("timestep", ["B"], "float32"),
        _io("encoder_hidden_states", ["B", L, D], "float"),
    ]
    eps = _io("eps", ["B", C, "h", "w"], "float")
    manifest: Dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "source": source,
        "imageToken": IMAGE_TOKEN,
        "maxLength": L,
        "textHiddenSize": D,
        "objectEmbedSize": E,
        "latentChannels": C,
        "vaeScaleFactor": f,
        "latentScale": latent_scale,
        "imageSize": image_size,
        "weightsDtype": weights_dtype,
        "supervisedAttentionLayers": list(SUPERVISED_ATTENTION_LAYERS),
        "modules": {
            "text_encoder": {
                "file": FILES["text_encoder"],
                "inputs": [_io("input_ids", ["B", L], "int64")],
                "outputs": [_io("text_embeds", ["B", L, D], "float")],
            },
            "image_encoder": {
                "file": FILES["image_encoder"],
                "inputs": [_io("pixels", ["S", image_size, image_size, 3], "uint8")],
                "outputs": [_io("object_embeds", ["S", E], "float")],
            },
            "postfuse": {
                "file": FILES["postfuse"],
                "inputs": [
                    _io("text_embeds", ["B", L, D], "float"),
                    _io("object_embeds", ["S", E], "float"),
                    _io("subject_positions", ["S"], "int64"),
                ],
                "outputs": [_io("augmented_embeds", ["B", L, D], "float")],
            },
            "unet": {
                "file": FILES["unet"],
                "methods": ["forward", "forward_localized"],
                "inputs": unet_in,
                "outputs": [eps],
                "forward_localized": {
                    "inputs": unet_in
                    + [
                        _io("subject_positions", ["S"], "int64"),
                        _io("region_weight", ["B", "S", "h", "w"], "float"),
                    ],
                    "outputs": [eps, _io("maps", ["B", "S", "h", "w"], "float32")],
                },
            },
            "vae_decoder": {
                "file": FILES["vae_decoder"],
                "inputs": [_io("latents", ["B", C, "h", "w"], "float")],
                "outputs": [_io("image", ["B", 3, f"{f}h", f"{f}w"], "float")],
            },
        },
        "tokenizer": TOKENIZER_FILE,
        "scheduler": SCHEDULER_FILE,
    }
    if files is not None:
        manifest["files"] = files
    if configs is not None:
        # the module configs as read (SD text_encoder, CLIP, unet, vae config.json), so eager
        # modules can be rebuilt from the model directory alone
        manifest["configs"] = {k: dict(v) for k, v in configs.items()}
    if extra:
        manifest.update(extra)
    return manifest


def file_records(out_dir: Path, names: Iterable[str] = RECORDED_FILES) -> Dict[str, Dict[str, Any]]:
    """model.json's "files": each file's size and SHA-256, which readers check before reading it."""
    records: Dict[str, Dict[str, Any]] = {}
    for name in names:
        path = Path(out_dir) / name
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        records[name] = {"size": path.stat().st_size, "sha256": digest.hexdigest()}
    return records


def write_manifest(manifest: Dict[str, Any], out_dir: Path) -> Path:
    path = Path(out_dir) / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path
