"""h264 to mp4: three converters with one promise.

Every converter writes the input's frames into a hidden temporary name in
``mp4_dir``; only a complete, synced file is renamed to its final name, so a
crash never leaves a truncated mp4 where the uploader or the user would take it.

Timing: a recording with a timestamp file beside it (``timestamps.py``, written
by pancake) is timed by the capture times it lists, and its mp4 carries the
wall-clock time of its first frame as ``creation_time``; only the built-in
converter can do that, so ``auto`` picks it. A recording without one (from the
original pancake, raspivid) lasts frames/fps, as it always did.

The input is read through a descriptor opened without following links, so what
is converted is the file that was checked. A conversion that fails while the mp4
directory lacks room for its output raises ``NoSpaceError``: it is not the
recording's fault, and the conversion waits for space instead of being dropped.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import shutil
import stat
import threading
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import List, Optional

from .. import timestamps
from ..exc import ConfigError, ConversionError, NoSpaceError, StoppedError, TimestampFileError
from . import runner
from .frames import IndexMismatch, indexed_packets
from .writeback import WritebackPusher

logger = logging.getLogger(__name__)

CONVERTER_CHOICES = ("auto", "mp4box", "ffmpeg", "builtin")


def frame_rate(fps: float) -> Fraction:
    """The exact rate behind a number typed on the command line (29.97 -> 2997/100)."""
    return Fraction(str(fps)).limit_denominator(100000)


def _rate_text(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else str(float(rate))


#: Remuxing is disk-bound; timeouts allow a slow SD card (2 MB/s) plus a fixed margin.
CONVERSION_BYTES_PER_SECOND = 2e6
#: A recording whose timestamps average a rate this far from ``fps`` gets a log line.
RATE_TOLERANCE = 0.05

#: Room an mp4 needs beyond its h264's size: the container's tables take a few bytes
#: per frame, so a tenth more plus 64 KiB leaves a margin.
SPACE_MARGIN = 64 << 10


@dataclass(frozen=True)
class Source:
    """An h264 file open for reading: its path (for names and logs) and descriptor."""

    path: str
    fd: int
    size: int

    @property
    def by_fd(self) -> str:
        """A name that opens this very file, here or in a child given ``fd``: no lookup
        of ``path`` happens again."""
        return f"/dev/fd/{self.fd}"


class Converter:
    """Base: turn ``source`` into a complete mp4 at ``dst``. Called from the convert thread.

    ``times`` is the recording's timestamp file, if it has one; a converter that
    ``honours_timestamps`` times the frames by it, another one by ``rate``.
    """

    name = ""
    honours_timestamps = False
    #: set once a recording without a timestamp file has been timed at ``fps`` and
    #: said so: one warning per run, not one per file of the original pancake
    untimed_noted = False

    def convert(
        self,
        source: Source,
        dst: str,
        rate: Fraction,
        stop: threading.Event,
        times: Optional[timestamps.FrameTimes] = None,
    ) -> None:
        raise NotImplementedError


class ExternalConverter(Converter):
    """A converter that is one external command, reading the source by descriptor.

    It times frames by ``rate`` only: neither MP4Box nor ffmpeg can take per-frame
    times for a raw H.264 input (MP4Box imports no timestamp file; ffmpeg's raw
    h264 demuxer has no timestamps to give and nothing reads a v2 file into it),
    so ``times`` is unused.
    """

    program = ""

    def command(self, src: str, dst: str, rate: Fraction) -> List[str]:
        raise NotImplementedError

    def input_of(self, source: Source) -> str:
        return source.by_fd

    def convert(
        self,
        source: Source,
        dst: str,
        rate: Fraction,
        stop: threading.Event,
        times: Optional[timestamps.FrameTimes] = None,
    ) -> None:
        result = runner.run(
            self.command(self.input_of(source), dst, rate),
            runner.size_timeout(source.size, CONVERSION_BYTES_PER_SECOND),
            stop,
            pass_fds=(source.fd,),
        )
        if not result.ok:
            raise ConversionError(f"{self.program} failed: {result.reason()}")


class Mp4BoxConverter(ExternalConverter):
    """GPAC's MP4Box, as the original project used; sets the rate on import.

    MP4Box picks the importer by the file name's extension, so it gets the checked
    path rather than ``/dev/fd/N``.
    """

    name = "mp4box"
    program = "MP4Box"

    def input_of(self, source: Source) -> str:
        return source.path

    def command(self, src: str, dst: str, rate: Fraction) -> List[str]:
        return [self.program, "-quiet", "-add", f"{src}:fps={_rate_text(rate)}", "-new", dst]


class FfmpegConverter(ExternalConverter):
    """ffmpeg stream copy; the rate goes before ``-i`` (raw h264 has no timing).

    ``-framerate`` alone lets the demuxer's timestamps drift by a tick every hundred
    frames or so; the input option ``-r`` makes ffmpeg number the frames at exactly
    the rate. The track timescale is a multiple of the rate, so every frame lasts a
    whole number of ticks and the duration comes out as frames/fps.
    """

    name = "ffmpeg"
    program = "ffmpeg"

    def command(self, src: str, dst: str, rate: Fraction) -> List[str]:
        return [
            self.program,
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "h264",
            "-framerate",
            f"{rate.numerator}/{rate.denominator}",
            "-r",
            f"{rate.numerator}/{rate.denominator}",
            "-i",
            src,
            "-map",
            "0:v:0",
            "-c",
            "copy",
            "-video_track_timescale",
            str(rate.numerator * 1000),
            "-f",
            "mp4",
            dst,
        ]


class BuiltinConverter(Converter):
    """A PyAV (libavformat) remux without re-encoding, timed by the timestamp file.

    With pancake's timestamp file, the h264 is cut into frames by the sizes it
    lists (``frames.py``: no parsing) and each frame gets its recorded time, so
    dropped frames leave gaps instead of compressing time; if the sizes do not
    fit the file, the file is parsed and the timestamps are given in order.
    Without one, frames are numbered at ``rate``, as before. Assumes no B-frames
    (decode order is display order), which holds for the Pi's encoders and for
    the sim camera.
    """

    name = "builtin"
    honours_timestamps = True

    def convert(
        self,
        source: Source,
        dst: str,
        rate: Fraction,
        stop: threading.Event,
        times: Optional[timestamps.FrameTimes] = None,
    ) -> None:
        import av  # imported here so that choosing another converter never needs PyAV

        try:
            if times is not None and times.has_sizes and packets_are_writable():
                try:
                    self._remux(source, dst, rate, stop, times, indexed=True)
                    return
                except IndexMismatch as e:
                    logger.warning(
                        "%s: the frame sizes in its timestamp file do not fit (%s);"
                        " finding the frames by parsing instead",
                        source.path,
                        e,
                    )
            self._remux(source, dst, rate, stop, times, indexed=False)
        except (av.error.FFmpegError, OSError) as e:
            if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpaceError(f"PyAV: {e}", 0) from None
            raise ConversionError(f"PyAV: {e}") from None

    def _remux(self, source: Source, dst, rate, stop, times, indexed: bool) -> None:
        import av

        clock = _FrameRateClock(rate) if times is None else _RecordedClock(times)
        with av.open(source.by_fd, format="h264") as container:
            if not container.streams.video:
                raise ConversionError("no video stream")
            in_stream = container.streams.video[0]
            with av.open(dst, "w", format="mp4") as sink, WritebackPusher(dst) as pusher:
                out_stream = _copy_stream(sink, in_stream)
                if times is not None and times.first_wall is not None:
                    sink.metadata["creation_time"] = timestamps.wall_text(
                        times.first_wall.timestamp()
                    )
                # PyAV 10 warns that this also sets the time base of the copied decoder
                # context; the stream's time base is what is meant
                warnings.filterwarnings("ignore", "Using CodecContext.time_base for decoders")
                out_stream.time_base = clock.time_base
                if indexed:
                    packets = self._indexed_packets(source, times)
                else:
                    packets = self._parsed_packets(container, in_stream)
                frames = self._mux(source, sink, out_stream, packets, clock, stop, pusher, indexed)
                if frames == 0:
                    raise ConversionError("no frames in the h264 file")

    @staticmethod
    def _mux(source, sink, out_stream, packets, clock, stop, pusher, indexed: bool) -> int:
        """Mux ``packets`` at ``clock``'s times, as many as it has times for (a longer
        file's tail is logged and left out); return how many.

        Per frame: kept lean, it runs 27000 times for a quarter-hour file.
        """
        frames = 0
        pts, duration, limit = clock.pts, clock.duration, clock.frames
        writable = packets_are_writable()
        time_base = clock.time_base
        # packets of our own have no time base: once the muxer's is the clock's, they
        # need none (demuxed packets carry the demuxer's: always set it)
        rebase = True
        for packet in packets:
            if frames == limit:
                _log_untimed_tail(source.path, frames)
                break
            if frames & 63 == 0:
                if stop.is_set():
                    raise StoppedError("conversion interrupted by shutdown")
                pusher.poll()
            packet.stream = out_stream
            if not writable:
                _place_keeping_duration(packet, pts(frames), duration(frames), time_base)
            else:
                if rebase:
                    packet.time_base = time_base
                packet.pts = packet.dts = pts(frames)
                packet.duration = duration(frames)
            sink.mux(packet)
            if frames == 0 and indexed:
                rebase = out_stream.time_base != time_base
            frames += 1
        return frames

    @staticmethod
    def _parsed_packets(source, in_stream):
        for packet in source.demux(in_stream):
            if packet.size:
                yield packet

    @staticmethod
    def _indexed_packets(source: Source, times: timestamps.FrameTimes):
        covered = timestamps.covered_frames(times, source.size)
        if covered == 0:
            raise IndexMismatch("its first frame is larger than the whole file")
        sizes = times.sizes[:covered]
        yield from indexed_packets(source.fd, sizes, times.keyframes[:covered])
        if sum(sizes) < source.size:
            _log_untimed_tail(source.path, covered)


class _FrameRateClock:
    """Frame ``n`` at ``n / rate``: how a file without timestamps is timed."""

    frames = None  # no end of its own

    def __init__(self, rate: Fraction):
        self.time_base = 1 / rate

    @staticmethod
    def pts(n: int) -> int:
        return n

    @staticmethod
    def duration(n: int) -> int:
        return 1


class _RecordedClock:
    """Frame ``n`` at its recorded time, in 90 kHz ticks (the usual video clock).

    Each frame lasts until the next one; the last lasts the median interval.
    """

    time_base = Fraction(1, 90000)

    def __init__(self, times: timestamps.FrameTimes):
        ticks = [round(ms * 90) for ms in times.milliseconds]
        durations = [b - a for a, b in zip(ticks, ticks[1:])]
        gaps = sorted(durations)
        durations.append(gaps[len(gaps) // 2] if gaps else 3000)
        self.frames = len(ticks)
        self.pts = ticks.__getitem__
        self.duration = durations.__getitem__


def _log_untimed_tail(src: str, timed: int) -> None:
    logger.warning(
        "%s: frames after the first %d have no timestamp (the recording was cut short);"
        " the mp4 ends there",
        src,
        timed,
    )


def _place_keeping_duration(packet, pts: int, duration: int, time_base: Fraction) -> None:
    """Time a parsed ``packet`` at ``pts`` for ``duration`` (both in ``time_base``)
    without setting its duration, which PyAV 10 (Debian 12's) does not allow.

    The packet keeps the duration the H.264 parser gave it, in ticks of its own, and
    is put in a time base where those ticks last ``duration``; the muxer rescales.
    """
    ticks = packet.duration
    if ticks and ticks > 0:
        # a time base must fit in 32-bit integers: near enough is a nanosecond here
        base = (time_base * Fraction(duration, ticks)).limit_denominator(_MAX_DENOMINATOR)
        packet.time_base = base
        packet.pts = packet.dts = round(pts * time_base / base)
    else:
        packet.time_base = time_base
        packet.pts = packet.dts = pts


_MAX_DENOMINATOR = 2**31 - 1


@functools.cache
def packets_are_writable() -> bool:
    """Whether this PyAV lets a packet's duration and keyframe mark be set.

    PyAV 10 (Debian 12's) does not: there the frames are found by parsing, which
    marks keyframes, and each packet keeps the parser's duration
    (``_place_keeping_duration``); only the recorded sizes go unused.
    """
    import av

    packet = av.Packet(0)
    try:
        packet.duration = 1
        packet.is_keyframe = True
    except AttributeError:
        return False
    return True


def _copy_stream(container, template):
    # PyAV 14 renamed add_stream(template=...) to add_stream_from_template(...).
    add = getattr(container, "add_stream_from_template", None)
    if add is not None:
        return add(template)
    return container.add_stream(template=template)


_CONVERTERS = {
    "mp4box": Mp4BoxConverter,
    "ffmpeg": FfmpegConverter,
    "builtin": BuiltinConverter,
}


def select_converter(choice: str) -> Converter:
    """The converter for ``--converter``.

    ``auto`` takes the built-in one (the fastest, and the only one that honours
    timestamp files); where PyAV is missing, MP4Box, then ffmpeg.
    """
    if choice == "auto":
        if _pyav_installed():
            return BuiltinConverter()
        for name in ("mp4box", "ffmpeg"):
            if shutil.which(_CONVERTERS[name].program):
                return _CONVERTERS[name]()
        raise ConfigError("no converter: install PyAV (pip install av), MP4Box or ffmpeg")
    cls = _CONVERTERS.get(choice)
    if cls is None:
        raise ConfigError(f"unknown converter {choice!r}")
    if issubclass(cls, ExternalConverter) and not shutil.which(cls.program):
        raise ConfigError(f"--converter {choice}: {cls.program} is not on PATH")
    if cls is BuiltinConverter and not _pyav_installed():
        raise ConfigError("--converter builtin needs PyAV (pip install av)")
    return cls()


def _pyav_installed() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def mp4_name(h264_path: str) -> str:
    """``20200624-0845.h264`` -> ``20200624-0845.mp4``."""
    stem = os.path.basename(h264_path)
    if stem.endswith(".h264"):
        stem = stem[: -len(".h264")]
    return stem + ".mp4"


def temporary_path(final: str) -> str:
    """Hidden, ends in .mp4 (MP4Box picks the format by extension), fixed per file."""
    head, tail = os.path.split(final)
    return os.path.join(head, f".{tail[:-4]}.partial.mp4")


def open_source(path: str) -> Source:
    """Open ``path`` for conversion: a regular file, not through a final symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise ConversionError(f"cannot open {path}: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ConversionError(f"{path} is not a regular file")
    return Source(path, fd, st.st_size)


def convert_file(
    converter: Converter,
    h264: str,
    mp4_dir: str,
    rate: Fraction,
    stop: Optional[threading.Event] = None,
    fd: Optional[int] = None,
) -> str:
    """Convert ``h264`` (read through ``fd`` when given) into ``mp4_dir``; return the mp4.

    Called from the convert thread. Raises ``ConversionError``, or ``NoSpaceError``
    when ``mp4_dir`` is too full; never leaves a partial file under the final name.
    The caller keeps ownership of ``fd``.
    """
    stop = stop or threading.Event()
    if fd is None:
        source = open_source(h264)
    else:
        source = Source(h264, fd, os.fstat(fd).st_size)
    final = os.path.join(mp4_dir, mp4_name(h264))
    tmp = temporary_path(final)
    try:
        times = recorded_times(source, rate, converter)
        _remove_quietly(tmp)
        try:
            converter.convert(source, tmp, rate, stop, times)
            if not os.path.isfile(tmp) or os.path.getsize(tmp) == 0:
                raise ConversionError(f"{converter.name} wrote no output")
            _fsync_path(tmp)
            os.replace(tmp, final)
            _fsync_path(mp4_dir)
        except BaseException as e:
            _remove_quietly(tmp)
            if isinstance(e, OSError) and e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise ConversionError(f"writing {tmp}: {e.strerror}") from None
            if isinstance(e, (ConversionError, OSError)):
                _raise_if_short_of_space(e, mp4_dir, source.size)
            raise
    finally:
        if fd is None:
            os.close(source.fd)
    return final


def recorded_times(
    source: Source, rate: Fraction, converter: Converter
) -> Optional[timestamps.FrameTimes]:
    """The recording's timestamp file, if it has a usable one; logs what it means.

    It must belong to the recording's owner, as the recording does (a file another
    user left there is not taken). At most one line per recording: the
    timestamps' average rate against ``fps`` when they differ by more than
    ``RATE_TOLERANCE``, or that the converter cannot use them, or that they are
    unusable.
    """
    h264 = source.path
    path = timestamps.pts_path(h264)
    try:
        times = timestamps.read(path, owner=os.fstat(source.fd).st_uid)
    except TimestampFileError as e:
        logger.warning("%s: %s; the mp4 is timed at %s fps", path, e, _rate_text(rate))
        return None
    if times is None or len(times) == 0:
        if not converter.untimed_noted:
            converter.untimed_noted = True
            logger.warning(
                "%s has no timestamp file (recorded by the original pancake or raspivid?):"
                " it is timed at %s fps, as given to --convert, and so are others like it;"
                " if the camera ran at another rate they play too fast or too slow",
                h264,
                _rate_text(rate),
            )
        return None
    average = times.average_rate()
    differs = average is not None and abs(average - float(rate)) > RATE_TOLERANCE * float(rate)
    if not converter.honours_timestamps:
        if differs:
            logger.warning(
                "%s: its timestamps average %.2f fps, but %s cannot use them:"
                " the mp4 is timed at %s fps (--converter builtin follows the timestamps)",
                h264,
                average,
                converter.name,
                _rate_text(rate),
            )
        else:
            logger.info("%s: %s times it at %s fps", h264, converter.name, _rate_text(rate))
        return None
    if differs:
        logger.warning(
            "%s: its timestamps average %.2f fps, not the %s fps given to --convert;"
            " the mp4 follows the timestamps",
            h264,
            average,
            _rate_text(rate),
        )
    return times


def _raise_if_short_of_space(error: BaseException, mp4_dir: str, size: int) -> None:
    """Turn a failure into ``NoSpaceError`` when ``mp4_dir`` lacks room for the output.

    Converters say "disk full" in different ways (an errno, a line on stderr, a bare
    exit code); the free space itself is the one sign they all share.
    """
    needed = size + size // 10 + SPACE_MARGIN
    try:
        free = free_bytes(mp4_dir)
    except OSError:
        return
    full = isinstance(error, OSError) or isinstance(error, NoSpaceError)
    if full or free < needed:
        raise NoSpaceError(
            f"{mp4_dir} has {free} bytes free, {needed} needed ({error})", needed
        ) from None


def free_bytes(path: str) -> int:
    """Bytes postproc's user may still write on the file system holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fsync_path(path: str) -> None:
    # A Pi loses power without warning: make the data and then the rename durable.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        logger.warning("cannot remove %s: %s", path, e)
