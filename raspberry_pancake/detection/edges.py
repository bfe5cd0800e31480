"""Detection edges: sampling detect()'s answers, and handing the edges to a recorder."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import List, Optional

#: At most one edge per this many seconds, however often the detector flips.
MIN_EDGE_SPACING = 1.0


@dataclass(frozen=True)
class Edge:
    """Detection changed to ``state`` at ``time``, the moment ``detect()`` looked.

    ``time`` is on the monotonic clock, as frames' capture times are, so the
    recorders compare the two directly whatever the wall clock does.
    """

    time: float
    state: bool


class EdgeSampler:
    """Turns a stream of detector answers into edges, at most one per second.

    An answer that differs from the last reported state becomes an edge only if the
    last edge is at least ``MIN_EDGE_SPACING`` old; a flip that flips back before
    then is never reported. Starts from "no detection". Called on the detection
    thread only.
    """

    def __init__(self, spacing: float = MIN_EDGE_SPACING):
        self.spacing = spacing
        self.state = False
        self._last_edge: Optional[float] = None

    def observe(self, when: float, state: bool) -> Optional[Edge]:
        if state == self.state:
            return None
        if self._last_edge is not None and when - self._last_edge < self.spacing:
            return None
        self.state = state
        self._last_edge = when
        return Edge(when, state)


class EdgeInbox:
    """Edges waiting for the recorder, which takes them in capture-time order.

    ``put`` is called on the detection thread, ``due`` on the camera's capture
    thread.
    """

    def __init__(self):
        # guards _pending, shared by the detection and capture threads
        self._lock = threading.Lock()
        self._pending: List[Edge] = []

    def put(self, edge: Edge) -> None:
        with self._lock:
            self._pending.append(edge)

    def due(self, now: float) -> List[Edge]:
        """Edges at or before capture time ``now``, oldest first."""
        with self._lock:
            if not self._pending:
                return []
            ready = [edge for edge in self._pending if edge.time <= now]
            if ready:
                self._pending = [edge for edge in self._pending if edge.time > now]
        return ready
