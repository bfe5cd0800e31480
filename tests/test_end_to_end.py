"""pancake.py and postproc.py together, as a user runs them: the sim camera records
across a quarter hour and around a detection; postproc converts every file it is
told about and sends the edge clips to a local stand-in of the Telegram Bot API."""

from __future__ import annotations

import glob
import os
import time

import pytest

from raspberry_pancake import timestamps
from tests.helpers import ClockBeforeASplit, count_frames, decode_errors
from tests.postproc.pp_helpers import BotApi, Postproc, wait_until
from tests.pts_helpers import TICK, mp4_timing, pts_lines

FPS = 12
DETECT_FROM, DETECT_UNTIL = 4.0, 10.0  # seconds after the first detect() call


def write_customize(path) -> str:
    path.write_text(
        "import time\n"
        "_first = []\n\n\n"
        "def detect():\n"
        "    now = time.monotonic()\n"
        "    _first.append(now) if not _first else None\n"
        f"    return {DETECT_FROM} <= now - _first[0] < {DETECT_UNTIL}\n"
    )
    return str(path)


def test_recordings_flow_from_camera_to_mp4_and_telegram(tmp_path, pancake):
    h264, mp4 = tmp_path / "h264", tmp_path / "mp4"
    h264.mkdir()
    mp4.mkdir()
    bot = BotApi()
    pp = Postproc(
        tmp_path,
        "--convert",
        str(mp4),
        str(FPS),
        "--converter",
        "builtin",
        "--notify-telegram",
        "123456:SECRET-TOKEN",
        "4242",
        "--telegram-api-url",
        bot.url,
    ).start()
    # 17:14, and 17:14:54 once recording: a clock started a few seconds before 17:15
    # would race a slow start-up, and then no file would be named for 17:14
    clock = ClockBeforeASplit(tmp_path, h264 / "20200623-1714.h264")
    try:
        cam = pancake(
            "--camera",
            "sim",
            "--fps",
            str(FPS),
            "--record-continuous",
            str(h264),
            "--detect",
            "no-image",
            "--record-detection",
            "edge",
            str(h264),
            "--customize",
            write_customize(tmp_path / "customize.py"),
            "--emit",
            pp.name,
            env=clock.env,  # in UTC
        )
        clock.wait_and_set(seconds_left=6)
        # both edges become clips, and each clip reaches Telegram as a video
        wait_until(lambda: len(bot.of("sendVideo")) >= 2, 90, "two videos sent to Telegram")
        code, out = cam.stop()
        assert code == 0, out
        h264_files = sorted(glob.glob(str(h264 / "*.h264")))
        names = [os.path.basename(f) for f in h264_files]
        assert "20200623-1714.h264" in names and "20200623-1715.h264" in names, names
        clips = [n for n in names if len(n) == len("20200623-171500.h264")]
        assert len(clips) == 2, names
        # every finished file is converted, frame for frame, each frame at the time
        # its .pts gives, and the mp4 says when it was recorded (the camera's clock)
        expected = [str(mp4 / n.replace(".h264", ".mp4")) for n in names]
        wait_until(lambda: all(os.path.exists(m) for m in expected), 90, "every mp4")
        for source, converted in zip(h264_files, expected):
            frames = count_frames(source)
            times = pts_lines(timestamps.pts_path(source))[1]
            got = mp4_timing(converted)
            assert frames > 0 and got.frames == frames == len(times)
            assert got.pts == pytest.approx([ms / 1000 for ms in times], abs=TICK)
            assert got.creation_time.startswith("2020-06-23T17:1"), got.creation_time
            assert decode_errors(converted) == ""
        videos = bot.of("sendVideo")
        assert [v["fields"]["caption"] for v in videos[:2]] == [
            "Detection changed to True",
            "Detection changed to False",
        ]
        assert all(v["fields"]["chat_id"] == "4242" for v in videos)
        assert all(
            v["files"]["video"][0] in {n.replace(".h264", ".mp4") for n in clips} for v in videos
        )
        assert not bot.problems
        time.sleep(0.5)
        assert "SECRET-TOKEN" not in pp.log_text()
    finally:
        assert pp.stop() == 0
        bot.close()
