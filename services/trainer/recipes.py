"""What a run trains, by `training.recipe`: one row per recipe, the trainer's only dispatch on it.

A recipe is a module whose run function takes the run's context (services/trainer/runs.py RunContext)
and returns the version it published as the corpus's challenger. A new model kind is its module, its
name in TrainingSettings.recipe (services/common/config.py) and one row here (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.common.config import TrainingSettings
from services.engine.manifest import Manifest
from services.trainer.adapter import run_query_adapter
from services.trainer.runs import RunContext
from services.trainer.training import run_cross_encoder


@dataclass(frozen=True)
class Recipe:
    run: Callable[[RunContext], Manifest]
    # Bootstrap takes at most training.bootstrap_max_per_source triplets per source (a recipe whose
    # training time grows with them); otherwise every triplet.
    caps_bootstrap: bool
    # Bootstrap may learn from the answer-selection sets, whose documents are other corpora's; otherwise
    # from the corpus's own qrels only.
    learns_other_corpora: bool

    def bootstrap_limit(self, training: TrainingSettings) -> int:
        """Triplets bootstrap mines per source; 0 = all."""
        return training.bootstrap_max_per_source if self.caps_bootstrap else 0


RECIPES: dict[str, Recipe] = {
    # The adapter's epoch costs about the same for any number of triplets; it learns this corpus's query vectors.
    "query-adapter": Recipe(run_query_adapter, caps_bootstrap=False, learns_other_corpora=False),
    "cross-encoder": Recipe(run_cross_encoder, caps_bootstrap=True, learns_other_corpora=True),
}


def recipe(training: TrainingSettings) -> Recipe:
    return RECIPES[training.recipe]
