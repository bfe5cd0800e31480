"""Run-time failures of the post-processor's work items.

They are logged and contained by the worker that meets them; none reaches the
user as an exit code. All derive from ``exc.PancakeError`` like the rest of the tree.
"""

from __future__ import annotations

from ..exc import PancakeError


class ConversionError(PancakeError, RuntimeError):
    """An h264 file could not be turned into an mp4."""


class UploadError(PancakeError, OSError):
    """A transfer to one destination failed; the file stays queued."""


class NotifyError(PancakeError, OSError):
    """A Telegram request failed."""

    def __init__(self, message: str, permanent: bool = False, retry_after: float = 0.0):
        super().__init__(message)
        #: True when retrying cannot help (bad token, unknown chat, bad request).
        self.permanent = permanent
        #: Seconds the Bot API asked us to wait (HTTP 429), 0 otherwise.
        self.retry_after = retry_after


class StoppedError(PancakeError, RuntimeError):
    """The daemon is shutting down; the interrupted item stays in the state file."""
