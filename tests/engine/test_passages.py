"""Passages of long documents: the windows (token counts, stride, the last window, limits) and the rules
that fold passage scores into a document score."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.config import RerankingSettings, validated
from services.common.errors import FeedrankError
from services.engine.passages import PassagePlan, Passages, passage_plan, spans, split
from services.engine.tokenize import TextTokenizer
from tests.reranker.conftest import base_model_dir


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return TextTokenizer(base_model_dir(), 256)


def numbered(n: int) -> str:
    """n words, each one token of the MiniLM vocabulary, each naming its position."""
    return " ".join(["alpha", "beta", "gamma", "delta"][i % 4] for i in range(n))


def test_spans_start_every_stride_and_the_last_window_ends_at_the_end():
    assert spans(10, 10, 5, 8) == [(0, 10)]  # fits: one window, the whole text
    assert spans(3, 10, 5, 8) == [(0, 3)]
    assert spans(20, 10, 5, 8) == [(0, 10), (5, 15), (10, 20)]
    # 23 does not fall on the stride: the last window is a full one ending at the end.
    assert spans(23, 10, 5, 8) == [(0, 10), (5, 15), (10, 20), (13, 23)]
    assert spans(23, 10, 10, 8) == [(0, 10), (10, 20), (13, 23)]  # stride = window: no overlap but the tail's
    for length in range(1, 60):
        windows = spans(length, 10, 4, 100)
        assert all(end - start == min(10, length) for start, end in windows)
        assert windows[0][0] == 0 and windows[-1][1] == length
        assert all(b[0] - a[0] <= 4 for a, b in zip(windows, windows[1:]))  # no token skipped


def test_spans_keep_the_first_windows_up_to_the_limit():
    assert spans(100, 10, 5, 3) == [(0, 10), (5, 15), (10, 20)]
    assert spans(100, 10, 5, 1) == [(0, 10)]


def test_split_cuts_windows_of_exact_token_counts(tokenizer):
    short, long = numbered(30), numbered(100)
    passages = split([short, long], tokenizer.document_tokens([short, long]), window=40, stride=20, limit=8)
    assert list(passages.owners) == [0, 1, 1, 1, 1]
    assert passages.texts[0] == short  # a document that fits is passed whole, untouched
    counts = [len(e.ids) for e in tokenizer.document_tokens(passages.texts[1:])]
    assert counts == [40, 40, 40, 40]  # (0,40) (20,60) (40,80) (60,100)
    words = long.split()
    assert passages.texts[1:] == [" ".join(words[s:e]) for s, e in [(0, 40), (20, 60), (40, 80), (60, 100)]]


def test_split_never_cuts_inside_a_word(tokenizer):
    # "unbelievably" is five word pieces: a window edge falling inside it moves to the word's edge.
    text = " ".join(["unbelievably alpha"] * 30)
    (enc,) = tokenizer.document_tokens([text])
    passages = split([text], [enc], window=16, stride=8, limit=64)
    for passage in passages.texts:
        assert passage.split()[0] in ("unbelievably", "alpha") and passage.split()[-1] in ("unbelievably", "alpha")
        assert len(tokenizer.document_tokens([passage])[0].ids) <= 16
        assert passage in text
    assert passages.texts[-1].endswith(text[-30:])  # the tail is covered


def test_documents_scored_by_their_vector_stay_whole(tokenizer):
    long = numbered(100)
    passages = split([long, long], [None, tokenizer.document_tokens([long])[0]], window=40, stride=40, limit=8)
    assert passages.texts[0] == long and list(passages.owners) == [0, 1, 1, 1]


def test_fold_rules():
    folded = Passages(["p"] * 6, np.array([0, 1, 1, 1, 2, 2]), 3)
    scores = np.array([0.3, 0.1, 0.9, 0.5, 0.2, 0.4], dtype=np.float32)
    np.testing.assert_allclose(folded.fold(scores, "max"), [0.3, 0.9, 0.4])
    np.testing.assert_allclose(folded.fold(scores, "first"), [0.3, 0.1, 0.2])
    np.testing.assert_allclose(folded.fold(scores, "mean_top2"), [0.3, 0.7, 0.3])  # one passage: its score


def test_plan_fits_the_room_and_defaults_the_stride_to_half_the_window():
    defaults = RerankingSettings()
    assert passage_plan(defaults, 254) == PassagePlan(254, 127, "mean_top2", 8)
    narrow = RerankingSettings(passage_window_tokens=128, passage_stride_tokens=100, max_passages_per_doc=3,
                               passage_aggregate="max")
    assert passage_plan(narrow, 254) == PassagePlan(128, 100, "max", 3)
    assert passage_plan(narrow, 90) == PassagePlan(90, 90, "max", 3)  # capped by the room, the stride by the window
    assert passage_plan(defaults, -5).window == 16  # a query that fills the model still leaves a window
    first = passage_plan(RerankingSettings(passage_aggregate="first"), 254)
    assert first.limit == 1 and passage_plan(defaults, 254).limit == 8
    assert first.key != passage_plan(defaults, 254).key


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"passage_window_tokens": 100, "passage_stride_tokens": 101}, "reranking.passage_stride_tokens"),
        ({"passage_window_tokens": 8}, "reranking.passage_window_tokens"),
        ({"passage_window_tokens": 9000}, "reranking.passage_window_tokens"),
        ({"passage_stride_tokens": -1}, "reranking.passage_stride_tokens"),
        ({"max_passages_per_doc": 0}, "reranking.max_passages_per_doc"),
        ({"max_passages_per_doc": 65}, "reranking.max_passages_per_doc"),
        ({"passage_aggregate": "min"}, "reranking.passage_aggregate"),
    ],
)
def test_bad_settings_name_the_field(changes, field):
    with pytest.raises(FeedrankError) as err:
        validated("reranking", RerankingSettings, RerankingSettings(), changes)
    assert err.value.field == field


def test_cache_keys_differ_by_passage_plan():
    from services.reranker.cache import cache_key

    plans = [passage_plan(RerankingSettings(**changes), 254) for changes in (
        {}, {"passage_aggregate": "max"}, {"passage_aggregate": "first"}, {"passage_stride_tokens": 100},
        {"passage_window_tokens": 128}, {"max_passages_per_doc": 2},
    )]
    keys = {cache_key("v1", "q", ["a long document"], 256, True, (), plan.key) for plan in plans}
    assert len(keys) == len(plans)
