"""What the post-processor tells its observers (today: the MQTT publisher).

The daemon and the workers call these methods where the events happen. They are
called from the main thread and from every worker thread, so an observer must
return at once: record the event and hand it to a thread of its own. The base
class does nothing, which is what postproc does without ``--mqtt``.
"""

from __future__ import annotations

from typing import Optional


class Events:
    """The observer interface, as a set of no-ops; called from any thread."""

    def start(self) -> None:
        """The daemon is about to serve (main thread)."""

    def close(self) -> None:
        """The daemon has stopped its workers (main thread); finish quickly."""

    def detection(self, state: bool) -> None:
        """A datagram carried a detection state (main thread)."""

    def recording(self, h264: str, mp4: Optional[str], detection: Optional[bool]) -> None:
        """A recording is finished: converted to ``mp4``, or not (``None``)."""

    def uploaded(self, mp4: str, destination: str, ok: bool, detail: str) -> None:
        """One upload attempt ended; ``detail`` is the remote directory or the error."""

    def notified(self, target: str, text: str, ok: bool, detail: str) -> None:
        """A notification was delivered or given up; ``detail`` says how or why."""
