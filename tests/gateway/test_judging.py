"""The console's view of the measured position bias (the trainer's file in the shared data dir)."""

from __future__ import annotations

import json

from services.trainer.propensity import estimate
from tests.gateway.test_edges import app_client
from tests.trainer.test_click_judge import simulate


def test_propensities_are_served_per_corpus(tmp_path):
    with app_client(tmp_path) as client:
        missing = client.get("/api/trainer/propensity/scifact")
        assert missing.status_code == 404 and "no propensities measured" in missing.json()["error"]["message"]
        assert client.get("/api/trainer/propensity/no%20such").status_code == 422
        measured = estimate("scifact", simulate("top_n_shuffle", 3000, share=0.5, seed=1), 20, 10, seed=1)
        (tmp_path / "trainer" / "propensity").mkdir(parents=True)
        (tmp_path / "trainer" / "propensity" / "scifact.json").write_text(json.dumps(measured.as_dict()))
        served = client.get("/api/trainer/propensity/scifact").json()
        assert served["ranks"] == list(range(1, 21)) and served["propensity"][0] == 1.0
        assert served["propensity"] == measured.propensity and served["intervened"] == measured.intervened
