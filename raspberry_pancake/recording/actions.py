"""What a recorder asks of the disk writer, as plain values, and what a recorder is.

Recorders never touch the disk: they return these instructions, which keeps them
pure logic a unit test can drive with synthetic frames, and lets the disk writer
carry them out on its own thread in the order they were given. They are created
on the camera's capture thread and never changed afterwards (except
``RecordingFile.path``, which only the writer thread sets).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import List, Optional, Protocol, Union

from ..camera.base import H264Frame
from ..messages import Message

_serial = itertools.count(1)


@dataclass(eq=False)
class RecordingFile:
    """One file a recorder wants written; ``path`` is set by the writer once it exists.

    Identity (not the name) tells files apart: two files may propose the same name
    after the clock went backwards, and the writer then adds a suffix.
    """

    directory: str
    name: str
    serial: int = field(default_factory=lambda: next(_serial))
    path: Optional[str] = None

    def __repr__(self) -> str:
        return f"RecordingFile({self.name!r}, #{self.serial})"


@dataclass(frozen=True)
class Open:
    """Create ``file`` (under a free name) and keep it open for writing."""

    file: RecordingFile


@dataclass(frozen=True)
class Write:
    """Append one encoded frame to ``file``."""

    file: RecordingFile
    frame: H264Frame


@dataclass(frozen=True)
class Close:
    """Close ``file``, then announce it: ``{"h264": path}`` plus ``detection`` if set."""

    file: RecordingFile
    detection: Optional[bool] = None


@dataclass(frozen=True)
class Emit:
    """Send a message once everything given before it is done."""

    message: Message


#: Everything a recorder can ask of the disk writer.
Action = Union[Open, Write, Close, Emit]


class Recorder(Protocol):
    """Decides, frame by frame, what goes to disk; never touches it itself.

    ``on_frame`` is called on the camera's capture thread, ``finish`` on the main
    thread once the camera has stopped (it closes whatever is still open).
    """

    name: str

    def on_frame(self, frame: H264Frame) -> List[Action]: ...

    def finish(self) -> List[Action]: ...
