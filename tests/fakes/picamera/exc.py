"""The exception classes of picamera 1.13 that the fake raises (same names and bases)."""


class PiCameraError(Exception):
    """Base of picamera's errors."""


class PiCameraValueError(PiCameraError, ValueError):
    """A bad value given to the camera."""


class PiCameraRuntimeError(PiCameraError, RuntimeError):
    """An operation the camera's state does not allow."""


class PiCameraClosed(PiCameraRuntimeError):
    """The camera was used after close()."""


class PiCameraNotRecording(PiCameraRuntimeError):
    """stop_recording() on a port that is not recording."""


class PiCameraAlreadyRecording(PiCameraRuntimeError):
    """start_recording() on a port that is already recording."""
