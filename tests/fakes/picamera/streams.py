"""CircularIO and PiCameraCircularIO with the behaviour picamera 1.13's streams.py
documents: a size-bounded in-memory stream that drops its oldest bytes, and a
camera-aware variant that remembers each frame's PiVideoFrame so ``copy_to`` can
start at a header and cover a number of seconds or bytes.

Our own implementation of those rules. As in picamera, the stream keeps one chunk
per ``write`` (the camera writes a buffer at a time), and a chunk written when the
encoder's frame is complete carries that frame's metadata.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from typing import Deque, List, Optional

from .exc import PiCameraValueError
from .frames import PiVideoFrame, PiVideoFrameType


class _Chunk:
    """One write's bytes and, for PiCameraCircularIO, the frame it completed."""

    __slots__ = ("data", "frame")

    def __init__(self, data: bytes, frame: Optional[PiVideoFrame] = None):
        self.data = data
        self.frame = frame


class CircularIO(io.IOBase):
    """A thread-safe in-memory stream of at most ``size`` bytes (streams.py: CircularIO).

    Writing past the limit drops bytes from the front. Any thread may call it;
    ``lock`` (re-entrant) guards the chunks, the length and the position.
    """

    def __init__(self, size: int):
        if size < 1:
            raise ValueError("size must be a positive integer")
        self._lock = threading.RLock()
        self._chunks: Deque[_Chunk] = deque()
        self._size = size
        self._length = 0
        self._pos = 0

    @property
    def lock(self):
        return self._lock

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def getvalue(self) -> bytes:
        with self._lock:
            return b"".join(c.data for c in self._chunks)

    def tell(self) -> int:
        with self._lock:
            return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with self._lock:
            if whence == io.SEEK_CUR:
                offset += self._pos
            elif whence == io.SEEK_END:
                offset += self._length
            if offset < 0:
                raise ValueError("New position is before the start of the stream")
            self._pos = offset
            return self._pos

    def _locate(self, pos: int):
        """(chunk index, offset in it) of stream position ``pos``."""
        start = 0
        for n, chunk in enumerate(self._chunks):
            if pos < start + len(chunk.data):
                return n, pos - start
            start += len(chunk.data)
        return len(self._chunks), pos - start

    def read(self, n: int = -1) -> bytes:
        with self._lock:
            if n is None or n < 0:
                n = max(self._length - self._pos, 0)
            data = self.getvalue()[self._pos : self._pos + n]
            self._pos += len(data)
            return data

    def readall(self) -> bytes:
        return self.read(-1)

    def read1(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes from the current position to the end of the chunk holding it."""
        with self._lock:
            if self._pos >= self._length:
                return b""
            index, offset = self._locate(self._pos)
            data = self._chunks[index].data[offset:]
            if n is not None and n >= 0:
                data = data[:n]
            self._pos += len(data)
            return data

    def truncate(self, size: Optional[int] = None) -> int:
        with self._lock:
            size = self._pos if size is None else size
            if size < 0:
                raise ValueError("size must be zero, or a positive integer")
            if size > self._length:
                pos = self._pos
                self._pos = self._length
                self.write(b"\0" * (size - self._length))
                self._pos = pos
            else:
                while self._chunks and self._length - len(self._chunks[-1].data) >= size:
                    self._length -= len(self._chunks.pop().data)
                if self._length > size:
                    last = self._chunks[-1]
                    last.data = last.data[: len(last.data) - (self._length - size)]
                    self._length = size
            return size

    def _new_chunk(self, data: bytes) -> _Chunk:
        return _Chunk(data)

    def write(self, b) -> int:
        data = bytes(b)
        with self._lock:
            if self._pos > self._length:
                self.truncate()
            written = len(data)
            if self._pos < self._length:
                data = self._overwrite(data)
            if data:
                self._chunks.append(self._new_chunk(data))
                self._length += len(data)
                self._pos = self._length
            self._trim()
            return written

    def _overwrite(self, data: bytes) -> bytes:
        """Replace bytes in place from the position on; returns what runs past the end."""
        index, offset = self._locate(self._pos)
        while data and index < len(self._chunks):
            chunk = self._chunks[index]
            room = len(chunk.data) - offset
            head, data = data[:room], data[room:]
            chunk.data = chunk.data[:offset] + head + chunk.data[offset + len(head) :]
            self._pos += len(head)
            index, offset = index + 1, 0
        return data

    def _trim(self) -> None:
        """Drop the oldest bytes beyond ``size``; a partly dropped chunk keeps its frame."""
        while self._length > self._size:
            first = self._chunks[0]
            excess = self._length - self._size
            if len(first.data) <= excess:
                self._chunks.popleft()
                cut = len(first.data)
            else:
                first.data = first.data[excess:]
                cut = excess
            self._length -= cut
            self._pos = max(self._pos - cut, 0)


class PiCameraCircularIO(CircularIO):
    """A CircularIO that records each complete frame's metadata (streams.py: PiCameraCircularIO).

    Sized by ``size`` bytes or by ``seconds`` at ``bitrate`` bits per second. Written
    on the camera's callback thread of ``splitter_port``; read by any thread.
    """

    def __init__(self, camera, size=None, seconds=None, bitrate=17000000, splitter_port=1):
        if size is None and seconds is None:
            raise PiCameraValueError("You must specify either size, or seconds")
        if size is not None and seconds is not None:
            raise PiCameraValueError("You cannot specify both size and seconds")
        if not hasattr(camera, "_encoders"):
            raise PiCameraValueError("camera must be a valid PiCamera object")
        if seconds is not None:
            size = bitrate * seconds // 8
        super().__init__(size)
        self.camera = camera
        self.splitter_port = splitter_port
        self.frames = _Frames(self)

    def _new_chunk(self, data: bytes) -> _Chunk:
        encoder = self.camera._encoders.get(self.splitter_port)
        frame = getattr(encoder, "frame", None)
        return _Chunk(data, frame if frame is not None and frame.complete else None)

    def clear(self) -> None:
        """Empty the stream and its frame metadata."""
        with self.lock:
            self.seek(0)
            self.truncate()

    def _start_by_size(self, size: int, first_frame) -> Optional[int]:
        start = None
        for frame in reversed(self.frames):
            if first_frame in (None, frame.frame_type):
                start = frame.position
            if size < frame.frame_size:
                break
            size -= frame.frame_size
        return start

    def _start_by_seconds(self, seconds: float, first_frame) -> Optional[int]:
        start, newest = None, None
        span = int(seconds * 1_000_000)
        for frame in reversed(self.frames):
            if first_frame in (None, frame.frame_type):
                start = frame.position
            if frame.timestamp is None:
                continue
            if newest is None:
                newest = frame.timestamp
            elif newest - frame.timestamp >= span:
                break
        return start

    def _start_of_all(self, first_frame) -> Optional[int]:
        for frame in self.frames:
            if first_frame in (None, frame.frame_type):
                return frame.position
        return None

    def copy_to(self, output, size=None, seconds=None, first_frame=PiVideoFrameType.sps_header):
        """Write the stream's frames from a ``first_frame``-type frame on to ``output``.

        Limited to the last ``size`` bytes or ``seconds`` of frames; nothing is
        copied (and no error raised) when no such frame is within the limit. The
        stream's position is unchanged.
        """
        if size is not None and seconds is not None:
            raise PiCameraValueError("You cannot specify both size and seconds")
        if isinstance(output, bytes):
            output = output.decode("utf-8")
        opened = isinstance(output, str)
        if opened:
            output = open(output, "wb")
        try:
            with self.lock:
                if size is not None:
                    start = self._start_by_size(size, first_frame)
                elif seconds is not None:
                    start = self._start_by_seconds(seconds, first_frame)
                else:
                    start = self._start_of_all(first_frame)
                if start is not None:
                    output.write(self.getvalue()[start:])
        finally:
            if opened:
                output.close()


class _Frames:
    """``PiCameraCircularIO.frames``: the metadata of frames whose start is still stored.

    Each frame's ``video_size`` and ``split_size`` are rewritten to the end of its
    chunk in the stream, so ``position`` is where the frame starts.
    """

    def __init__(self, stream: PiCameraCircularIO):
        self._stream = stream

    def _listed(self) -> List[PiVideoFrame]:
        out = []
        with self._stream.lock:
            end = 0
            for chunk in self._stream._chunks:
                end += len(chunk.data)
                frame = chunk.frame
                if frame is not None and end - frame.frame_size >= 0:
                    out.append(frame._replace(video_size=end, split_size=end))
        return out

    def __iter__(self):
        return iter(self._listed())

    def __reversed__(self):
        return reversed(self._listed())
