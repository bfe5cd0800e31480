"""The rule after a lost frame: a recording takes nothing until its next keyframe."""

from __future__ import annotations

from typing import Hashable, Set


class KeyframeGate:
    """Which recordings lost a frame, and so wait for their next keyframe.

    The frames between two keyframes are built on the ones before them: after a
    loss they would decode to smears until the next keyframe, so they are dropped
    too and the file stays a clean stream every player opens. The disk writer
    keeps one gate on each side of its queue: frames the full queue refused
    (under the writer's lock) and frames the disk refused (writer thread). Each
    gate has a single owner and no lock of its own.
    """

    def __init__(self):
        self._waiting: Set[Hashable] = set()

    def lose(self, recording: Hashable) -> None:
        """A frame of ``recording`` was lost: wait for a keyframe."""
        self._waiting.add(recording)

    def admits(self, recording: Hashable, keyframe: bool) -> bool:
        """Whether a frame of ``recording`` may go on; a keyframe ends the wait."""
        if recording in self._waiting:
            if not keyframe:
                return False
            self._waiting.discard(recording)
        return True

    def forget(self, recording: Hashable) -> None:
        """``recording`` is closed."""
        self._waiting.discard(recording)

    def any_waiting(self) -> bool:
        return bool(self._waiting)
