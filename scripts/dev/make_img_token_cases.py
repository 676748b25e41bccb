#!/usr/bin/env python3
"""Developer tool: writes test/fixtures/img_token_cases.json, MMagic's tokenization of prompts in
its `img` dialect, which test/prompt-img.test.ts compares lib/prompt.ts with.

Not run by the tests. It needs transformers (any version with CLIPTokenizer.add_tokens; the
committed file was written with transformers 5.17):

    python scripts/dev/make_img_token_cases.py

What MMagic's FastComposer does with a prompt (mmagic/models/editors/fastcomposer/fastcomposer.py),
reproduced step by step on the tiny-a release's CLIP tokenizer files (the real vocabulary):

- special_tokenizer = CLIPTokenizer(SD tokenizer); special_tokenizer.add_tokens(['img'],
  special_tokens=True); image_token_id = convert_tokens_to_ids('img')  (49408: `img` alone is
  not in CLIP's vocabulary, only `img</w>` is)
- subject prompt: ids = special_tokenizer.encode(prompt); each image id is dropped and marks the
  token before it; the rest is padded with the pad id (or cut) to 77, and so is the mask
- text-only prompt: tokenizer(prompt.replace('img', ''), padding='max_length', max_length=77,
  truncation=True), with the plain tokenizer

The prompts stay in plain ASCII, where the tokenizers-backed CLIPTokenizer of recent
transformers and the slow one MMagic ran with give the same ids.
"""

import json
from pathlib import Path

from transformers import CLIPTokenizer

REPO = Path(__file__).resolve().parents[2]
TOKENIZER = REPO / "test" / "fixtures" / "tiny-a" / "release" / "sd" / "tokenizer"
OUT = REPO / "test" / "fixtures" / "img_token_cases.json"
MAX_LENGTH = 77

PROMPTS = [
    "A man img and a woman img in the snow",
    "a photo of a cat img wearing a hat",
    "a man img",
    "a man img.",
    "a man img, and a dog img!",
    "a man,img and a dog",
    "a manimg in a park",
    "a man imgs in a park",
    "an imgur logo",
    "a man IMG in a park",
    "a man Img in a park",
    "a man <|image|> and a woman img",
    "two dogs img, img",
    "img a man",
    "a man img img",
    "a picture without any marker",
]


def mask_noun_phrase_ends(ids, image_token_id, pad_id):
    """MMagic's _tokenize_and_mask_noun_phrases_ends after the encode."""
    mask = [False for _ in ids]
    clean = []
    for token in ids:
        if token == image_token_id:
            mask[len(clean) - 1] = True
        else:
            clean.append(token)
    clean = clean[:MAX_LENGTH] if len(clean) > MAX_LENGTH else clean + [pad_id] * (MAX_LENGTH - len(clean))
    mask = mask[:MAX_LENGTH] if len(mask) > MAX_LENGTH else mask + [False] * (MAX_LENGTH - len(mask))
    return clean, mask


def main() -> None:
    plain = CLIPTokenizer.from_pretrained(str(TOKENIZER))
    special = CLIPTokenizer.from_pretrained(str(TOKENIZER))
    special.add_tokens(["img"], special_tokens=True)
    image_token_id = special.convert_tokens_to_ids("img")
    cases = []
    for prompt in PROMPTS:
        raw = special.encode(prompt)
        input_ids, mask = mask_noun_phrase_ends(raw, image_token_id, plain.pad_token_id)
        text_only = plain(prompt.replace("img", ""), padding="max_length", max_length=MAX_LENGTH, truncation=True).input_ids
        cases.append(
            {
                "prompt": prompt,
                "raw_ids": raw,
                "input_ids": input_ids,
                "subject_token_mask": mask,
                "text_only_ids": text_only,
            }
        )
    # one case a line: the file stays readable in a diff
    lines = ",\n".join("  " + json.dumps(c) for c in cases)
    OUT.write_text(f'{{\n "image_token_id": {image_token_id},\n "cases": [\n{lines}\n ]\n}}\n', encoding="utf-8")
    print(f"wrote {len(cases)} cases to {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
