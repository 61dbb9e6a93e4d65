"""Secrets as files: FEEDRANK_SECRETS_DIR holds one file per setting, named like its environment variable."""

from __future__ import annotations

import pytest
from pydantic_settings import SettingsError

from services.common.config import Settings
from services.common.credentials import provider_key


@pytest.fixture
def secrets_dir(tmp_path, monkeypatch):
    for name in ("FEEDRANK_ENDPOINTS__ADMIN_TOKEN", "FEEDRANK_KAFKA__SASL_PASSWORD", "COHERE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "secrets"
    folder.mkdir()
    monkeypatch.setenv("FEEDRANK_SECRETS_DIR", str(folder))
    return folder


def test_settings_read_a_file_per_setting_below_the_environment_and_above_the_yaml(secrets_dir, tmp_path, monkeypatch):
    (secrets_dir / "FEEDRANK_ENDPOINTS__ADMIN_TOKEN").write_text("from-file\n")
    (secrets_dir / "FEEDRANK_KAFKA__SASL_PASSWORD").write_text("file-password")
    config = tmp_path / "feedrank.yaml"
    config.write_text("kafka:\n  sasl_password: yaml-password\n  sasl_username: from-yaml\n")
    monkeypatch.setenv("FEEDRANK_CONFIG", str(config))
    settings = Settings()
    assert settings.endpoints.admin_token == "from-file"
    assert (settings.kafka.sasl_password, settings.kafka.sasl_username) == ("file-password", "from-yaml")
    monkeypatch.setenv("FEEDRANK_ENDPOINTS__ADMIN_TOKEN", "from-env")
    assert Settings().endpoints.admin_token == "from-env"


def test_a_missing_secrets_folder_stops_the_start_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FEEDRANK_SECRETS_DIR", str(tmp_path / "absent"))
    with pytest.raises(SettingsError, match="absent"):
        Settings()


def test_provider_keys_come_from_the_environment_else_the_secrets_folder(secrets_dir, monkeypatch):
    assert provider_key("COHERE_API_KEY") == ""
    (secrets_dir / "COHERE_API_KEY").write_text("key-from-file\n")
    assert provider_key("COHERE_API_KEY") == "key-from-file"
    monkeypatch.setenv("COHERE_API_KEY", "key-from-env")
    assert provider_key("COHERE_API_KEY") == "key-from-env"
