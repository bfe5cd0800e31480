"""picamera 1.13's exception and warning classes that the fake raises (same names
and bases as picamera/exc.py, so ``except`` clauses written for picamera match)."""


class PiCameraWarning(Warning):
    """Base of picamera's warnings."""


class PiCameraDeprecated(PiCameraWarning, DeprecationWarning):
    """A deprecated feature was used."""


class PiCameraResizerEncoding(PiCameraWarning):
    """A resizer was added to convert a raw format."""


class PiCameraAlphaStripping(PiCameraWarning):
    """rgb/bgr through a resizer: the alpha byte is stripped on the ARM side."""


class PiCameraResolutionRounded(PiCameraWarning):
    """A raw frame size was rounded up to the GPU's block size."""


class PiCameraError(Exception):
    """Base of picamera's errors."""


class PiCameraValueError(PiCameraError, ValueError):
    """A bad value given to the camera."""


class PiCameraRuntimeError(PiCameraError, RuntimeError):
    """An operation the camera's state does not allow."""


class PiCameraClosed(PiCameraRuntimeError):
    """The camera was used after close()."""


class PiCameraNotRecording(PiCameraRuntimeError):
    """A recording call on a port that is not recording."""


class PiCameraAlreadyRecording(PiCameraRuntimeError):
    """start_recording() on a port that is already in use."""


class PiCameraMMALError(PiCameraError):
    """An MMAL call failed (the fake raises it for its injected faults)."""

    def __init__(self, status, prefix=""):
        self.status = status
        super().__init__(f"{prefix}: status {status}" if prefix else f"MMAL status {status}")


class PiCameraPortDisabled(PiCameraMMALError):
    """A buffer was sent to a disabled port."""


class PiCameraIOError(PiCameraError, IOError):
    """An output did not take all of a buffer."""
