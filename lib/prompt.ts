/**
 * Prompt handling: CLIP token ids for the three prompts of a generate() call, and where the
 * subjects sit among them. Reproduces the released FastComposer pipeline
 * (`_tokenize_and_mask_noun_phrases_ends` for the subject prompt, `_encode_prompt` for the
 * text-only and negative prompts) on top of the model directory's tokenizer.json.
 *
 * Two subject markers: `<|image|>` (the released pipeline's) and `img` (MMagic's port). MMagic
 * adds `img` to the same CLIP tokenizer as a special token (`add_tokens(['img'],
 * special_tokens=True)`: not in the vocabulary, so it gets id 49408, and it is matched in the raw
 * text wherever it occurs, case-sensitively, before any normalization), masks the token before
 * it the same way, and builds the text-only prompt with `prompt.replace('img', '')`. So the `img`
 * dialect is the same tokenizer with the added token's text changed; a prompt gives the ids of
 * its twin with every `img` written `<|image|>`, including where `img` sits inside a word
 * (`imgs`, `imgur`: a marker and the rest of the word), while `Img`, `IMG` are plain words and a
 * literal `<|image|>` is plain text.
 */
import { readFile } from 'node:fs/promises';
import { Tokenizer as UntypedTokenizer } from '@huggingface/tokenizers';
import { FastComposerError } from './errors.js';

export const IMAGE_TOKEN = '<|image|>';
/** MMagic's subject marker. */
export const MMAGIC_IMAGE_TOKEN = 'img';
export type SubjectMarker = typeof IMAGE_TOKEN | typeof MMAGIC_IMAGE_TOKEN;
export const BOS_TOKEN = '<|startoftext|>';
export const EOS_TOKEN = '<|endoftext|>';
/** CLIP's text context length (the tokenizer's model_max_length): the default when a model's
 * manifest gives none; a model directory's `maxLength` wins. */
export const MAX_LENGTH = 77;

export interface TokenizedPrompt {
  /** The subject prompt without its `<|image|>` tokens, padded with `<|endoftext|>` to maxLength (77) or cut to it (losing eos, as the original does). */
  inputIds: number[];
  /** True at the token before each `<|image|>` (the subject noun's last BPE piece). */
  subjectTokenMask: boolean[];
  /** The prompt with `<|image|>` removed, tokenized plainly: bos, at most 75 tokens, eos, padding. */
  textOnlyIds: number[];
  /** Indices in inputIds of the subject tokens, in prompt order (one per `<|image|>`). */
  subjectPositions: number[];
  subjectCount: number;
  /** The subject or text-only prompt was longer than maxLength (77) tokens and was cut. */
  truncated: boolean;
}

export interface PlainEncoding {
  ids: number[];
  truncated: boolean;
}

/**
 * The original pipeline's masking, as is: drops each image token and marks the kept token just
 * before it, then pads (`padId`) or cuts both lists to `maxLength`. No checks: an image token
 * right after bos marks bos (position 0), and two in a row mark the same token once.
 * `ids` are the tokenizer's ids with bos/eos and the image tokens in place.
 */
export function maskNounPhraseEnds(
  ids: readonly number[],
  imageTokenId: number,
  maxLength = MAX_LENGTH,
  padId = 49407,
): { inputIds: number[]; subjectTokenMask: boolean[] } {
  // The mask starts as long as the ids *with* the image tokens, as in the original; it is
  // indexed by positions among the kept tokens.
  const mask = new Array<boolean>(ids.length).fill(false);
  const clean: number[] = [];
  for (const id of ids) {
    if (id === imageTokenId) {
      const at = clean.length - 1;
      mask[at < 0 ? mask.length + at : at] = true; // Python's mask[-1] when nothing was kept yet
    } else {
      clean.push(id);
    }
  }
  const inputIds = clean.length > maxLength ? clean.slice(0, maxLength) : padTo(clean, maxLength, padId);
  const subjectTokenMask = mask.length > maxLength ? mask.slice(0, maxLength) : padTo(mask, maxLength, false);
  return { inputIds, subjectTokenMask };
}

function padTo<T>(xs: T[], length: number, fill: T): T[] {
  return xs.concat(new Array<T>(length - xs.length).fill(fill));
}

