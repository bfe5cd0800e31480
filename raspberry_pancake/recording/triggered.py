"""Recording on detection: edge clips, and recordings that last as long as detection.

Every duration here (pre-roll, clip lengths, the spacing of clips, the 3 s hold,
the 15-minute split) is measured on the frames' monotonic capture times, and
edges are stamped on the same clock; wall times only name the files. A step of
the wall clock therefore changes the names of what follows and nothing else.
"""

from __future__ import annotations

import logging
from typing import List, Optional

from ..camera.base import H264Frame
from ..detection.edges import Edge, EdgeInbox
from ..messages import Message
from .actions import Action, Close, Emit, Open, RecordingFile, Write
from .naming import detection_name
from .preroll import PrerollBuffer
from .timeline import QUARTER_HOUR

logger = logging.getLogger(__name__)

#: A clip starts at the newest keyframe at least this long before its edge...
PREROLL_SECONDS = 2.0
#: ...and ends at the first keyframe this long after its start (5 s with the
#: one-second keyframe interval of every backend: between the promised 4 and 6 s,
#: whatever the jitter of frame timestamps)...
CLIP_TARGET_SECONDS = 4.5
#: ...or, in edge mode, before the first frame this long after its start.
CLIP_MAX_SECONDS = 6.0
#: Edge mode makes at most one clip per this many seconds.
CLIP_SPACING_SECONDS = 3.0
#: All mode stops recording once detection has been false this long.
HOLD_SECONDS = 3.0
#: All mode splits a long recording after this long.
SPLIT_SECONDS = float(QUARTER_HOUR)


class _Clip:
    """One edge clip being written; fed frames until its end passes.

    ``start`` is the capture time (monotonic) of its first frame.
    """

    def __init__(
        self, file: RecordingFile, start: float, state: bool, max_seconds: Optional[float]
    ):
        self.file = file
        self.start = start
        self.state = state
        self.max_seconds = max_seconds

    def ends_before(self, frame: H264Frame) -> bool:
        """Whether ``frame`` is past the clip's end (it then starts nothing of this clip)."""
        when = frame.monotonic
        if frame.keyframe and when >= self.start + CLIP_TARGET_SECONDS:
            return True
        return self.max_seconds is not None and when >= self.start + self.max_seconds


class _DetectionRecorder:
    """What edge and all mode share: the pre-roll, and edges in capture-time order.

    Called on the camera's capture thread (``finish`` on the main thread once the
    camera has stopped).
    """

    name = "detection recording"

    def __init__(self, directory: str, inbox: EdgeInbox, preroll: Optional[PrerollBuffer] = None):
        self.directory = directory
        self.inbox = inbox
        self.preroll = preroll if preroll is not None else PrerollBuffer()

    def on_frame(self, frame: H264Frame) -> List[Action]:
        actions: List[Action] = []
        self.preroll.append(frame)
        for edge in self.inbox.due(frame.monotonic):
            self._on_edge(edge, frame, actions)
        self._on_time(frame, actions)
        self._feed(frame, actions)
        return actions

    def _new_clip(self, edge_time: float, state: bool, max_seconds, current: H264Frame, actions):
        """Open a clip for an edge at ``edge_time``, filled from the pre-roll buffer.

        Every buffered frame but ``current`` is fed here; ``current`` follows with
        the ordinary routing. Returns the clip and the buffered frames.
        """
        start = self.preroll.keyframe_start(edge_time - PREROLL_SECONDS)
        if start is None:
            logger.warning("%s: no keyframe yet, no clip for this edge", self.name)
            return None, []
        buffered = [f for f in self.preroll.frames_from(start) if f is not current]
        first = buffered[0] if buffered else current
        clip = _Clip(
            RecordingFile(self.directory, detection_name(first.wall)), start, state, max_seconds
        )
        actions.append(Open(clip.file))
        return clip, buffered

    # for the modes

    def _on_edge(self, edge: Edge, frame: H264Frame, actions: List[Action]) -> None:
        raise NotImplementedError

    def _on_time(self, frame: H264Frame, actions: List[Action]) -> None:
        raise NotImplementedError

    def _feed(self, frame: H264Frame, actions: List[Action]) -> None:
        raise NotImplementedError

    def finish(self) -> List[Action]:
        raise NotImplementedError


