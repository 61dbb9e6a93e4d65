"""Registry: immutable checksummed versions, atomic aliases with history, no path escapes, CLI import."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from services.common.errors import ErrorKind, FeedrankError
from services.registry.store import FileRegistry


def _folder(tmp_path, name="m", payload=b"weights"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.onnx").write_bytes(payload)
    (folder / "tokenizer.json").write_text("{}")
    return folder


FIELDS = {"kind": "cross-encoder", "base_model": "base", "max_length": 128, "activation": "sigmoid"}


def test_publish_records_checksums_and_is_immutable(tmp_path):
    registry = FileRegistry(tmp_path / "reg")
    manifest = registry.publish(_folder(tmp_path), {**FIELDS, "run_id": "r1", "metrics": {"ndcg@10": 0.7}})
    on_disk = json.loads((registry.root / "versions" / manifest.version_id / "manifest.json").read_text())
    assert set(on_disk["files"]) == {"model.onnx", "tokenizer.json"} and on_disk["run_id"] == "r1"
    assert registry.local_path(manifest.version_id).is_dir()
    with pytest.raises(FeedrankError) as err:
        registry.publish(_folder(tmp_path, "again"), {**FIELDS, "version_id": manifest.version_id})
    assert err.value.kind is ErrorKind.FAILED_PRECONDITION
    assert not [p for p in (registry.root / "versions").iterdir() if p.name.startswith(".staging")]


def test_aliases_flip_atomically_with_history(tmp_path):
    registry = FileRegistry(tmp_path / "reg")
    a = registry.publish(_folder(tmp_path, "a"), FIELDS).version_id
    b = registry.publish(_folder(tmp_path, "b"), FIELDS).version_id
    registry.set_alias("champion", a, "first")
    registry.set_alias("champion", b, "better")
    registry.set_alias("challenger", a, "compare")
    registry.set_alias("challenger", None, "done")
    assert registry.aliases() == {"champion": b}
    assert [(h["alias"], h["from"], h["to"]) for h in registry.history()] == [
        ("champion", None, a), ("champion", a, b), ("challenger", None, a), ("challenger", a, None)
    ]
    assert registry.resolve("champion") == b and registry.resolve("challenger") is None
    assert not list(registry.root.glob(".*.tmp"))


@pytest.mark.parametrize("bad", ["../evil", "a/b", "", ".hidden", "x" * 200])
def test_version_ids_cannot_escape_the_root(tmp_path, bad):
    registry = FileRegistry(tmp_path / "reg")
    with pytest.raises(FeedrankError) as err:
        registry.manifest(bad)
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT


def test_checksum_mismatch_and_missing_files_are_refused(tmp_path):
    registry = FileRegistry(tmp_path / "reg")
    version = registry.publish(_folder(tmp_path), FIELDS).version_id
    (registry.root / "versions" / version / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(FeedrankError, match="checksum"):
        registry.local_path(version)
    (registry.root / "versions" / version / "model.onnx").unlink()
    with pytest.raises(FeedrankError, match="missing"):
        registry.local_path(version)


def test_unknown_alias_and_version(tmp_path):
    registry = FileRegistry(tmp_path / "reg")
    with pytest.raises(FeedrankError) as err:
        registry.set_alias("nightly", None, "x")
    assert err.value.field == "alias"
    with pytest.raises(FeedrankError) as err:
        registry.set_alias("champion", "v-missing", "x")
    assert err.value.kind is ErrorKind.NOT_FOUND


def test_cli_import_and_list(tmp_path, monkeypatch, hf_models):
    from services.cli import app

    monkeypatch.setenv("FEEDRANK_REGISTRY__ROOT", str(tmp_path / "reg"))
    from services.common.config import get_settings

    get_settings.cache_clear()
    try:
        runner = CliRunner()
        result = runner.invoke(app, ["model", "import", str(hf_models[0]), "--alias", "champion"])
        assert result.exit_code == 0, result.output
        registry = FileRegistry(tmp_path / "reg")
        assert registry.aliases()["champion"] in result.output
        listed = runner.invoke(app, ["model", "list"])
        assert "champion" in listed.output
        bad = runner.invoke(app, ["model", "import", str(tmp_path)])
        assert bad.exit_code == 2 and "not a Hugging Face model folder" in " ".join(bad.output.split())
        # Refused before the export and before anything is published.
        for args, field in ((["--alias", "nightly"], "alias"), (["--max-length", "-3"], "max_length")):
            bad = runner.invoke(app, ["model", "import", str(hf_models[0]), *args])
            assert bad.exit_code == 2 and f"error: {field}:" in bad.output, bad.output
        assert len(registry.versions()) == 1
    finally:
        get_settings.cache_clear()
