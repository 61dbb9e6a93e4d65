"""max_tokens_per_doc's cut: a document's first N tokens, cut at a token boundary of the version's tokenizer."""

from __future__ import annotations

from services.engine.tokenize import TextTokenizer
from tests.reranker.conftest import base_model_dir

TEXT = "Volcanoes erupt when magma rises; the pressure of dissolved gases drives it towards the surface."


def test_heads_keep_the_first_n_tokens_and_cut_at_a_token_boundary():
    tokenizer = TextTokenizer(base_model_dir(), 128)
    whole = tokenizer.encode_untruncated([TEXT])[0].ids  # with [CLS] and [SEP]
    cut, short = tokenizer.heads([TEXT, "lava flows"], 6)
    assert short == "lava flows"  # shorter than the limit: unchanged
    assert TEXT.startswith(cut) and len(cut) < len(TEXT)
    assert tokenizer.encode_untruncated([cut])[0].ids == whole[:7] + whole[-1:]  # [CLS] + 6 tokens + [SEP]
    assert tokenizer.heads([cut], 6) == [cut]  # the cut text is its own head
