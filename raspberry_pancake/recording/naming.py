"""File names of recordings, and the rule that an existing file is never replaced."""

from __future__ import annotations

import os
import time
from typing import Optional

#: Continuous segments: minute resolution, e.g. ``20200623-1715.h264``.
CONTINUOUS_FORMAT = "%Y%m%d-%H%M"
#: Detection clips and recordings: second resolution, e.g. ``20200623-180511.h264``.
DETECTION_FORMAT = "%Y%m%d-%H%M%S"
EXTENSION = ".h264"
#: A recording not yet announced has a hidden marker beside it:
#: ``.20200623-1715.h264.pending`` (see ``pending.py``). The cleanup utilities
#: never take it for a recording.
PENDING_SUFFIX = ".pending"
#: How many ``-N`` suffixes to try before giving up on a name.
MAX_SUFFIX = 9999


def continuous_name(when: float) -> str:
    """Name of a continuous segment whose first frame was captured at ``when``."""
    return time.strftime(CONTINUOUS_FORMAT, time.localtime(when)) + EXTENSION


def detection_name(when: float) -> str:
    """Name of a detection clip or recording whose first frame was captured at ``when``."""
    return time.strftime(DETECTION_FORMAT, time.localtime(when)) + EXTENSION


def pending_marker_name(recording_name: str) -> str:
    """Name of the marker that says ``recording_name`` is not yet announced."""
    return "." + recording_name + PENDING_SUFFIX


def recording_of_marker(marker_name: str) -> Optional[str]:
    """The recording a marker name stands for, or None if it is no marker."""
    inner = marker_name[1 : -len(PENDING_SUFFIX)]
    if marker_name.startswith(".") and marker_name.endswith(PENDING_SUFFIX) and inner:
        if inner.endswith(EXTENSION) and "/" not in inner:
            return inner
    return None


def candidate_names(name: str):
    """``name`` then ``name-1``, ``name-2``... with the suffix before the extension.

    The ``-N`` form is what the cleanup utilities recognise as a recording.
    """
    stem, ext = os.path.splitext(name)
    yield name
    for n in range(1, MAX_SUFFIX + 1):
        yield f"{stem}-{n}{ext}"


def create_new_file(directory: str, name: str) -> tuple:
    """Create and open a file that did not exist; return ``(fd, path)``.

    ``O_EXCL`` makes the check and the creation one step, so neither another
    process nor a clock that went backwards can make us replace a recording.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for candidate in candidate_names(name):
        path = os.path.join(directory, candidate)
        try:
            return os.open(path, flags, 0o644), path
        except FileExistsError:
            continue
    raise FileExistsError(f"{name} and {MAX_SUFFIX} suffixed variants all exist in {directory}")
