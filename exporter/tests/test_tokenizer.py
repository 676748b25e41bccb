"""tokenizer.json writer: the committed test copy must be exactly what the exporter writes."""

import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "exporter"))  # the package is not installed in the test venv

from fastcomposer_export.tokenizer import TokenizerExportError, write_tokenizer_json  # noqa: E402

SD_TOKENIZER = REPO / "test/fixtures/tiny-a/release/sd/tokenizer"
COMMITTED = REPO / "test/fixtures/tokenizer.json"


def test_committed_fixture_is_current(tmp_path):
    out = tmp_path / "tokenizer.json"
    write_tokenizer_json(SD_TOKENIZER, out)
    assert out.read_bytes() == COMMITTED.read_bytes(), "test/fixtures/tokenizer.json is stale: regenerate it with write_tokenizer_json"


def test_document_shape(tmp_path):
    out = tmp_path / "tokenizer.json"
    write_tokenizer_json(SD_TOKENIZER, out)
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["padding"] is None and doc["truncation"] is None
    added = {t["content"]: t for t in doc["added_tokens"]}
    assert added["<|image|>"]["id"] == 49408 and added["<|image|>"]["special"]
    assert not added["<|image|>"]["normalized"]
    assert (added["<|startoftext|>"]["id"], added["<|endoftext|>"]["id"]) == (49406, 49407)
    model = doc["model"]
    assert model["type"] == "BPE" and model["end_of_word_suffix"] == "</w>"
    assert len(model["vocab"]) == 49408 and len(model["merges"]) == 48894


def test_missing_files(tmp_path):
    with pytest.raises(TokenizerExportError, match="merges.txt"):
        shutil.copy(SD_TOKENIZER / "vocab.json", tmp_path / "vocab.json")
        write_tokenizer_json(tmp_path, tmp_path / "out.json")


def test_rejects_a_vocabulary_that_is_not_clips(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "b": 1}), encoding="utf-8")
    shutil.copy(SD_TOKENIZER / "merges.txt", tmp_path / "merges.txt")
    with pytest.raises(TokenizerExportError, match="49408"):
        write_tokenizer_json(tmp_path, tmp_path / "out.json")
