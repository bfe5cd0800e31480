"""Where a converted recording goes next: its uploads and its notifications."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

from .notify import detection_text
from .schedule import ConversionCounter
from .state import FollowUps, Note


def _nobody() -> None:
    pass


@dataclass(frozen=True)
class Routing:
    """The upload destinations and Telegram chats every mp4 is queued for, with the
    bounds of their queues, and whom to wake once a conversion has queued work.

    Read by the convert thread; ``counter`` is used by that thread only.
    """

    destinations: Tuple[str, ...] = ()
    upload_limit: int = 0
    targets: Tuple[str, ...] = ()
    notify_limit: int = 0
    counter: ConversionCounter = field(default_factory=lambda: ConversionCounter(None))
    #: Starts the uploads when ``counter`` says enough conversions are done.
    on_converted: Callable[[], None] = _nobody
    #: Wakes the notifiers when notifications were queued.
    on_notification: Callable[[], None] = _nobody

    def follow_ups(self, mp4: Optional[str], detection: Optional[bool]) -> FollowUps:
        """What the conversion of a recording (announced with ``detection``) queues.

        Only a recording announced with a detection state is notified; a failed
        conversion is still notified, as text, and uploads nothing.
        """
        notes: Tuple[Note, ...] = ()
        if detection is not None:
            text = detection_text(detection, conversion_failed=mp4 is None)
            notes = tuple(Note(target, text, mp4) for target in self.targets)
        return FollowUps(
            mp4,
            self.destinations if mp4 is not None else (),
            self.upload_limit,
            notes,
            self.notify_limit,
        )
