"""The continuous recorder, driven by synthetic frames: splits, naming, the clock being set.

Only wall times matter here: they name files and place quarter-hour marks.
"""

from __future__ import annotations

import pytest
from rec_synthetic import Replay, drive, local, make_frames

from raspberry_pancake.recording.continuous import ContinuousRecorder
from raspberry_pancake.recording.timeline import next_quarter_mark


def record(frames):
    replay = Replay(drive(ContinuousRecorder("/rec"), frames))
    return replay


def assert_every_frame_once(replay, frames):
    """Files in order hold the stream from its first keyframe, nothing lost or repeated."""
    first_key = next(i for i, f in enumerate(frames) if f.keyframe)
    written = [i for file in replay.order for i in replay.indexes(file)]
    assert written == [f.index for f in frames[first_key:]]


def test_next_quarter_mark():
    assert next_quarter_mark(local("2020-06-23 17:14:50")) == local("2020-06-23 17:15:00")
    assert next_quarter_mark(local("2020-06-23 17:15:00")) == local("2020-06-23 17:30:00")
    assert next_quarter_mark(local("2020-06-23 23:59:59") + 0.5) == local("2020-06-24 00:00:00")


def test_splits_at_each_quarter_hour_and_loses_nothing():
    frames = make_frames(local("2020-06-23 17:14:50"), 20 * 60, fps=5, gop=5)
    replay = record(frames)
    assert replay.names() == ["20200623-1714.h264", "20200623-1715.h264", "20200623-1730.h264"]
    assert replay.closed == replay.order  # all closed, in order (the last one by finish)
    assert replay.messages == [{"h264": name} for name in replay.names()]
    for file in replay.order:
        assert replay.frames(file)[0].keyframe, "every file starts at a keyframe"
    assert_every_frame_once(replay, frames)
    assert replay.duration(replay.order[0], 5) == pytest.approx(10)
    assert replay.duration(replay.order[1], 5) == pytest.approx(15 * 60)


def test_split_waits_for_the_first_keyframe_at_or_after_the_mark():
    mark = local("2020-06-23 17:15:00")
    # keyframes at ...:59.3 and :00.3: the mark falls inside a group of pictures
    frames = make_frames(mark - 10.7, 20, fps=10, gop=10)
    replay = record(frames)
    first, second = replay.order
    start = replay.frames(second)[0]
    assert start.keyframe and start.wall >= mark
    assert start.wall - mark < 1.0
    assert replay.frames(first)[-1].index == start.index - 1
    assert_every_frame_once(replay, frames)


def test_starts_at_the_first_keyframe():
    frames = make_frames(local("2020-06-23 17:00:00"), 5, fps=10, gop=10, first_index=7)
    replay = record(frames)
    (only,) = replay.order
    assert replay.indexes(only)[0] == 10
    assert replay.names() == ["20200623-1700.h264"]


def test_clock_set_back_hours_starts_a_file_named_with_the_new_time():
    before = make_frames(local("2020-06-23 17:12:00"), 4 * 60, fps=2, gop=2)  # to 17:16
    # the clock is set back two hours: frames continue at 15:16
    after = make_frames(local("2020-06-23 15:16:00"), 16 * 60, fps=2, gop=2, first_index=480)
    replay = record(before + after)
    assert replay.names() == [
        "20200623-1712.h264",
        "20200623-1715.h264",  # 17:15-17:16 only
        "20200623-1516.h264",  # from the step on, named with the new time
        "20200623-1530.h264",  # the next mark is aimed from the new time, not hours away
    ]
    assert replay.duration(replay.order[1], 2) == pytest.approx(60)
    assert replay.indexes(replay.order[2])[0] == 480
    assert replay.duration(replay.order[2], 2) == pytest.approx(14 * 60)
    assert_every_frame_once(replay, before + after)


def test_clock_set_back_can_repeat_a_name_and_each_file_stays_distinct():
    before = make_frames(local("2020-06-23 17:14:00"), 3 * 60, fps=2, gop=2)  # to 17:17
    after = make_frames(local("2020-06-23 16:59:00"), 20 * 60, fps=2, gop=2, first_index=360)
    replay = record(before + after)
    assert replay.names() == [
        "20200623-1714.h264",
        "20200623-1715.h264",
        "20200623-1659.h264",
        "20200623-1700.h264",
        "20200623-1715.h264",  # the writer gives this one a suffix (see test_recording_writer)
    ]
    assert len(set(replay.order)) == 5
    assert_every_frame_once(replay, before + after)


def test_clock_set_back_by_seconds_across_a_mark_makes_no_tiny_file():
    # split at 17:15:00, then the clock is set back 20 s: still the 17:15 file
    before = make_frames(local("2020-06-23 17:14:58"), 4, fps=2, gop=2)  # to 17:15:02
    after = make_frames(local("2020-06-23 17:14:42"), 60, fps=2, gop=2, first_index=8)
    replay = record(before + after)
    assert replay.names() == ["20200623-1714.h264", "20200623-1715.h264"]
    assert_every_frame_once(replay, before + after)


def test_durations_do_not_matter_to_continuous_recording():
    """A camera that stalled for a minute (a gap in capture times) changes nothing."""
    frames = make_frames(local("2020-06-23 17:14:00"), 30, fps=2, gop=2)
    stalled = [f.__class__(f.data, f.keyframe, f.monotonic + 60, f.wall, f.index) for f in frames]
    assert record(frames[:40] + stalled[40:]).names() == ["20200623-1714.h264"]


def test_clock_set_forward_splits_once_named_with_the_new_time():
    before = make_frames(local("2020-06-23 03:02:00"), 60, fps=2, gop=2)
    # NTP sets the real time: 14 hours later
    after = make_frames(local("2020-06-23 17:20:00"), 12 * 60, fps=2, gop=2, first_index=120)
    replay = record(before + after)
    assert replay.names() == ["20200623-0302.h264", "20200623-1720.h264", "20200623-1730.h264"]
    assert replay.indexes(replay.order[1])[0] == 120
    assert_every_frame_once(replay, before + after)


def test_clock_set_forward_in_the_middle_of_a_group_waits_for_the_keyframe():
    before = make_frames(local("2020-06-23 03:02:00"), 60.5, fps=2, gop=2)  # ends mid-group
    after = make_frames(local("2020-06-23 17:20:00") + 0.5, 30, fps=2, gop=2, first_index=121)
    replay = record(before + after)
    assert len(replay.order) == 2
    assert replay.indexes(replay.order[1])[0] == 122
    assert_every_frame_once(replay, before + after)
