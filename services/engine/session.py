"""onnxruntime sessions: provider choice (CUDA or CPU), threads, precision and graph fusion, from EngineSettings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from services.common.config import EngineSettings
from services.common.errors import ErrorKind, FeedrankError
from services.engine.cpus import usable_cores
from services.engine.optimize import default_cache_dir, optimized_graph

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

# File-name suffixes of one exported graph inside a version folder, by precision.
PRECISION_SUFFIX = {"fp32": ".onnx", "fp16": ".fp16.onnx", "int8": ".int8.onnx"}


def model_file(stem: str, precision: str) -> str:
    return stem + PRECISION_SUFFIX[precision]


@dataclass(frozen=True)
class OnnxModel:
    session: ort.InferenceSession
    providers: tuple[str, ...]
    precision: str
    input_names: tuple[str, ...]
    threads: int = 0
    fused: dict[str, int] = field(default_factory=dict)  # fused operators in the served graph (empty: plain)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        wanted = {k: v for k, v in feeds.items() if k in self.input_names}
        return self.session.run(None, wanted)[0]


def choose_providers(device: str) -> list[str]:
    available = ort.get_available_providers()
    if device == "cuda":
        if CUDA not in available:
            raise FeedrankError(
                ErrorKind.FAILED_PRECONDITION,
                "engine.device=cuda but onnxruntime has no CUDA provider: install the `gpu` extra (onnxruntime-gpu)",
            )
        return [CUDA, CPU]
    if device == "auto" and CUDA in available:
        return [CUDA, CPU]
    return [CPU]


def effective_precision(requested: str, providers: list[str]) -> str:
    """fp16 only pays off (and is only exported) for CUDA; int8 dynamic quantization is a CPU path."""
    on_gpu = providers[0] == CUDA
    if requested == "fp16" and not on_gpu:
        return "fp32"
    if requested == "int8" and on_gpu:
        return "fp32"
    return requested


def load_model(folder: Path, settings: EngineSettings, stem: str = "model") -> OnnxModel:
    """Load `<stem>.onnx` (or its fp16/int8 variant) from folder with the configured providers."""
    providers = choose_providers(settings.device)
    precision = effective_precision(settings.precision, providers)
    path = folder / model_file(stem, precision)
    if not path.is_file():
        if precision == "fp32":
            raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"no {path.name} in {folder}")
        log.warning("%s missing in %s; serving fp32", path.name, folder)
        precision, path = "fp32", folder / model_file(stem, "fp32")
    fused: dict[str, int] = {}
    if precision == "fp32" and settings.optimize_graphs:
        path, fused = _fused_copy(path, settings, on_gpu=providers[0] == CUDA)
    threads = _threads(settings.intra_op_threads)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types for corrupt files
        raise FeedrankError(ErrorKind.FAILED_PRECONDITION, f"cannot load {path}: {err}") from err
    return OnnxModel(
        session=session,
        providers=tuple(session.get_providers()),
        precision=precision,
        input_names=tuple(i.name for i in session.get_inputs()),
        threads=threads,
        fused=fused,
    )


def _threads(configured: int) -> int:
    return configured or usable_cores()


def _fused_copy(path: Path, settings: EngineSettings, on_gpu: bool) -> tuple[Path, dict[str, int]]:
    """The optimizer's fused copy of an fp32 graph, or the graph itself when it cannot be made: a
    model the optimizer does not understand still serves, only slower."""
    cache = Path(settings.graph_cache_dir) if settings.graph_cache_dir else default_cache_dir()
    try:
        return optimized_graph(path, cache, use_gpu=on_gpu)
    except Exception as err:  # the optimizer raises arbitrary types on graphs it cannot parse
        log.warning("serving the unfused graph %s: the transformer optimizer failed: %s", path, err)
        return path, {}
