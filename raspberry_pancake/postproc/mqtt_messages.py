"""The MQTT topics postproc publishes under its base topic, and their payloads.

Payloads are small JSON objects (or plain words where Home Assistant reads the
value directly), built from paths and file metadata. They hold no secret: a
Telegram chat is named by its id, never by its bot token, and an FTP destination
by its user and host, never by its password. Functions here are called from the
MQTT thread only, so reading file sizes never holds up a worker.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import struct
from typing import Optional

#: Subtopics of the base topic. Retained ones hold a state; the others are events.
AVAILABILITY = "availability"  # retained: "online" / "offline" (the last will)
DETECTION = "detection"  # retained: "ON" / "OFF"
RECORDING = "recording"  # retained: the last finished recording (JSON)
UPLOAD_BACKLOG = "upload_backlog"  # retained: files waiting for upload, all destinations
UPLOAD = "upload"  # each upload's result (JSON)
NOTIFICATION = "notification"  # each notification's result (JSON)

ONLINE, OFFLINE = "online", "offline"
ON, OFF = "ON", "OFF"

#: ``20200623-1715.h264`` (continuous) or ``20200623-180511-2.h264`` (clip, suffixed).
_NAME_TIME = re.compile(r"^(\d{8})-(\d{4}|\d{6})(?:-\d+)?\.h264$")


def now_iso() -> str:
    """The current local time with its UTC offset, as Home Assistant wants a timestamp."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def recording_time(h264: str) -> Optional[str]:
    """When a recording started: from its name (local time), else from the file's mtime."""
    match = _NAME_TIME.match(os.path.basename(h264))
    if match:
        day, clock = match.groups()
        fmt = "%Y%m%d%H%M" if len(clock) == 4 else "%Y%m%d%H%M%S"
        try:
            return dt.datetime.strptime(day + clock, fmt).astimezone().isoformat()
        except ValueError:
            pass  # digits that are no date: fall back to the file
    try:
        mtime = os.path.getmtime(h264)
    except OSError:
        return None
    return dt.datetime.fromtimestamp(mtime).astimezone().isoformat(timespec="seconds")


def _size(path: Optional[str]) -> Optional[int]:
    if path is None:
        return None
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def mp4_duration(path: str) -> Optional[float]:
    """Seconds, from the movie header (``moov/mvhd``) of an mp4; None if unreadable.

    A few seeks and reads: the converters write exactly frames/fps there, and
    reading it needs no decoder and no subprocess.
    """
    try:
        with open(path, "rb") as f:
            moov = _find_box(f, b"moov", os.fstat(f.fileno()).st_size)
            if moov is None:
                return None
            mvhd = _find_box(f, b"mvhd", moov)
            if mvhd is None:
                return None
            header = f.read(32)
    except OSError:
        return None
    if len(header) < 20:
        return None
    if header[0] == 1:  # version 1: 64-bit times and duration
        if len(header) < 32:
            return None
        timescale, duration = struct.unpack(">IQ", header[20:32])
    else:
        timescale, duration = struct.unpack(">II", header[12:20])
    if timescale == 0:
        return None
    return round(duration / timescale, 3)


def _find_box(f, kind: bytes, end: int) -> Optional[int]:
    """Seek to the payload of the first box ``kind`` before ``end``; return the box's end."""
    while f.tell() + 8 <= end:
        start = f.tell()
        head = f.read(8)
        if len(head) < 8:
            return None
        size, name = struct.unpack(">I4s", head)
        header_size = 8
        if size == 1:  # 64-bit size follows
            large = f.read(8)
            if len(large) < 8:
                return None
            size = struct.unpack(">Q", large)[0]
            header_size = 16
        elif size == 0:  # the box runs to the end of its parent
            size = end - start
        if size < header_size:
            return None
        if name == kind:
            return start + size
        f.seek(start + size)
    return None


def recording_payload(
    h264: str, mp4: Optional[str], detection: Optional[bool], finished: str
) -> str:
    """A finished recording: name, size, start time, duration, mp4 path when converted."""
    return json.dumps(
        {
            "name": os.path.basename(h264),
            "h264": h264,
            "size": _size(h264),
            "time": recording_time(h264),
            "duration": mp4_duration(mp4) if mp4 else None,
            "converted": mp4 is not None,
            "mp4": mp4,
            "mp4_size": _size(mp4),
            "detection": detection,
            "finished": finished,
        }
    )


def _result(ok: bool, done_key: str, detail: str, **fields) -> str:
    """An outcome: ``done_key`` holds ``detail`` when it went well, ``error`` when not."""
    outcome = {"ok": ok, done_key: detail if ok else None, "error": None if ok else detail}
    return json.dumps({**fields, **outcome, "time": now_iso()})


def upload_payload(mp4: str, destination: str, ok: bool, detail: str) -> str:
    """One upload attempt: the remote directory, or why it failed."""
    return _result(
        ok, "remote_dir", detail, file=os.path.basename(mp4), mp4=mp4, destination=destination
    )


def notification_payload(target: str, text: str, ok: bool, detail: str) -> str:
    """One notification: what was sent (message or video), or why it was given up."""
    return _result(ok, "sent", detail, target=target, text=text)
