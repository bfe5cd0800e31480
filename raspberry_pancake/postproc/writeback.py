"""Get a file being written onto the disk while it is still being written.

Linux keeps written data in memory and writes it out later, so a converter that
syncs its mp4 once at the end waits for the whole file at that moment, after
all its CPU work, with the disk idle until then. Asking the kernel to start the
write-out of what is already there every few MiB (``sync_file_range`` with
``SYNC_FILE_RANGE_WRITE``: start it, do not wait for it) lets the disk work
while the remux goes on, so the final fsync finds little left to do. On a Pi it
also keeps a long recording's mp4 from filling its small RAM with dirty pages.

Durability still comes from the fsync at the end; this only starts it early.
Where the call is missing (not Linux, no C library), nothing is pushed.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Optional

from . import libc

logger = logging.getLogger(__name__)

#: Start the write-out once this much more of the file is in memory.
PUSH_BYTES = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2


_sync_file_range = libc.function(
    "sync_file_range", [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
)


class WritebackPusher:
    """Starts the write-out of ``path`` as it grows; used by the thread writing it.

    The file is another program's to write (libavformat opens it itself), so it
    is opened here a second time, read-only, once it exists: the write-out acts
    on the file, whichever descriptor asks.
    """

    def __init__(self, path: str, step: int = PUSH_BYTES):
        self.path = path
        self.step = step
        self.pushes = 0
        self._fd: Optional[int] = None
        self._pushed_to = 0
        self._enabled = _sync_file_range is not None

    def __enter__(self) -> WritebackPusher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def poll(self) -> None:
        """Start the write-out of what was written since the last push, if it is
        ``step`` bytes or more. Cheap enough to call every few frames."""
        if not self._enabled:
            return
        fd = self._fd
        if fd is None:
            try:
                fd = self._fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                return  # not created yet: the muxer opens it at its first write
        size = os.fstat(fd).st_size
        if size - self._pushed_to < self.step:
            return
        if _sync_file_range(fd, self._pushed_to, size - self._pushed_to, _SYNC_FILE_RANGE_WRITE):
            error = ctypes.get_errno()
            logger.debug("%s: sync_file_range: %s; the fsync at the end does it all",
                         self.path, os.strerror(error))  # fmt: skip
            self._enabled = False
            return
        self._pushed_to = size
        self.pushes += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
