"""What a benchmark ran on: CPU model and ISA, the cores the process may use, and package versions.

A ratio measured on an AVX-512/AMX server says little about an AVX2-only laptop: every bench JSON
carries this record so each figure names its machine.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from services.engine.cpus import cpu_budget

ISA_FLAGS = {
    "avx2": "avx2", "fma": "fma", "avx512f": "avx512f", "avx512_vnni": "avx512_vnni", "avx512_bf16": "avx512_bf16",
    "avx_vnni": "avx_vnni", "amx_tile": "amx_tile", "amx_int8": "amx_int8", "amx_bf16": "amx_bf16",
}
PACKAGES = ("onnxruntime", "onnxruntime-gpu", "onnx", "numpy", "tokenizers", "torch", "transformers",
            "sentence-transformers", "grpcio")


def describe(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    model, flags = _cpuinfo(cpuinfo)
    budget = cpu_budget()
    return {
        "cpu_model": model,
        "isa": {name: flag in flags for name, flag in ISA_FLAGS.items()},
        "host_cpus": os.cpu_count(),
        "affinity_cpus": budget.affinity,
        "cgroup_cpu_quota": budget.quota,
        "cgroup_quota_source": budget.source,
        "usable_cores": budget.cores,
        "load_avg_1m": os.getloadavg()[0],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": _versions(),
    }


def _cpuinfo(path: Path) -> tuple[str, set[str]]:
    """The first CPU's model name and ISA flags (every core of one machine reports the same)."""
    fields: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    return fields.get("model name", platform.processor() or "unknown"), set(fields.get("flags", "").split())


def _versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


if __name__ == "__main__":
    import json

    print(json.dumps(describe(), indent=2))
