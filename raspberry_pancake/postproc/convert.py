"""h264 to mp4: three converters with one promise.

Every converter writes exactly the input's frames with a duration of frames/fps,
into a hidden temporary name in ``mp4_dir``; only a complete, synced file is
renamed to its final name, so a crash never leaves a truncated mp4 where the
uploader or the user would take it.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from fractions import Fraction
from typing import List, Optional

from ..exc import ConfigError, ConversionError, StoppedError
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


class Converter:
    """Base: turn ``src`` into a complete mp4 at ``dst``. Called from the convert thread."""

    name = ""

    def convert(self, src: str, dst: str, rate: Fraction, stop: threading.Event) -> None:
        raise NotImplementedError


class ExternalConverter(Converter):
    """A converter that is one external command."""

    program = ""

    def command(self, src: str, dst: str, rate: Fraction) -> List[str]:
        raise NotImplementedError

    def convert(self, src: str, dst: str, rate: Fraction, stop: threading.Event) -> None:
        result = runner.run(
            self.command(src, dst, rate),
            runner.size_timeout(src, CONVERSION_BYTES_PER_SECOND),
            stop,
        )
        if not result.ok:
            raise ConversionError(f"{self.program} failed: {result.reason()}")


class Mp4BoxConverter(ExternalConverter):
    """GPAC's MP4Box, as the original project used; sets the rate on import."""

    name = "mp4box"
    program = "MP4Box"

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

    def convert(self, src: str, dst: str, rate: Fraction, stop: threading.Event) -> None:
        import av  # imported here so that choosing another converter never needs PyAV

        time_base = 1 / rate
        try:
            with av.open(src, format="h264") as source:
                if not source.streams.video:
                    raise ConversionError("no video stream")
                in_stream = source.streams.video[0]
                with av.open(dst, "w", format="mp4") as sink:
                    out_stream = _copy_stream(sink, in_stream)
                    out_stream.time_base = time_base
                    frames = 0
                    for packet in source.demux(in_stream):
                        if packet.size == 0:
                            continue
                        if stop.is_set():
                            raise StoppedError("conversion interrupted by shutdown")
                        packet.stream = out_stream
                        packet.time_base = time_base
                        packet.pts = packet.dts = frames
                        packet.duration = 1
                        sink.mux(packet)
                        frames += 1
                    if frames == 0:
                        raise ConversionError("no frames in the h264 file")
        except (av.error.FFmpegError, OSError) as e:
            raise ConversionError(f"PyAV: {e}") from None


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


def convert_file(
    converter: Converter,
    h264: str,
    mp4_dir: str,
    rate: Fraction,
    stop: Optional[threading.Event] = None,
) -> str:
    """Convert ``h264`` into ``mp4_dir``; return the final mp4 path.

    Called from the convert thread. Raises ``ConversionError``; never leaves a
    partial file under the final name.
    """
    stop = stop or threading.Event()
    final = os.path.join(mp4_dir, mp4_name(h264))
    tmp = temporary_path(final)
    _remove_quietly(tmp)
    try:
        converter.convert(h264, tmp, rate, stop)
        if not os.path.isfile(tmp) or os.path.getsize(tmp) == 0:
            raise ConversionError(f"{converter.name} wrote no output")
        _fsync_path(tmp)
        os.replace(tmp, final)
        _fsync_path(mp4_dir)
    except BaseException:
        _remove_quietly(tmp)
        raise
    return final


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
