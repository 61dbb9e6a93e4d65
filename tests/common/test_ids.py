"""Id patterns are matched whole: a trailing newline ("$" matches before one) is not part of an id."""

from __future__ import annotations

import pytest

from services.common.errors import FeedrankError
from services.gateway.routes.reranker import _run_id
from services.retriever.corpus import check_corpus_id


@pytest.mark.parametrize("corpus_id", ["scifact\n", "scifact\n\n", "\nscifact", "sci fact", "", "-x", "a" * 65])
def test_a_corpus_id_with_anything_around_it_is_refused(corpus_id):
    with pytest.raises(FeedrankError) as err:
        check_corpus_id(corpus_id)
    assert err.value.field == "corpus_id"


@pytest.mark.parametrize("corpus_id", ["scifact", "beir.nfcorpus", "my_corpus-2", "a" * 64])
def test_plain_corpus_ids_pass(corpus_id):
    assert check_corpus_id(corpus_id) == corpus_id


@pytest.mark.parametrize("run_id", ["r1\n", "r1/../x", ".."])
def test_a_run_id_the_gateway_would_turn_into_a_path_must_be_whole(run_id):
    with pytest.raises(FeedrankError) as err:
        _run_id(run_id)
    assert err.value.field == "run_id"
