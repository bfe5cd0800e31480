"""Three steps of the wall clock that recording must take in its stride, on any camera.

Each scenario runs a real ``pancake.py`` whose wall clock the test sets while it
records (``SteppableClock``: libfaketime reading a file), as NTP does on a Pi
that booted without a real-time clock, and checks the files with ffprobe and
the messages on a real datagram socket. They are written once for every camera
backend: the caller passes ``launch(*args, env=...)``, which starts pancake.py
with its camera flags (and, for a Pi backend, the fake library's environment)
plus ``args`` and ``env``, and returns the running ``tests.helpers.Pancake``.
The caller's fixture stops what is left running; each scenario stops pancake.py
itself when all went well. Names are checked in UTC (``TZ=UTC``).

- ``forward_step_starts_a_file_named_with_the_new_time``: +1 h;
- ``backward_step_never_overwrites_a_file``: -1 h onto names already taken;
- ``step_before_an_edge_keeps_the_clip_whole``: +1 h 1.2 s before a detection
  edge; the clip is still 4-6 s and holds the frame detect() answered on.

tests/test_clock_steps.py runs them on the sim camera.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, List, Optional, Tuple

import av
import numpy as np

from tests.helpers import (
    ClockBeforeASplit,
    Pancake,
    Receiver,
    SteppableClock,
    count_frames,
    frames_received,
    starts_with_keyframe,
    stop,
    with_timestamp_files,
)
from tests.pts_helpers import recorded_seconds

Launch = Callable[..., Pancake]

#: Seconds to wait for anything pancake.py should do within a few seconds.
PATIENCE = 90.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def has_frames(path, count: int) -> bool:
    """Whether the (growing) H.264 file at ``path`` holds at least ``count`` frames."""
    return os.path.exists(path) and os.path.getsize(path) > 0 and count_frames(path) >= count


def check_recordings(announced: List[str], log: str) -> None:
    """Each file plays alone and, together, they hold every frame the camera gave, once."""
    for path in announced:
        assert starts_with_keyframe(path), path
    assert sum(count_frames(path) for path in announced) == frames_received(log), log


def forward_step_starts_a_file_named_with_the_new_time(launch: Launch, workdir, fps: int) -> None:
    """+1 h while recording: the file in progress ends, the next is named with the new time."""
    clock = SteppableClock(workdir, "2020-06-23 17:20:00")
    out = os.path.join(str(workdir), "forward")
    os.mkdir(out)
    first, second = os.path.join(out, "20200623-1720.h264"), os.path.join(out, "20200623-1820.h264")
    rx = Receiver().start()
    try:
        p = launch("--record-continuous", out, "--emit", rx.name, env={**clock.env, "TZ": "UTC"})
        wait_until(lambda: has_frames(first, 2 * fps), "two seconds in the first file")
        clock.set("2020-06-23 18:20:30")
        assert rx.wait_for(1, timeout=PATIENCE) == [{"h264": first}]
        wait_until(lambda: has_frames(second, 2 * fps), "two seconds in the file after the step")
        log = stop(p, clean_log=True)
        assert rx.wait_for(2) == [{"h264": first}, {"h264": second}]
    finally:
        rx.stop()
    assert sorted(os.listdir(out)) == with_timestamp_files(first, second)
    check_recordings([first, second], log)
    assert "the wall clock was set +36" in log, log


def backward_step_never_overwrites_a_file(launch: Launch, workdir, fps: int) -> None:
    """-1 h onto minutes already recorded: new files get suffixes, old ones stay as they were.

    The two files of an hour earlier stand for what the Pi recorded before its
    clock was set back. After the step the recording goes into a file named
    with the new time, and the next quarter-hour split comes at the new time's
    16:15, seconds later, not at 17:30.
    """
    # 17:14, and 17:14:57 once recording: a slow camera records before 17:15 whatever
    # its start-up takes (Picamera2's lets exposure settle for 2 s, and a loaded
    # machine takes seconds to start Python)
    out = os.path.join(str(workdir), "backward")
    clock = ClockBeforeASplit(workdir, os.path.join(out, "20200623-1714.h264"))
    os.mkdir(out)
    earlier = {
        "20200623-1614.h264": b"recorded an hour before, first",
        "20200623-1615.h264": b"recorded an hour before, second",
    }
    for name, data in earlier.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    names = ["20200623-1714.h264", "20200623-1715.h264", "20200623-1614-1.h264"]
    names.append("20200623-1615-1.h264")
    paths = [os.path.join(out, name) for name in names]
    rx = Receiver().start()
    try:
        p = launch("--record-continuous", out, "--emit", rx.name, env={**clock.env, "TZ": "UTC"})
        clock.wait_and_set(seconds_left=3)
        wait_until(lambda: has_frames(paths[1], fps), "a second of recording after 17:15")
        clock.set("2020-06-23 16:14:57")
        wait_until(lambda: has_frames(paths[3], fps), "a second of recording after 16:15")
        log = stop(p, clean_log=True)
        messages = rx.wait_for(4)
    finally:
        rx.stop()
    for name, data in earlier.items():
        with open(os.path.join(out, name), "rb") as f:
            assert f.read() == data, f"{name} was overwritten"
    assert messages == [{"h264": path} for path in paths]
    assert sorted(os.listdir(out)) == sorted([*earlier, *with_timestamp_files(*names)])
    check_recordings(paths, log)
    assert "the wall clock was set -36" in log, log


# --- a step just before a detection edge -------------------------------------------

#: Seconds from the step (as detect() sees it) to the edge: inside the 0.9-1.7 s
#: where the clip used to lose its edge.
EDGE_LEAD = 1.2

#: detect(rgb) for the third scenario. It follows the sim scene's red ball, which
#: moves from 6 s to 14 s of each 20 s cycle and then takes a new place every frame.
#: It notes when it first sees the ball move (the pre-roll is full by then) and
#: when it first sees the wall clock set; EDGE_LEAD seconds later it answers True,
#: and writes where the ball was in that picture, to find it in the clip.
_EDGE_DETECTOR = """\
import json
import time

