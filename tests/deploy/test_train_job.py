"""The GPU overlay's training Job runs a real entry point: its exact command line, here, on a tiny corpus.

The container's command and args are read from the rendered gpu overlay, `$(VAR)` references expanded from
the container's env as the kubelet does, and run as a process on a data dir with mined triplets. The run
must succeed and register its version as the challenger, with no trainer service or retriever running
(the Job's NetworkPolicy lets it reach neither). The only differences from the pod: CPU instead of CUDA,
two optimizer steps, and the tiny corpus's training settings.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.registry.store import FileRegistry
from services.trainer.core import TrainerCore
from services.trainer.runs import RunStore
from tests.deploy.test_k8s import pod_spec, render_overlays, workloads
from tests.trainer.conftest import REPO, build_corpus, make_settings, training_env

pytestmark = pytest.mark.skipif(not (REPO / ".venv" / "bin" / "kubectl").exists(), reason="kubectl not in .venv")


def job_command(out: Path, corpus_id: str) -> tuple[list[str], dict[str, str]]:
    """(argv, FEEDRANK_* env) of the Job's container, with TRAIN_CORPUS_ID set to `corpus_id`."""
    job = workloads(render_overlays(out)["gpu"])["trainer-job"]
    container = pod_spec(job)["containers"][0]
    env = {e["name"]: e.get("value", "") for e in container["env"] if "valueFrom" not in e}
    env["TRAIN_CORPUS_ID"] = corpus_id
    argv = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["command"] + container["args"]]
    return argv, {k: v for k, v in env.items() if k.startswith("FEEDRANK_") and k != "FEEDRANK_CONFIG"}


def test_the_training_job_trains_offline_and_registers_a_challenger(data_dir, tmp_path):
    build_corpus(data_dir, "tiny")
    core = TrainerCore(make_settings(data_dir))
    try:
        mined = core.mine("tiny", ["qrels"])
    finally:
        core.close()
    assert mined.files

    argv, job_env = job_command(tmp_path / "rendered", "tiny")
    assert argv[0] == "feedrank" and job_env["FEEDRANK_TRAINING__DEVICE"] == "cuda"
    env = {**os.environ, **training_env(data_dir), **job_env,
           # The differences from the pod, named: CPU here, two steps, the test's own data dir.
           "FEEDRANK_TRAINING__DEVICE": "cpu", "FEEDRANK_TRAINING__MAX_STEPS": "2",
           "FEEDRANK_DATA_DIR": str(data_dir), "FEEDRANK_LOG_JSON": "false", "HF_HUB_OFFLINE": "1",
           # No trainer or retriever runs: any call to one would fail on this port.
           "FEEDRANK_ENDPOINTS__RETRIEVER": "127.0.0.1:1", "FEEDRANK_ENDPOINTS__TRAINER": "127.0.0.1:1"}
    env.pop("FEEDRANK_CONFIG", None)
    # `feedrank` is the console script of services.cli; run this checkout's copy of it.
    result = subprocess.run([sys.executable, "-m", "services.cli", *argv[1:]], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    runs = RunStore(data_dir / "runs").list("tiny")
    assert [r.status for r in runs] == ["succeeded"]
    run = runs[0]
    assert run.settings["recipe"] == "cross-encoder" and run.settings["start_from"] == "base"
    assert sorted(run.triplet_files) == sorted(mined.files)
    registry = FileRegistry(data_dir / "registry")
    assert registry.aliases("tiny") == {"challenger": run.version_id}  # the corpus's own scope
    assert registry.aliases() == {}
    assert registry.manifest(run.version_id).run_id == run.run_id
    assert f"version {run.version_id} is the challenger" in " ".join(result.stdout.split())


def test_the_job_without_a_corpus_fails_naming_it(data_dir, tmp_path):
    argv, job_env = job_command(tmp_path / "rendered", "")
    env = {**os.environ, **job_env, "FEEDRANK_DATA_DIR": str(data_dir), "FEEDRANK_TRAINING__DEVICE": "cpu",
           "FEEDRANK_LOG_JSON": "false"}
    env.pop("FEEDRANK_CONFIG", None)
    result = subprocess.run([sys.executable, "-m", "services.cli", *argv[1:]], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "corpus_id" in result.stdout
