"""h264 to mp4: three converters with one promise.

Every converter writes exactly the input's frames with a duration of frames/fps,
into a hidden temporary name in ``mp4_dir``; only a complete, synced file is
renamed to its final name, so a crash never leaves a truncated mp4 where the
uploader or the user would take it.

The input is read through a descriptor opened without following links, so what
is converted is the file that was checked. A conversion that fails while the mp4
directory lacks room for its output raises ``NoSpaceError``: it is not the
recording's fault, and the conversion waits for space instead of being dropped.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import threading
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import List, Optional

from ..exc import ConfigError, ConversionError, NoSpaceError, StoppedError
from . import runner

logger = logging.getLogger(__name__)

CONVERTER_CHOICES = ("auto", "mp4box", "ffmpeg", "builtin")


def frame_rate(fps: float) -> Fraction:
    """The exact rate behind a number typed on the command line (29.97 -> 2997/100)."""
    return Fraction(str(fps)).limit_denominator(100000)


def _rate_text(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else str(float(rate))


#: Remuxing is disk-bound; timeouts allow a slow SD card (2 MB/s) plus a fixed margin.
CONVERSION_BYTES_PER_SECOND = 2e6

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
    """Base: turn ``source`` into a complete mp4 at ``dst``. Called from the convert thread."""

    name = ""

    def convert(self, source: Source, dst: str, rate: Fraction, stop: threading.Event) -> None:
        raise NotImplementedError


class ExternalConverter(Converter):
    """A converter that is one external command, reading the source by descriptor."""

    program = ""

    def command(self, src: str, dst: str, rate: Fraction) -> List[str]:
        raise NotImplementedError

    def input_of(self, source: Source) -> str:
        return source.by_fd

    def convert(self, source: Source, dst: str, rate: Fraction, stop: threading.Event) -> None:
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
    """A PyAV remux without re-encoding: timestamps come from the frame index and rate.

    Assumes no B-frames (decode order is display order), which holds for the Pi's
    encoders and for the sim camera.
    """

    name = "builtin"

    def convert(self, source: Source, dst: str, rate: Fraction, stop: threading.Event) -> None:
        import av  # imported here so that choosing another converter never needs PyAV

        time_base = 1 / rate
        try:
            with av.open(source.by_fd, format="h264") as container:
                if not container.streams.video:
                    raise ConversionError("no video stream")
                in_stream = container.streams.video[0]
                with av.open(dst, "w", format="mp4") as sink:
                    out_stream = _copy_stream(sink, in_stream)
                    # PyAV 10 (Debian 12's) warns that this also sets the time base of
                    # the copied decoder context; the stream's time base is what we want
                    warnings.filterwarnings("ignore", "Using CodecContext.time_base for decoders")
                    out_stream.time_base = time_base
                    frames = 0
                    for packet in container.demux(in_stream):
                        if packet.size == 0:
                            continue
                        if stop.is_set():
                            raise StoppedError("conversion interrupted by shutdown")
                        packet.stream = out_stream
                        _place(packet, frames, rate)
                        sink.mux(packet)
                        frames += 1
                    if frames == 0:
                        raise ConversionError("no frames in the h264 file")
        except (av.error.FFmpegError, OSError) as e:
            if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpaceError(f"PyAV: {e}", 0) from None
            raise ConversionError(f"PyAV: {e}") from None


def _place(packet, index: int, rate: Fraction) -> None:
    """Time ``packet`` as frame ``index`` of a stream at ``rate``, one frame long."""
    try:
        packet.duration = 1
    except AttributeError:
        # PyAV before 11 (Debian 12 has 10) cannot set a packet's duration: keep the
        # one the H.264 parser gave it, in a time base where it lasts one frame
        ticks = packet.duration
        if ticks > 0:
            packet.time_base = 1 / (rate * ticks)
            packet.pts = packet.dts = index * ticks
            return
    packet.time_base = 1 / rate
    packet.pts = packet.dts = index


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
    """The converter for ``--converter``; ``auto`` prefers MP4Box, then ffmpeg, then PyAV."""
    if choice == "auto":
        for name in ("mp4box", "ffmpeg"):
            if shutil.which(_CONVERTERS[name].program):
                return _CONVERTERS[name]()
        return BuiltinConverter()
    cls = _CONVERTERS.get(choice)
    if cls is None:
        raise ConfigError(f"unknown converter {choice!r}")
    if issubclass(cls, ExternalConverter) and not shutil.which(cls.program):
        raise ConfigError(f"--converter {choice}: {cls.program} is not on PATH")
    if cls is BuiltinConverter:
        try:
            import av  # noqa: F401
        except ImportError:
            raise ConfigError("--converter builtin needs PyAV (pip install av)") from None
    return cls()


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
        _remove_quietly(tmp)
        try:
            converter.convert(source, tmp, rate, stop)
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
