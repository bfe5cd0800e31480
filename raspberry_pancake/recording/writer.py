"""The disk writer: the only code that touches recording files, on a thread of its own."""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable, Deque, Dict, List, Optional

from ..messages import Message
from .actions import Close, Emit, Open, RecordingFile, Write
from .naming import create_new_file

logger = logging.getLogger(__name__)

#: How much encoded video may wait for the disk before frames are dropped: about
#: ten seconds of 1080p at a Pi camera's default bitrate.
DEFAULT_QUEUE_BYTES = 24 * 1024 * 1024
DEFAULT_QUEUE_FRAMES = 3000
#: The writer thread wakes when this much video waits, or this often: waking it for
#: every frame would cost more CPU than the writes themselves.
WAKE_BYTES = 256 * 1024
BATCH_SECONDS = 0.25

_STOP = object()


class _OpenFile:
    """Writer-side state of one file: its descriptor and how much of it is good."""

    __slots__ = ("fd", "size", "need_keyframe", "frames")

    def __init__(self, fd: Optional[int]):
        self.fd = fd
        self.size = 0
        # after a lost frame, the next frames are useless until a keyframe
        self.need_keyframe = False
        self.frames = 0


@dataclass(frozen=True)
class RecordingStatus:
    """A file being written, as /health reports it."""

    name: str
    path: Optional[str]  # None while the file could not be created
    size: int
    frames: int


