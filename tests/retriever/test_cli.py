"""`feedrank ingest --repo` and `feedrank search` through the Typer app (in-process search)."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from services.retriever import cli


def _app() -> typer.Typer:
    app = typer.Typer()
    cli.register(app)
    return app


def test_ingest_repo_then_search(seeded_data_dir, tmp_path, monkeypatch):
    from services.common.config import get_settings

    monkeypatch.setenv("FEEDRANK_ENDPOINTS__RERANKER", "127.0.0.1:1")
    monkeypatch.setenv("FEEDRANK_ENDPOINTS__FEEDBACK", "127.0.0.1:1")
    get_settings.cache_clear()
    repo = tmp_path / "repo"
    (repo / "auth").mkdir(parents=True)
    (repo / "auth" / "oauth.py").write_text(
        "def refresh_token(session):\n    '''Exchange the OAuth refresh token for a new access token.'''\n"
        "    return session.post('/token')\n\n\ndef logout(user):\n    user.clear()\n"
    )
    (repo / "vendor").mkdir()
    (repo / "vendor" / "dep.py").write_text("def refresh_token():\n    pass\n")
    runner = CliRunner()
    try:
        result = runner.invoke(_app(), ["ingest", "--corpus-id", "code", "--repo", str(repo)])
        assert result.exit_code == 0, result.output
        assert '"added": 2' in result.output
        again = runner.invoke(_app(), ["ingest", "--corpus-id", "code", "--repo", str(repo)])
        assert '"unchanged": 2' in again.output

        found = runner.invoke(_app(), ["search", "refresh the oauth access token", "--corpus-id", "code", "--json"])
        assert found.exit_code == 0, found.output
        response = json.loads(found.output[found.output.index("{"):])
        assert response["results"][0]["docId"] == "auth/oauth.py:1-3"
        assert "UNAVAILABLE" in response["degradedReason"]

        bad = runner.invoke(_app(), ["search", "x", "--corpus-id", "missing"])
        assert bad.exit_code == 2 and "corpus_id" in bad.output
        neither = runner.invoke(_app(), ["ingest", "--corpus-id", "code"])
        assert neither.exit_code == 2
    finally:
        get_settings.cache_clear()


def test_ingest_dataset_name_offline_says_so(seeded_data_dir, monkeypatch):
    from services.common.config import get_settings

    # A URL nothing answers on stands for "offline".
    monkeypatch.setenv("FEEDRANK_RETRIEVAL__DATASET_URL", "http://127.0.0.1:1/{name}.zip")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(_app(), ["ingest", "--corpus-id", "x", "--dataset", "nfcorpus"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "offline" in result.output and "--dataset PATH" in result.output
