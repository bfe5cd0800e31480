"""``GET /health``: is the camera well, in JSON, for monitoring.

It tells, per camera output, how long ago it last got a frame; the recordings
being written; the free space of each recording directory; the emitter's
backlog; the uptime and the version. Nothing in it is a secret (no password,
no file of the login, no cookie). With ``--login``, a caller who has not shown
the password sees only ``{"ok": ...}``. The status code says the same as
``ok``: 200 when well, 503 when not, so that a plain HTTP check works too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

from .. import __version__
from .base import BaseHandler
from .live import FrameBroadcaster

logger = logging.getLogger(__name__)

#: the camera is unwell when it, or an output that asks for frames, has had none
#: for this many frame intervals, and for this many seconds
STALE_FRAMES = 3
STALE_SECONDS = 2.0
#: how long a free-space query may take before the disk is reported stalled
STATVFS_TIMEOUT = 2.0


class HealthReport:
    """Gathers the report from the running parts; ``gather`` runs on the IOLoop.

    The parts answer from any thread (their accessors take their own locks), and
    the free-space queries run on the loop's executor with a timeout, so a
    stalled disk never blocks the web server.
    """

    def __init__(
        self,
        camera,
        broadcaster: FrameBroadcaster,
        max_stream_fps: float,
        writer=None,
        emitter=None,
        directories: Sequence[Tuple[str, str]] = (),
    ):
        self.camera = camera
        self.broadcaster = broadcaster
        self.max_stream_fps = max_stream_fps
        self.writer = writer
        self.emitter = emitter
        self.directories = list(directories)  # (what records there, directory)
        self.started = time.monotonic()

    async def gather(self) -> dict:
        problems: List[str] = []
        now = time.monotonic()
        report = {
            "ok": True,
            "problems": problems,
            "version": __version__,
            "uptime_seconds": round(now - self.started, 1),
            "camera": self._camera(now, problems),
            "live_view": {
                "viewers": self.broadcaster.viewers,
                "max_stream_fps": self.max_stream_fps,
            },
        }
        if self.writer is not None:
            report["recordings"] = self._recordings(problems)
        if self.directories:
            report["disks"] = await self._disks(problems)
        if self.emitter is not None:
            report["emitter"] = {
                "socket": self.emitter.name,
                "backlog": self.emitter.backlog,
                "sent": self.emitter.sent,
                "dropped": self.emitter.dropped,
            }
        report["ok"] = not problems
        return report

    def _camera(self, now: float, problems: List[str]) -> dict:
        settings = self.camera.settings
        # the watchdog's own verdict: the camera captures, and every output that
        # asks for frames gets them (the JPEG one asks only while someone watches)
        problems.extend(self.camera.stalled(max(STALE_SECONDS, STALE_FRAMES / settings.fps), now))
        last = self.camera.last_frame_monotonic
        outputs = {
            kind: {"last_frame_age_seconds": _age(now, delivered)}
            for kind, delivered in self.camera.last_deliveries().items()
        }
        if "jpeg" in outputs:
            # the live-view encoder runs only while someone watches or asks for a snapshot
            outputs["jpeg"]["encoding"] = self.broadcaster.wants_frame()
        return {
            "backend": self.camera.name,
            "resolution": list(settings.resolution),
            "fps": settings.fps,
            "last_frame_age_seconds": _age(now, last),
            "outputs": outputs,
        }

    def _recordings(self, problems: List[str]) -> dict:
        writer = self.writer
        error = writer.write_error
        if error is not None:
            problems.append(f"recordings cannot be written: {error}")
        return {
            "in_progress": [
                {"file": r.name, "path": r.path, "bytes": r.size, "frames": r.frames}
                for r in writer.recordings()
            ],
            "write_error": error,
            "queued_frames": writer.queued_frames,
            "frames_dropped": writer.frames_dropped,
            "frames_lost": writer.frames_lost,
        }

    async def _disks(self, problems: List[str]) -> List[dict]:
        by_directory: Dict[str, List[str]] = {}
        for use, directory in self.directories:
            by_directory.setdefault(directory, []).append(use)
        loop = asyncio.get_running_loop()
        disks = []
        for directory, uses in by_directory.items():
            entry: dict = {"directory": directory, "used_for": uses}
            try:
                st = await asyncio.wait_for(
                    loop.run_in_executor(None, os.statvfs, directory), STATVFS_TIMEOUT
                )
            except asyncio.TimeoutError:
                entry["error"] = f"no answer within {STATVFS_TIMEOUT:g} s"
                problems.append(f"{directory}: the disk does not answer")
            except OSError as e:
                entry["error"] = e.strerror or str(e)
                problems.append(f"{directory}: {entry['error']}")
            else:
                entry["free_bytes"] = st.f_bavail * st.f_frsize
                entry["total_bytes"] = st.f_blocks * st.f_frsize
            disks.append(entry)
        return disks


def _age(now: float, then: Optional[float]) -> Optional[float]:
    """Seconds from ``then`` to ``now`` (None for never), to the millisecond."""
    return None if then is None else round(now - then, 3)


class HealthHandler(BaseHandler):
    """``GET /health``; runs on the IOLoop.

    Open to all, but only a caller who has shown the password (a session cookie,
    or HTTP Basic auth, as monitoring programs send it) gets the details.
    """

    login_required = False
    allow_basic_auth = True

    def initialize(self, auth, report: HealthReport, **kwargs):
        super().initialize(auth)
        self.report = report

    def compute_etag(self):
        return None  # a live report: no ETag, so no "304 Not Modified" either

    async def get(self):
        report = await self.report.gather()
        if self.current_user is None:
            report = {"ok": report["ok"]}  # an anonymous caller learns no more than this
        self.set_status(200 if report["ok"] else 503)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.write(json.dumps(report, indent=1, sort_keys=True) + "\n")
