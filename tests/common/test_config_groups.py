"""training.* grouped by concern (adapter, mining, gate) and the loop's knobs in `loop`: the flat names of
the release before are still read, from the environment, the YAML file, arguments and Train overrides, each
with a warning naming the new name."""

from __future__ import annotations

import warnings

import pytest

from services.common.config import RENAMED, Settings, TrainingSettings, describe, env_name
from services.common.errors import FeedrankError
from services.trainer.training import apply_overrides


def _settings_with(monkeypatch, env: dict[str, str]) -> tuple[Settings, list[str]]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = Settings()
    return settings, [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]


def test_old_flat_env_names_still_set_the_grouped_settings_and_warn(monkeypatch):
    settings, warned = _settings_with(monkeypatch, {
        "FEEDRANK_TRAINING__ADAPTER_EPOCHS": "7", "FEEDRANK_TRAINING__MIN_GAIN": "0.02",
        "FEEDRANK_TRAINING__DWELL_THRESHOLD_MS": "5000", "FEEDRANK_TRAINING__SCHEDULE_EVERY_EVENTS": "3",
        "FEEDRANK_TRAINING__SCHEDULE_CORPORA": '["scifact"]', "FEEDRANK_TRAINING__GATE__MAX_P": "0.3",
    })
    assert settings.training.adapter.epochs == 7 and settings.training.gate.min_gain == 0.02
    assert settings.training.mining.dwell_threshold_ms == 5000 and settings.training.gate.max_p == 0.3
    assert settings.loop.every_events == 3 and settings.loop.corpora == ["scifact"]
    assert len(warned) == 5  # one per old name
    assert any("FEEDRANK_TRAINING__ADAPTER_EPOCHS" in w and "FEEDRANK_TRAINING__ADAPTER__EPOCHS" in w for w in warned)
    assert any("training.schedule_every_events" in w and "loop.every_events" in w for w in warned)


def test_new_names_warn_nothing_and_win_over_old_ones(monkeypatch):
    settings, warned = _settings_with(monkeypatch, {"FEEDRANK_TRAINING__ADAPTER__EPOCHS": "9",
                                                    "FEEDRANK_LOOP__CHECK_S": "2"})
    assert settings.training.adapter.epochs == 9 and settings.loop.check_s == 2 and warned == []
    monkeypatch.setenv("FEEDRANK_TRAINING__ADAPTER_EPOCHS", "5")
    settings, warned = _settings_with(monkeypatch, {})
    assert settings.training.adapter.epochs == 9 and len(warned) == 1


def test_old_names_in_the_yaml_file(tmp_path, monkeypatch):
    config = tmp_path / "feedrank.yaml"
    config.write_text("training:\n  head_cv_folds: 3\n  schedule_check_s: 5\n  gate:\n    max_p: 0.2\n")
    settings, warned = _settings_with(monkeypatch, {"FEEDRANK_CONFIG": str(config)})
    assert settings.training.adapter.head_cv_folds == 3 and settings.training.gate.max_p == 0.2
    assert settings.loop.check_s == 5 and len(warned) == 2


def test_train_overrides_take_the_grouped_and_the_old_names():
    changed = apply_overrides(TrainingSettings(), {"adapter.epochs": "12", "gate.max_p": "0.2"})
    assert changed.adapter.epochs == 12 and changed.gate.max_p == 0.2
    with pytest.warns(FutureWarning, match="training.adapter.lr"):
        assert apply_overrides(TrainingSettings(), {"adapter_lr": "0.5"}).adapter.lr == 0.5
    for bad, field in (("adapter.nope", "overrides.adapter.nope"), ("adapter", "overrides.adapter"),
                       ("recipe.x", "overrides.recipe.x"), ("gate.max_p", "overrides.gate.max_p")):
        with pytest.raises(FeedrankError) as err:
            apply_overrides(TrainingSettings(), {bad: "2"})
        assert err.value.field == field, bad


def test_every_renamed_setting_exists_under_its_new_name():
    documented = {env for env, _, _ in describe()}
    for old, new in RENAMED.items():
        assert env_name(new) in documented, new
        assert env_name(old) not in documented, old