// Astral CJK ideographs: the slow tokenizer puts spaces around them like the BMP ones, but the
// JS BertNormalizer walks UTF-16 code units and misses them.
const ASTRAL_CJK = /[\u{20000}-\u{2A6DF}\u{2A700}-\u{2CEAF}\u{2F800}-\u{2FA1F}]/gu;
// Unassigned code points: the slow tokenizer drops every category C* character; the JS
// BertNormalizer drops Cc, Cf, Co and Cs but keeps Cn.
const UNASSIGNED = /\p{Cn}/gu;

// The package's type declarations import their own files without file extensions, which NodeNext
// resolution cannot follow, so its Tokenizer reaches TypeScript as `any`: the part used here, typed.
interface Tokenizer {
  encode(text: string): { ids: number[] };
  token_to_id(token: string): number | undefined;
}
const Tokenizer = UntypedTokenizer as new (json: object, config: object) => Tokenizer;

/** The two steps of the slow tokenizer's text cleaning that tokenizer.json cannot express in JS. */
function slowTokenizerPrepass(text: string): string {
  return text.replace(UNASSIGNED, '').replace(ASTRAL_CJK, ' $& ');
}

function tokenId(tok: Tokenizer, token: string, source: string): number {
  const id = tok.token_to_id(token);
  if (id === undefined) throw new FastComposerError('ERR_MODEL', `${source} has no ${token} token`);
  return id;
}

interface TokenizerJson {
  added_tokens: Array<{ content: string }>;
  [key: string]: unknown;
}

function isTokenizerJson(x: unknown): x is TokenizerJson {
  return typeof x === 'object' && x !== null && Array.isArray((x as { added_tokens?: unknown }).added_tokens);
}

