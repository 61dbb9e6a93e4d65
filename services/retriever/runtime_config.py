"""Fusion and reranking settings that UpdateConfig may change while the retriever runs, shared by replicas.

The configured values (env / YAML) are the base; changes are validated by the same pydantic groups and
kept in `$FEEDRANK_DATA_DIR/retriever/config.json` as `{"generation": N, "fusion": {...}, "reranking":
{...}}`. Every replica serving that data dir (the retriever Deployment's pods share the `feedrank-data`
volume) rereads the file at most every `retrieval.config_refresh_s` and swaps in the settings of a newer
generation, so an UpdateConfig sent to one replica reaches them all. An update is a read-modify-write of
the file under an exclusive lock (`config.lock` beside it), merged onto the file's latest content rather
than onto this replica's copy, and the file is replaced atomically (temp file, fsync, rename, fsync of
the folder): concurrent updates on different replicas both survive and a reader never sees half a file.
Each swap installs new frozen objects, so a search sees one consistent pair.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.common.config import FusionSettings, RerankingSettings, validated
from services.common.errors import FeedrankError, invalid

log = logging.getLogger(__name__)

# The reranking fields a client may change at run time (the seed's PATCH /config/reranking).
RERANKING_FIELDS = (
    "reranker_mode",
    "reranker_local_model",
    "reranker_cloud_provider",
    "reranker_cloud_model",
    "tribrid_reranker_topn",
    "rerank_input_snippet_chars",
    "reranker_timeout",
)
FUSION_FIELDS = tuple(FusionSettings.model_fields)


class RuntimeConfig:
    def __init__(self, path: Path, fusion: FusionSettings, reranking: RerankingSettings, *, refresh_s: float = 1.0):
        self.path = path
        self._base_fusion = fusion
        self._base_reranking = reranking
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._generation = -1
        self._pair = (fusion, reranking)
        saved = self._read()
        if saved is not None:
            # At start a bad file is an error to fix, not something to serve around.
            self._install(saved, self._build(saved))
        self._checked_at = time.monotonic()

    def current(self) -> tuple[FusionSettings, RerankingSettings]:
        """The pair in force, both of one generation (a search must not mix two)."""
        self._refresh()
        return self._pair

    @property
    def fusion(self) -> FusionSettings:
        return self.current()[0]

    @property
    def reranking(self) -> RerankingSettings:
        return self.current()[1]

    @property
    def generation(self) -> int:
        """The file generation in force here: 0 before any update, +1 for each update on any replica."""
        return max(self._generation, 0)

    def update(self, fusion: dict[str, Any], reranking: dict[str, Any]) -> tuple[FusionSettings, RerankingSettings]:
        for name in fusion:
            if name not in FUSION_FIELDS:
                raise invalid(f"fusion.{name}", "not a fusion setting")
        for name in reranking:
            if name not in RERANKING_FIELDS:
                raise invalid(f"reranking.{name}", "cannot be changed at run time")
        with self._lock, self._file_lock():
            latest = self._read() or {"generation": 0, "fusion": {}, "reranking": {}}
            saved = {
                "generation": int(latest.get("generation", 0)) + 1,
                "fusion": {**latest.get("fusion", {}), **fusion},
                "reranking": {**latest.get("reranking", {}), **reranking},
            }
            built = self._build(saved)  # a bad value is refused before anything is written
            self._write(saved)
            self._install(saved, built)
            return built

    # -- the shared file -------------------------------------------------------------------------

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self._refresh_s:
            return
        with self._lock:
            if now - self._checked_at < self._refresh_s:
                return
            self._checked_at = now
            try:
                saved = self._read()
            except (OSError, ValueError) as err:
                log.error("runtime config %s unreadable, keeping generation %d: %s", self.path, self.generation, err)
                return
            if saved is None or int(saved.get("generation", 0)) <= self._generation:
                return
            try:
                built = self._build(saved)
            except FeedrankError as err:
                log.error("runtime config %s generation %s refused, keeping generation %d: %s",
                          self.path, saved.get("generation"), self.generation, err)
                self._generation = int(saved.get("generation", 0))  # do not log it again every refresh
                return
            self._install(saved, built)
            log.info("runtime config generation %d applied", self._generation)

    def _read(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        saved = json.loads(text)
        if not isinstance(saved, dict):
            raise ValueError(f"{self.path} does not hold a JSON object")
        return saved

    def _build(self, saved: dict[str, Any]) -> tuple[FusionSettings, RerankingSettings]:
        return (validated("fusion", FusionSettings, self._base_fusion, saved.get("fusion", {})),
                validated("reranking", RerankingSettings, self._base_reranking, saved.get("reranking", {})))

    def _install(self, saved: dict[str, Any], built: tuple[FusionSettings, RerankingSettings]) -> None:
        self._generation = int(saved.get("generation", 0))
        self._pair = built  # one assignment: readers see the old pair or the new one

    def _write(self, saved: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".config.{uuid.uuid4().hex[:8]}.tmp")
        with tmp.open("w") as fh:
            json.dump(saved, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Exclusive across processes (and pods: flock is honoured on NFSv4 shared volumes)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (self.path.parent / "config.lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
