"""Long-poll bookkeeping: at most N waiting `GET /jobs/{id}?status=S&wait=T` (or `?until=end`) per wallet.

A waiting long-poll holds no worker thread (the route and the store's wait are
async), but each still holds a socket and a little memory: one wallet may not
open an unbounded number. Over the cap the request is 429 ``TOO_MANY_WAITERS``
at once. The count is this process's own (its open connections).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from engine.errors import RequestError

__all__ = ["WaiterLimit"]


class WaiterLimit:
    """Counts long-polls per owner; `hold(owner)` refuses past `per_owner`."""

    def __init__(self, per_owner: int):
        self.per_owner = per_owner
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def waiting(self, owner: str) -> int:
        with self._lock:
            return self._counts.get(owner.lower(), 0)

    @contextmanager
    def hold(self, owner: str) -> Iterator[None]:
        key = owner.lower()
        with self._lock:
            if self._counts.get(key, 0) >= self.per_owner:
                raise RequestError(
                    f"this wallet already has {self.per_owner} long-polls waiting; "
                    "wait for one to answer or poll without `wait`",
                    code="TOO_MANY_WAITERS", http_status=429,
                )
            self._counts[key] = self._counts.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._counts[key] - 1
                if left:
                    self._counts[key] = left
                else:
                    del self._counts[key]
