"""The classes of libcamera's Python bindings that Picamera2 0.3.38 uses, over a fake imx219.

Names, attributes and call shapes follow the bindings (libcamera's
``src/py/libcamera``), as read from what Picamera2 calls: it imports
``libcamera``, type-checks ``libcamera._libcamera.ColorSpace`` and ``Transform``,
and reaches the control and property ids through ``libcamera.controls`` and
``libcamera.properties``. What happens behind the names is the fake's:

- ``CameraManager.singleton()`` lists the fake cameras (the environment's
  ``FAKE_PICAMERA2_CAMERAS``, default 1) and hands completed requests over an
  event file descriptor, as the bindings do.
- ``CameraConfiguration.validate()`` applies what libcamera's Raspberry Pi
  pipeline handler decides (see ``validate`` for each rule and its source),
  ``Camera.configure()`` then fixes the sensor mode, and the camera's
  ``FrameDurationLimits`` become that mode's (``imx219.py``).
- ``Camera.start()`` starts the sensor thread (``sensor.py``), which fills the
  queued requests' buffers with the sim scene and completes them.

Which Pi is modelled comes from the environment's ``FAKE_PI_PLATFORM`` (``vc4``,
the default, or ``pisp``), which the device stand-ins in tests/fakes/fake_pi_kernel
also read.
"""

from __future__ import annotations

import enum
import errno
import os
import threading
from typing import Dict, List, Optional

from . import imx219

# --- geometry and formats ---------------------------------------------------------


class Size:
    def __init__(self, width: int = 0, height: int = 0):
        self.width, self.height = int(width), int(height)

    def __eq__(self, other):
        return isinstance(other, Size) and (self.width, self.height) == (other.width, other.height)

    def __hash__(self):
        return hash((self.width, self.height))

    def __str__(self):
        return f"{self.width}x{self.height}"

    __repr__ = __str__


class Rectangle:
    def __init__(self, x: int = 0, y: int = 0, width: int = 0, height: int = 0):
        self.x, self.y, self.width, self.height = int(x), int(y), int(width), int(height)

    def __str__(self):
        return f"({self.x}, {self.y})/{self.width}x{self.height}"

    __repr__ = __str__


class Point:
    def __init__(self, x: int = 0, y: int = 0):
        self.x, self.y = int(x), int(y)


class PixelFormat:
    """A format by its libcamera name ("YUV420", "SRGGB10_CSI2P", ...)."""

    def __init__(self, name: str = ""):
        self.name = str(name)

    def __eq__(self, other):
        return isinstance(other, PixelFormat) and other.name == self.name

    def __hash__(self):
        return hash(self.name)

    def __str__(self):
        return self.name

    __repr__ = __str__


class Transform:
    """Flips and transpose; ``Transform(other)`` copies, as the bindings' copy constructor."""

    def __init__(self, rotation=0, hflip=False, vflip=False, transpose=False):
        if isinstance(rotation, Transform):
            other = rotation
            self.hflip, self.vflip, self.transpose = other.hflip, other.vflip, other.transpose
            return
        if rotation not in (0, 90, 180, 270):
            raise ValueError(f"Invalid rotation {rotation}")
        # libcamera: Rot90 = Transpose|HFlip, Rot180 = HFlip|VFlip, Rot270 = Transpose|VFlip
        rh, rv, rt = {0: (0, 0, 0), 90: (1, 0, 1), 180: (1, 1, 0), 270: (0, 1, 1)}[rotation]
        self.hflip = bool(hflip) ^ bool(rh)
        self.vflip = bool(vflip) ^ bool(rv)
        self.transpose = bool(transpose) ^ bool(rt)

    def __str__(self):
        parts = [n for n in ("hflip", "vflip", "transpose") if getattr(self, n)]
        return "|".join(parts) or "identity"

    __repr__ = __str__


class Orientation(enum.Enum):
    """The EXIF orientations, by libcamera's names."""

    Rotate0 = 1
    Rotate0Mirror = 2
    Rotate180 = 3
    Rotate180Mirror = 4
    Rotate90Mirror = 5
    Rotate270 = 6
    Rotate90 = 7
    Rotate270Mirror = 8


