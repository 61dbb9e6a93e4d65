"""Position bias as the trainer measured it, for the console: it reads the trainer's file in the shared data
dir (`trainer/propensity/<corpus>.json`, written by services/trainer/propensity.py), as the eval routes do."""

from __future__ import annotations

import json

from fastapi import APIRouter

from services.common.errors import not_found
from services.gateway.deps import SettingsDep
from services.retriever.corpus import check_corpus_id

router = APIRouter(tags=["reranker"])


@router.get("/api/trainer/propensity/{corpus_id}",
            summary="Examination propensity per rank with 95% intervals, measured from the interventions")
async def propensity(corpus_id: str, settings: SettingsDep) -> dict:
    path = settings.data_path / "trainer" / "propensity" / f"{check_corpus_id(corpus_id)}.json"
    if not path.is_file():
        raise not_found(f"no propensities measured for corpus {corpus_id} yet (the click judge or mining with "
                        "training.mining.propensity_weights measures them)")
    return json.loads(path.read_text())