class DiskWriter:
    """Carries out recorders' actions in order, off the camera's thread.

    ``put`` is called on the camera's capture thread (and on the main thread at
    shutdown) and never blocks: when the bounded queue is full a frame is dropped,
    counted and logged, and that file skips to its next keyframe so it stays
    playable. The writer thread turns a failed write (a full disk) into one log
    line, cuts the partial frame off the file, and writes again from the next
    keyframe once space is back. A file is announced (``announce`` is called with
    its message, on the writer thread) only after it is closed. The thread wakes
    when ``WAKE_BYTES`` wait, when anything but a frame arrives, or every
    ``BATCH_SECONDS``, and then writes all that waits.
    """

    def __init__(
        self,
        announce: Callable[[Message], None],
        max_bytes: int = DEFAULT_QUEUE_BYTES,
        max_frames: int = DEFAULT_QUEUE_FRAMES,
    ):
        self.announce = announce
        self.max_bytes = max_bytes
        self.max_frames = max_frames
        # guards _queue, _queued_bytes, _queued_frames, _idle, _urgent, _damaged and
        # the drop counters
        self._cond = threading.Condition(threading.Lock())
        self._idle = False  # the writer thread waits for work
        self._urgent = False  # an action other than a frame waits: no batching
        self._queue: Deque[object] = deque()
        self._queued_bytes = 0
        self._queued_frames = 0
        self._damaged: set = set()  # files that lost a frame in the queue
        self._dropping = 0  # frames dropped since the queue was last accepting
        self.frames_dropped = 0
        # written on the writer thread only; guards _files' membership for readers
        # elsewhere (their sizes are read as they are: at worst a batch behind)
        self._files_lock = threading.Lock()
        self._files: Dict[RecordingFile, _OpenFile] = {}
        # writer thread only
        self._failing: Optional[int] = None  # errno of the failure being reported
        self._lost_while_failing = 0
        self.frames_written = 0
        self.frames_lost = 0
        self._thread: Optional[threading.Thread] = None

    # producer side (capture thread, main thread)

    def put(self, action) -> None:
        with self._cond:
            if isinstance(action, Write):
                if not self._accept(action):
                    return
            elif isinstance(action, Close):
                self._damaged.discard(action.file)
            self._queue.append(action)
            if not isinstance(action, Write):
                self._urgent = True
            if self._idle and (self._urgent or self._queued_bytes >= WAKE_BYTES):
                self._cond.notify()

    def _accept(self, action: Write) -> bool:
        """Whether a frame fits; counts and logs it if not. Called with the lock held."""
        size = len(action.frame.data)
        file = action.file
        full = self._queued_bytes + size > self.max_bytes or self._queued_frames >= self.max_frames
        if full or (file in self._damaged and not action.frame.keyframe):
            if not self._dropping:
                logger.error(
                    "the disk is not keeping up: the write queue is full (%d frames, %.1f MiB),"
                    " dropping frames",
                    self._queued_frames,
                    self._queued_bytes / 2**20,
                )
            self._dropping += 1
            self.frames_dropped += 1
            self._damaged.add(file)
            return False
        if self._dropping and not self._damaged - {file}:
            logger.error("the disk caught up: %d frames were lost", self._dropping)
            self._dropping = 0
        self._damaged.discard(file)
        self._queued_bytes += size
        self._queued_frames += 1
        return True

    @property
    def queued_frames(self) -> int:
        """Frames waiting for the disk."""
        with self._cond:
            return self._queued_frames

    # status (any thread)

    def recordings(self) -> List[RecordingStatus]:
        """The files being written."""
        with self._files_lock:
            files = list(self._files.items())
        return [RecordingStatus(f.name, f.path, state.size, state.frames) for f, state in files]

    @property
    def write_error(self) -> Optional[str]:
        """The error writes are failing with right now (say "ENOSPC"), or None."""
        failing = self._failing  # one read of a value the writer thread replaces whole
        return None if failing is None else errno.errorcode.get(failing, str(failing))

    # lifecycle (main thread)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="disk-writer", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 60.0) -> None:
        """Write out what is queued, close every file, announce them; then stop."""
        self.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("the disk writer did not finish within %.0f s", timeout)
        if self._dropping:
            logger.error("%d frames were lost because the disk was too slow", self._dropping)
        logger.info(
            "disk writer: %d frames written, %d dropped (queue full), %d lost (write errors)",
            self.frames_written,
            self.frames_dropped,
            self.frames_lost,
        )

    # writer thread

    def _run(self) -> None:
        stopping = False
        while not stopping:
            with self._cond:
                self._idle = True
                self._cond.wait_for(
                    lambda: self._urgent or self._queued_bytes >= WAKE_BYTES, BATCH_SECONDS
                )
                self._idle = False
                # take everything waiting at once: one lock round per batch, not per
                # frame (so the bound holds for what waits; the batch is extra)
                batch, self._queue = self._queue, deque()
                self._queued_bytes = 0
                self._queued_frames = 0
                self._urgent = False
            for action in batch:
                if action is _STOP:
                    stopping = True
                    break
                try:
                    self.perform(action)
                except Exception:
                    logger.exception("the disk writer failed on %r", action)
        for file in list(self._files):
            self._close(Close(file))

    def perform(self, action) -> None:
        """Carry out one action; public so a test can drive it without the thread."""
        if isinstance(action, Write):
            self._write(action.file, action.frame)
        elif isinstance(action, Open):
            state = _OpenFile(self._open(action.file))
            with self._files_lock:
                self._files[action.file] = state
        elif isinstance(action, Close):
            self._close(action)
        elif isinstance(action, Emit):
            self._announce(action.message)
        else:
            raise TypeError(f"unknown action {action!r}")

    def _open(self, file: RecordingFile) -> Optional[int]:
        try:
            fd, file.path = create_new_file(file.directory, file.name)
        except OSError as e:
            self._report_failure(e, f"cannot create {file.name} in {file.directory}")
            return None
        logger.info("recording to %s", file.path)
        return fd

    def _write(self, file: RecordingFile, frame) -> None:
        state = self._files.get(file)
        if state is None:
            logger.error("frame for %r, which was never opened", file)
            return
        if state.fd is None and frame.keyframe:
            state.fd = self._open(file)  # creating it failed before: try again
        if state.fd is None or (state.need_keyframe and not frame.keyframe):
            self._lose_frame()
            return
        data = memoryview(frame.data)
        try:
            done = 0
            while done < len(data):
                done += os.write(state.fd, data[done:])
        except OSError as e:
            self._report_failure(e, f"cannot write {file.path}")
            self._cut_partial(state, file)
            self._lose_frame()
            return
        state.size += len(data)
        state.frames += 1
        state.need_keyframe = False
        self.frames_written += 1
        if self._failing is not None:
            logger.warning(
                "writing again (%s); %d frames were lost meanwhile",
                file.path,
                self._lost_while_failing,
            )
            self._failing = None
            self._lost_while_failing = 0

    def _cut_partial(self, state: _OpenFile, file: RecordingFile) -> None:
        """Remove a half-written frame so the file stays a clean stream."""
        state.need_keyframe = True
        try:
            os.ftruncate(state.fd, state.size)
            os.lseek(state.fd, state.size, os.SEEK_SET)
        except OSError as e:
            logger.debug("cannot trim %s: %s", file.path, e)

    def _lose_frame(self) -> None:
        self.frames_lost += 1
        if self._failing is not None:
            self._lost_while_failing += 1

    def _report_failure(self, error: OSError, what: str) -> None:
        """Log a failure once, not once per frame, until writing works again."""
        if self._failing == error.errno:
            return
        self._failing = error.errno
        if error.errno == errno.ENOSPC:
            logger.error("%s: the disk is full; recording resumes when space is freed", what)
        else:
            logger.error("%s: %s; retrying from the next keyframe", what, error.strerror or error)

    def _close(self, action: Close) -> None:
        file = action.file
        with self._files_lock:
            state = self._files.pop(file, None)
        if state is None or state.fd is None:
            logger.error("%s was never written: nothing to announce", file.name)
            return
        try:
            os.close(state.fd)
        except OSError as e:
            self._report_failure(e, f"cannot close {file.path}")
        if state.size == 0:
            logger.warning("%s is empty: removed, not announced", file.path)
            try:
                os.unlink(file.path)
            except OSError:
                pass
            return
        logger.info("finished %s (%d frames)", file.path, state.frames)
        self._announce(Message(h264=file.path, detection=action.detection))

    def _announce(self, message: Message) -> None:
        try:
            self.announce(message)
        except Exception:
            logger.exception("could not hand %s to the emitter", message)
