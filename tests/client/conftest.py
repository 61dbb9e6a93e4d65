"""The client's tests run against the gateway tests' stack of real services (started once per session)."""

from tests.gateway.conftest import (  # noqa: F401 (fixtures)
    embedder,
    embedder_dir,
    hf_models,
    registry_template,
    stack,
)
