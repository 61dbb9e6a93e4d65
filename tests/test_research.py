"""research/ stays importable (no experiment runs at import) and ranks with the product's fusion and metrics."""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np
import pytest

import research
from research import common


@pytest.mark.parametrize("name", sorted(m.name for m in pkgutil.iter_modules(research.__path__)))
def test_every_research_module_imports(name):
    # A script whose experiment ran at import would fail here: the smoke test has no data dir or cache.
    assert importlib.import_module(f"research.{name}").__doc__


def test_rrf_matrix_is_the_products_rrf_per_row():
    lexical, vector = np.array([[0, 1], [2, 0]]), np.array([[1, 2], [0, 1]])
    scores = common.rrf(lexical, vector, k=60, n_docs=3)
    assert scores[0].tolist() == pytest.approx([1 / 61, 1 / 62 + 1 / 61, 1 / 62])
    assert scores[1].tolist() == pytest.approx([1 / 62 + 1 / 61, 1 / 62, 1 / 61])


def test_ndcg_counts_only_queries_with_a_relevant_document():
    run = {"q1": {"a": 2.0, "b": 1.0}, "q2": {"a": 1.0}}
    qrels = {"q1": {"b": 1}, "q2": {"a": 0}}  # q2 has no relevant document: left out, not scored 0
    assert common.ndcg_at_10(run, qrels) == pytest.approx(1 / np.log2(3))
