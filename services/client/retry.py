"""When the client tries a call again: on UNAVAILABLE only (the service is down, restarting or
unreachable; the call did not run), with exponential backoff and jitter, inside the call's deadline.

Every other status is an answer (INVALID_ARGUMENT, NOT_FOUND, ...) and is raised at once. Searches
are reads, and feedback events carry a client-made event_id the services deduplicate by, so a call
tried twice has the effect of one.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class Retry:
    attempts: int = 5  # tries in all, the first included
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.initial_backoff_s < 0 or self.max_backoff_s < self.initial_backoff_s or self.multiplier < 1:
            raise ValueError("need 0 <= initial_backoff_s <= max_backoff_s and multiplier >= 1")

    def pauses(self, deadline: float, rng: random.Random) -> Iterator[float]:
        """The pause before each try after the first, ending early when the next one would start past
        `deadline` (time.monotonic())."""
        backoff = self.initial_backoff_s
        for _ in range(self.attempts - 1):
            pause = backoff * rng.uniform(0.5, 1.0)  # jitter: clients that failed together do not return together
            if time.monotonic() + pause >= deadline:
                return
            yield pause
            backoff = min(backoff * self.multiplier, self.max_backoff_s)


def retryable(err: grpc.RpcError) -> bool:
    return err.code() == grpc.StatusCode.UNAVAILABLE
