"""Cutting an h264 file into its frames by the sizes pancake recorded, without parsing it.

Finding frame boundaries in H.264 means parsing it, and that was most of a
conversion's time. pancake's timestamp file gives each frame's size, so the
file can be read in big chunks and cut at those sizes. The sizes are only
trusted while they hold: each frame must begin with an Annex B start code, each
frame the index calls a keyframe must hold an IDR slice, and the frames must lie
inside the file. When they do not, ``IndexMismatch`` tells the caller to parse.
"""

from __future__ import annotations

import os
import re
from typing import Iterator, Sequence

#: At most this many bytes, and ``IOV_MAX`` frames, are read by one system call.
CHUNK_BYTES = 8 * 1024 * 1024
_MAX_IOV = min(os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024, 1024)
#: A start code followed by the header of an IDR slice (nal_unit_type 5, any nal_ref_idc).
_IDR_SLICE = re.compile(b"\x00\x00\x01[\x05\x25\x45\x65]")


class IndexMismatch(Exception):
    """The recorded sizes do not describe this h264 file."""


def indexed_packets(fd: int, sizes: Sequence[int], keyframes: Sequence[bool]) -> Iterator:
    """Each frame of the h264 open at ``fd`` as a PyAV packet, cut by ``sizes``.

    Frames are read straight into their packets, many per ``preadv``, so each
    byte is copied once on the way in. Raises ``IndexMismatch`` at the first
    frame that does not fit.
    """
    import av

    count = len(sizes)
    offset = 0
    first = 0
    while first < count:
        last, total = first, 0
        while (
            last < count
            and last - first < _MAX_IOV
            and (total == 0 or total + sizes[last] <= CHUNK_BYTES)
        ):
            total += sizes[last]
            last += 1
        packets = [av.Packet(sizes[k]) for k in range(first, last)]
        if os.preadv(fd, packets, offset) != total:
            raise IndexMismatch(f"the file ends before {offset + total}, its index goes on")
        for k, packet in zip(range(first, last), packets):
            _check(packet, k, keyframes[k])
            packet.is_keyframe = keyframes[k]
            yield packet
        offset += total
        first = last


def _check(packet, index: int, keyframe: bool) -> None:
    data = memoryview(packet)
    head = bytes(data[:4])
    if len(head) < 4 or not (head.startswith(b"\x00\x00\x01") or head == b"\x00\x00\x00\x01"):
        raise IndexMismatch(f"frame {index} does not begin with a start code")
    if keyframe and _IDR_SLICE.search(data) is None:
        raise IndexMismatch(f"frame {index} is listed as a keyframe but holds no IDR slice")
