"""Fast (Rust) tokenization into padded numpy arrays, with no torch on the serving path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from services.common.errors import ErrorKind, FeedrankError


@dataclass(frozen=True)
class Batch:
    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    @property
    def feeds(self) -> dict[str, np.ndarray]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "token_type_ids": self.token_type_ids}


class TextTokenizer:
    """Wraps tokenizer.json; `max_length` is the longest sequence (pair) the model sees."""

    def __init__(self, folder: Path, max_length: int):
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"no tokenizer.json in {folder}")
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=max_length, strategy="longest_first")
        self._untruncated = Tokenizer.from_file(str(path))
        self._untruncated.no_padding()
        self._untruncated.no_truncation()
        self.max_length = max_length

    def encode_pairs(self, query: str, texts: list[str]) -> list[Encoding]:
        return self._tok.encode_batch([(query, t) for t in texts])

    def encode_texts(self, texts: list[str]) -> list[Encoding]:
        return self._tok.encode_batch(texts)

    def pair_lengths(self, query: str, texts: list[str]) -> list[int]:
        """Untruncated token counts, to refuse over-long pairs when the caller asked not to truncate."""
        return [len(e.ids) for e in self._untruncated.encode_batch([(query, t) for t in texts])]

    def encode_untruncated(self, texts: list[str]) -> list[Encoding]:
        return self._untruncated.encode_batch(texts)

    def document_tokens(self, texts: list[str]) -> list[Encoding]:
        """Untruncated, without special tokens: each token's character offsets and word id."""
        return self._untruncated.encode_batch(texts, add_special_tokens=False)

    def overhead(self, query: str | None = None) -> int:
        """Tokens one input adds beside a document's own: the markers, and the query's tokens for a pair."""
        empty = self._untruncated.encode(query, "") if query is not None else self._untruncated.encode("")
        return len(empty.ids)

    def heads(self, texts: list[str], max_tokens: int) -> list[str]:
        """Each text cut after its first `max_tokens` tokens (special tokens not counted), at the
        character where that token ends, so the cut text tokenizes back to the same head."""
        out = []
        for text, enc in zip(texts, self.document_tokens(texts)):
            out.append(text if len(enc.ids) <= max_tokens else text[: enc.offsets[max_tokens - 1][1]])
        return out


def pad(encodings: list[Encoding]) -> Batch:
    width = max(len(e.ids) for e in encodings)
    n = len(encodings)
    ids = np.zeros((n, width), dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    types = np.zeros((n, width), dtype=np.int64)
    for row, enc in enumerate(encodings):
        k = len(enc.ids)
        ids[row, :k] = enc.ids
        mask[row, :k] = 1
        types[row, :k] = enc.type_ids
    return Batch(ids, mask, types)
