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
MAX_PENDING = 4
#: of those, kept for addresses with no recent wrong guess (the owner, most likely)
RESERVED_FOR_CLEAN = 2


class PasswordVerifier:
    """``submit`` is called on the IOLoop; ``PasswordHash.verify`` runs on the worker."""

    def __init__(self, max_pending: int = MAX_PENDING, reserved: int = RESERVED_FOR_CLEAN):
        self.max_pending = max_pending
        self.reserved = min(reserved, max_pending - 1)
        self.pending = 0  # read and written on the IOLoop only
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="password-check"
        )

    def has_room(self, clean: bool = True) -> bool:
        """Room for one more check; a caller with recent wrong guesses leaves a reserve."""
        limit = self.max_pending if clean else self.max_pending - self.reserved
        return self.pending < limit

    def submit(self, password_hash: PasswordHash, password: str) -> Optional[asyncio.Future]:
        """A future of the check's result, or None when the queue is full."""
        if not self.has_room():
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
