"""Pending markers: which recordings are not yet announced, in a form that survives
a crash or a power cut.

Beside each recording the writer keeps a hidden, empty file
(``.20200623-1715.h264.pending``) from before the first frame until the
announcement has left the emitter. At the next start, a marker still there
names a recording to announce (``recovery.py``). While the recording is
written the writer holds an ``flock`` on its marker, so a second pancake.py
recording into the same directory never takes a live file for an orphan.

A marker's content says how far the recording got: empty while frames are
written (the last frame may be torn), the announcement's JSON once the file is
complete and synced.
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Callable, Optional

from ..messages import Message
from .naming import pending_marker_name

#: How recordings are announced: ``announce(message, done)``, where ``done`` (if
#: given) is called once the message has left for good, and removes the marker.
Announce = Callable[[Message, Optional[Callable[[], None]]], None]

_SAFE = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def marker_path(recording_path: str) -> str:
    directory, name = os.path.split(recording_path)
    return os.path.join(directory, pending_marker_name(name))


def sync_directory(directory: str) -> None:
    """Make the names created or removed in ``directory`` durable (fsync of the directory)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PendingMarker:
    """The marker of one recording being written; used by the disk writer's thread.

    ``create`` makes it and keeps it locked; ``complete`` records the announcement
    once the recording is finished; ``release`` closes it (and so unlocks it). The
    file itself is removed with ``remove`` once the announcement has been sent.
    """

    def __init__(self, path: str, fd: int):
        self.path = path
        self._fd: Optional[int] = fd

    @classmethod
    def create(cls, recording_path: str) -> PendingMarker:
        """Create (or take over) and lock the marker of ``recording_path``.

        The caller syncs the directory so the marker and the recording's name
        reach the disk before any frame does.
        """
        path = marker_path(recording_path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _SAFE, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)  # a stale marker of a file since deleted
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def complete(self, announcement: bytes) -> None:
        """Note that the recording is whole: the next start announces it as it is."""
        if self._fd is not None:
            os.pwrite(self._fd, announcement, 0)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    @staticmethod
    def remove(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def claim(path: str) -> Optional[int]:
    """Open and lock a marker left by an earlier run; None if a live process holds it.

    Returns the locked descriptor; closing it releases the lock.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _SAFE)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd
