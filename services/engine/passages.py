"""Long documents as passages: token windows with a stride, each scored, folded back to one score.

A document longer than one window is split into windows of `window` tokens starting every `stride`
tokens; the last window ends at the document's end, so the tail is seen with a full window of
context. Window edges are moved onto word boundaries (a window never starts or ends inside a word),
so a passage's text tokenizes back to exactly its tokens and never overflows the model. The
document's score is then its passages' max (MaxP), its first passage's (FirstP: the head,
what truncation scores) or the mean of its best two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from tokenizers import Encoding

from services.common.config import RerankingSettings
from services.engine.scorer import Scorer

Aggregate = Literal["max", "first", "mean_top2"]
AGGREGATES: tuple[Aggregate, ...] = ("max", "first", "mean_top2")
MIN_ROOM = 16  # a query that leaves less room than this still gets windows this wide (the model truncates the pair)


@dataclass(frozen=True)
class PassagePlan:
    """How documents are split: window and stride in document tokens (special tokens not counted)."""

    window: int
    stride: int
    aggregate: Aggregate
    max_passages: int

    def __post_init__(self) -> None:
        if self.window < 1 or not 1 <= self.stride <= self.window:
            raise ValueError(f"need 1 <= stride <= window, got window {self.window}, stride {self.stride}")
        if self.max_passages < 1 or self.aggregate not in AGGREGATES:
            raise ValueError(f"bad plan {self}")

    @property
    def key(self) -> str:
        """What the plan changes about the scores, for the result cache's key."""
        return f"{self.aggregate}/w{self.window}/s{self.stride}/p{self.max_passages}"

    @property
    def limit(self) -> int:
        # FirstP needs the head only: scoring the other windows would be cost for nothing.
        return 1 if self.aggregate == "first" else self.max_passages


def passage_plan(settings: RerankingSettings, room: int) -> PassagePlan:
    """The settings' plan for one request, `room` being the document tokens that fit beside its query:
    the window is capped by the room (0 = the room), the stride by the window (0 = half of it)."""
    room = max(room, MIN_ROOM)
    window = min(settings.passage_window_tokens or room, room)
    stride = min(settings.passage_stride_tokens or max(1, window // 2), window)
    return PassagePlan(window, stride, settings.passage_aggregate, settings.max_passages_per_doc)


def spans(length: int, window: int, stride: int, limit: int) -> list[tuple[int, int]]:
    """[start, end) token windows covering `length` tokens, at most `limit`, the first ones kept.

    Starts are 0, stride, 2*stride, ... while a window ends before the text does; then one last
    window ends at the text's end (it overlaps the one before by more than window - stride when
    the length does not fall on the stride).
    """
    if length <= window:
        return [(0, length)]
    out = []
    start = 0
    while start + window < length and len(out) < limit:
        out.append((start, start + window))
        start += stride
    if len(out) < limit:
        out.append((length - window, length))
    return out


def _on_words(start: int, end: int, words: Sequence[int | None]) -> tuple[int, int]:
    """The window shrunk to whole words: a start inside a word moves past it, an end inside a word
    moves back before it. A window inside one giant word keeps its token edges."""
    s, e = start, end
    while 0 < s < e and words[s] is not None and words[s - 1] == words[s]:
        s += 1
    while s < e < len(words) and words[e] is not None and words[e - 1] == words[e]:
        e -= 1
    return (s, e) if s < e else (start, end)


@dataclass(frozen=True)
class Passages:
    texts: list[str]  # every passage of every document, in document order
    owners: np.ndarray  # owners[k]: the index of the document passage k came from
    documents: int

    def fold(self, scores: np.ndarray, aggregate: Aggregate) -> np.ndarray:
        """One score per document from its passages' scores (a document's passages are consecutive)."""
        starts = np.searchsorted(self.owners, np.arange(self.documents))
        if aggregate == "first":
            return scores[starts].astype(np.float32)
        if aggregate == "max":
            return np.maximum.reduceat(scores, starts).astype(np.float32)
        return np.array([np.sort(mine)[-2:].mean() for mine in np.split(scores, starts[1:])], dtype=np.float32)


def split(texts: Sequence[str], tokens: Sequence[Encoding | None], window: int, stride: int,
          limit: int) -> Passages:
    """`tokens[i]`: document i's untruncated encoding without special tokens (offsets and word ids),
    or None for a document that is scored whole (it stays one passage, its text unchanged)."""
    out: list[str] = []
    owners: list[int] = []
    for doc, (text, enc) in enumerate(zip(texts, tokens, strict=True)):
        if enc is None or len(enc.ids) <= window:
            out.append(text)
            owners.append(doc)
            continue
        words = enc.word_ids
        for start, end in spans(len(enc.ids), window, stride, limit):
            s, e = _on_words(start, end, words)
            out.append(text[enc.offsets[s][0]: enc.offsets[e - 1][1]])
            owners.append(doc)
    return Passages(out, np.asarray(owners, dtype=np.int64), len(texts))


def passages_of(scorer: Scorer, plan: PassagePlan, texts: list[str], vectors: list[np.ndarray | None]) -> Passages:
    """The documents as the scorer's passages. A document sent with a vector the scorer scores it by
    stays whole: no text of it is encoded."""
    by_vector = [v is not None and scorer.accepts_leg_vectors for v in vectors]
    to_split = [t for t, whole in zip(texts, by_vector) if not whole]
    encoded = iter(scorer.document_tokens(to_split) if to_split else [])
    tokens = [None if whole else next(encoded) for whole in by_vector]
    return split(texts, tokens, plan.window, plan.stride, plan.limit)
