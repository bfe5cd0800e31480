"""Edge and all mode, driven by synthetic frames and a synthetic detection timeline.

Edges are stamped on the monotonic clock, as frames' capture times: ``at(s)`` is
``s`` seconds into the stream. The wall clock (``T0`` at frame 0) only names files.
"""

from __future__ import annotations

import pytest
from rec_synthetic import Replay, at, drive, edges, local, make_frames

from raspberry_pancake.detection.edges import Edge, EdgeInbox, EdgeSampler
from raspberry_pancake.recording.preroll import PrerollBuffer
from raspberry_pancake.recording.triggered import AllRecorder, EdgeRecorder

T0 = local("2020-06-23 18:00:00")
FPS = 10


def run(mode, seconds, timeline, latency=0.1, start=T0, frames=None):
    inbox = EdgeInbox()
    recorder = (EdgeRecorder if mode == "edge" else AllRecorder)("/rec", inbox)
    frames = frames if frames is not None else make_frames(start, seconds, fps=FPS, gop=FPS)
    return Replay(drive(recorder, frames, timeline, inbox, latency)), frames


def check_clip(replay, clip, edge_time):
    got = replay.frames(clip)
    assert got[0].keyframe
    assert 2.0 <= edge_time - got[0].monotonic <= 4.0, "starts at a keyframe 2-4 s before the edge"
    assert 4.0 <= len(got) / FPS <= 6.0, "4-6 s long"
    assert got[0].monotonic <= edge_time <= got[-1].monotonic, "contains the edge"
    indexes = [f.index for f in got]
    assert indexes == list(range(indexes[0], indexes[0] + len(indexes))), "no gap"


# edge mode


def test_edge_mode_makes_a_clip_for_each_edge():
    replay, _ = run("edge", 60, edges((at(20.35), True), (at(40.72), False)))
    rising, falling = replay.order
    check_clip(replay, rising, at(20.35))
    check_clip(replay, falling, at(40.72))
    assert replay.messages == [
        {"h264": "20200623-180018.h264", "detection": True},
        {"h264": "20200623-180038.h264", "detection": False},
    ]


def test_edge_clip_still_has_its_preroll_when_detection_answers_late():
    replay, _ = run("edge", 30, edges((at(10.5), True)), latency=2.5)
    (clip,) = replay.order
    check_clip(replay, clip, at(10.5))


def test_edge_clip_at_the_very_start_begins_with_the_first_keyframe():
    replay, frames = run("edge", 20, edges((at(0.5), True)))
    (clip,) = replay.order
    assert replay.frames(clip)[0] is frames[0]
    assert 4.0 <= replay.duration(clip, FPS) <= 6.0


def test_edge_clip_cut_short_by_shutdown_is_still_announced():
    replay, _ = run("edge", 21, edges((at(20), True)))
    (clip,) = replay.order
    assert replay.messages == [{"h264": clip.name, "detection": True}]
    assert replay.closed == [clip]


def test_edge_mode_makes_at_most_one_clip_per_three_seconds():
    # edges 1 s apart (as sampled from a flapping detector): T F T F T F T
    timeline = edges(*[(at(10 + i), i % 2 == 0) for i in range(7)])
    replay, _ = run("edge", 40, timeline)
    states = [m["detection"] for m in replay.messages]
    assert states == [True, False, True]  # at 10, 13 (false since 13) and 16 (true since 16)
    starts = [replay.frames(c)[0].monotonic for c in replay.order]
    assert all(b - a >= 3.0 - 1e-6 for a, b in zip(starts, starts[1:]))
    for clip in replay.order:
        assert 4.0 <= replay.duration(clip, FPS) <= 6.0


def test_a_flip_and_flip_back_inside_the_spacing_makes_no_clip():
    timeline = edges((at(10), True), (at(11), False), (at(12), True))
    replay, _ = run("edge", 30, timeline)
    assert [m["detection"] for m in replay.messages] == [True]


def test_a_change_held_back_by_the_spacing_gets_its_clip_later():
    timeline = edges((at(10), True), (at(11.2), False))
    replay, _ = run("edge", 30, timeline)
    first, second = replay.order
    assert [m["detection"] for m in replay.messages] == [True, False]
    # made for t=13 (3 s after the first), still containing the real change at 11.2
    assert replay.frames(second)[0].monotonic <= at(11.2)
    assert replay.frames(second)[-1].monotonic >= at(13)


def test_flapping_detector_through_the_sampler_is_tamed():
    sampler = EdgeSampler()
    sampled = []
    for i in range(300):  # flips every 0.1 s for 30 s
        edge = sampler.observe(at(5 + i * 0.1), i % 2 == 0)
        if edge is not None:
            sampled.append(edge)
    gaps = [b.time - a.time for a, b in zip(sampled, sampled[1:])]
    assert sampled and min(gaps) >= 1.0
    assert [e.state for e in sampled] == [i % 2 == 0 for i in range(len(sampled))]
    replay, _ = run("edge", 45, sampled)
    assert 8 <= len(replay.order) <= 11  # about one clip per 3 s over 30 s
    states = [m["detection"] for m in replay.messages]
    assert all(a != b for a, b in zip(states, states[1:])), "states alternate"


# all mode


def contiguous(replay, files):
    indexes = [i for f in files for i in replay.indexes(f)]
    assert indexes == list(range(indexes[0], indexes[0] + len(indexes)))
    for f in files:
        assert replay.frames(f)[0].keyframe