class ColorSpace:
    """Primaries, transfer function, Y'CbCr encoding and range, as libcamera::ColorSpace.

    No ``__eq__`` here: the bindings' objects compare by identity until Picamera2
    installs its own comparison at import, and Picamera2 keeps some in a set.
    """

    class Primaries(enum.Enum):
        Raw = 0
        Smpte170m = 1
        Rec709 = 2
        Rec2020 = 3

    class TransferFunction(enum.Enum):
        Linear = 0
        Srgb = 1
        Rec709 = 2

    class YcbcrEncoding(enum.Enum):
        Null = 0
        Rec601 = 1
        Rec709 = 2
        Rec2020 = 3

    class Range(enum.Enum):
        Full = 0
        Limited = 1

    def __init__(self, primaries=None, transferFunction=None, ycbcrEncoding=None, range=None):
        if isinstance(primaries, ColorSpace):
            other = primaries
            primaries, transferFunction = other.primaries, other.transferFunction
            ycbcrEncoding, range = other.ycbcrEncoding, other.range
        self.primaries = primaries
        self.transferFunction = transferFunction
        self.ycbcrEncoding = ycbcrEncoding
        self.range = range

    # the named colour spaces: (primaries, transfer function, Y'CbCr encoding, range)
    _NAMED = {
        "Raw": ("Raw", "Linear", "Null", "Full"),
        "Srgb": ("Rec709", "Srgb", "Null", "Full"),
        "Sycc": ("Rec709", "Srgb", "Rec601", "Full"),
        "Smpte170m": ("Smpte170m", "Rec709", "Rec601", "Limited"),
        "Rec709": ("Rec709", "Rec709", "Rec709", "Limited"),
        "Rec2020": ("Rec2020", "Rec709", "Rec2020", "Limited"),
    }

    @classmethod
    def _named(cls, name: str) -> ColorSpace:
        p, t, e, r = cls._NAMED[name]
        return cls(cls.Primaries[p], cls.TransferFunction[t], cls.YcbcrEncoding[e], cls.Range[r])

    @staticmethod
    def Raw():
        return ColorSpace._named("Raw")

    @staticmethod
    def Srgb():
        return ColorSpace._named("Srgb")

    @staticmethod
    def Sycc():
        return ColorSpace._named("Sycc")

    @staticmethod
    def Smpte170m():
        return ColorSpace._named("Smpte170m")

    @staticmethod
    def Rec709():
        return ColorSpace._named("Rec709")

    @staticmethod
    def Rec2020():
        return ColorSpace._named("Rec2020")

    def same_as(self, other) -> bool:
        fields = ("primaries", "transferFunction", "ycbcrEncoding", "range")
        return all(getattr(self, f) == getattr(other, f) for f in fields)

    def __str__(self):
        for name in self._NAMED:
            if self.same_as(ColorSpace._named(name)):
                return name
        return "/".join(
            str(getattr(getattr(self, f), "name", None))
            for f in ("primaries", "transferFunction", "ycbcrEncoding", "range")
        )

    __repr__ = __str__


# --- controls ---------------------------------------------------------------------


class ControlType(enum.Enum):
    None_ = 0
    Bool = 1
    Byte = 2
    Integer32 = 3
    Integer64 = 4
    Float = 5
    String = 6
    Rectangle = 7
    Size = 8
    Point = 9


class ControlId:
    """A control or property id; hashed by identity, as the bindings' objects."""

    def __init__(self, numeric_id: int, name: str, ctype: ControlType):
        self.id, self.name, self.type = numeric_id, name, ctype

    def __repr__(self):
        return f"libcamera.ControlId({self.id}, {self.name}, {self.type})"


class ControlInfo:
    def __init__(self, min=None, max=None, default=None, values=()):
        self.min, self.max, self.default, self.values = min, max, default, list(values)

    def __repr__(self):
        return f"ControlInfo({self.min}, {self.max}, {self.default})"


# --- buffers ----------------------------------------------------------------------


class _SharedFD:
    """libcamera's SharedFD made from an int: it duplicates the descriptor, owns the copy."""

    def __init__(self, fd: int):
        self.fd = os.dup(fd) if fd >= 0 else -1

    def __del__(self):
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass


