from tests.reranker.conftest import hf_models  # noqa: F401  (the session-scoped exported models)
