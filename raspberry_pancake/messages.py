"""The datagram protocol between pancake.py and a post-processor.

One JSON object per datagram. The three shapes are those of the original
project, so either side can be swapped for the original one:

* ``{"h264": "/abs/path.h264"}``: a finished recording;
* ``{"h264": "/abs/path.h264", "detection": bool}``: an edge clip;
* ``{"detection": bool}``: a detection edge with no clip of its own.

Where they meet: a bare name (``ppp``) is the abstract AF_UNIX address
``"\\0ppp"``, as in the original project; anyone on the machine can bind or
write to such a name. A name containing a slash (``/run/raspberry-pancake/ppp``)
is a socket file, which file permissions protect.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from typing import Optional

from .exc import ProtocolError

#: Largest datagram either side sends or accepts; a path never comes close.
MAX_DATAGRAM = 64 * 1024

#: A recording's name: ``YYYYMMDD-hhmm`` or ``YYYYMMDD-hhmmss``, then the optional
#: ``-N`` (or ``_N``) pancake adds rather than replace a file, then the extension.
_RECORDING_NAME = re.compile(
    r"(?P<date>\d{8})-(?P<clock>\d{4}|\d{6})(?:[-_]\d{1,9})?\.(?P<ext>h264|mp4)"
)

#: Characters no recording path contains; CR and LF would end an FTP command.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_path_address(name: str) -> bool:
    """True when ``name`` is a socket file's path rather than an abstract name."""
    return "/" in name


def socket_address(name: str) -> str:
    """The AF_UNIX address for a socket name given on the command line."""
    return name if is_path_address(name) else "\0" + name


def recording_time(name: str, extensions=("h264", "mp4")) -> Optional[datetime.datetime]:
    """The start time in a recording's file name, or None if ``name`` is not one."""
    match = _RECORDING_NAME.fullmatch(name)
    if match is None or match.group("ext") not in extensions:
        return None
    date, clock = match.group("date"), match.group("clock")
    fields = [int(date[:4]), int(date[4:6]), int(date[6:])]
    fields += [int(clock[i : i + 2]) for i in range(0, len(clock), 2)]
    try:
        return datetime.datetime(*fields)
    except ValueError:  # 20201340-2599.h264 looks like a recording but is not one
        return None


def has_control_character(text: str) -> bool:
    return _CONTROL.search(text) is not None


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
    except RecursionError:  # [[[[...]]]]: the parser recurses once per level
        raise ProtocolError("JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"not a JSON object but {type(obj).__name__}")
    unknown = set(obj) - {"h264", "detection"}
    if unknown:
        raise ProtocolError(f"unknown keys {[key[:20] for key in sorted(unknown)[:3]]}")
    h264 = obj.get("h264")
    detection = obj.get("detection")
    if "h264" in obj and not (isinstance(h264, str) and h264):
        raise ProtocolError("'h264' must be a non-empty string")
    if "detection" in obj and not isinstance(detection, bool):
        raise ProtocolError("'detection' must be true or false")
    if h264 is not None:
        try:
            h264.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate such as "\ud800"
            raise ProtocolError("'h264' is not valid Unicode") from None
        if has_control_character(h264):
            raise ProtocolError("'h264' contains a control character")
    return Message(h264=h264, detection=detection)