class FrameMetadata:
    class Status(enum.Enum):
        Success = 0
        Error = 1
        Cancelled = 2

    class Plane:
        def __init__(self, bytes_used: int = 0):
            self.bytes_used = bytes_used

    def __init__(self):
        self.status = FrameMetadata.Status.Success
        self.sequence = 0
        self.timestamp = 0
        self.planes: List[FrameMetadata.Plane] = []


class FrameBuffer:
    class Plane:
        """One plane; setting ``fd`` duplicates it (the bindings build a SharedFD)."""

        def __init__(self):
            self._fd: Optional[_SharedFD] = None
            self.offset = 0
            self.length = 0

        @property
        def fd(self) -> int:
            return -1 if self._fd is None else self._fd.fd

        @fd.setter
        def fd(self, value: int) -> None:
            self._fd = _SharedFD(int(value))

    def __init__(self, planes, cookie: int = 0):
        self.planes = list(planes)
        self.cookie = cookie
        self.metadata = FrameMetadata()
        self.metadata.planes = [FrameMetadata.Plane(p.length) for p in self.planes]


# --- streams and configurations ---------------------------------------------------


class StreamRole(enum.Enum):
    Raw = 0
    StillCapture = 1
    VideoRecording = 2
    Viewfinder = 3


class StreamFormats:
    def __init__(self, sizes_by_format: Dict[str, List[Size]]):
        self._sizes = sizes_by_format

    @property
    def pixel_formats(self) -> List[PixelFormat]:
        return [PixelFormat(name) for name in self._sizes]

    def sizes(self, pixel_format) -> List[Size]:
        return list(self._sizes.get(str(pixel_format), []))


class Stream:
    def __init__(self, configuration):
        self.configuration = configuration


class StreamConfiguration:
    def __init__(self, role: StreamRole, formats: StreamFormats):
        self.role = role
        self.size = Size()
        self.pixel_format = PixelFormat("")
        self.stride = 0
        self.frame_size = 0
        self.buffer_count = 0
        self.color_space: Optional[ColorSpace] = None
        self.formats = formats
        self._stream = Stream(self)

    @property
    def stream(self) -> Stream:
        return self._stream

    def __repr__(self):
        return f"{self.size}-{self.pixel_format}"


class SensorConfiguration:
    def __init__(self):
        self.bit_depth = 0
        self.output_size = Size()
        self.analog_crop = Rectangle()


