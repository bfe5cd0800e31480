"""The timestamp file beside each recording: its format, written by pancake's disk
writer and read by postproc and the recovery of orphans.

``20200623-1715.h264`` gets ``20200623-1715.pts``, in the text format mkvmerge
calls "timestamp format v2": a header line, then one timestamp in milliseconds
per frame, counted from the file's first frame (taken from the frames'
monotonic capture times, so a step of the wall clock never shows). Lines that
start with ``#`` are comments to mkvmerge (and to mp4fpsmod), and carry two more
things:

* the wall-clock time of the first frame, in UTC, for the mp4's creation time::

      # first frame at 2020-06-23T15:14:50.123456Z (wall clock)

* before each timestamp, the size of that frame's access unit in bytes, with
  ``K`` for a keyframe::

      #= 45012 K
      0.000
      #= 1200
      33.367

  The sizes let postproc cut the h264 into frames without parsing it, and tell
  how much of the h264 a timestamp file covers after a crash.

The writer appends a frame's two lines only after the frame itself is written,
so after a kill the file may be shorter than the h264, never longer; a torn last
line is ignored by the reader.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import stat
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from .exc import TimestampFileError

EXTENSION = ".pts"
HEADER = "# timestamp format v2"
#: Also accepted when reading: what raspivid --save-pts and older mkvtoolnix write.
_HEADERS = (HEADER, "# timecode format v2")
_FIRST_FRAME = re.compile(r"# first frame at (\S+) \(wall clock\)")
#: A frame's two lines as the writer writes them: size (and K), then timestamp.
_ENTRY = re.compile(r"^#= (\d{1,10})( K)?\n([^#\n][^\n]*)\n", re.M)
#: A timestamp file larger than this is not one of ours (15 minutes at 120 fps is
#: about 3 MB): refuse it rather than read it into memory.
MAX_BYTES = 64 * 1024 * 1024


def pts_path(h264_path: str) -> str:
    """``/rec/20200623-1715.h264`` -> ``/rec/20200623-1715.pts``."""
    stem, ext = os.path.splitext(h264_path)
    return (stem if ext == ".h264" else h264_path) + EXTENSION


def wall_text(wall: float) -> str:
    """Wall-clock seconds as ISO 8601 in UTC, to the microsecond."""
    when = datetime.datetime.fromtimestamp(wall, datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def header_text(first_wall: float) -> str:
    """What a timestamp file starts with, given its first frame's wall-clock time."""
    return f"{HEADER}\n# first frame at {wall_text(first_wall)} (wall clock)\n"


def entry_text(milliseconds: float, size: int, keyframe: bool) -> str:
    """One frame's lines: its size (a comment to mkvmerge), then its timestamp."""
    return f"#= {size}{' K' if keyframe else ''}\n{milliseconds:.3f}\n"


@dataclass
class FrameTimes:
    """What a timestamp file says: one timestamp per frame, and sizes where it has them.

    ``sizes`` and ``keyframes`` are as long as ``milliseconds`` when every entry
    came with its size line (pancake's files), and empty otherwise (a raspivid
    file); ``ends`` gives, for each entry, the offset in the timestamp file just
    after its timestamp line.
    """

    milliseconds: List[float] = field(default_factory=list)
    sizes: List[int] = field(default_factory=list)
    keyframes: List[bool] = field(default_factory=list)
    ends: List[int] = field(default_factory=list)
    first_wall: Optional[datetime.datetime] = None

    def __len__(self) -> int:
        return len(self.milliseconds)

    @property
    def has_sizes(self) -> bool:
        return bool(self.milliseconds) and len(self.sizes) == len(self.milliseconds)

    def average_rate(self) -> Optional[float]:
        """Frames per second over the whole file, None with fewer than two frames."""
        if len(self.milliseconds) < 2:
            return None
        span = self.milliseconds[-1] - self.milliseconds[0]
        return (len(self.milliseconds) - 1) * 1000.0 / span if span > 0 else None


