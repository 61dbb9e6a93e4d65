"""Dynamic batching: pairs of concurrent requests coalesce into length-sorted batches.

The batcher sees opaque work (encodings with a length) and a scorer; it knows nothing about
models. Tokenization happens in the caller (a worker thread), inference on one dedicated
thread, so the two overlap. A full queue refuses new work instead of growing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import Gauge, Histogram

from services.common.config import EngineSettings
from services.common.errors import ErrorKind, FeedrankError
from services.engine.scorer import Scorer

BATCH_PAIRS = Histogram(
    "feedrank_rerank_batch_pairs", "Pairs per forward pass", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
QUEUE_PAIRS = Gauge("feedrank_rerank_queue_pairs", "Pairs waiting for the model")


@dataclass
class _Job:
    scorer: Scorer
    encodings: list
    deadline: float | None
    future: asyncio.Future
    scores: np.ndarray
    remaining: int
    enqueued: float = field(default_factory=time.perf_counter)
    started: float | None = None
    inference_s: float = 0.0

    @property
    def dead(self) -> bool:
        return self.future.done() or (self.deadline is not None and time.monotonic() > self.deadline)


@dataclass(frozen=True)
class BatchResult:
    scores: np.ndarray
    queue_s: float
    inference_s: float


class Batcher:
    def __init__(self, settings: EngineSettings):
        self.settings = settings
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued_pairs = 0
        self._arriving = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    @property
    def queued_pairs(self) -> int:
        return self._queued_pairs

    @contextlib.contextmanager
    def announce(self) -> Iterator[None]:
        """Mark a request that is tokenizing and will submit soon.

        The batcher waits for more work (up to max_wait_ms) only while some request is announced,
        so a lone request pays no batching delay and concurrent ones still coalesce.
        """
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1

    async def submit(self, scorer: Scorer, encodings: list, deadline: float | None = None) -> BatchResult:
        """Scores for `encodings`, in order. `deadline` is time.monotonic() based."""
        n = len(encodings)
        if self._queued_pairs + n > self.settings.max_queue_pairs:
            raise FeedrankError(
                ErrorKind.RESOURCE_EXHAUSTED,
                f"reranker queue is full ({self._queued_pairs} pairs waiting); retry with backoff",
            )
        loop = asyncio.get_running_loop()
        job = _Job(scorer, encodings, deadline, loop.create_future(), np.empty(n, dtype=np.float32), n)
        self._queue.append(job)
        self._queued_pairs += n
        QUEUE_PAIRS.set(self._queued_pairs)
        self._wakeup.set()
        # If the caller goes away, the future is cancelled and the batcher skips the job's pairs.
        await job.future
        return BatchResult(job.scores, (job.started or job.enqueued) - job.enqueued, job.inference_s)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                if self.settings.batching_enabled and self._queued_pairs < self.settings.max_batch_pairs:
                    await self._gather_more()
                jobs = self._take_round()
                if jobs:
                    await self._score_round(jobs)

    async def _gather_more(self) -> None:
        """Wait up to max_wait_ms for announced requests, returning early once a full batch is queued."""
        end = time.perf_counter() + self.settings.max_wait_ms / 1000
        while self._queued_pairs < self.settings.max_batch_pairs and self._arriving > 0:
            left = end - time.perf_counter()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except TimeoutError:
                return
            self._wakeup.clear()

    def _take_round(self) -> list[_Job]:
        """FIFO jobs up to one batch of pairs (always at least one job); batching off: one job."""
        taken: list[_Job] = []
        pairs = 0
        while self._queue:
            job = self._queue[0]
            if taken and (not self.settings.batching_enabled or pairs + job.remaining > self.settings.max_batch_pairs):
                break
            self._queue.popleft()
            self._queued_pairs -= job.remaining
            if job.dead:
                continue
            taken.append(job)
            pairs += job.remaining
        QUEUE_PAIRS.set(self._queued_pairs)
        return taken

    async def _score_round(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        by_scorer: dict[int, list[tuple[_Job, int]]] = collections.defaultdict(list)
        for job in jobs:
            by_scorer[id(job.scorer)] += [(job, i) for i in range(len(job.encodings))]
        for items in by_scorer.values():
            # Sorting by length keeps similar lengths together, so padding stays small.
            items.sort(key=lambda item: len(item[0].encodings[item[1]].ids), reverse=True)
            for chunk in self._chunks(items):
                chunk = [(job, i) for job, i in chunk if not job.dead]
                if not chunk:
                    continue
                now = time.perf_counter()
                for job, _ in chunk:
                    job.started = job.started or now
                scorer = chunk[0][0].scorer
                encodings = [job.encodings[i] for job, i in chunk]
                try:
                    scores = await loop.run_in_executor(self._executor, scorer.score, encodings)
                except Exception as err:  # a failing forward pass fails its requests, not the batcher
                    for job, _ in chunk:
                        if not job.future.done():
                            job.future.set_exception(
                                FeedrankError(ErrorKind.INTERNAL, f"inference failed: {err}")
                            )
                    continue
                elapsed = time.perf_counter() - now
                BATCH_PAIRS.observe(len(chunk))
                touched = set()
                for (job, i), score in zip(chunk, scores):
                    job.scores[i] = score
                    job.remaining -= 1
                    touched.add(id(job))
                for job, _ in chunk:
                    if id(job) in touched:
                        job.inference_s += elapsed
                        touched.discard(id(job))
                    if job.remaining == 0 and not job.future.done():
                        job.future.set_result(None)

    def _chunks(self, items: list[tuple[_Job, int]]):
        limit_pairs = self.settings.max_batch_pairs
        limit_tokens = self.settings.max_batch_tokens
        chunk: list[tuple[_Job, int]] = []
        width = 0
        for item in items:
            length = len(item[0].encodings[item[1]].ids)
            new_width = max(width, length)
            if chunk and (len(chunk) + 1 > limit_pairs or new_width * (len(chunk) + 1) > limit_tokens):
                yield chunk
                chunk, new_width = [], length
            chunk.append(item)
            width = new_width
        if chunk:
            yield chunk
