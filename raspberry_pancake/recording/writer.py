"""The disk writer: the only code that touches recording files, on a thread of its own."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Deque, Dict, List, Optional

from ..messages import Message
from ..timestamps import TimestampWriter
from .actions import Close, Emit, Open, RecordingFile, Write
from .gaps import KeyframeGate
from .naming import create_new_file
from .pending import Announce, PendingMarker, sync_directory

logger = logging.getLogger(__name__)

#: How much encoded video may wait for the disk before frames are dropped: about
#: ten seconds of 1080p at a Pi camera's default bitrate.
DEFAULT_QUEUE_BYTES = 24 * 1024 * 1024
DEFAULT_QUEUE_FRAMES = 3000
#: The writer thread wakes when this much video waits, or this often: waking it for
#: every frame would cost more CPU than the writes themselves.
WAKE_BYTES = 256 * 1024
BATCH_SECONDS = 0.25
#: Written video is pushed to the card (fdatasync) once its oldest byte is this
#: old, so a power cut loses at most about two seconds (this, plus the batching,
#: plus the sync itself)...
SYNC_SECONDS = 1.0
#: ...or once this much of it waits, so that no single sync holds the thread long
#: (a thread in fdatasync cannot be stopped, so a stop waits behind it). On a disk
#: that syncs slowly the step shrinks to what it syncs in ``SYNC_SECONDS``, down
#: to ``MIN_SYNC_BYTES``.
SYNC_BYTES = 1024 * 1024
MIN_SYNC_BYTES = 4096
#: A run of write failures (a full disk) ends once writing has worked this long.
RECOVERY_SECONDS = 10.0

_STOP = object()  # close every file and end the thread
_FINISH = object()  # close every file, say so, and keep going (for _Forget)


@dataclass(frozen=True)
class _Forget:
    """Remove the marker of a recording whose announcement has left."""

    marker: str


class _Recording:
    """Writer-side state of one recording: its descriptor, how much is good and synced,
    and its timestamp file (``.pts``, see ``timestamps.py``).

    Owned by the writer thread; ``DiskWriter.finish`` reads ``file.path`` and
    ``size`` and sets ``announced`` under the writer's lock when it gives up on
    the disk. The timestamp file's descriptor comes after the video's in
    ``descriptors()``, so it shares the syncs (the video's frames reach the disk
    first), the close and the marker: the recovery of an orphan trims both.
    """

    __slots__ = (
        "file",
        "fd",
        "pts",
        "marker",
        "size",
        "frames",
        "unsynced",
        "unsynced_since",
        "announced",
    )

    def __init__(self, file: RecordingFile):
        self.file = file
        self.fd: Optional[int] = None
        self.pts: Optional[TimestampWriter] = None
        self.marker: Optional[PendingMarker] = None
        self.size = 0
        self.frames = 0
        self.unsynced = 0  # bytes written since the last fdatasync
        self.unsynced_since = 0.0
        self.announced = False

    def descriptors(self) -> List[int]:
        if self.fd is None:
            return []
        if self.pts is None or self.pts.fd is None:
            return [self.fd]
        return [self.fd, self.pts.fd]


class _FailureLog:
    """One line when writing starts failing, one when it has worked for a while again.

    At the brink of a full disk a big frame fails and a small one fits; a line for
    each change would flap. An episode begins with the first failure and ends once
    writes have succeeded for ``hold`` seconds with no failure. Writer thread only.
    """

    def __init__(self, clock: Callable[[], float], hold: float = RECOVERY_SECONDS):
        self.clock = clock
        self.hold = hold
        self.errno: Optional[int] = None  # of the episode under way
        self.last_failure = 0.0
        self.lost = 0  # frames lost in this episode

    def failed(self, error: OSError, what: str) -> None:
        self.last_failure = self.clock()
        if self.errno == error.errno:
            return
        self.errno = error.errno
        self.lost = 0
        if error.errno == errno.ENOSPC:
            logger.error("%s: the disk is full; recording resumes when space is freed", what)
        else:
            logger.error("%s: %s; retrying from the next keyframe", what, error.strerror or error)

    def lost_frame(self) -> None:
        if self.errno is not None:
            self.lost += 1

    def succeeded(self, path: Optional[str]) -> None:
        if self.errno is not None and self.clock() - self.last_failure >= self.hold:
            logger.warning(
                "writing again (%s) for %.0f s without a failure; %d frames were lost",
                path,
                self.hold,
                self.lost,
            )
            self.errno = None


@dataclass(frozen=True)
class RecordingStatus:
    """A file being written, as /health reports it."""

    name: str
    path: Optional[str]  # None while the file could not be created
    size: int
    frames: int


class DiskWriter:
    """Carries out recorders' actions in order, off the camera's thread.

    ``put`` is called on the camera's capture thread (and on the main and
    emitter threads) and never blocks: when the bounded queue is full a frame is
    dropped, counted and logged, and that file skips to its next keyframe so it
    stays playable. The writer thread turns a failed write (a full disk) into a
    log line per episode, cuts the partial frame off the file, and writes again
    from the next keyframe once space is back. Written video is synced to the
    card every ``SYNC_SECONDS`` and at every close. Each file has a pending marker
    (``pending.py``) from before its first frame until its announcement has left
    the emitter, so a crash leaves nothing unannounced for good. A file is
    announced (``announce(message, done)`` on the writer thread) only after it is
    closed. At shutdown, ``finish`` waits for the disk only so long: past that,
    the files are announced as they are from the main thread and the rest is
    abandoned.
    """

    def __init__(
        self,
        announce: Announce,
        max_bytes: int = DEFAULT_QUEUE_BYTES,
        max_frames: int = DEFAULT_QUEUE_FRAMES,
        sync_seconds: Optional[float] = SYNC_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.announce = announce
        self.max_bytes = max_bytes
        self.max_frames = max_frames
        self.sync_seconds = sync_seconds  # None: never sync, not even the directory (a benchmark)
        self.clock = clock
        # guards _queue, _queued_bytes, _queued_frames, _idle, _urgent, _refused, the
        # drop counters, _batch, _claimed, _finished, _abandoned, the _recordings map
        # and each recording's ``announced`` (_position is a plain int the writer
        # thread stores before each action and finish() reads under the lock)
        self._cond = threading.Condition(threading.Lock())
        self._idle = False  # the writer thread waits for work
        self._urgent = False  # an action other than a frame waits: no batching
        self._queue: Deque[object] = deque()
        self._queued_bytes = 0
        self._queued_frames = 0
        self._refused = KeyframeGate()  # files that lost a frame to the full queue
        self._dropping = 0  # frames dropped since the queue was last accepting
        self.frames_dropped = 0
        self._batch: Deque[object] = deque()  # taken from the queue, being carried out
        self._position = 0  # index in _batch of the action under way
        self._claimed = -1  # index in _batch of the last action that announced
        self._finished = False
        self._abandoned = False
        self._recordings: Dict[RecordingFile, _Recording] = {}  # changed by the writer
        # writer thread only
        self._failures = _FailureLog(clock)
        self._lost = KeyframeGate()  # files that lost a frame to the disk
        self._next_sweep = 0.0
        self._sync_bytes = SYNC_BYTES  # the step, adapted to the disk's speed
        self.syncs = 0
        self.sync_time = 0.0  # seconds spent in fdatasync
        self.frames_written = 0
        self.frames_lost = 0
        self._thread: Optional[threading.Thread] = None

    # producer side (capture thread, main thread, emitter thread)

    def put(self, action) -> None:
        with self._cond:
            if self._abandoned:
                return
            if isinstance(action, Write):
                if not self._accept(action):
                    return
            elif isinstance(action, Close):
                self._refused.forget(action.file)
            self._queue.append(action)
            if not isinstance(action, Write):
                self._urgent = True
            if self._idle and (self._urgent or self._queued_bytes >= WAKE_BYTES):
                self._cond.notify()

    def forget(self, marker: str) -> None:
        """Remove a pending marker (its announcement has left); any thread."""
        self.put(_Forget(marker))

    def _accept(self, action: Write) -> bool:
        """Whether a frame fits; counts and logs it if not. Called with the lock held."""
        size = len(action.frame.data)
        file = action.file
        full = self._queued_bytes + size > self.max_bytes or self._queued_frames >= self.max_frames
        if full or not self._refused.admits(file, action.frame.keyframe):
            if not self._dropping:
                logger.error(
                    "the disk is not keeping up: the write queue is full (%d frames, %.1f MiB),"
                    " dropping frames",
                    self._queued_frames,
                    self._queued_bytes / 2**20,
                )
            self._dropping += 1
            self.frames_dropped += 1
            self._refused.lose(file)
            return False
        if self._dropping and not self._refused.any_waiting():
            logger.error("the disk caught up: %d frames were lost", self._dropping)
            self._dropping = 0
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
        """The files being written (their sizes as they are: at worst a batch behind)."""
        with self._cond:
            files = list(self._recordings.values())
        return [RecordingStatus(r.file.name, r.file.path, r.size, r.frames) for r in files]

    @property
    def write_error(self) -> Optional[str]:
        """The error of the write-failure episode under way (say "ENOSPC"), or None.

        An episode lasts until writes have worked for ``RECOVERY_SECONDS``.
        """
        failing = self._failures.errno  # one read of a value the writer thread replaces
        return None if failing is None else errno.errorcode.get(failing, str(failing))

    # lifecycle (main thread)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="disk-writer", daemon=True)
        self._thread.start()

    def finish(self, timeout: float) -> bool:
        """Write what is queued, close and announce every file, within ``timeout`` seconds.

        Past it (a stalled or very slow disk) the writer is abandoned where it is:
        each file is announced as written so far, queued frames are dropped, and
        the log says what was lost. The markers stay, so the next start checks
        those files again. Returns whether the disk finished in time.
        """
        self.put(_FINISH)
        with self._cond:
            if self._cond.wait_for(lambda: self._finished, timeout):
                return True
            self._abandoned = True
            self._cond.notify_all()
            messages, lost_frames, lost_bytes, names = self._abandon()
        logger.error(
            "gave up on the disk after %.0f s: %d frames (%.1f MiB) were never written%s;"
            " the files are announced as written so far, and checked again at the next start",
            timeout,
            lost_frames,
            lost_bytes / 2**20,
            f" ({', '.join(sorted(names))})" if names else "",
        )
        for message in messages:
            self._announce(message, None)
        return False

    def _abandon(self):
        """What to announce for the actions the writer will never carry out. Lock held."""
        start = self._position + (self._claimed == self._position)
        actions = list(self._batch)[start:] + list(self._queue)
        self._queue.clear()
        messages: List[Message] = []
        lost_frames = lost_bytes = 0
        names = set()
        for action in actions:
            if isinstance(action, Write):
                lost_frames += 1
                lost_bytes += len(action.frame.data)
                names.add(action.file.path or action.file.name)
            elif isinstance(action, Emit):
                messages.append(action.message)
            elif isinstance(action, Close):
                message = self._abandoned_message(action.file, action.detection)
                if message is not None:
                    messages.append(message)
        for recording in self._recordings.values():
            message = self._abandoned_message(recording.file, None)
            if message is not None:
                messages.append(message)
        return messages, lost_frames, lost_bytes, names

    def _abandoned_message(self, file: RecordingFile, detection) -> Optional[Message]:
        recording = self._recordings.get(file)
        if recording is not None and recording.announced:
            return None
        if recording is not None and recording.size > 0 and file.path is not None:
            recording.announced = True
            return Message(h264=file.path, detection=detection)
        if recording is not None:
            recording.announced = True
        return Message(detection=detection) if detection is not None else None

    def close(self, timeout: float = 60.0) -> None:
        """Write out what is queued, close every file, announce them; then stop."""
        with self._cond:
            abandoned = self._abandoned
        if not abandoned:
            self.put(_STOP)
            if self._thread is not None:
                self._thread.join(timeout)
                if self._thread.is_alive():
                    logger.error("the disk writer did not finish within %.0f s", timeout)
        if self._dropping:
            logger.error("%d frames were lost because the disk was too slow", self._dropping)
        logger.info(
            "disk writer: %d frames written, %d dropped (queue full), %d lost (write errors);"
            " %d syncs, %.1f s in all",
            self.frames_written,
            self.frames_dropped,
            self.frames_lost,
            self.syncs,
            self.sync_time,
        )

    # writer thread

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return  # given up on at shutdown: touch nothing more
            for position, action in enumerate(batch):
                self._position = position
                if action is _STOP:
                    self._close_all()
                    return
                if action is _FINISH:
                    self._close_all()
                    with self._cond:
                        self._finished = True
                        self._cond.notify_all()
                else:
                    try:
                        self.perform(action)
                    except Exception:
                        logger.exception("the disk writer failed on %r", action)
                if self._abandoned:  # read without the lock: at worst one action more
                    return
            for recording in list(self._recordings.values()):
                self._flush_timestamps(recording)
            self._sync_due()

    def _take(self) -> Optional[Deque[object]]:
        """Everything queued, once there is work (or every ``BATCH_SECONDS``).

        One lock round per batch, not per frame (so the bound holds for what
        waits; the batch is extra). None once ``finish`` gave up on the writer.
        """
        with self._cond:
            if not self._queue:
                self._idle = True
                self._cond.wait_for(
                    lambda: self._abandoned or self._urgent or self._queued_bytes >= WAKE_BYTES,
                    BATCH_SECONDS,
                )
                self._idle = False
            if self._abandoned:
                return None
            self._batch, self._queue = self._queue, deque()
            self._queued_bytes = 0
            self._queued_frames = 0
            self._urgent = False
            self._position = 0
            self._claimed = -1
            return self._batch

    def perform(self, action) -> None:
        """Carry out one action; public so a test can drive it without the thread."""
        if isinstance(action, Write):
            self._write(action.file, action.frame)
        elif isinstance(action, Open):
            self._open(action.file)
        elif isinstance(action, Close):
            self._close(action.file, action.detection)
        elif isinstance(action, Emit):
            if self._claim(None):
                self._announce(action.message, None)
        elif isinstance(action, _Forget):
            PendingMarker.remove(action.marker)
        else:
            raise TypeError(f"unknown action {action!r}")

    def _claim(self, recording: Optional[_Recording]) -> bool:
        """Whether the writer thread still announces (it has not been given up on)."""
        with self._cond:
            return self._claim_locked(recording)

    def _claim_locked(self, recording: Optional[_Recording]) -> bool:
        if self._abandoned or (recording is not None and recording.announced):
            return False
        if recording is not None:
            recording.announced = True
        self._claimed = self._position
        return True

    def _open(self, file: RecordingFile) -> None:
        recording = _Recording(file)
        with self._cond:
            self._recordings[file] = recording
        self._create(recording)

    def _create(self, recording: _Recording) -> None:
        """Create the file under a free name, and its marker, before any frame."""
        file = recording.file
        try:
            recording.fd, file.path = create_new_file(file.directory, file.name)
        except OSError as e:
            self._failures.failed(e, f"cannot create {file.name} in {file.directory}")
            return
        logger.info("recording to %s", file.path)
        try:
            recording.pts = TimestampWriter.create(file.path)
        except OSError as e:
            # the video matters more: it is recorded, and converted at the rate given
            logger.error("cannot create the timestamp file of %s: %s", file.path, e.strerror)
        try:
            recording.marker = PendingMarker.create(file.path)
            if self.sync_seconds is not None:
                sync_directory(file.directory)  # the name and the marker survive a power cut
        except OSError as e:
            self._failures.failed(e, f"cannot mark {file.path} as pending")

    def _write(self, file: RecordingFile, frame) -> None:
        recording = self._recordings.get(file)
        if recording is None:
            logger.error("frame for %r, which was never opened", file)
            return
        if recording.fd is None and frame.keyframe:
            self._create(recording)  # creating it failed before: try again
        if recording.fd is None or not self._lost.admits(file, frame.keyframe):
            self._lose_frame()
            return
        data = memoryview(frame.data)
        try:
            done = 0
            while done < len(data):
                done += os.write(recording.fd, data[done:])
        except OSError as e:
            self._failures.failed(e, f"cannot write {file.path}")
            self._cut_partial(recording)
            self._lose_frame()
            return
        recording.size += len(data)
        recording.frames += 1
        if recording.pts is not None:
            recording.pts.add(frame.monotonic, frame.wall, len(data), frame.keyframe)
        self.frames_written += 1
        if not recording.unsynced:
            recording.unsynced_since = self.clock()
        recording.unsynced += len(data)
        if self._failures.errno is not None:
            self._failures.succeeded(file.path)
        if recording.unsynced >= self._sync_bytes:
            self._sync(recording)

    def _cut_partial(self, recording: _Recording) -> None:
        """Remove a half-written frame so the file stays a clean stream."""
        self._lost.lose(recording.file)
        try:
            os.ftruncate(recording.fd, recording.size)
            os.lseek(recording.fd, recording.size, os.SEEK_SET)
        except OSError as e:
            logger.debug("cannot trim %s: %s", recording.file.path, e)

    def _flush_timestamps(self, recording: _Recording) -> None:
        """Append the timestamps of the frames written since the last flush.

        Always after the frames themselves, so after a kill the timestamp file
        is never ahead of the video. If it fails (a full disk), those frames come
        off the video too: the two stay in step, and that frees the room the
        next flush needs.
        """
        pts = recording.pts
        if pts is None or recording.fd is None:
            return
        try:
            pts.flush()
        except OSError as e:
            self._failures.failed(e, f"cannot write {pts.path}")
            lost = pts.discard_pending()
            recording.size = pts.flushed_video_bytes
            recording.frames -= lost
            self.frames_written -= lost
            for _ in range(lost):
                self._lose_frame()
            self._cut_partial(recording)

    def _lose_frame(self) -> None:
        self.frames_lost += 1
        self._failures.lost_frame()

    def _sync(self, recording: _Recording) -> None:
        """Push what was written of ``recording`` to the card."""
        self._flush_timestamps(recording)
        if self.sync_seconds is None or not recording.unsynced:
            return
        amount, recording.unsynced = recording.unsynced, 0
        started = self.clock()
        try:
            for fd in recording.descriptors():
                os.fdatasync(fd)
        except OSError as e:
            self._failures.failed(e, f"cannot sync {recording.file.path}")
            return
        took = self.clock() - started
        self.syncs += 1
        self.sync_time += took
        if took > 0:
            step = amount / took * self.sync_seconds
            self._sync_bytes = int(min(SYNC_BYTES, max(MIN_SYNC_BYTES, step)))

    def _sync_due(self) -> None:
        """Sync the files whose oldest unsynced byte is ``sync_seconds`` old.

        Called after each batch; within a long batch, ``_sync_bytes`` cuts the syncs.
        """
        if self.sync_seconds is None:
            return
        now = self.clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + BATCH_SECONDS
        for recording in list(self._recordings.values()):
            if recording.unsynced and now - recording.unsynced_since >= self.sync_seconds:
                self._sync(recording)

    def _close(self, file: RecordingFile, detection: Optional[bool]) -> None:
        """Sync and close ``file``, then announce it (or, if it holds nothing, its edge)."""
        recording = self._recordings.get(file)
        if recording is None:
            logger.error("%s was never opened: nothing to close", file.name)
            return
        if recording.fd is not None:
            self._sync(recording)
            try:
                os.close(recording.fd)
            except OSError as e:
                self._failures.failed(e, f"cannot close {file.path}")
            recording.fd = None
        if recording.pts is not None:
            recording.pts.close()
        message = None
        if recording.size > 0:
            message = Message(h264=file.path, detection=detection)
            logger.info("finished %s (%d frames)", file.path, recording.frames)
        else:
            self._remove_empty(recording)
            if detection is not None:
                # the clip could not be written (a full disk): its edge still counts
                message = Message(detection=detection)
        marker = recording.marker
        if marker is not None and message is not None and message.h264 is not None:
            try:
                marker.complete(message.encode())
            except OSError as e:
                logger.debug("cannot note %s as finished: %s", marker.path, e)
            marker.release()
        self._lost.forget(file)
        with self._cond:
            # one step, so that finish() giving up sees either the file or the claim
            self._recordings.pop(file, None)
            announcing = message is not None and self._claim_locked(recording)
        if announcing:
            done = None
            if marker is not None and message.h264 is not None:
                done = lambda path=marker.path: self.forget(path)  # noqa: E731
            self._announce(message, done)

    def _remove_empty(self, recording: _Recording) -> None:
        file = recording.file
        if file.path is not None:
            logger.warning("%s is empty: removed, not announced", file.path)
            try:
                os.unlink(file.path)
            except OSError:
                pass
        else:
            logger.error("%s was never written: nothing to announce", file.name)
        if recording.pts is not None:
            recording.pts.remove()
        if recording.marker is not None:
            recording.marker.release()
            PendingMarker.remove(recording.marker.path)

    def _close_all(self) -> None:
        for file in list(self._recordings):
            self._close(file, None)

    def _announce(self, message: Message, done: Optional[Callable[[], None]]) -> None:
        try:
            self.announce(message, done)
        except Exception:
            logger.exception("could not hand %s to the emitter", message)