def test_all_mode_message_sequence():
    replay, _ = run("all", 60, edges((at(20.3), True), (at(40.5), False)))
    clip, rest = replay.order
    assert replay.messages == [
        {"h264": clip.name, "detection": True},
        {"detection": False},
        {"h264": rest.name},
    ]
    check_clip(replay, clip, at(20.3))
    contiguous(replay, [clip, rest])  # the recording continues exactly where the clip ends
    last = replay.frames(rest)[-1].monotonic
    assert at(43.5) - 1 / FPS <= last < at(43.5), "ends once false for 3 s"
    assert rest.name == "20200623-180023.h264"


def test_all_mode_detection_back_within_three_seconds_continues_the_same_file():
    timeline = edges((at(10), True), (at(20), False), (at(22.5), True), (at(30), False))
    replay, _ = run("all", 50, timeline)
    assert len(replay.order) == 2
    assert [m.get("detection") for m in replay.messages] == [True, False, None]
    assert replay.frames(replay.order[1])[-1].monotonic == pytest.approx(at(32.9))


def test_all_mode_detection_back_after_three_seconds_is_a_new_recording():
    timeline = edges((at(10), True), (at(20), False), (at(23.5), True), (at(30), False))
    replay, _ = run("all", 50, timeline)
    assert [m.get("detection") for m in replay.messages] == [True, False, None] * 2


def test_all_mode_long_detection_splits_every_fifteen_minutes():
    replay, _ = run("all", 40 * 60, edges((at(10), True), (at(35 * 60), False)))
    files = replay.order
    assert len(files) == 4  # clip, 15 min, 15 min, rest
    assert replay.messages == [
        {"h264": files[0].name, "detection": True},
        {"h264": files[1].name},
        {"h264": files[2].name},
        {"detection": False},
        {"h264": files[3].name},
    ]
    assert replay.duration(files[1], FPS) == pytest.approx(15 * 60)
    contiguous(replay, files)


def test_all_mode_shutdown_closes_and_announces_the_recording():
    replay, _ = run("all", 30, edges((at(10), True)))
    clip, rest = replay.order
    assert replay.messages == [{"h264": clip.name, "detection": True}, {"h264": rest.name}]


def test_all_mode_shutdown_during_the_clip():
    replay, _ = run("all", 11, edges((at(10), True)))
    (clip,) = replay.order
    assert replay.messages == [{"h264": clip.name, "detection": True}]


def test_all_mode_clock_set_back_keeps_the_three_second_hold():
    before = make_frames(T0, 30, fps=FPS, gop=FPS)
    after = make_frames(T0 - 3600 + 30, 20, fps=FPS, gop=FPS, first_index=300)
    timeline = edges((at(10), True), (at(35), False))
    replay, _ = run("all", 0, timeline, frames=before + after)
    clip, rest = replay.order
    contiguous(replay, [clip, rest])
    assert replay.frames(rest)[-1].monotonic == pytest.approx(at(37.9))
    # one recording across the step: all mode splits on durations only
    assert [f.name for f in replay.order] == ["20200623-180008.h264", "20200623-180013.h264"]


def test_all_mode_clock_set_back_does_not_postpone_the_split():
    before = make_frames(T0, 10 * 60, fps=2, gop=2)
    after = make_frames(T0 - 7200, 10 * 60, fps=2, gop=2, first_index=1200)
    replay, _ = run("all", 0, edges((at(10), True)), frames=before + after)
    clip, first, second = replay.order
    # 15 minutes of footage per part, whatever the clock did
    assert replay.duration(first, 2) == pytest.approx(15 * 60)
    contiguous(replay, [clip, first, second])


def test_inbox_hands_edges_over_once_capture_time_reaches_them():
    inbox = EdgeInbox()
    inbox.put(Edge(at(2), True))
    inbox.put(Edge(at(3), False))
    assert inbox.due(at(1.9)) == []
    assert inbox.due(at(2)) == [Edge(at(2), True)]
    assert inbox.due(at(5)) == [Edge(at(3), False)]
    assert inbox.due(at(6)) == []


def test_edge_mode_clock_set_forward_still_makes_whole_clips():
    before = make_frames(T0, 20, fps=FPS, gop=FPS)
    after = make_frames(T0 + 3600 + 20, 20, fps=FPS, gop=FPS, first_index=200)
    replay, _ = run("edge", 0, edges((at(25), True)), frames=before + after)
    (clip,) = replay.order
    check_clip(replay, clip, at(25))
    assert clip.name == "20200623-190023.h264"  # its first frame, after the clock was set


# pre-roll buffer


def test_preroll_is_bounded_by_time_and_starts_at_a_keyframe():
    buf = PrerollBuffer(seconds=4.0, max_bytes=10**9)
    for f in make_frames(T0, 30, fps=FPS, gop=FPS):
        buf.append(f)
    frames = buf.frames_from(buf.keyframe_start(0))
    assert frames[0].keyframe
    assert 4.0 <= len(frames) / FPS <= 5.0


def test_preroll_is_bounded_by_bytes():
    buf = PrerollBuffer(seconds=60.0, max_bytes=1000)
    for f in make_frames(T0, 30, fps=FPS, gop=FPS):
        buf.append(f.__class__(b"x" * 40, f.keyframe, f.monotonic, f.wall, f.index))
    assert buf.nbytes <= 1000 + FPS * 40
    assert buf.nbytes == sum(len(f.data) for f in buf.frames_from(buf.keyframe_start(0)))


def test_preroll_ignores_frames_before_the_first_keyframe():
    buf = PrerollBuffer()
    for f in make_frames(T0, 3, fps=FPS, gop=FPS, first_index=5):
        buf.append(f)
    assert buf.keyframe_start(at(0)) == at(1.0)  # none that early: the oldest
    assert len(buf) == 25
