"""The recipe table is the trainer's one dispatch on training.recipe: every recipe the settings accept has a row."""

from __future__ import annotations

from typing import get_args

from services.common.config import TrainingSettings
from services.trainer.recipes import RECIPES, recipe


def test_every_recipe_the_settings_accept_has_a_row():
    accepted = set(get_args(TrainingSettings.model_fields["recipe"].annotation))
    assert accepted == set(RECIPES)


def test_bootstrap_limits_follow_the_row():
    training = TrainingSettings(recipe="cross-encoder", bootstrap_max_per_source=7)
    assert recipe(training).bootstrap_limit(training) == 7 and recipe(training).learns_other_corpora
    adapter = TrainingSettings(recipe="query-adapter", bootstrap_max_per_source=7)
    assert recipe(adapter).bootstrap_limit(adapter) == 0 and not recipe(adapter).learns_other_corpora
