"""Recordings an earlier run left unannounced (kill -9, a power cut, a disk that did
not finish at shutdown), made whole and announced at the next start.

Raw H.264 is self-delimiting, so what reached the disk plays up to its last
frame; only that frame may be torn. A recording whose marker is empty was
still being written: its last access unit is cut off (at worst a whole frame
is lost) so no player or converter meets half a picture, and its timestamp
file (``.pts``) is cut to the frames that remain, so it never lists a frame the
video lacks. A marker holding the announcement belongs to a file that was
finished (and its timestamp file with it): it is announced as it is.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from typing import Callable, Iterable, List, Optional

from .. import timestamps
from ..exc import ProtocolError
from ..messages import Message, decode
from . import pending
from .naming import recording_of_marker
from .pending import Announce

logger = logging.getLogger(__name__)

#: How far back from the end to look for the start of the last access unit; a
#: 1080p keyframe is a few hundred KiB.
TAIL_SEARCH_BYTES = 16 * 1024 * 1024
_FIRST_WINDOW = 1024 * 1024
_START_CODE = re.compile(b"\x00\x00\x01")
_SLICES = (1, 5)  # coded slice of a non-IDR / an IDR picture
#: NAL unit types that may come before the first slice of an access unit
#: (SEI, SPS, PPS, access unit delimiter, and the extensions; H.264 7.4.1.2.3)
_OPENERS = frozenset((6, 7, 8, 9, 13, 14, 15, 16, 17, 18))


def last_access_unit_start(data: bytes, at_file_start: bool) -> Optional[int]:
    """Offset in ``data`` where its last access unit begins, or None if unsure.

    The last access unit starts with the last slice whose first_mb_in_slice is 0
    (the first bit of the slice header, coded ue(v), is then 1), together with
    the SEI/SPS/PPS/delimiter units right before it. ``data`` is the end of a
    file; ``at_file_start`` says whether it is the whole file, so that a unit
    found at its very beginning is known to open the access unit.
    """
    units = []  # (offset of the start code, nal_unit_type, first slice of a picture)
    for match in _START_CODE.finditer(data):
        header = match.end()
        if header >= len(data):
            break
        kind = data[header] & 0x1F
        first = kind in _SLICES and header + 1 < len(data) and data[header + 1] & 0x80 != 0
        units.append((match.start(), kind, first))
    i = len(units) - 1
    while i >= 0 and not units[i][2]:
        i -= 1
    if i < 0:
        return None
    while i > 0 and units[i - 1][1] in _OPENERS:
        i -= 1
    if i == 0 and not at_file_start:
        return None  # more of the access unit may lie before this window
    offset = units[i][0]
    if offset > 0 and data[offset - 1] == 0:
        offset -= 1  # the zero_byte of a four-byte start code
    return offset


def trim_last_access_unit(path: str) -> Optional[int]:
    """Cut the last (perhaps torn) access unit off the H.264 file ``path``.

    Returns the new size, or None when no access unit start was found in the
    last ``TAIL_SEARCH_BYTES`` (the file is then left as it is).
    """
    fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        window = _FIRST_WINDOW
        while True:
            start = max(size - window, 0)
            data = os.pread(fd, size - start, start)
            offset = last_access_unit_start(data, start == 0)
            if offset is not None:
                new_size = start + offset
                break
            if start == 0 or window >= TAIL_SEARCH_BYTES:
                return None
            window *= 4
        if new_size < size:
            os.ftruncate(fd, new_size)
            os.fsync(fd)
        return new_size
    finally:
        os.close(fd)


def _noted_announcement(fd: int, path: str) -> Optional[Message]:
    """The announcement a finished recording's marker holds, if it holds one for ``path``."""
    content = os.pread(fd, 4096, 0)
    if not content:
        return None
    try:
        noted = decode(content)
    except ProtocolError:
        return None  # torn by the crash: treat the file as unfinished
    if noted.h264 is None or os.path.basename(noted.h264) != os.path.basename(path):
        return None
    return Message(h264=path, detection=noted.detection)


def recover_directory(directory: str, announce: Announce, forget: Callable[[str], None]) -> int:
    """Announce the recordings left pending in ``directory``; returns how many.

    Each announcement's ``done`` callback hands the marker to ``forget``, which
    removes it once the message has left; until then a restart finds it again.
    """
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        logger.error("cannot look for unannounced recordings in %s: %s", directory, e.strerror)
        return 0
    found = 0
    for name in names:
        recording = recording_of_marker(name)
        if recording is None:
            continue
        marker = os.path.join(directory, name)
        try:
            if _recover_one(marker, os.path.join(directory, recording), announce, forget):
                found += 1
        except OSError as e:
            logger.error("cannot recover %s: %s", os.path.join(directory, recording), e)
    return found


def _recover_one(marker: str, path: str, announce: Announce, forget) -> bool:
    fd = pending.claim(marker)
    if fd is None:
        return False  # gone, or held by a pancake.py that is writing it now
    try:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            logger.info("%s is gone (or not a file): forgetting its marker", path)
            pending.PendingMarker.remove(marker)
            return False
        message = _noted_announcement(fd, path)
        if message is None:
            size = trim_last_access_unit(path)
            timed = _trim_timestamps(path, st.st_size if size is None else size)
            if size == 0:
                logger.warning("%s holds no whole frame: removed", path)
                os.unlink(path)
                _remove_timestamps(path)
                pending.PendingMarker.remove(marker)
                return False
            logger.warning(
                "recovered %s, left unfinished by an earlier run (%d bytes; the last frame, "
                "which may be torn, was cut off)",
                path,
                size if size is not None else st.st_size,
            )
            if timed is not None:
                logger.info("%s: its timestamp file lists its first %d frames", path, timed)
            message = Message(h264=path)
        else:
            logger.warning("recovered %s, finished by an earlier run but never announced", path)
    finally:
        os.close(fd)
    announce(message, lambda: forget(marker))
    return True


def _trim_timestamps(path: str, size: int) -> Optional[int]:
    """Cut the timestamp file of ``path`` to the frames within ``size`` bytes.

    Returns how many frames it lists, None when there is none (or it was unusable,
    and removed: postproc then times the video at its ``fps``).
    """
    try:
        return timestamps.trim_to(timestamps.pts_path(path), size)
    except OSError as e:
        logger.error("cannot trim the timestamp file of %s: %s", path, e.strerror)
        _remove_timestamps(path)
        return None


def _remove_timestamps(path: str) -> None:
    try:
        os.unlink(timestamps.pts_path(path))
    except FileNotFoundError:
        pass


def recover(directories: Iterable[str], announce: Announce, forget) -> int:
    """``recover_directory`` for each distinct directory pancake.py records into."""
    seen: List[str] = []
    found = 0
    for directory in directories:
        real = os.path.realpath(directory)
        if real not in seen:
            seen.append(real)
            found += recover_directory(directory, announce, forget)
    return found
