"""One exception tree for the whole package.

Each class also inherits the builtin it resembles, so callers that only know the
standard library (``except ValueError``) still catch it. ``UserError`` and its
children are mistakes a user can make and fix; the command-line layer turns them
into one line on stderr and a non-zero exit. Anything else is a bug and keeps its
traceback.
"""


class PancakeError(Exception):
    """Base of every error raised on purpose by Raspberry Pancake."""


class UserError(PancakeError):
    """Something the user typed or configured is wrong; reported in one line."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A flag value or a combination of flags that cannot work."""


class PasswordFileError(UserError, OSError):
    """The password hash file is missing, unreadable or malformed."""


class CameraUnavailableError(UserError, RuntimeError):
    """The requested camera backend cannot be used on this machine."""

    exit_code = 3


class CustomizeError(UserError, ImportError):
    """customize.py is missing, does not import, or has no callable detect()."""


class AddressInUseError(UserError, OSError):
    """A port or an abstract socket name is already taken by another process."""

    exit_code = 4


class ProtocolError(PancakeError, ValueError):
    """A datagram that does not follow the message protocol."""


class TimestampFileError(PancakeError, ValueError):
    """A timestamp (.pts) file that cannot be used: not v2, unordered, too large."""


# Run-time failures of postproc's work items: logged and contained by the worker
# that meets them, never an exit code.


class ConversionError(PancakeError, RuntimeError):
    """An h264 file could not be turned into an mp4."""


class NoSpaceError(ConversionError):
    """The mp4 directory is full: the conversion waits for space instead of failing."""

    def __init__(self, message: str, needed: int):
        super().__init__(message)
        #: Bytes the conversion needs free before it is worth trying again.
        self.needed = needed


class UploadError(PancakeError, OSError):
    """A transfer to one destination failed; the file stays queued."""

    def __init__(self, message: str, reachable: bool = False):
        super().__init__(message)
        #: True when the server answered (connected, logged in) and refused this file:
        #: the failure counts against the file. False when the server could not be
        #: reached, which says nothing about the file.
        self.reachable = reachable


class StateFullError(PancakeError, OSError):
    """The state file could not be written because its file system is full."""


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
