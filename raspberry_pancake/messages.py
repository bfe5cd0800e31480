"""The datagram protocol between pancake.py and a post-processor.

One JSON object per datagram, sent to the abstract AF_UNIX name ``"\\0" + name``.
The three shapes are those of the original project, so either side can be
swapped for the original one:

* ``{"h264": "/abs/path.h264"}``: a finished recording;
* ``{"h264": "/abs/path.h264", "detection": bool}``: an edge clip;
* ``{"detection": bool}``: a detection edge with no clip of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

from .exc import ProtocolError

#: Largest datagram either side sends or accepts; a path never comes close.
MAX_DATAGRAM = 64 * 1024


def abstract_address(name: str) -> str:
    """The abstract-namespace address for a socket name given on the command line."""
    return "\0" + name


@dataclass(frozen=True)
class Message:
    """One protocol message; at least one of the two fields is set."""

    h264: Optional[str] = None
    detection: Optional[bool] = None

    def __post_init__(self):
        if self.h264 is None and self.detection is None:
            raise ProtocolError("a message needs 'h264', 'detection' or both")

    def to_dict(self) -> dict:
        out = {}
        if self.h264 is not None:
            out["h264"] = self.h264
        if self.detection is not None:
            out["detection"] = self.detection
        return out

    def encode(self) -> bytes:
        return json.dumps(self.to_dict()).encode("utf-8")


def decode(data: bytes) -> Message:
    """Parse and check one datagram; raise ``ProtocolError`` with a short reason."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"not JSON ({e.__class__.__name__})") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"not a JSON object but {type(obj).__name__}")
    unknown = set(obj) - {"h264", "detection"}
    if unknown:
        raise ProtocolError(f"unknown keys {sorted(unknown)}")
    h264 = obj.get("h264")
    detection = obj.get("detection")
    if h264 is not None and not (isinstance(h264, str) and h264):
        raise ProtocolError("'h264' must be a non-empty string")
    if "h264" in obj and h264 is None:
        raise ProtocolError("'h264' must be a non-empty string")
    if "detection" in obj and not isinstance(detection, bool):
        raise ProtocolError("'detection' must be true or false")
    if h264 is not None and "\0" in h264:
        raise ProtocolError("'h264' contains a NUL character")
    return Message(h264=h264, detection=detection)
