"""Calls of the C library that Python's ``os`` module does not offer (prctl,
sync_file_range), loaded once and shared by the modules that need them."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Optional, Sequence


@functools.cache
def _library() -> Optional[ctypes.CDLL]:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def function(name: str, argtypes: Optional[Sequence] = None):
    """The C library's ``name`` (errno kept for ``ctypes.get_errno``), returning an
    int; None where there is no C library or no such call (not Linux, an old one)."""
    library = _library()
    call = getattr(library, name, None) if library is not None else None
    if call is None:
        return None
    if argtypes is not None:
        call.argtypes = list(argtypes)
    call.restype = ctypes.c_int
    return call