import numpy as np

NOTES = {notes!r}
WIDTH, HEIGHT = {size!r}
LEAD = {lead!r}
state = {{"offset": None, "last": None, "moving": False, "step": None, "edge": None}}


def note(**fields):
    with open(NOTES, "a") as f:
        f.write(json.dumps(fields) + "\\n")


def ball(rgb):
    picture = np.frombuffer(rgb, dtype=np.uint8).reshape(HEIGHT, WIDTH, 3).astype(int)
    red = (picture[..., 0] > 170) & (picture[..., 1] < 110) & (picture[..., 2] < 100)
    ys, xs = np.nonzero(red)
    if len(xs) < 10:
        return None
    return [float(xs.mean()) / WIDTH, float(ys.mean()) / HEIGHT]


def moved(a, b):
    return a is not None and b is not None and max(abs(a[0] - b[0]), abs(a[1] - b[1])) > 0.005


def detect(rgb):
    now = time.monotonic()
    offset = time.time() - now
    where = ball(rgb)
    if state["offset"] is None:
        state["offset"] = offset
    if state["step"] is None and abs(offset - state["offset"]) > 600:
        state["step"] = now
        note(event="step", wall=time.time())
    if not state["moving"] and moved(where, state["last"]):
        state["moving"] = True
        note(event="moving")
    was, state["last"] = state["last"], where
    if state["step"] is None or now - state["step"] < LEAD:
        return False
    if state["edge"] is None:
        state["edge"] = where
        note(event="edge", ball=where, moving=moved(where, was), wall=time.time())
    return True
"""


def read_notes(path) -> List[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def ball_positions(path) -> List[Optional[Tuple[float, float]]]:
    """Where the red ball is in each decoded frame of an H.264 file (fractions of the size)."""
    positions = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            picture = frame.to_ndarray(format="rgb24").astype(int)
            red = (picture[..., 0] > 170) & (picture[..., 1] < 110) & (picture[..., 2] < 100)
            ys, xs = np.nonzero(red)
            h, w = red.shape
            positions.append((xs.mean() / w, ys.mean() / h) if len(xs) >= 10 else None)
    return positions


def step_before_an_edge_keeps_the_clip_whole(
    launch: Launch, workdir, fps: int, rgb_size: Tuple[int, int] = (160, 120)
) -> None:
    """+1 h 1.2 s before a detection edge: a 4-6 s clip that holds the edge's own picture.

    The edge is found in the clip by its picture, not by any time pancake.py
    wrote: detect() notes where the moving ball was in the frame it answered
    True on, and that position must be in the clip, neither first nor last.
    """
    clock = SteppableClock(workdir, "2020-06-23 17:20:00")
    out = os.path.join(str(workdir), "edge")
    os.mkdir(out)
    notes = os.path.join(str(workdir), "edge-detector.jsonl")
    customize = os.path.join(str(workdir), "edge_detector.py")
    with open(customize, "w") as f:
        f.write(_EDGE_DETECTOR.format(notes=notes, size=tuple(rgb_size), lead=EDGE_LEAD))
    rx = Receiver().start()
    try:
        p = launch(
            "--record-detection",
            "edge",
            out,
            "--detect",
            "image",
            "--detect-resize",
            str(rgb_size[0]),
            str(rgb_size[1]),
            "--detect-interval",
            "0.1",
            "--customize",
            customize,
            "--emit",
            rx.name,
            env={**clock.env, "TZ": "UTC"},
        )

        def seen(event):
            return any(n["event"] == event for n in read_notes(notes))

        wait_until(lambda: seen("moving"), "detect() seeing the ball move")
        clock.step(3600)  # +1 h however long the camera took to start
        (message,) = rx.wait_for(1, timeout=PATIENCE)
        log = stop(p, clean_log=True)
    finally:
        rx.stop()
    (edge,) = [n for n in read_notes(notes) if n["event"] == "edge"]
    assert edge["moving"], "the ball stopped before the edge; the machine is too slow here"
    assert message["detection"] is True
    clip = message["h264"]
    frames = count_frames(clip)
    # 4-6 s of capture time, not of frames: a loaded machine makes the camera drop some
    assert 4 <= recorded_seconds(clip, fps) <= 6, f"{frames} frames"
    assert starts_with_keyframe(clip)
    # it starts before the step (named with the old time) and holds the edge's picture
    assert os.path.basename(clip).startswith("20200623-1720"), clip
    positions = ball_positions(clip)
    assert len(positions) == frames
    distances = [
        np.inf if p is None else max(abs(p[0] - edge["ball"][0]), abs(p[1] - edge["ball"][1]))
        for p in positions
    ]
    at = int(np.argmin(distances))
    assert distances[at] < 0.01, f"the edge's picture is not in the clip: {distances[at]:.3f} off"
    assert 0 < at < frames - 1, f"the edge is frame {at} of {frames}"
    assert "the wall clock was set +36" in log, log
