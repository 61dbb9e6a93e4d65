"""Dynamic batching: pairs of concurrent requests coalesce into length-sorted batches, when it pays.

The batcher sees opaque work (encodings with a length) and a scorer; it knows nothing about
models. Tokenization happens in the caller (a worker thread), inference on one dedicated
thread, so the two overlap. A full queue refuses new work instead of growing.

When a version is loaded (before it is swapped in; else before its first batch), the batcher
measures its batch curve (pairs/s by batch size) on this machine. Requests are merged and waited for only when the curve says a bigger batch is
faster by engine.batch_min_gain; otherwise each request runs alone, as with batching off. Either
way a batch is cut where, by the curve, the next pair would cost more padded than run apart.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import Gauge, Histogram

from services.common.config import EngineSettings
from services.common.errors import ErrorKind, FeedrankError
from services.engine.batch_curve import BatchCurve, measure
from services.engine.scorer import Scorer

log = logging.getLogger(__name__)

BATCH_PAIRS = Histogram(
    "feedrank_rerank_batch_pairs", "Pairs per forward pass", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
QUEUE_PAIRS = Gauge("feedrank_rerank_queue_pairs", "Pairs waiting for the model")
CURVE = Gauge("feedrank_rerank_batch_curve_pairs_per_s", "Measured pairs/s by batch size", ["version", "size"])
POLICY = Gauge("feedrank_rerank_batch_policy_pairs", "Most pairs merged per batch (1: batching does not pay)",
               ["version"])


@dataclass(frozen=True)
class BatchPolicy:
    """What the batcher does for one scorer, from its measured curve (None: not measured)."""

    version_id: str
    curve: BatchCurve | None
    merge: bool  # merge concurrent requests (and wait max_wait_ms for them)
    batch_pairs: int  # most pairs in one forward pass

    def as_dict(self) -> dict:
        return {
            "version_id": self.version_id, "merge": self.merge, "batch_pairs": self.batch_pairs,
            "calibration_tokens": self.curve.tokens if self.curve else 0,
            "gain": self.curve.gain if self.curve else 0.0,
            "pairs_per_s": dict(self.curve.pairs_per_s) if self.curve else {},
        }


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
        self._policies: weakref.WeakKeyDictionary[Scorer, BatchPolicy] = weakref.WeakKeyDictionary()

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

    def policies(self) -> list[BatchPolicy]:
        """The policy of every live scorer the batcher has served."""
        return sorted(self._policies.values(), key=lambda p: p.version_id)

    def learn(self, scorer: Scorer) -> BatchPolicy:
        """Measure the scorer's batch curve (engine.batch_warmup_s) and choose its policy; on the
        inference thread, so nothing else runs meanwhile."""
        s = self.settings
        curve = None
        if s.batch_warmup_s > 0:
            tokens = min(s.batch_calibration_tokens, scorer.max_length)
            # One word-piece per word: the pair's length is about the words plus the query and markers.
            text = " ".join(["word"] * max(1, tokens - 8))
            try:
                items = scorer.prepare("calibration query", [text] * s.max_batch_pairs)
                curve = measure(lambda n: scorer.score(items[:n]), s.max_batch_pairs, s.batch_warmup_s,
                                max(len(items[0].ids), 1))
            except Exception as err:  # requests then fail on their own forward pass, with its error
                log.warning("batch curve of %s not measured: %s", scorer.version_id, err)
        if curve is None:
            policy = BatchPolicy(scorer.version_id, None, s.batching_enabled, s.max_batch_pairs)
        else:
            merge = s.batching_enabled and curve.gain >= s.batch_min_gain
            policy = BatchPolicy(scorer.version_id, curve, merge, curve.best_size() if merge else s.max_batch_pairs)
            for size, rate in curve.pairs_per_s.items():
                CURVE.labels(scorer.version_id, str(size)).set(rate)
        POLICY.labels(scorer.version_id).set(policy.batch_pairs if policy.merge else 1)
        self._policies[scorer] = policy
        return policy

    async def prepare(self, scorer: Scorer) -> BatchPolicy:
        """Learn a newly loaded scorer's policy before it serves (the version pool calls this before the
        swap), so no request waits behind the measurement."""
        return await self._policy(scorer)

    async def _policy(self, scorer: Scorer) -> BatchPolicy:
        policy = self._policies.get(scorer)
        if policy is None:
            policy = await asyncio.get_running_loop().run_in_executor(self._executor, self.learn, scorer)
        return policy

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
                policy = await self._policy(self._queue[0].scorer)
                if policy.merge and self._queued_pairs < policy.batch_pairs:
                    await self._gather_more(policy.batch_pairs)
                jobs = self._take_round(policy)
                if jobs:
                    await self._score_round(jobs)

    async def _gather_more(self, batch_pairs: int) -> None:
        """Wait up to max_wait_ms for announced requests, returning early once a full batch is queued."""
        end = time.perf_counter() + self.settings.max_wait_ms / 1000
        while self._queued_pairs < batch_pairs and self._arriving > 0:
            left = end - time.perf_counter()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except TimeoutError:
                return
            self._wakeup.clear()

    def _take_round(self, policy: BatchPolicy) -> list[_Job]:
        """FIFO jobs up to one batch of pairs (always at least one job); not merging: one job."""
        taken: list[_Job] = []
        pairs = 0
        while self._queue:
            job = self._queue[0]
            if taken and (not policy.merge or pairs + job.remaining > policy.batch_pairs):
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
            for chunk in self._chunks(items, self._policies.get(items[0][0].scorer)):
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

    def _chunks(self, items: list[tuple[_Job, int]], policy: BatchPolicy | None):
        """Consecutive runs of the length-sorted items, each one forward pass: within the pair and
        padded-token limits, and, with a measured curve, cut where the next (shorter) pair would
        cost more padded to the batch's longest than run in a batch of its own."""
        limit_pairs = policy.batch_pairs if policy else self.settings.max_batch_pairs
        limit_tokens = self.settings.max_batch_tokens
        curve = policy.curve if policy else None
        chunk: list[tuple[_Job, int]] = []
        width = 0
        for item in items:
            length = len(item[0].encodings[item[1]].ids)
            if chunk and (
                len(chunk) + 1 > limit_pairs
                or max(width, length) * (len(chunk) + 1) > limit_tokens
                or (curve is not None and not curve.joining_pays(len(chunk), width, length))
            ):
                yield chunk
                chunk, width = [], 0
            chunk.append(item)
            width = max(width, length)
        if chunk:
            yield chunk
