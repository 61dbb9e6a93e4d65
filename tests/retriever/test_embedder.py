"""The ONNX bi-encoder against sentence-transformers, and no torch on the serving path."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from services.common.config import EngineSettings
from tests.retriever.conftest import REPO, SHARED_DATA

SENTENCES = [
    "0-dimensional biomaterials show inductive properties.",
    "Lions and tigers are large wild cats living in savannas and jungles.",
    "Central banks raise interest rates to slow inflation in the economy.",
    "Quicksort partitions an array around a pivot and sorts recursively.",
    "short",
    "A much longer passage " + "about protein folding and misfolding in neurons " * 40,  # beyond 256 tokens
]


def _real_sentences() -> list[str]:
    corpus = SHARED_DATA / "scifact" / "corpus.jsonl"
    if not corpus.is_file():
        return SENTENCES
    with open(corpus) as fh:
        rows = [json.loads(next(fh)) for _ in range(10)]
    return SENTENCES + [f"{r['title']} {r['text']}" for r in rows]


def test_onnx_matches_sentence_transformers(embedder):
    from sentence_transformers import SentenceTransformer

    from services.retriever.embedder import packaged_model_dir

    texts = _real_sentences()
    reference = SentenceTransformer(str(packaged_model_dir()), device="cpu").encode(
        texts, normalize_embeddings=True, batch_size=8
    )
    ours = embedder.encode(texts)
    assert ours.shape == reference.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = (ours * reference).sum(axis=1)
    assert cosines.min() > 1 - 1e-4, cosines


def test_encoding_does_not_depend_on_batch_company(embedder):
    alone = embedder.encode(["binary search halves a sorted array"])
    batched = embedder.encode(["x", "binary search halves a sorted array", "y " * 300])
    np.testing.assert_allclose(alone[0], batched[1], atol=1e-5)
    assert embedder.encode([]).shape == (0, 384)


def test_serving_path_does_not_import_torch(embedder_dir, tmp_path):
    """With an export cached, the server's modules and a query embedding load no torch, even where the
    int8 query graph has to be quantized first (caches written before it existed)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(embedder_dir, data / "models" / "embedder")
    (data / "models" / "embedder" / "model.int8.onnx").unlink()
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        import services.retriever.server, services.retriever.core, services.retriever.__main__
        from services.common.config import EngineSettings
        from services.retriever.embedder import Embedder
        e = Embedder.from_data_dir(Path({str(data)!r}), EngineSettings(), 256, 8, "int8")
        assert e.query_precision == "int8" and e.encode_query("hello").shape == (384,)
        print("torch" in sys.modules, "sentence_transformers" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_stale_export_is_redone(tmp_path, embedder_dir):
    """A cache whose fingerprint does not match the packaged weights is exported again."""
    import shutil

    from services.retriever.embedder import ensure_export

    cache = tmp_path / "embedder"
    shutil.copytree(embedder_dir, cache)
    (cache / "export.json").write_text(json.dumps({"fingerprint": "old"}))
    pytest.importorskip("torch")
    ensure_export(cache)
    assert json.loads((cache / "export.json").read_text())["fingerprint"] != "old"


def test_int8_query_graph_stays_close_to_fp32(embedder_dir):
    """Queries may run the int8 twin; documents always go through fp32 (the index is built once)."""
    from services.retriever.embedder import Embedder

    texts = _real_sentences()
    int8 = Embedder(embedder_dir, EngineSettings(intra_op_threads=1), 256, 8, query_precision="int8")
    fp32 = Embedder(embedder_dir, EngineSettings(intra_op_threads=1), 256, 8)
    assert (int8.query_precision, fp32.query_precision) == ("int8", "fp32")
    np.testing.assert_allclose(int8.encode(texts), fp32.encode(texts), atol=1e-6)
    queries = np.stack([int8.encode_query(t) for t in texts])
    cosines = (queries * fp32.encode(texts)).sum(axis=1)
    assert 0.97 < cosines.min() and cosines.max() < 1 - 1e-6, cosines
