"""`feedrank demo --seeds`: one run per seed in its own data dir, the ingest shared, each figure's median and range."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from services.cli import app
from services.common.config import get_settings
from services.common.errors import ErrorKind, FeedrankError
from services.demo import seeds as by_seed

ROWS = {13: {"fused": 0.70, "fused+learned": 0.77}, 14: {"fused": 0.71, "fused+learned": 0.75},
        15: {"fused": 0.69, "fused+learned": 0.78}}


def fake_run(seen: list[tuple[int, Path, set[str]]]) -> by_seed.RunSeed:
    """Writes what a demo run writes: an ingested corpus and embedder (first seed only), and demo.json."""
    def run(seed: int, data_dir: Path) -> Path:
        seen.append((seed, data_dir, {p.name for p in data_dir.iterdir()}))
        for part in ("corpora/c/docs.sqlite", "models/embedder/model.onnx"):
            (data_dir / part).parent.mkdir(parents=True, exist_ok=True)
            (data_dir / part).write_text(f"seed {seed}")
        rows = {name: {"ndcg@10": value, "mrr@10": value - 0.02, "recall@100": 0.97, "hit@1": value - 0.1,
                       "version_id": f"v{seed}" if name == "fused+learned" else None}
                for name, value in ROWS[seed].items()}
        out = data_dir / "demo" / "c" / "demo.json"
        out.parent.mkdir(parents=True)
        out.write_text(json.dumps({"rows": rows}))
        return out
    return run


def test_each_seed_runs_in_its_own_data_dir_with_the_first_seeds_ingest(tmp_path):
    seen: list = []
    payload = by_seed.run_seeds([13, 14, 15], tmp_path / "runs", tmp_path / "out", fake_run(seen),
                                share_ingest=True, console=Console(file=open("/dev/null", "w")))
    assert [(s, d.name) for s, d, _ in seen] == [(13, "seed-13"), (14, "seed-14"), (15, "seed-15")]
    assert seen[0][2] == set() and seen[1][2] == seen[2][2] == {"corpora", "models"}
    assert (tmp_path / "runs" / "seed-15" / "corpora" / "c" / "docs.sqlite").read_text() == "seed 15"
    learned = payload["summary"]["fused+learned"]["ndcg@10"]
    assert (learned["median"], learned["min"], learned["max"]) == (0.77, 0.75, 0.78)
    assert learned["by_seed"] == {"13": 0.77, "14": 0.75, "15": 0.78}
    assert payload["summary"]["fused"]["ndcg@10"]["median"] == 0.70
    assert payload["promoted"] == {"13": "v13", "14": "v14", "15": "v15"}
    assert "| fused+learned | 0.7700 (0.7500-0.7800) |" in (tmp_path / "out" / "seeds.md").read_text()
    assert json.loads((tmp_path / "out" / "seeds.json").read_text())["seeds"] == [13, 14, 15]
    assert (tmp_path / "out" / "seeds.png").stat().st_size > 0


def test_a_quick_run_ingests_its_own_sample(tmp_path):
    seen: list = []
    by_seed.run_seeds([13, 14], tmp_path / "runs", tmp_path / "out", fake_run(seen), share_ingest=False,
                      console=Console(file=open("/dev/null", "w")))
    assert seen[1][2] == set()


@pytest.mark.parametrize(("text", "seeds"), [("3", [13, 14, 15]), ("7, 9", [7, 9])])
def test_seeds_are_a_count_or_a_list(text, seeds):
    assert by_seed.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["1", "11", "13,13", "a,b", "1.5", ""])
def test_bad_seeds_are_refused_naming_the_field(text):
    with pytest.raises(FeedrankError) as refused:
        by_seed.parse_seeds(text)
    assert (refused.value.kind, refused.value.field) == (ErrorKind.INVALID_ARGUMENT, "seeds")


def test_the_cli_refuses_bad_seeds_before_running_anything(data_dir):
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["demo", "--quick", "--seeds", "1"])
    get_settings.cache_clear()
    assert result.exit_code == 1 and "seeds" in result.output, result.output
    assert not (data_dir / "demo-seeds").exists()
