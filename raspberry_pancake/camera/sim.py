"""The simulated camera: a drawn scene, encoded in software, paced in real time.

It is how a newcomer's first run, the tests and the benchmarks see a camera, so it
is honest: the H.264 is real libx264 output a player opens, the JPEG is a real
JPEG, and frames come at ``--fps`` in real time. Encoders run only for the
outputs that are registered, and the JPEG encoder only while a viewer waits.

``freeze()`` stops frames from arriving while the thread stays alive, which is
what a stuck camera looks like to the watchdog; ``freeze(output="h264")`` stops
only the H.264 output while the camera captures on, which is what a frozen
encoder looks like. They are rehearsals of the watchdog: started from the main
thread, the sim camera maps SIGUSR1 and SIGUSR2 to them while it runs.

Each frame's two times are read together at capture (``base.frame_times``).
"""

from __future__ import annotations

import io
import logging
import signal
import threading
import time
from typing import Dict, FrozenSet, Optional

import numpy as np
from PIL import Image

from .base import (
    Camera,
    CameraSettings,
    H264Frame,
    JpegFrame,
    RgbFrame,
    frame_times,
    output_wants_frame,
)
from .h264 import H264Encoder
from .scene import Scene

logger = logging.getLogger(__name__)

JPEG_QUALITY = 80
#: The outputs ``freeze(output=...)`` can stop one at a time.
OUTPUT_KINDS = ("h264", "jpeg", "rgb")


class SimCamera(Camera):
    """Draws and encodes on one capture thread of its own."""

    name = "sim"

    def __init__(self, settings: CameraSettings):
        super().__init__(settings)
        self._thread: Optional[threading.Thread] = None
        self._stop_event = threading.Event()
        self._frozen = threading.Event()
        # the outputs frozen alone; replaced whole, so the capture thread reads it unlocked
        self._frozen_outputs: FrozenSet[str] = frozenset()
        self._previous_handlers: Dict[int, object] = {}

    def freeze(self, frozen: Optional[bool] = None, output: Optional[str] = None) -> bool:
        """Stop (or resume) frames, as a stalled camera would; returns the new state.

        Called from the main thread (a signal handler, or a test). With ``output`` (one of
        ``OUTPUT_KINDS``) only that output stops, as when its encoder freezes
        without raising; it is neither encoded nor delivered meanwhile, so the
        H.264 stream stays decodable once it resumes. None toggles.
        """
        if output is None:
            if frozen is None:
                frozen = not self._frozen.is_set()
            (self._frozen.set if frozen else self._frozen.clear)()
            logger.warning("sim camera %s", "frozen" if frozen else "resumed")
            return frozen
        if output not in OUTPUT_KINDS:
            raise ValueError(f"no such output: {output!r}")
        if frozen is None:
            frozen = output not in self._frozen_outputs
        self._frozen_outputs = (
            self._frozen_outputs | {output} if frozen else self._frozen_outputs - {output}
        )
        logger.warning("sim camera: %s output %s", output, "frozen" if frozen else "resumed")
        return frozen

    def _start(self) -> None:
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run, name="sim-camera", daemon=True)
        self._thread.start()
        self._map_rehearsal_signals()

    def _stop(self) -> None:
        self._unmap_rehearsal_signals()
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _map_rehearsal_signals(self) -> None:
        """SIGUSR1 freezes the camera, SIGUSR2 its H.264 output (toggles; main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return  # a camera driven by a test's thread: signals are not ours to take
        rehearsals = {
            signal.SIGUSR1: lambda *_: self.freeze(),
            signal.SIGUSR2: lambda *_: self.freeze(output="h264"),
        }
        for signum, handler in rehearsals.items():
            self._previous_handlers[signum] = signal.signal(signum, handler)

    def _unmap_rehearsal_signals(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    def _run(self) -> None:
        scene = Scene(self.settings)
        fps = self.settings.fps
        encoder = None
        if self.h264_output is not None:
            encoder = H264Encoder(*self.h264_size, fps)
        period = 1.0 / fps
        start = time.monotonic()
        index = 0
        next_due = start
        while not self._stop_event.is_set():
            delay = next_due - time.monotonic()
            if delay > 0 and self._stop_event.wait(delay):
                break
            if self._frozen.is_set():
                next_due = time.monotonic() + period
                continue
            captured, when = frame_times()
            try:
                self._capture(scene, encoder, index, index * period, captured, when)
            except Exception:
                logger.exception("sim camera failed to produce frame %d", index)
            index += 1
            next_due += period
            late = time.monotonic() - next_due
            if late > period:
                # too slow for the frame rate: skip slots like a sensor drops frames
                next_due += period * int(late / period)
        if encoder is not None:
            encoder.close()

    def _capture(
        self, scene: Scene, encoder, index: int, elapsed: float, captured: float, when: float
    ) -> None:
        image = scene.render(index, elapsed, when)
        self._mark_alive()
        frozen = self._frozen_outputs
        if encoder is not None and "h264" not in frozen:
            picture = image if image.size == self.h264_size else image.resize(self.h264_size)
            for data, keyframe in encoder.encode(np.asarray(picture)):
                self._deliver(self.h264_output, H264Frame(data, keyframe, captured, when, index))
        if (
            self.jpeg_output is not None
            and "jpeg" not in frozen
            and output_wants_frame(self.jpeg_output)
        ):
            buf = io.BytesIO()
            image.save(buf, "JPEG", quality=JPEG_QUALITY)
            self._deliver(self.jpeg_output, JpegFrame(buf.getvalue(), captured, when, index))
        if (
            self.rgb_output is not None
            and "rgb" not in frozen
            and output_wants_frame(self.rgb_output)
        ):
            picture = (
                image
                if image.size == self.rgb_size
                else image.resize(self.rgb_size, Image.BILINEAR)
            )
            w, h = self.rgb_size
            self._deliver(self.rgb_output, RgbFrame(picture.tobytes(), w, h, captured, when, index))
