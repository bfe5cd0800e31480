"""Which files postproc takes as recordings, and how it opens them.

A message only names a path; before postproc hands that path to a converter, an
uploader or Telegram, the file must be what pancake.py writes:

* an absolute path without ``.``, ``..`` or empty components, and without a
  symbolic link anywhere on it (each component is opened with ``O_NOFOLLOW``
  relative to the one before, so nothing can be swapped in between);
* a recording's name (``YYYYMMDD-hhmm[ss][-N].h264``);
* a regular file with a single link, owned by postproc's own user;
* directly inside one of the ``--h264-dir`` directories, when any are given.

The same check runs when the message arrives and again right before conversion,
and the converter reads the file through the descriptor the check opened.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import List, Sequence, Tuple

from ..exc import ConfigError, ProtocolError
from ..messages import recording_time

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO named like a recording must not wait for a writer.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class RejectedPath(ProtocolError):
    """The path in a message is not a recording postproc may take."""


class RecordingRules:
    """The rules above, for one postproc. Stateless after construction: called from the
    main thread (acceptance) and the convert thread (before converting).
    """

    def __init__(self, h264_dirs: Sequence[str] = (), uid: int = -1):
        self.uid = os.geteuid() if uid < 0 else uid
        self.h264_dirs: List[str] = []
        self._dir_ids: List[Tuple[int, int]] = []
        for directory in h264_dirs:
            try:
                st = os.stat(directory)
            except OSError as e:
                raise ConfigError(f"--h264-dir: {directory!r}: {e.strerror}") from None
            if not stat.S_ISDIR(st.st_mode):
                raise ConfigError(f"--h264-dir: {directory!r} is not a directory")
            self.h264_dirs.append(os.path.abspath(directory))
            self._dir_ids.append((st.st_dev, st.st_ino))

    def open(self, path: str) -> Tuple[int, os.stat_result]:
        """Open ``path`` for reading if it is an acceptable recording; return (fd, stat).

        Raises ``RejectedPath`` with the reason otherwise. The caller closes the fd.
        """
        parts = _components(path)
        if recording_time(parts[-1], ("h264",)) is None:
            raise RejectedPath(f"not a recording's name: {path!r}")
        dir_fd = os.open("/", _DIR_FLAGS)
        try:
            for depth, part in enumerate(parts[:-1]):
                try:
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
                except OSError as e:
                    where = "/" + "/".join(parts[: depth + 1])
                    raise RejectedPath(f"{path!r}: {_why(e, where, dir_fd, part)}") from None
                os.close(dir_fd)
                dir_fd = next_fd
            try:
                fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=dir_fd)
            except OSError as e:
                raise RejectedPath(f"{path!r}: {_why(e, path, dir_fd, parts[-1])}") from None
            try:
                st = os.fstat(fd)
                self._check_file(path, st)
                if self._dir_ids:
                    here = os.fstat(dir_fd)
                    if (here.st_dev, here.st_ino) not in self._dir_ids:
                        raise RejectedPath(f"{path!r} is not in a --h264-dir directory")
            except BaseException:
                os.close(fd)
                raise
            return fd, st
        finally:
            os.close(dir_fd)

    def check(self, path: str) -> str:
        """Check ``path`` as ``open`` does; return the file's identity (device, inode, mtime)."""
        fd, st = self.open(path)
        os.close(fd)
        return identity(st)

    def _check_file(self, path: str, st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            raise RejectedPath(f"{path!r} is not a regular file")
        if st.st_nlink != 1:
            raise RejectedPath(f"{path!r} has {st.st_nlink} hard links (a recording has one)")
        if st.st_uid != self.uid:
            raise RejectedPath(f"{path!r} belongs to uid {st.st_uid}, not to uid {self.uid}")


def identity(st: os.stat_result) -> str:
    """What tells this file from a later one of the same name."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}"


def _components(path: str) -> List[str]:
    if not path.startswith("/"):
        raise RejectedPath(f"not an absolute path: {path!r}")
    parts = path[1:].split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise RejectedPath(f"not a plain path (empty, '.' or '..' components): {path!r}")
    return parts


def _why(error: OSError, where: str, dir_fd: int, name: str) -> str:
    if error.errno in (errno.ELOOP, errno.ENOTDIR):
        try:
            if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                return f"{where} is a symbolic link"
        except OSError:
            pass
    if error.errno == errno.ENOTDIR:
        return f"{where} is not a directory"
    return f"{where}: {error.strerror}"
