"""What the timestamp-file tests read back: an mp4's timing by ffprobe, an h264's
frames by PyAV's own parser, and a .pts file by a plain reading of its lines."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import List, Optional, Tuple

from raspberry_pancake import timestamps

#: How far an mp4 frame time may be from its .pts time: two ticks of the mp4's
#: 90 kHz clock and ffprobe's printing (1 µs). The muxer rounds once to 90 kHz; on
#: PyAV 10 (Debian 12) a packet is placed in a near time base and rescaled, which
#: can round once more. Both are far below the .pts file's own millisecond steps.
TICK = 2 / 90000 + 1e-6


@dataclass
class Mp4Timing:
    duration: float  # the video track's, to the microsecond
    frames: int
    pts: List[float]  # seconds, per packet in decode order
    keyframes: List[bool]
    sizes: List[int]
    creation_time: Optional[str]


def mp4_timing(path) -> Mp4Timing:
    """Everything ffprobe says about an mp4's timing, packet by packet."""
    out = subprocess.run(
        [
            "ffprobe", "-v", "error", "-select_streams", "v:0",
            "-show_entries", "format_tags=creation_time",
            "-show_entries", "stream=nb_frames,duration",
            "-show_entries", "packet=pts_time,flags,size",
            "-of", "json", str(path),
        ],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    info = json.loads(out)
    packets = info["packets"]
    return Mp4Timing(
        duration=float(info["streams"][0]["duration"]),
        frames=int(info["streams"][0]["nb_frames"]),
        pts=[float(p["pts_time"]) for p in packets],
        keyframes=[p["flags"].startswith("K") for p in packets],
        sizes=[int(p["size"]) for p in packets],
        creation_time=info["format"].get("tags", {}).get("creation_time"),
    )


def h264_frames(path) -> List[Tuple[int, bool]]:
    """(size, keyframe) of each access unit of a raw h264, as PyAV's parser cuts it."""
    import av

    with av.open(str(path), format="h264") as c:
        return [(p.size, bool(p.is_keyframe)) for p in c.demux(c.streams.video[0]) if p.size]


def pts_lines(path) -> Tuple[List[str], List[float], List[Tuple[int, bool]]]:
    """(comment lines, timestamps in ms, (size, keyframe) per size line) of a .pts file.

    Read line by line here, not with the project's reader, so that a mistake in
    the reader cannot hide one in the writer.
    """
    comments, times, sizes = [], [], []
    with open(path) as f:
        text = f.read()
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # torn by a kill
        line = line.strip()
        if line.startswith("#= "):
            words = line.split()
            sizes.append((int(words[1]), len(words) == 3 and words[2] == "K"))
        elif line.startswith("#"):
            comments.append(line)
        elif line:
            times.append(float(line))
    return comments, times, sizes


def recorded_seconds(h264, fps: float) -> float:
    """How long a recording lasts by the capture times in its .pts: first to last, plus
    one frame. Its frame count is no measure of time: a camera kept late by a loaded
    machine drops frames, as a real sensor does, and the time still passes."""
    times = pts_lines(timestamps.pts_path(str(h264)))[1]
    return (times[-1] - times[0]) / 1000 + 1 / fps
