"""Password checks on one worker thread, with a short queue, never on the IOLoop.

A scrypt check takes tens of milliseconds on a PC and most of a second on a Pi
Zero; on the IOLoop it would freeze every page, the live view and the watchdog.
One thread is enough (a Pi Zero has one core) and the queue is short: when it
is full the caller is told at once, and answers 429 instead of waiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Optional

from .auth import PasswordHash

logger = logging.getLogger(__name__)

#: checks running or waiting at most; one more is refused at once
MAX_PENDING = 3


class PasswordVerifier:
    """``submit`` is called on the IOLoop; ``PasswordHash.verify`` runs on the worker."""

    def __init__(self, max_pending: int = MAX_PENDING):
        self.max_pending = max_pending
        self.pending = 0  # read and written on the IOLoop only
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="password-check"
        )

    @property
    def busy(self) -> bool:
        return self.pending >= self.max_pending

    def submit(self, password_hash: PasswordHash, password: str) -> Optional[asyncio.Future]:
        """A future of the check's result, or None when the queue is full."""
        if self.busy:
            return None
        self.pending += 1
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, password_hash.verify, password
        )
        future.add_done_callback(self._done)
        return future

    def _done(self, _future) -> None:
        self.pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False)
