"""The fused graph scores like the plain one, is cached by content, and a bad cached copy is rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.common.config import EngineSettings
from services.engine.optimize import optimized_graph
from services.engine.session import load_model
from services.engine.tokenize import TextTokenizer, pad
from tests.reranker.conftest import make_cross_encoder, scifact_pairs


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The shipped all-MiniLM-L6-v2 with a seeded cross-encoder head, exported as import does."""
    from services.engine.export import export_cross_encoder

    root = tmp_path_factory.mktemp("optimize")
    out = root / "onnx"
    export_cross_encoder(make_cross_encoder(root / "hf", seed=0, max_length=256), out, variants=())
    return out


def _scores(folder: Path, **engine) -> tuple[np.ndarray, dict]:
    model = load_model(folder, EngineSettings(intra_op_threads=1, **engine))
    tok = TextTokenizer(folder, 256)
    pairs = scifact_pairs(48)
    encodings = [tok.encode_pairs(q, [d])[0] for q, d in pairs]
    # Batches of mixed lengths: the fused attention must honour the padding mask.
    out = [model.run(pad(encodings[i:i + 8]).feeds).reshape(-1) for i in range(0, len(encodings), 8)]
    return np.concatenate(out), model.fused


def test_fused_graph_scores_within_1e4_of_the_plain_graph(exported, tmp_path):
    fused_scores, fused = _scores(exported, graph_cache_dir=str(tmp_path / "cache"))
    plain_scores, plain = _scores(exported, optimize_graphs=False)
    assert plain == {}
    # The export's eager attention is what the optimizer fuses: one Attention op per layer.
    assert fused.get("Attention") == 6 and fused.get("SkipLayerNormalization", 0) > 0, fused
    assert np.std(plain_scores) > 0
    assert np.max(np.abs(fused_scores - plain_scores)) < 1e-4


def test_cached_copy_is_keyed_by_content_and_a_tampered_one_is_rebuilt(exported, tmp_path):
    cache = tmp_path / "cache"
    first, _ = optimized_graph(exported / "model.onnx", cache, use_gpu=False)
    again, _ = optimized_graph(exported / "model.onnx", cache, use_gpu=False)
    assert first == again and first.parent == cache
    assert exported not in first.parents  # the (immutable) version folder is never written
    sidecar = json.loads(first.with_suffix(".json").read_text())
    first.write_bytes(first.read_bytes()[:-16] + b"\0" * 16)
    rebuilt, _ = optimized_graph(exported / "model.onnx", cache, use_gpu=False)
    from services.engine.optimize import sha256_file

    assert sha256_file(rebuilt) == sidecar["sha256"]


def test_a_graph_the_optimizer_cannot_read_serves_unfused(tmp_path, exported):
    import shutil

    folder = tmp_path / "version"
    shutil.copytree(exported, folder)
    (folder / "config.json").write_text(json.dumps({"num_attention_heads": 5, "hidden_size": 384}))
    scores, fused = _scores(folder, graph_cache_dir=str(tmp_path / "cache"))
    plain, _ = _scores(exported, optimize_graphs=False)
    # 384 is not divisible by 5 heads: the optimizer refuses, the plain graph still serves.
    assert fused == {}
    np.testing.assert_allclose(scores, plain, atol=1e-6)
