"""pancake.py's recording, detection and emitting, built from the command line.

Threads: the camera's capture thread runs the recorders (pure decisions); the disk
writer, the detection thread and the emitter each have one of their own. Startup
(``build_pipeline``, ``start``) and shutdown (``close``) run on the main thread.
"""

from __future__ import annotations

import logging
from typing import Callable, List, Optional

from .detection import DetectionThread, RgbSlot, load_detect
from .emitter import Emitter
from .messages import Message
from .recording.continuous import ContinuousRecorder
from .recording.detection import AllRecorder, EdgeRecorder
from .recording.edges import Edge, EdgeInbox
from .recording.fanout import RecordingFanout
from .recording.pending import Announce
from .recording.recovery import recover
from .recording.writer import DiskWriter

logger = logging.getLogger(__name__)

#: At shutdown: how long detect() may take to return...
DETECTION_STOP_SECONDS = 2.0
#: ...how long the disk may take to finish the files (past it, they are announced
#: as written so far; systemd's TimeoutStopSec is 30 s and issue 10 asks for 20)...
DISK_FINISH_SECONDS = 8.0
#: ...how long the last messages may wait for a receiver...
EMIT_STOP_SECONDS = 3.0
#: ...and how long removing the markers of what was sent may take.
FORGET_SECONDS = 1.0


def _log_only(message: Message, done: Optional[Callable[[], None]] = None) -> None:
    logger.debug("no --emit: %s not sent", message)
    if done is not None:
        done()


class Pipeline:
    """The running parts, started and closed in an order that loses nothing.

    Used on the main thread only: ``start`` before the camera starts, ``close``
    after it stopped.
    """

    def __init__(
        self,
        emitter: Optional[Emitter],
        writer: Optional[DiskWriter],
        fanout: Optional[RecordingFanout],
        detection: Optional[DetectionThread],
        announce: Announce = _log_only,
        directories: Optional[List[str]] = None,
    ):
        self.emitter = emitter
        self.writer = writer
        self.fanout = fanout
        self.detection = detection
        self.announce = announce
        self.directories = directories or []

    def start(self) -> None:
        """Start the threads, then announce what an earlier run left unannounced."""
        for part in (self.emitter, self.writer):
            if part is not None:
                part.start()
        if self.writer is not None:
            recover(self.directories, self.announce, self.writer.forget)
        if self.detection is not None:
            self.detection.start()

    def close(self) -> None:
        """Stop detecting, close the files being written, announce them, stop emitting.

        Every step is bounded, so a stalled disk or a detect() that never returns
        cannot keep pancake.py from stopping before systemd kills it.
        """
        if self.detection is not None:
            self.detection.close(DETECTION_STOP_SECONDS)
        if self.fanout is not None:
            self.fanout.finish()
        if self.writer is not None:
            self.writer.finish(DISK_FINISH_SECONDS)
        if self.emitter is not None:
            self.emitter.close(EMIT_STOP_SECONDS)
        if self.writer is not None:
            self.writer.close(FORGET_SECONDS)  # the markers of what was just sent


def build_pipeline(args, camera) -> Optional[Pipeline]:
    """Register the outputs the flags ask for on ``camera``; None when nothing is asked.

    User mistakes (a customize file without ``detect``) raise here, before the
    camera or any thread has started.
    """
    if not (args.record_continuous or args.record_detection or args.detect):
        return None  # pancake_cli.validate refuses --emit alone
    detect = load_detect(args.customize, args.detect) if args.detect else None
    emitter = Emitter(args.emit) if args.emit else None
    announce = emitter.send if emitter is not None else _log_only

    recorders: List[object] = []
    directories: List[str] = []
    inbox: Optional[EdgeInbox] = None
    if args.record_continuous:
        recorders.append(ContinuousRecorder(args.record_continuous))
        directories.append(args.record_continuous)
    if args.record_detection:
        mode, directory = args.record_detection
        inbox = EdgeInbox()
        recorders.append((EdgeRecorder if mode == "edge" else AllRecorder)(directory, inbox))
        directories.append(directory)
    writer = fanout = None
    if recorders:
        writer = DiskWriter(announce)
        fanout = RecordingFanout(recorders, writer)
        resize = tuple(args.record_resize) if args.record_resize else None
        camera.set_h264_output(fanout, resize)

    detection = None
    if detect is not None:
        if inbox is not None:
            on_edge = inbox.put  # the recorder sends the messages, with its clips
        else:

            def on_edge(edge: Edge) -> None:
                announce(Message(detection=edge.state))

        slot = None
        if args.detect == "image":
            slot = RgbSlot()
            resize = tuple(args.detect_resize) if args.detect_resize else None
            camera.set_rgb_output(slot, resize)
        detection = DetectionThread(detect, args.detect_interval, on_edge, slot)
    return Pipeline(emitter, writer, fanout, detection, announce, directories)