class CameraConfiguration:
    class Status(enum.Enum):
        Valid = 0
        Adjusted = 1
        Invalid = 2

    def __init__(self, camera: Camera, configs: List[StreamConfiguration]):
        self._camera = camera
        self._configs = configs
        self.orientation = Orientation.Rotate0
        self.sensor_config: Optional[SensorConfiguration] = None

    def at(self, index: int) -> StreamConfiguration:
        return self._configs[index]

    def __iter__(self):
        return iter(self._configs)

    def __len__(self):
        return len(self._configs)

    @property
    def size(self) -> int:
        return len(self._configs)

    @property
    def empty(self) -> bool:
        return not self._configs

    def validate(self) -> CameraConfiguration.Status:
        """Check and adjust the configuration as libcamera's Raspberry Pi pipeline does.

        Each rule, and where it comes from:
        - processed streams: at most two, the second ("lores", the ISP's Output1)
          no larger than the first and, on VC4, YUV (libcamera's vc4 pipeline;
          Picamera2's check_camera_config states the same rules);
        - sizes: even widths and heights, within the ISP's limits;
        - strides: Y rows aligned to 64 bytes on VC4 and 128 on PiSP for YUV420,
          as Picamera2's align_stream says the hardware does (its chroma rows are
          half as wide and aligned to 32/64);
        - raw stream: the sensor mode's size and format (libcamera's
          RPi::PipelineHandlerBase::validate adjusts it to the mode);
        - sensor configuration: must name one of the sensor's modes exactly;
        - orientation: the imx219 flips but cannot transpose, so a quarter turn
          is adjusted away (libcamera's CameraSensor::computeTransform).
        """
        status = CameraConfiguration.Status.Valid
        adjusted = CameraConfiguration.Status.Adjusted
        invalid = CameraConfiguration.Status.Invalid
        platform = imx219.platform()
        if self.orientation in (
            Orientation.Rotate90,
            Orientation.Rotate270,
            Orientation.Rotate90Mirror,
            Orientation.Rotate270Mirror,
        ):
            self.orientation = Orientation.Rotate0
            status = adjusted
        mode = imx219.choose_mode(self.sensor_config, self._configs)
        if mode is None:
            return invalid
        processed = [c for c in self._configs if c.role != StreamRole.Raw]
        if len(processed) > 2:
            return invalid
        for n, cfg in enumerate(processed):
            name = str(cfg.pixel_format)
            if name not in imx219.OUTPUT_FORMATS:
                return invalid
            if n == 1 and platform == "vc4" and name not in imx219.YUV_FORMATS:
                return invalid
            w, h = cfg.size.width, cfg.size.height
            if not (imx219.ISP_MIN[0] <= w <= imx219.ISP_MAX[0]) or not (
                imx219.ISP_MIN[1] <= h <= imx219.ISP_MAX[1]
            ):
                return invalid
            if w % 2 or h % 2:
                cfg.size = Size(w - w % 2, h - h % 2)
                status = adjusted
            stride, frame_size = imx219.stride_and_frame_size(name, cfg.size, platform)
            if cfg.stride and cfg.stride != stride:
                status = adjusted
            cfg.stride, cfg.frame_size = stride, frame_size
            if cfg.color_space is None:
                cfg.color_space = ColorSpace.Sycc()
                status = adjusted
            if cfg.buffer_count < 1:
                cfg.buffer_count = 1
                status = adjusted
        if len(processed) == 2:
            main, lores = processed[0].size, processed[1].size
            if lores.width > main.width or lores.height > main.height:
                return invalid
        for cfg in self._configs:
            if cfg.role != StreamRole.Raw:
                continue
            raw_size = Size(*mode.size)
            if cfg.size != raw_size or str(cfg.pixel_format) != mode.raw_format:
                status = adjusted
            cfg.size, cfg.pixel_format = raw_size, PixelFormat(mode.raw_format)
            cfg.stride, cfg.frame_size = mode.raw_stride(), mode.raw_frame_size()
            cfg.color_space = ColorSpace.Raw()
            cfg.buffer_count = max(cfg.buffer_count, 1)
        if self.sensor_config is None:
            self.sensor_config = SensorConfiguration()
            self.sensor_config.bit_depth = mode.bit_depth
            self.sensor_config.output_size = Size(*mode.size)
        return status


# --- requests ---------------------------------------------------------------------


class Request:
    class Status(enum.Enum):
        Pending = 0
        Complete = 1
        Cancelled = 2

    class ReuseFlag(enum.IntFlag):
        Default = 0
        ReuseBuffers = 1

    def __init__(self, camera: Camera, cookie: int):
        self._camera = camera
        self.cookie = cookie
        self.buffers: Dict[Stream, FrameBuffer] = {}
        self.metadata: Dict[ControlId, object] = {}
        self.controls: Dict[ControlId, object] = {}
        self.status = Request.Status.Pending
        self.sequence = 0

    def add_buffer(self, stream: Stream, buffer: FrameBuffer) -> None:
        if stream not in self._camera._configured_streams():
            raise RuntimeError(f"Failed to add buffer: {-errno.EINVAL}")
        self.buffers[stream] = buffer

    def set_control(self, control_id: ControlId, value) -> None:
        self.controls[control_id] = value

    def reuse(self, flags=ReuseFlag.ReuseBuffers) -> None:
        """Make the request ready to queue again (the bindings always keep the buffers)."""
        self.status = Request.Status.Pending
        self.metadata = {}
        self.controls = {}

    def __repr__(self):
        return f"<libcamera.Request cookie={self.cookie} status={self.status.name}>"


# --- cameras ----------------------------------------------------------------------