export class PromptTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  /** Padding uses eos, CLIP's pad token. */
  readonly padId: number;
  readonly imageTokenId: number;

  private plainTokenizer: Tokenizer | undefined;
  private mmagicTokenizer: Tokenizer | undefined;

  /**
   * @param special knows `<|image|>` (the original's `special_tokenizer`)
   * @param plainJson the same without it (the pipeline's own `tokenizer`, for the text-only and
   *   negative prompts); built only for a text that contains `<|image|>`, since on any other text
   *   both give the same ids and building one costs a few hundred milliseconds
   * @param maxLength the text encoder's context length (model.json maxLength): ids are padded or cut to it
   */
  private constructor(
    private readonly special: Tokenizer,
    private readonly plainJson: TokenizerJson,
    private readonly json: TokenizerJson,
    source: string,
    readonly maxLength: number,
  ) {
    this.bosId = tokenId(special, BOS_TOKEN, source);
    this.eosId = tokenId(special, EOS_TOKEN, source);
    this.padId = this.eosId;
    this.imageTokenId = tokenId(special, IMAGE_TOKEN, source);
  }

  /** Loads the model directory's tokenizer.json; a missing or broken file is ERR_MODEL. */
  static async load(tokenizerJsonPath: string, maxLength = MAX_LENGTH): Promise<PromptTokenizer> {
    let json: unknown;
    try {
      json = JSON.parse(await readFile(tokenizerJsonPath, 'utf8'));
    } catch (cause) {
      throw new FastComposerError('ERR_MODEL', `Cannot read tokenizer ${tokenizerJsonPath}: ${(cause as Error).message}`, { cause });
    }
    return PromptTokenizer.fromJSON(json, tokenizerJsonPath, maxLength);
  }

  /** Builds from an already parsed tokenizer.json document. */
  static fromJSON(json: unknown, source = 'tokenizer.json', maxLength = MAX_LENGTH): PromptTokenizer {
    if (!isTokenizerJson(json)) throw new FastComposerError('ERR_MODEL', `${source} is not a tokenizer.json document`);
    try {
      const plainJson = { ...json, added_tokens: json.added_tokens.filter((t) => t.content !== IMAGE_TOKEN) };
      return new PromptTokenizer(new Tokenizer(json, {}), plainJson, json, source, maxLength);
    } catch (cause) {
      if (cause instanceof FastComposerError) throw cause;
      throw new FastComposerError('ERR_MODEL', `Cannot build the tokenizer from ${source}: ${(cause as Error).message}`, { cause });
    }
  }

  /** The tokenizer that knows `marker` as its added special token (id imageTokenId). */
  private markerTokenizer(marker: SubjectMarker): Tokenizer {
    if (marker === IMAGE_TOKEN) return this.special;
    // MMagic's special tokenizer: the same added token, matched on the text `img` (built on first use).
    this.mmagicTokenizer ??= new Tokenizer(
      {
        ...this.json,
        added_tokens: this.json.added_tokens.map((t) => (t.content === IMAGE_TOKEN ? { ...t, content: MMAGIC_IMAGE_TOKEN } : t)),
      },
      {},
    );
    return this.mmagicTokenizer;
  }

  /** The subject prompt's ids as the original's special tokenizer gives them: bos, tokens with image tokens, eos; no padding or cut. */
  encodeRaw(prompt: string, marker: SubjectMarker = IMAGE_TOKEN): number[] {
    return this.markerTokenizer(marker).encode(slowTokenizerPrepass(prompt)).ids;
  }

  /**
   * Tokenizes a prompt with subject markers (`<|image|>`, or `img` as MMagic writes them).
   * Throws ERR_PROMPT when a marker has no token of its own before it (start of prompt, or right
   * after another marker) or when its subject token falls past the maxLength-token limit.
   */
  tokenize(prompt: string, marker: SubjectMarker = IMAGE_TOKEN): TokenizedPrompt {
    const raw = this.encodeRaw(prompt, marker);
    this.checkSubjectTokens(prompt, raw, marker);
    const { inputIds, subjectTokenMask } = maskNounPhraseEnds(raw, this.imageTokenId, this.maxLength, this.padId);
    const subjectPositions: number[] = [];
    subjectTokenMask.forEach((isSubject, i) => {
      if (isSubject) subjectPositions.push(i);
    });
    const keptCount = raw.length - subjectPositions.length;
    // The released pipeline removes the marker from the string and tokenizes what is left.
    const textOnly = this.encodePlain(prompt.split(marker).join(''));
    return {
      inputIds,
      subjectTokenMask,
      textOnlyIds: textOnly.ids,
      subjectPositions,
      subjectCount: subjectPositions.length,
      truncated: keptCount > this.maxLength || textOnly.truncated,
    };
  }

  /**
   * Tokenizes text without subject markers (the negative prompt), as the pipeline's
   * `tokenizer(text, padding="max_length", max_length=77, truncation=True)`: a longer text keeps
   * bos, its first maxLength - 2 tokens and eos.
   */
  encodePlain(text: string): PlainEncoding {
    const tokenizer = text.includes(IMAGE_TOKEN) ? (this.plainTokenizer ??= new Tokenizer(this.plainJson, {})) : this.special;
    const ids = tokenizer.encode(slowTokenizerPrepass(text)).ids;
    if (ids.length > this.maxLength) return { ids: [...ids.slice(0, this.maxLength - 1), this.eosId], truncated: true };
    return { ids: padTo(ids, this.maxLength, this.padId), truncated: false };
  }

  private checkSubjectTokens(prompt: string, raw: readonly number[], marker: SubjectMarker): void {
    // The k-th image id is the k-th marker of the raw string: only that token is matched
    // before normalization, left to right.
    const offsets: number[] = [];
    for (let at = prompt.indexOf(marker); at >= 0; at = prompt.indexOf(marker, at + marker.length)) offsets.push(at);
    let kept = 0;
    let previous: number | undefined;
    let k = 0;
    for (const id of raw) {
      if (id !== this.imageTokenId) {
        kept += 1;
        previous = id;
        continue;
      }
      const where = `${marker} at character ${offsets[k] ?? '?'} of the prompt`;
      if (previous === this.imageTokenId) {
        throw new FastComposerError(
          'ERR_PROMPT',
          `${where} directly follows another ${marker}; put each one right after its own subject noun, as in "a man ${marker} and a woman ${marker}"`,
        );
      }
      if (previous === undefined || previous === this.bosId || previous === this.eosId) {
        throw new FastComposerError(
          'ERR_PROMPT',
          `${where} has no noun before it; put it right after the subject noun, as in "a man ${marker}"`,
        );
      }
      if (kept - 1 >= this.maxLength) {
        throw new FastComposerError(
          'ERR_PROMPT',
          `${where} marks token ${kept - 1}, past the ${this.maxLength}-token limit of the text encoder; shorten the prompt before it`,
        );
      }
      previous = id;
      k += 1;
    }
  }
}

/** The warnings of a prompt or negative prompt cut at the tokenizer's length. */
export function truncationWarnings(tokens: TokenizedPrompt, negativeTruncated: boolean, maxLength: number): string[] {
  const warnings: string[] = [];
  if (tokens.truncated) warnings.push(`The prompt is longer than ${maxLength} tokens and was truncated, as the released pipeline does`);
  if (negativeTruncated) warnings.push(`The negative prompt is longer than ${maxLength} tokens and was truncated`);
  return warnings;
}