def parse(data: bytes, offsets: bool = False) -> FrameTimes:
    """Read a timestamp file's content; raises ``TimestampFileError``.

    An unfinished last line (a crash mid-write) is ignored, and so is a size line
    with no timestamp after it. Timestamps must increase. ``offsets`` fills
    ``FrameTimes.ends`` (for trimming), at the cost of reading line by line.
    """
    if len(data) > MAX_BYTES:
        raise TimestampFileError(f"{len(data)} bytes is too large for a timestamp file")
    complete = data[: data.rfind(b"\n") + 1]
    try:
        text = complete.decode("ascii")
    except UnicodeDecodeError:
        raise TimestampFileError("not a text file") from None
    if not offsets:
        times = _parse_as_written(text)
        if times is not None:
            return times
    return _parse_lines(text)


def _parse_as_written(text: str) -> Optional[FrameTimes]:
    """The common case in one pass of a regular expression: a file as pancake writes
    it, every line a header, a comment or a size-and-timestamp pair. None if the
    file is anything else (the line reader then decides, and explains)."""
    if not text.startswith(HEADER + "\n"):
        return None
    entries = _ENTRY.findall(text)
    other_comments = text.count("\n#") - len(entries) + 1  # the header starts with "#"
    if not entries or text.count("\n") != 2 * len(entries) + other_comments:
        return None
    try:
        milliseconds = [float(ms) for _, _, ms in entries]
    except ValueError:
        return None
    if not (math.isfinite(milliseconds[0]) and math.isfinite(milliseconds[-1])):
        return None
    if not all(a < b for a, b in zip(milliseconds, milliseconds[1:])):
        return None
    first = _FIRST_FRAME.search(text)
    return FrameTimes(
        milliseconds,
        [int(size) for size, _, _ in entries],
        [key == " K" for _, key, _ in entries],
        first_wall=_parse_wall(first.group(1)) if first is not None else None,
    )


def _parse_lines(text: str) -> FrameTimes:
    lines = text.split("\n")[:-1]
    if not lines or lines[0].strip() not in _HEADERS:
        raise TimestampFileError("no '# timestamp format v2' header")
    times = FrameTimes()
    offset = len(lines[0]) + 1
    pending: Optional[Tuple[int, bool]] = None  # the size line before a timestamp
    sized = True
    last = float("-inf")
    for line in lines[1:]:
        offset += len(line) + 1
        if line.startswith("#"):
            if line.startswith("#= "):
                pending = _size_of(line) or pending
            elif times.first_wall is None:
                first = _FIRST_FRAME.fullmatch(line.strip())
                if first is not None:
                    times.first_wall = _parse_wall(first.group(1))
            continue
        if not line.strip():
            continue
        try:
            value = float(line)
        except ValueError:
            raise TimestampFileError(f"{line[:40]!r} is not a timestamp") from None
        if not math.isfinite(value) or value <= last:
            raise TimestampFileError(f"timestamp {line[:40]!r} after {last}: not increasing")
        last = value
        times.milliseconds.append(value)
        times.ends.append(offset)
        if pending is not None and sized:
            times.sizes.append(pending[0])
            times.keyframes.append(pending[1])
        else:
            sized = False
        pending = None
    if not sized:
        times.sizes, times.keyframes = [], []
    return times


def _size_of(line: str) -> Optional[Tuple[int, bool]]:
    """(size, keyframe) from a ``#= SIZE [K]`` line, None if it is not one."""
    words = line[3:].split(" ")
    if not 1 <= len(words) <= 2 or not (words[0].isdigit() and len(words[0]) <= 10):
        return None
    if len(words) == 2 and words[1] != "K":
        return None
    return int(words[0]), len(words) == 2


def _parse_wall(text: str) -> Optional[datetime.datetime]:
    try:
        when = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return None
    return when.replace(tzinfo=datetime.timezone.utc)