class Camera:
    """One fake imx219; configured, started and stopped from the application's threads."""

    def __init__(self, manager: CameraManager, number: int):
        self._manager = manager
        self.id = imx219.camera_id(number)
        self._acquired = False
        self._config: Optional[CameraConfiguration] = None
        self._mode: Optional[imx219.SensorMode] = None
        self._sensor = None  # sensor.Sensor while started
        # guards _acquired against two Picamera2 objects opening the camera at once
        self._lock = threading.Lock()

    @property
    def acquired(self) -> bool:
        """Whether an application holds the camera (a test hook: not in the bindings)."""
        return self._acquired

    @property
    def properties(self) -> Dict[ControlId, object]:
        return imx219.properties()

    @property
    def controls(self) -> Dict[ControlId, ControlInfo]:
        return imx219.controls(self._mode)

    def acquire(self) -> None:
        with self._lock:
            if self._acquired:
                raise RuntimeError(f"Failed to acquire camera: {-errno.EBUSY}")
            self._acquired = True

    def release(self) -> None:
        with self._lock:
            if self._sensor is not None:
                raise RuntimeError(f"Failed to release camera: {-errno.EBUSY}")
            self._acquired = False
            self._config = None
            self._mode = None

    def generate_configuration(self, roles) -> CameraConfiguration:
        configs = [StreamConfiguration(role, imx219.stream_formats(role)) for role in roles]
        for cfg in configs:
            imx219.default_stream(cfg)
        return CameraConfiguration(self, configs)

    def configure(self, config: CameraConfiguration) -> int:
        if not self._acquired or self._sensor is not None:
            return -errno.EACCES
        if config.validate() == CameraConfiguration.Status.Invalid:
            return -errno.EINVAL
        self._config = config
        self._mode = imx219.mode_for(config.sensor_config)
        return 0

    def _configured_streams(self):
        return [] if self._config is None else [c.stream for c in self._config]

    def create_request(self, cookie: int = 0) -> Optional[Request]:
        if self._config is None:
            return None
        return Request(self, cookie)

    def start(self, controls=None) -> None:
        from .sensor import Sensor

        if self._config is None:
            raise RuntimeError(f"Failed to start camera: {-errno.EACCES}")
        if self._sensor is not None:
            raise RuntimeError(f"Failed to start camera: {-errno.EBUSY}")
        self._sensor = Sensor(self, self._config, self._mode, dict(controls or {}))
        self._sensor.start()

    def queue_request(self, request: Request) -> None:
        if self._sensor is None:
            raise RuntimeError(f"Failed to queue request: {-errno.EACCES}")
        if request.status != Request.Status.Pending:
            raise RuntimeError(f"Failed to queue request: {-errno.EBUSY}")
        self._sensor.queue(request)

    def stop(self) -> None:
        if self._sensor is None:
            return
        sensor, self._sensor = self._sensor, None
        for request in sensor.stop():
            request.status = Request.Status.Cancelled
            self._manager._complete(request)


class CameraManager:
    """The process's one manager: the cameras, and completed requests behind an event fd."""

    _instance: Optional[CameraManager] = None
    _instance_lock = threading.Lock()

    def __init__(self):
        count = int(os.environ.get("FAKE_PICAMERA2_CAMERAS", "1"))
        self.cameras = [Camera(self, n) for n in range(count)]
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # guards _ready, filled by the sensor threads and emptied by the application
        self._ready_lock = threading.Lock()
        self._ready: List[Request] = []

    @staticmethod
    def singleton() -> CameraManager:
        with CameraManager._instance_lock:
            if CameraManager._instance is None:
                CameraManager._instance = CameraManager()
            return CameraManager._instance

    @property
    def version(self) -> str:
        return "v0.0.0+fake"

    @property
    def event_fd(self) -> int:
        return self._read_fd

    def get(self, camera_id: str) -> Optional[Camera]:
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        return None

    def get_ready_requests(self) -> List[Request]:
        try:
            while os.read(self._read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        with self._ready_lock:
            ready, self._ready = self._ready, []
        return ready

    def _complete(self, request: Request) -> None:
        """Called on a sensor thread (or by stop()) when a request is done."""
        with self._ready_lock:
            self._ready.append(request)
        try:
            os.write(self._write_fd, b"\x01")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already


from . import controls, properties  # noqa: E402  (the ids need the classes above)

__all__ = [
    "Camera",
    "CameraConfiguration",
    "CameraManager",
    "ColorSpace",
    "ControlId",
    "ControlInfo",
    "ControlType",
    "FrameBuffer",
    "FrameMetadata",
    "Orientation",
    "PixelFormat",
    "Point",
    "Rectangle",
    "Request",
    "SensorConfiguration",
    "Size",
    "Stream",
    "StreamConfiguration",
    "StreamFormats",
    "StreamRole",
    "Transform",
    "controls",
    "properties",
]
