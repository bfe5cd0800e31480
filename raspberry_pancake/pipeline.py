"""pancake.py's recording, detection and emitting, built from the command line.

Threads: the camera's capture thread runs the recorders (pure decisions); the disk
writer, the detection thread and the emitter each have one of their own. Startup
(``build_pipeline``, ``start``) and shutdown (``close``) run on the main thread.
"""

from __future__ import annotations

import logging
from typing import List, Optional

from .detection import DetectionThread, RgbSlot, load_detect
from .emitter import Emitter
from .messages import Message
from .recording.continuous import ContinuousRecorder
from .recording.detection import AllRecorder, EdgeRecorder
from .recording.edges import Edge, EdgeInbox
from .recording.fanout import RecordingFanout
from .recording.writer import DiskWriter

logger = logging.getLogger(__name__)


def _log_only(message: Message) -> None:
    logger.debug("no --emit: %s not sent", message)


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
    ):
        self.emitter = emitter
        self.writer = writer
        self.fanout = fanout
        self.detection = detection

    def start(self) -> None:
        for part in (self.emitter, self.writer, self.detection):
            if part is not None:
                part.start()

    def close(self) -> None:
        """Stop detecting, close the files being written, announce them, stop emitting."""
        if self.detection is not None:
            self.detection.close()
        if self.fanout is not None:
            self.fanout.finish()
        if self.writer is not None:
            self.writer.close()
        if self.emitter is not None:
            self.emitter.close()


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
    inbox: Optional[EdgeInbox] = None
    if args.record_continuous:
        recorders.append(ContinuousRecorder(args.record_continuous))
    if args.record_detection:
        mode, directory = args.record_detection
        inbox = EdgeInbox()
        recorders.append((EdgeRecorder if mode == "edge" else AllRecorder)(directory, inbox))
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
    return Pipeline(emitter, writer, fanout, detection)
