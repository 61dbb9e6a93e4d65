"""The suite's expensive session fixtures, each defined once (registered by tests/conftest.py).

A fixture function imported into a second conftest or test module becomes a second fixture there, with its
own cache: the embedder was exported five times per run, the seeded cross-encoders four times, and the
gateway's stack of services started twice. Defined here, each is built at most once per session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.config import EngineSettings
from services.registry.importer import import_model
from services.registry.store import FileRegistry
from services.retriever.embedder import Embedder, ensure_export
from tests.gateway.conftest import Stack, run_stack
from tests.reranker.conftest import make_cross_encoder


@pytest.fixture(scope="session")
def hf_models(tmp_path_factory) -> list[Path]:
    """Two cross-encoders from the packaged MiniLM weights with seeded, untrained heads."""
    root = tmp_path_factory.mktemp("hf")
    return [make_cross_encoder(root / f"ce{seed}", seed) for seed in (0, 1)]


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory, hf_models) -> Path:
    """A registry with two versions (champion = the first); tests copy it, never change it."""
    root = tmp_path_factory.mktemp("registry")
    registry = FileRegistry(root)
    first = import_model(registry, hf_models[0], EngineSettings(), alias="champion")
    import_model(registry, hf_models[1], EngineSettings())
    assert registry.aliases()["champion"] == first.version_id
    return root


@pytest.fixture(scope="session")
def embedder_dir(tmp_path_factory) -> Path:
    """The packaged MiniLM bi-encoder exported to ONNX (copied into each data dir that needs it)."""
    return ensure_export(tmp_path_factory.mktemp("models") / "embedder")


@pytest.fixture(scope="session")
def embedder(embedder_dir) -> Embedder:
    return Embedder(embedder_dir, EngineSettings(intra_op_threads=1), 256, 32)


@pytest.fixture(scope="session")
def stack(tmp_path_factory, registry_template, embedder_dir, embedder) -> Iterator[Stack]:
    """Every service and the gateway on a twelve-document corpus (tests/gateway/conftest.py)."""
    yield from run_stack(tmp_path_factory.mktemp("stack"), registry_template, embedder_dir, embedder)