def read(path: str, offsets: bool = False, owner: Optional[int] = None) -> Optional[FrameTimes]:
    """The timestamp file at ``path``, None if there is none; raises ``TimestampFileError``.

    Opened without following a final symbolic link, and refused unless it is a
    regular file with one link (and, given ``owner``, that user's): the file is
    another user's input as much as the recording is.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise TimestampFileError(f"cannot open {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise TimestampFileError(f"{path} is not a regular file with one link")
        if owner is not None and st.st_uid != owner:
            raise TimestampFileError(f"{path} belongs to uid {st.st_uid}, not to uid {owner}")
        chunks = []
        left = MAX_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    return parse(b"".join(chunks), offsets)


def covered_frames(times: FrameTimes, h264_size: int) -> int:
    """How many entries describe frames wholly inside an h264 of ``h264_size`` bytes."""
    total = 0
    for count, size in enumerate(times.sizes):
        total += size
        if total > h264_size:
            return count
    return len(times.sizes)


def trim_to(path: str, h264_size: int) -> Optional[int]:
    """Cut the timestamp file at ``path`` so it describes no frame beyond ``h264_size``.

    Used after the h264 itself was trimmed (the recovery of a crashed recording).
    Returns how many entries remain, None when there is no usable file (one that
    cannot be read, or has no sizes to match it to the h264, is removed).
    """
    try:
        times = read(path, offsets=True)
    except TimestampFileError:
        times = FrameTimes()
    if times is None:
        return None
    if not times.has_sizes:
        os.unlink(path)
        return None
    keep = covered_frames(times, h264_size)
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        end = times.ends[keep - 1] if keep else _header_end(os.pread(fd, 4096, 0))
        if os.fstat(fd).st_size != end:
            os.ftruncate(fd, end)
            os.fsync(fd)
    finally:
        os.close(fd)
    return keep


def _header_end(head: bytes) -> int:
    """Offset after the header and comment lines that precede the first entry."""
    end = 0
    for line in head.split(b"\n")[:-1]:
        if line.startswith(b"#=") or not line.startswith(b"#"):
            break
        end += len(line) + 1
    return end


class TimestampWriter:
    """The timestamp file of one recording being written; the disk writer's thread only.

    ``add`` notes a frame that has just been written to the h264; ``flush``
    appends what was noted, so the timestamp file never runs ahead of the video
    (call it after the frames' own writes). A failed flush cuts off what it half
    wrote; the caller then cuts the video back to ``flushed_video_bytes`` and
    calls ``discard_pending``, so the two files stay in step even on a full disk.
    """

    def __init__(self, path: str, fd: int):
        self.path = path
        self.fd: Optional[int] = fd
        self.size = 0  # bytes of whole lines in the file
        self.flushed_video_bytes = 0  # of the h264, described by the file's entries
        self._pending_video_bytes = 0
        self._first_monotonic: Optional[float] = None
        self._last_ms = -1.0
        self._header_written = False
        self._pending: List[str] = []

    @classmethod
    def create(cls, h264_path: str) -> TimestampWriter:
        """Create the timestamp file of a recording just created (an orphan is replaced)."""
        path = pts_path(h264_path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        return cls(path, os.open(path, flags, 0o644))

    def add(self, monotonic: float, wall: float, size: int, keyframe: bool) -> None:
        if self._first_monotonic is None:
            self._first_monotonic = monotonic
            self._pending.append(header_text(wall))
        ms = round((monotonic - self._first_monotonic) * 1000.0, 3)
        # a camera's clock never goes back, but the file must increase to be usable
        ms = max(ms, round(self._last_ms + 0.001, 3))
        self._last_ms = ms
        self._pending.append(entry_text(ms, size, keyframe))
        self._pending_video_bytes += size

    def flush(self) -> None:
        """Append the noted lines; raises ``OSError`` (nothing half-written stays)."""
        if not self._pending or self.fd is None:
            return
        data = "".join(self._pending).encode("ascii")
        done = 0
        try:
            while done < len(data):
                done += os.write(self.fd, data[done:])
        except OSError:
            try:
                os.ftruncate(self.fd, self.size)
                os.lseek(self.fd, self.size, os.SEEK_SET)
            except OSError:
                pass
            raise
        self.size += len(data)
        self._pending.clear()
        self._header_written = True
        self.flushed_video_bytes += self._pending_video_bytes
        self._pending_video_bytes = 0

    def discard_pending(self) -> int:
        """Forget the frames noted since the last flush (the caller cut them off the
        video); returns how many. With nothing flushed yet, the next frame is the
        file's first again."""
        lost = sum(1 for line in self._pending if line.startswith("#= "))
        self._pending.clear()
        self._pending_video_bytes = 0
        if not self._header_written:
            self._first_monotonic = None
            self._last_ms = -1.0
        return lost

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def remove(self) -> None:
        """Close and delete the file (its recording held no frame)."""
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
