"""Converters checked with ffprobe: exact frames, duration frames/fps, playable."""

from __future__ import annotations

import os
import stat
import threading
from fractions import Fraction

import pytest

from raspberry_pancake.exc import ConfigError, ConversionError
from raspberry_pancake.postproc import convert
from tests.postproc.pp_helpers import PI_FRAMES, assert_mp4, make_h264

AVAILABLE = ["builtin"] + (["ffmpeg"] if convert.shutil.which("ffmpeg") else [])


@pytest.fixture(params=AVAILABLE)
def converter(request):
    return convert.select_converter(request.param)


@pytest.mark.parametrize(
    "fps,frames,size", [(12, 30, (320, 240)), (30, 95, (640, 360)), (30, 450, (160, 120))]
)
def test_sim_recording(converter, tmp_path, fps, frames, size):
    src = make_h264(str(tmp_path / "20240102-0304.h264"), frames, fps, size)
    out = convert.convert_file(converter, src, str(tmp_path), Fraction(fps))
    assert out == str(tmp_path / "20240102-0304.mp4")
    assert_mp4(out, frames, fps, size)
    assert sorted(os.listdir(tmp_path)) == ["20240102-0304.h264", "20240102-0304.mp4"]


@pytest.mark.parametrize("fps", [12, 30, 25])
def test_real_pi_recording(converter, pi_h264, tmp_path, fps):
    out = convert.convert_file(converter, pi_h264, str(tmp_path), Fraction(fps))
    assert os.path.basename(out) == "raspivid-1080p-116frames.mp4"
    assert_mp4(out, PI_FRAMES, fps, (1920, 1080))


def test_builtin_keeps_fractional_rate_exact(pi_h264, tmp_path):
    rate = convert.frame_rate(29.97)
    assert rate == Fraction(2997, 100)
    out = convert.convert_file(convert.BuiltinConverter(), pi_h264, str(tmp_path), rate)
    assert_mp4(out, PI_FRAMES, 29.97)


def test_garbage_fails_and_leaves_nothing(converter, tmp_path):
    src = tmp_path / "20240102-0304.h264"
    src.write_bytes(b"this is not video" * 100)
    mp4_dir = tmp_path / "mp4"
    mp4_dir.mkdir()
    with pytest.raises(ConversionError):
        convert.convert_file(converter, str(src), str(mp4_dir), Fraction(12))
    assert os.listdir(mp4_dir) == []


def test_stale_partial_file_is_replaced(converter, tmp_path):
    src = make_h264(str(tmp_path / "20240102-0304.h264"), 12, 12)
    final = str(tmp_path / "20240102-0304.mp4")
    partial = convert.temporary_path(final)
    assert os.path.basename(partial).startswith(".")
    with open(partial, "wb") as f:
        f.write(b"left over by a crash")
    convert.convert_file(converter, src, str(tmp_path), Fraction(12))
    assert not os.path.exists(partial)
    assert_mp4(final, 12, 12)


def test_partial_name_until_complete(tmp_path):
    """While the converter writes, only the hidden temporary name exists."""
    seen = {}

    class Spy(convert.Converter):
        name = "spy"

        def convert(self, source, dst, rate, stop, times=None):
            seen["dst"] = dst
            seen["final_exists"] = os.path.exists(tmp_path / "20240102-0304.mp4")
            with open(dst, "wb") as f:
                f.write(b"x")

    src = tmp_path / "20240102-0304.h264"
    src.write_bytes(b"")
    out = convert.convert_file(Spy(), str(src), str(tmp_path), Fraction(12))
    assert seen["dst"] == str(tmp_path / ".20240102-0304.partial.mp4")
    assert seen["final_exists"] is False
    assert open(out, "rb").read() == b"x"


def test_mp4box_command_line():
    cmd = convert.Mp4BoxConverter().command(
        "/r/20240102-0304.h264", "/m/.x.partial.mp4", Fraction(12)
    )
    assert cmd == [
        "MP4Box", "-quiet", "-add", "/r/20240102-0304.h264:fps=12", "-new", "/m/.x.partial.mp4"
    ]  # fmt: skip
    cmd = convert.Mp4BoxConverter().command("/a.h264", "/b.mp4", Fraction(2997, 100))
    assert "/a.h264:fps=29.97" in cmd


def _fake_program(directory, name):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(path, stat.S_IRWXU)


def test_auto_prefers_builtin_then_mp4box_then_ffmpeg(tmp_path, monkeypatch):
    """The built-in converter is the one that honours .pts files: auto takes it first."""
    monkeypatch.setenv("PATH", str(tmp_path))
    _fake_program(tmp_path, "ffmpeg")
    _fake_program(tmp_path, "MP4Box")
    assert isinstance(convert.select_converter("auto"), convert.BuiltinConverter)
    monkeypatch.setattr(convert, "_pyav_installed", lambda: False)
    assert isinstance(convert.select_converter("auto"), convert.Mp4BoxConverter)
    os.remove(tmp_path / "MP4Box")
    assert isinstance(convert.select_converter("auto"), convert.FfmpegConverter)
    os.remove(tmp_path / "ffmpeg")
    with pytest.raises(ConfigError, match="no converter"):
        convert.select_converter("auto")


def test_explicit_converter_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="MP4Box is not on PATH"):
        convert.select_converter("mp4box")
    with pytest.raises(ConfigError, match="ffmpeg is not on PATH"):
        convert.select_converter("ffmpeg")


def test_builtin_stops_on_shutdown(pi_h264, tmp_path):
    """Shutdown is not a failed conversion: the job must stay queued for the restart."""
    from raspberry_pancake.exc import StoppedError

    stop = threading.Event()
    stop.set()
    with pytest.raises(StoppedError):
        convert.convert_file(convert.BuiltinConverter(), pi_h264, str(tmp_path), Fraction(12), stop)
    assert os.listdir(tmp_path) == []


def test_ffmpeg_stops_on_shutdown(pi_h264, tmp_path, monkeypatch):
    """A set stop event interrupts an external converter and leaves no partial file."""
    from raspberry_pancake.exc import StoppedError

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ffmpeg").write_text("#!/bin/sh\nsleep 30\n")
    os.chmod(bin_dir / "ffmpeg", stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    with pytest.raises(StoppedError):
        convert.convert_file(convert.FfmpegConverter(), pi_h264, str(tmp_path), Fraction(12), stop)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".mp4")]
