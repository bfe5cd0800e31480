"""``--login``'s hash file, read again whenever it changes on disk.

The owner changes the password with ``util/set_password.py`` while pancake.py
runs; from the next request on, the old password no longer works and every
session opened with it ends. A ``stat`` per check is all it costs. A file that
turns unreadable or invalid refuses every password (never the old one) until
it is fixed, and says so once in the log.
"""

from __future__ import annotations

import logging
import os
from typing import Optional, Tuple

from ..exc import PasswordFileError
from .auth import PasswordHash, load_password_file

logger = logging.getLogger(__name__)


def warn_if_legacy(path: str, password_hash: PasswordHash) -> None:
    if password_hash.legacy:
        logger.warning(
            "password file %r holds the original unsalted SHA-512 hash, which a stolen "
            "copy gives up quickly; rewrite it with util/set_password.py",
            path,
        )


class PasswordFile:
    """The current hash, and a generation that changes with it. Used on the IOLoop only."""

    def __init__(self, path: str, initial: PasswordHash):
        self.path = path
        self.current: Optional[PasswordHash] = initial
        self.generation = 0
        self._signature = self._stat()
        warn_if_legacy(path, initial)

    def _stat(self) -> Optional[Tuple[int, ...]]:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def refresh(self) -> Optional[PasswordHash]:
        """The hash to check against now (None: refuse everything), reloading if it changed."""
        signature = self._stat()
        if signature == self._signature:
            return self.current
        try:
            fresh: Optional[PasswordHash] = load_password_file(self.path)
        except PasswordFileError as e:  # (an OSError too, so first)
            fresh = None
            logger.error("%s; every password is refused until it is fixed", e)
        except OSError as e:  # short of file descriptors or memory: try again next time
            logger.warning("cannot read password file %r now: %s", self.path, e.strerror)
            return self.current
        self._signature = signature
        if fresh != self.current:
            self.current = fresh
            self.generation += 1
            if fresh is not None:
                logger.info("password file %r changed: sessions opened before end", self.path)
                warn_if_legacy(self.path, fresh)
        return self.current