class EdgeRecorder(_DetectionRecorder):
    """Edge mode: a 4-6 s clip around each edge, at most one clip per 3 s.

    An edge inside the 3 s after the previous clip's edge waits for them to pass;
    if detection is still different from the last clip's state then, the clip is
    made for it (its start still precedes the change, which happened at least one
    second after the previous edge). A flip and flip back inside the 3 s makes no
    clip. Every clip is announced with ``{"h264": path, "detection": state}``.
    """

    name = "edge recording"

    def __init__(self, directory: str, inbox: EdgeInbox, preroll: Optional[PrerollBuffer] = None):
        super().__init__(directory, inbox, preroll)
        self.clips: List[_Clip] = []
        self.state = False
        self.clipped_state = False
        self.latest_edge: Optional[float] = None
        self.last_clip_edge: Optional[float] = None

    def _on_edge(self, edge: Edge, frame: H264Frame, actions: List[Action]) -> None:
        self.state = edge.state
        self.latest_edge = edge.time

    def _on_time(self, frame: H264Frame, actions: List[Action]) -> None:
        if self.state == self.clipped_state or self.latest_edge is None:
            return
        edge_time = self.latest_edge
        if self.last_clip_edge is not None:
            edge_time = max(edge_time, self.last_clip_edge + CLIP_SPACING_SECONDS)
        if frame.monotonic < edge_time:
            return
        self.clipped_state = self.state
        self.last_clip_edge = edge_time
        clip, buffered = self._new_clip(edge_time, self.state, CLIP_MAX_SECONDS, frame, actions)
        if clip is None:
            return
        for f in buffered:
            if clip.ends_before(f):
                actions.append(Close(clip.file, clip.state))
                return
            actions.append(Write(clip.file, f))
        self.clips.append(clip)

    def _feed(self, frame: H264Frame, actions: List[Action]) -> None:
        still_open = []
        for clip in self.clips:
            if clip.ends_before(frame):
                actions.append(Close(clip.file, clip.state))
            else:
                actions.append(Write(clip.file, frame))
                still_open.append(clip)
        self.clips = still_open

    def finish(self) -> List[Action]:
        actions: List[Action] = [Close(clip.file, clip.state) for clip in self.clips]
        self.clips = []
        return actions


class _Session:
    """One all-mode recording: its opening clip, then the files that continue it.

    ``split_at`` and ``false_since`` are capture times on the monotonic clock.
    """

    def __init__(self, clip: _Clip):
        self.clip: Optional[_Clip] = clip
        self.file: Optional[RecordingFile] = None
        self.split_at = 0.0
        self.false_since: Optional[float] = None


class AllRecorder(_DetectionRecorder):
    """All mode: record for as long as detection is true, in the original's sequence.

    Rising edge: an edge clip, announced ``{"h264": clip, "detection": true}``; the
    recording continues into a new file from the keyframe that ended the clip,
    split every 15 minutes (``{"h264": path}`` for each part). Once detection has
    been false for 3 s: ``{"detection": false}`` then ``{"h264": path}``. Detection
    coming back inside those 3 s continues the same file.
    """

    name = "all-mode recording"

    def __init__(self, directory: str, inbox: EdgeInbox, preroll: Optional[PrerollBuffer] = None):
        super().__init__(directory, inbox, preroll)
        self.session: Optional[_Session] = None

    def _on_edge(self, edge: Edge, frame: H264Frame, actions: List[Action]) -> None:
        session = self.session
        if edge.state and session is None:
            clip, buffered = self._new_clip(edge.time, True, None, frame, actions)
            if clip is not None:
                self.session = _Session(clip)
                for f in buffered:
                    self._feed(f, actions)
        elif edge.state:
            session.false_since = None  # back within the hold: same recording
        elif session is not None and session.false_since is None:
            session.false_since = edge.time

    def _on_time(self, frame: H264Frame, actions: List[Action]) -> None:
        session = self.session
        if session is not None and session.false_since is not None:
            if frame.monotonic >= session.false_since + HOLD_SECONDS:
                self._end(actions)

    def _end(self, actions: List[Action]) -> None:
        session, self.session = self.session, None
        if session.clip is not None:
            actions.append(Close(session.clip.file, True))
        actions.append(Emit(Message(detection=False)))
        if session.file is not None:
            actions.append(Close(session.file))

    def _feed(self, frame: H264Frame, actions: List[Action]) -> None:
        session = self.session
        if session is None:
            return
        clip = session.clip
        if clip is not None:
            if not clip.ends_before(frame):
                actions.append(Write(clip.file, frame))
                return
            # the keyframe that ends the clip starts the continuation: no gap, no overlap
            actions.append(Close(clip.file, True))
            session.clip = None
            self._open_part(session, frame, actions)
        elif frame.keyframe and frame.monotonic >= session.split_at:
            actions.append(Close(session.file))
            self._open_part(session, frame, actions)
        actions.append(Write(session.file, frame))

    def _open_part(self, session: _Session, frame: H264Frame, actions) -> None:
        session.file = RecordingFile(self.directory, detection_name(frame.wall))
        session.split_at = frame.monotonic + SPLIT_SECONDS
        actions.append(Open(session.file))

    def finish(self) -> List[Action]:
        session, self.session = self.session, None
        if session is None:
            return []
        if session.clip is not None:
            return [Close(session.clip.file, True)]
        return [Close(session.file)]
