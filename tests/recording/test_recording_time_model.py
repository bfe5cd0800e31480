"""The two clocks of a frame: monotonic capture time for durations, wall time for names.

Synthetic streams whose wall clock is set while the monotonic clock runs on, as
when NTP sets the clock of a Pi that booted on a stale time. One rule per test:
clips, the pre-roll, clip spacing, the 3 s hold and all mode's 15-minute split
follow capture times; only names (and continuous recording's marks, see
test_recording_continuous) follow the wall clock.
"""

from __future__ import annotations

import logging
import time

import pytest
from rec_synthetic import Replay, at, drive, edges, local, make_frames

from raspberry_pancake.camera.base import H264Frame, RgbFrame
from raspberry_pancake.detection.edges import EdgeInbox
from raspberry_pancake.detection.thread import DetectionThread
from raspberry_pancake.recording.continuous import ContinuousRecorder
from raspberry_pancake.recording.fanout import RecordingFanout
from raspberry_pancake.recording.triggered import AllRecorder, EdgeRecorder

FPS = 12
WALL0 = local("2020-06-23 17:20:00")


def stepped(seconds, step_at, step, fps=FPS):
    """A stream whose wall clock is set ``step`` seconds at ``step_at`` s (capture time)."""
    cut = int(round(step_at * fps))
    before = make_frames(WALL0, cut / fps, fps=fps, gop=fps)
    after = make_frames(WALL0 + step + cut / fps, seconds - cut / fps, fps, fps, first_index=cut)
    return before + after


class OneFrameSlot:
    """The camera's RGB output, holding the frame the camera just captured."""

    frame = None

    def take(self, timeout):
        frame, self.frame = self.frame, None
        return frame

    def wake(self):
        pass


def time_name(wall):
    """The detection file name for a first frame at wall time ``wall``."""
    return time.strftime("%Y%m%d-%H%M%S.h264", time.localtime(wall))


def rgb_of(frame: H264Frame) -> RgbFrame:
    return RgbFrame(b"\0" * 12, 2, 2, frame.monotonic, frame.wall, frame.index)


@pytest.mark.parametrize("lead", [0.9, 1.0, 1.2, 1.4, 1.5, 1.7, 3.0, -0.5, -2.5])
@pytest.mark.parametrize("step", [3600.0, -3600.0, 7.0])
def test_a_clock_step_near_an_edge_leaves_the_clip_whole(lead, step):
    """The known bug: the wall clock set forward 0.9-1.7 s before an edge gave a
    1.1-1.8 s clip without its edge (the pre-roll was shifted twice).

    Edges come from a real DetectionThread calling detect(bytes) on RGB frames
    captured with the H.264 frames; a negative lead sets the clock during the clip.
    """
    step_at = 10.0 + 5 / FPS
    edge_at = step_at + lead
    frames = stepped(20, step_at, step)
    inbox = EdgeInbox()
    recorder = EdgeRecorder("/rec", inbox)
    slot = OneFrameSlot()
    seen = []
    detector = DetectionThread(lambda rgb: seen[-1] >= at(edge_at), 0.25, inbox.put, slot)
    actions = []
    for frame in frames:
        actions.extend(recorder.on_frame(frame))
        if frame.index % 3 == 0:  # detect(bytes) sees every third frame, 4 calls a second
            slot.frame = rgb_of(frame)
            seen.append(frame.monotonic)
            detector.run_once()
    actions.extend(recorder.finish())
    replay = Replay(actions)
    (clip,) = replay.order
    got = replay.frames(clip)
    edge_frame = next(f for f in frames if f.index % 3 == 0 and f.monotonic >= at(edge_at))
    assert got[0].keyframe
    assert 4 * FPS <= len(got) <= 6 * FPS, f"{len(got) / FPS:.2f} s"
    assert edge_frame in got, "the clip contains its edge"
    assert 2.0 <= edge_frame.monotonic - got[0].monotonic <= 4.0
    indexes = [f.index for f in got]
    assert indexes == list(range(indexes[0], indexes[0] + len(indexes)))
    assert clip.name == time_name(got[0].wall), "named by the wall clock of its first frame"


@pytest.mark.parametrize("step", [3600.0, -3600.0])
def test_clip_spacing_counts_capture_time(step):
    # a change 1.5 s after the first clip's edge waits for the 3 s spacing, set clock or not
    frames = stepped(30, 11.0, step)
    inbox = EdgeInbox()
    replay = Replay(
        drive(EdgeRecorder("/rec", inbox), frames, edges((at(10), True), (at(11.5), False)), inbox)
    )
    first, second = replay.order
    assert [m["detection"] for m in replay.messages] == [True, False]
    assert replay.frames(second)[0].monotonic <= at(11.5)
    assert at(13) <= replay.frames(second)[-1].monotonic
    for clip in (first, second):
        assert 4.0 <= replay.duration(clip, FPS) <= 6.0


@pytest.mark.parametrize("step", [3600.0, -3600.0])
def test_all_mode_hold_counts_capture_time(step):
    # false at 20 s, the clock set at 21 s: the recording ends 3 s of video after 20 s
    frames = stepped(30, 21.0, step)
    inbox = EdgeInbox()
    replay = Replay(
        drive(AllRecorder("/rec", inbox), frames, edges((at(10), True), (at(20), False)), inbox)
    )
    clip, rest = replay.order
    assert replay.messages[1:] == [{"detection": False}, {"h264": rest.name}]
    assert replay.frames(rest)[-1].monotonic == pytest.approx(at(23 - 1 / FPS))


def test_all_mode_split_counts_capture_time():
    # the clock set forward two hours mid-recording: still 15 minutes of video per part
    frames = stepped(40 * 60, 5 * 60, 7200.0, fps=2)
    inbox = EdgeInbox()
    replay = Replay(drive(AllRecorder("/rec", inbox), frames, edges((at(10), True)), inbox))
    clip, first, second, third = replay.order
    assert replay.duration(first, 2) == replay.duration(second, 2) == pytest.approx(15 * 60)
    # names follow the wall clock: the second part starts after the clock was set
    assert second.name == time_name(replay.frames(second)[0].wall)
    assert replay.frames(second)[0].wall > WALL0 + 7200


@pytest.mark.parametrize("step", [3600.0, -3600.0])
def test_preroll_spans_a_clock_step(step):
    # the edge 1 s after the step: its pre-roll holds video from both sides of it
    frames = stepped(20, 10.0, step)
    inbox = EdgeInbox()
    replay = Replay(drive(EdgeRecorder("/rec", inbox), frames, edges((at(11), True)), inbox))
    (clip,) = replay.order
    got = replay.frames(clip)
    assert got[0].monotonic == at(9.0)
    assert any(f.monotonic < at(10) for f in got) and any(f.monotonic >= at(11) for f in got)


def test_detect_without_image_is_stamped_on_the_monotonic_clock():
    edges_seen = []
    thread = DetectionThread(lambda: True, 0.1, edges_seen.append)
    before = time.monotonic()
    thread.run_once()
    after = time.monotonic()
    (edge,) = edges_seen
    assert before <= edge.time <= after


def test_the_clock_being_set_is_logged_once(caplog):
    class Sink:
        def put(self, action):
            pass

    fanout = RecordingFanout([ContinuousRecorder("/rec")], Sink())
    with caplog.at_level(logging.WARNING):
        for frame in stepped(10, 5.0, -3600.0):
            fanout.outputframe(frame)
    (record,) = [r for r in caplog.records if "wall clock" in r.getMessage()]
    assert "-3600.0 s" in record.getMessage()
