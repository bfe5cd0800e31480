"""A fake ``Picamera2`` (0.3) that films the sim scene into YUV420 streams.

Same names and signatures as the documented API for what the backend calls.
``configure`` applies Picamera2's documented checks (stream formats and sizes,
even sides, lores no larger than main, lores YUV on the VC4 platform of Pi 4
and earlier, the transform's type) plus what the Pi's ISP cannot do (transpose).
The capture thread renders the scene at the main size with the transform's
flips, scales it for lores, builds a request with one stride-padded YUV420
buffer per stream, runs ``pre_callback`` on it (writes land in the buffers),
feeds the running encoders of each stream, then ``post_callback``, then serves
``capture_array`` callers. Every call is recorded in ``log``.

Test hooks (not in Picamera2): ``picamera2.fake.cameras`` lists every camera;
environment ``FAKE_PICAMERA2_CAMERAS=n`` sets how many cameras
``global_camera_info`` reports (default 1); ``FAKE_PICAMERA2_LOG=path`` writes
the usage log as JSON on close.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time

from libcamera import ColorSpace, Transform

from raspberry_pancake.camera.base import CameraSettings
from raspberry_pancake.camera.scene import Scene

from . import fake
from .encoders import Encoder
from .outputs import Output
from .request import CompletedRequest, image_to_yuv420, stride_for

YUV_FORMATS = ("YUV420", "YVU420", "NV12", "NV21", "YUYV", "UYVY")
RGB_FORMATS = ("XBGR8888", "XRGB8888", "BGR888", "RGB888")
STREAM_KEYS = {"format", "size", "stride", "framesize", "preserve_ar"}


def _stream(defaults, given):
    if given is None:
        return None
    unknown = set(given) - STREAM_KEYS
    if unknown:
        raise ValueError(
            f"Bad key {sorted(unknown)[0]!r}: valid stream configuration keys are {STREAM_KEYS}"
        )
    stream = dict(defaults)
    stream.update(given)
    stream["size"] = tuple(stream["size"])
    return stream


class Picamera2:
    """The camera; configured and started from the caller's thread, frames on its own thread."""

    sensor_resolution = (3280, 2464)
    platform = "VC4"

    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None):
        cameras = Picamera2.global_camera_info()
        if camera_num >= len(cameras):
            raise IndexError("list index out of range")
        self.log = [("open", camera_num)]
        self.camera_config = None
        self.started = False
        self.pre_callback = None
        self.post_callback = None
        self._encoders = {}  # encoder -> stream name
        # guards _encoders against the capture thread
        self._lock = threading.Lock()
        self._closed = False
        self._thread = None
        self._stop = threading.Event()
        self._frame_ready = threading.Condition()
        self._latest = None
        self._sequence = 0
        self.frames = 0
        self.fake_mapped = collections.Counter()
        self.callback_errors = []
        fake.cameras.append(self)

    @staticmethod
    def global_camera_info():
        count = int(os.environ.get("FAKE_PICAMERA2_CAMERAS", "1"))
        return [
            {
                "Model": "imx219",
                "Location": 2,
                "Rotation": 0,
                "Id": f"/base/fake/imx219@{n}",
                "Num": n,
            }
            for n in range(count)
        ]

    @property
    def camera_controls(self):
        return {"FrameDurationLimits": (33333, 1000000, 33333)}

    def _check_open(self):
        if self._closed:
            raise RuntimeError("Camera not opened")

    # configuration

    def create_video_configuration(
        self,
        main={},  # noqa: B006 (Picamera2's documented defaults, never mutated here)
        lores=None,
        raw={},  # noqa: B006
        transform=Transform(),  # noqa: B008
        colour_space=None,
        buffer_count=6,
        controls={},  # noqa: B006
        display="main",
        encode="main",
        queue=True,
        sensor={},  # noqa: B006
        use_case="video",
    ):
        self._check_open()
        self.log.append(("create_video_configuration", {"main": main, "lores": lores}))
        main = _stream({"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}, main)
        main["size"] = (main["size"][0] // 2 * 2, main["size"][1] // 2 * 2)
        lores = _stream({"format": "YUV420", "size": main["size"], "preserve_ar": False}, lores)
        if lores is not None:
            lores["size"] = (lores["size"][0] // 2 * 2, lores["size"][1] // 2 * 2)
        if colour_space is None:
            small = main["size"][0] < 1280 or main["size"][1] < 720
            colour_space = ColorSpace.Smpte170m() if small else ColorSpace.Rec709()
        merged = {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)}
        merged.update(controls)
        for name in (display, encode):
            if name is not None and {"main": main, "lores": lores}.get(name) is None:
                raise RuntimeError(f"Stream {name} was not defined")
        return {
            "use_case": use_case,
            "transform": transform,
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main,
            "lores": lores,
            "raw": None,
            "controls": merged,
            "sensor": sensor,
            "display": display,
            "encode": encode,
        }

    def _check_stream(self, stream, name):
        if not isinstance(stream, dict):
            raise RuntimeError(name + " stream should be a dictionary")
        fmt = stream.get("format")
        if not isinstance(fmt, str):
            raise RuntimeError("format in " + name + " stream should be a string")
        if fmt not in YUV_FORMATS + RGB_FORMATS:
            raise RuntimeError("Bad format " + fmt + " in stream " + name)
        if fmt != "YUV420":
            raise RuntimeError(f"the fake implements only YUV420 streams, not {fmt}")
        size = stream.get("size")
        if not isinstance(size, tuple) or len(size) != 2:
            raise RuntimeError("size in " + name + " stream should be (width, height)")
        if size[0] % 2 or size[1] % 2:
            raise RuntimeError("width and height should be even")

    def configure(self, camera_config=None):
        self._check_open()
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = dict(camera_config)
        self.log.append(
            ("configure", {k: config.get(k) for k in ("main", "lores", "transform", "controls")})
        )
        if not isinstance(config.get("transform"), Transform):
            raise RuntimeError("Transform has incorrect type")
        if config["transform"].transpose:
            raise RuntimeError("the Pi's ISP cannot transpose: only flips are possible")
        if not isinstance(config.get("colour_space"), ColorSpace):
            raise RuntimeError("Colour space has incorrect type")
        self._check_stream(config["main"], "main")
        if config.get("lores") is not None:
            self._check_stream(config["lores"], "lores")
            (mw, mh), (lw, lh) = config["main"]["size"], config["lores"]["size"]
            if lw > mw or lh > mh:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if self.platform == "VC4" and config["lores"]["format"] not in YUV_FORMATS:
                raise RuntimeError("lores stream must be YUV")
        limits = config["controls"].get("FrameDurationLimits")
        if not (isinstance(limits, tuple) and len(limits) == 2 and 0 < limits[0] <= limits[1]):
            raise RuntimeError(f"bad FrameDurationLimits {limits!r}")
        for name in ("main", "lores"):
            stream = config.get(name)
            if stream is not None:
                stream = dict(stream)
                stream["stride"] = stride_for(stream["size"][0])
                stream["framesize"] = stream["stride"] * stream["size"][1] * 3 // 2
                config[name] = stream
        self.camera_config = config

    def camera_configuration(self):
        return self.camera_config

    def stream_configuration(self, name="main"):
        return self.camera_config[name]

    def set_controls(self, controls):
        self.log.append(("set_controls", dict(controls)))
        self.camera_config["controls"].update(controls)

    # running

    def start(self, config=None, show_preview=False):
        self._check_open()
        self.log.append(("start",))
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._capture, name="fake-libcamera", daemon=True)
        self.started = True
        self._thread.start()

    def stop(self):
        self.log.append(("stop",))
        if not self.started:
            return
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self.started = False

    def close(self):
        if self._closed:
            return
        self.log.append(("close",))
        if self._encoders:
            self.log.append(("closed with running encoders", len(self._encoders)))
        self.stop()
        self._closed = True
        path = os.environ.get("FAKE_PICAMERA2_LOG")
        if path:
            with open(path, "w") as f:
                json.dump({"log": self.log}, f, default=repr)

    # encoders

    def start_encoder(self, encoder=None, output=None, pts=None, quality=None, name=None):
        self._check_open()
        if encoder is None or not isinstance(encoder, Encoder):
            raise RuntimeError("No encoder specified")
        if output is not None:
            encoder.output = output
        if name is None:
            name = self.camera_config["encode"]
        stream = self.camera_config.get(name)
        if stream is None:
            raise RuntimeError(f"Encode stream {name} was not defined")
        self.log.append(("start_encoder", type(encoder).__name__, name, vars_of(encoder)))
        encoder.name = name
        encoder._configure(stream["size"], stream["format"], stream["stride"])
        encoder.start(quality=quality)
        with self._lock:
            self._encoders[encoder] = name

    def stop_encoder(self, encoders=None):
        self.log.append(("stop_encoder",))
        with self._lock:
            if encoders is None:
                chosen = list(self._encoders)
            elif isinstance(encoders, Encoder):
                chosen = [encoders]
            else:
                chosen = list(encoders)
            for encoder in chosen:
                del self._encoders[encoder]
        for encoder in chosen:
            encoder.stop()

    @property
    def encoders(self):
        return set(self._encoders)

    # capture

    def capture_array(self, name="main", wait=None, signal_function=None):
        if not self.started:
            raise RuntimeError("the fake camera is not started (a real one would block forever)")
        if self.camera_config.get(name) is None:
            raise RuntimeError(f"stream {name} is not configured")
        with self._frame_ready:
            seen = self._sequence
            if not self._frame_ready.wait_for(lambda: self._sequence > seen, timeout=10):
                raise TimeoutError("no frame within 10 s")
            return self._latest[name].copy()

    def _capture(self):
        config = self.camera_config
        main, lores = config["main"], config.get("lores")
        t = config["transform"]
        period = config["controls"]["FrameDurationLimits"][0] / 1e6
        scene = Scene(
            CameraSettings(
                resolution=main["size"],
                fps=max(1, min(120, round(1 / period))),
                hflip=bool(t.hflip),
                vflip=bool(t.vflip),
            )
        )
        start = time.monotonic()
        index = 0
        while not self._stop.is_set():
            delay = start + index * period - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            now_ns = time.monotonic_ns()
            image = scene.render(index, now_ns / 1e9 - start, time.time(), annotate=False)
            buffers = {"main": image_to_yuv420(image, main["stride"])}
            if lores is not None:
                small = image.resize(lores["size"])
                buffers["lores"] = image_to_yuv420(small, lores["stride"])
            request = CompletedRequest(
                self, buffers, {"SensorTimestamp": now_ns, "FrameDuration": int(period * 1e6)}
            )
            self._callback(self.pre_callback, request)
            with self._lock:
                running = list(self._encoders.items())
            for encoder, name in running:
                try:
                    encoder.encode(name, request)
                except Exception as e:  # an output's failure: recorded, the camera goes on
                    self.callback_errors.append(("encoder", repr(e)))
            self._callback(self.post_callback, request)
            with self._frame_ready:
                self._latest = buffers
                self._sequence += 1
                self._frame_ready.notify_all()
            index += 1
            self.frames = index
            late = time.monotonic() - (start + index * period)
            if late > period:
                index += int(late / period)

    def _callback(self, callback, request):
        if callback is None:
            return
        try:
            callback(request)
        except Exception as e:
            self.callback_errors.append(("callback", repr(e)))


def vars_of(encoder):
    """The constructor settings of an encoder, for the log."""
    return {
        k: v for k, v in vars(encoder).items() if not k.startswith("_") and k != "frames_encoded"
    }


__all__ = ["Output", "Picamera2"]
