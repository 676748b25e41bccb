"""Writes the model directory's tokenizer.json: CLIP's BPE plus FastComposer's `<|image|>` token.

The file is read by @huggingface/tokenizers (lib/prompt.ts) and must give the ids of the *slow*
transformers CLIPTokenizer that the released FastComposer pipeline used (transformers 4.29, no
ftfy installed), so the pieces are chosen for that tokenizer rather than copied from the fast one:

- BertNormalizer(clean_text, handle_chinese_chars, no accent stripping, no lowercasing) then NFC
  then Lowercase: the slow tokenizer's BasicTokenizer(strip_accents=False, do_split_on_punc=False)
  drops control/format characters and U+FFFD, turns whitespace into spaces, puts spaces around
  CJK ideographs, applies NFC and lowercases, in that order. The fast tokenizer does none of the
  cleaning and keeps runs of CJK ideographs together.
- Split on CLIP's regex (keep the matches), then byte-level mapping without GPT-2's own regex:
  each CLIP word is byte-encoded whole, as the slow tokenizer does.
- BPE with the `</w>` end-of-word suffix, unknown -> `<|endoftext|>` (never hit: every byte has a
  symbol).
- `<|startoftext|>`/`<|endoftext|>` are matched on the *normalized* text, as the slow tokenizer's
  regex and cache do (so `<|EndOfText|>` is still id 49407); `<|image|>` is matched on the raw text
  only, as `tokenizer.add_tokens([token], special_tokens=True)` does.
- Neither padding nor truncation is set: lib/prompt.ts pads and truncates exactly as the pipeline
  does, which differs between the subject prompt and the plain prompts.

Only the json module is used, so the exporter needs neither `tokenizers` nor `transformers`.
"""

from __future__ import annotations

import json
from pathlib import Path

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
IMAGE_TOKEN = "<|image|>"
VOCAB_SIZE = 49408

# The slow CLIPTokenizer reads at most this many merges (OpenAI's `49152 - 256 - 2`).
MAX_MERGES = 49152 - 256 - 2

# CLIP's word pattern, verbatim from OpenAI's simple_tokenizer (Oniguruma and JS `u` compatible).
CLIP_PATTERN = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"


class TokenizerExportError(ValueError):
    """The SD folder's tokenizer files are missing or are not CLIP's."""


def _read_vocab(path: Path) -> dict[str, int]:
    with path.open(encoding="utf-8") as f:
        vocab = json.load(f)
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise TokenizerExportError(f"{path} is not a token -> id mapping")
    if len(vocab) != VOCAB_SIZE or sorted(vocab.values()) != list(range(VOCAB_SIZE)):
        raise TokenizerExportError(f"{path} has {len(vocab)} entries; expected CLIP's {VOCAB_SIZE} with ids 0..{VOCAB_SIZE - 1}")
    for token, want in ((BOS_TOKEN, 49406), (EOS_TOKEN, 49407)):
        if vocab.get(token) != want:
            raise TokenizerExportError(f"{path}: {token} has id {vocab.get(token)}, expected {want}")
    if IMAGE_TOKEN in vocab:
        raise TokenizerExportError(f"{path} already contains {IMAGE_TOKEN}")
    return vocab


def _read_merges(path: Path, vocab: dict[str, int]) -> list[str]:
    # Same slicing as the slow tokenizer: strip, drop the "#version" header, cap the count.
    lines = path.read_text(encoding="utf-8").strip().split("\n")[1 : MAX_MERGES + 1]
    merges = []
    for n, line in enumerate(lines, start=2):
        parts = line.split()
        if len(parts) != 2 or "".join(parts) not in vocab:
            raise TokenizerExportError(f"{path}:{n}: bad merge {line!r}")
        merges.append(f"{parts[0]} {parts[1]}")
    return merges


def _added_token(content: str, token_id: int, normalized: bool) -> dict:
    return {
        "id": token_id,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": normalized,
        "special": True,
    }


def build_tokenizer_json(tokenizer_dir: Path) -> dict:
    """The tokenizer.json document for the CLIP tokenizer files in `tokenizer_dir`."""
    tokenizer_dir = Path(tokenizer_dir)
    for name in ("vocab.json", "merges.txt"):
        if not (tokenizer_dir / name).is_file():
            raise TokenizerExportError(f"{tokenizer_dir / name} is missing")
    vocab = _read_vocab(tokenizer_dir / "vocab.json")
    merges = _read_merges(tokenizer_dir / "merges.txt", vocab)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            _added_token(BOS_TOKEN, vocab[BOS_TOKEN], normalized=True),
            _added_token(EOS_TOKEN, vocab[EOS_TOKEN], normalized=True),
            # add_tokens() appends after the vocabulary: id 49408.
            _added_token(IMAGE_TOKEN, len(vocab), normalized=False),
        ],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {
                    "type": "BertNormalizer",
                    "clean_text": True,
                    "handle_chinese_chars": True,
                    "strip_accents": False,
                    "lowercase": False,
                },
                {"type": "NFC"},
                {"type": "Lowercase"},
            ],
        },
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": CLIP_PATTERN}, "behavior": "Removed", "invert": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": {
            "type": "RobertaProcessing",
            "sep": [EOS_TOKEN, vocab[EOS_TOKEN]],
            "cls": [BOS_TOKEN, vocab[BOS_TOKEN]],
            "trim_offsets": False,
            "add_prefix_space": False,
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": EOS_TOKEN,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "</w>",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


def write_tokenizer_json(tokenizer_dir: Path, out_path: Path) -> None:
    """Writes tokenizer.json for the SD folder's `tokenizer/` (vocab.json, merges.txt) to `out_path`.

    The output is byte-for-byte deterministic for the same inputs (a committed test copy is
    compared against a fresh one).
    """
    doc = build_tokenizer_json(Path(tokenizer_dir))
    text = json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
    Path(out_path).write_text(text, encoding="utf-8")
