"""Conversion time of a 15-minute 1280x720 30 fps recording, per converter, against cp.

cp of the same file, in the same run, is the physical floor: a remux reads the
whole input and writes about as much. The goal for the default converter, with
the timestamp file pancake writes beside each recording (its frame sizes spare
the parse), is at most 1.5x cp. Run from the project root:

    python3 bench/postproc_convert.py [--minutes 15] [--repeat 3] [--workdir DIR]

The recording is made once with ffmpeg (testsrc2, libx264, no B-frames, a keyframe
every second, about the bitrate of a Pi camera at 720p) and kept in the workdir,
with a timestamp file as pancake writes it (frame sizes from one parse of the
stream, a frame every 1/30 s). Each converter runs on two copies of it: with the
timestamp file ("+pts") and without (named "-nopts": timed by fps, as recordings
of the original pancake are). "builtin+pts,late" is the default converter with
its early write-out (``writeback.py``) turned off: the disk starts on the mp4
only at the final fsync, as it did before.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raspberry_pancake import timestamps  # noqa: E402
from raspberry_pancake.postproc import convert, writeback  # noqa: E402

FPS = 30
SIZE = "1280x720"


def make_recording(workdir: str, minutes: int) -> str:
    """One minute encoded once, its Annex B stream repeated: every copy starts at an IDR."""
    final = os.path.join(workdir, f"20240102-0300-{minutes}min.h264")
    if os.path.exists(final):
        return final
    one = os.path.join(workdir, "one-minute.h264")
    if not os.path.exists(one):
        print("encoding one minute of 1280x720 at 30 fps ...", flush=True)
        subprocess.run(
            [
                "ffmpeg", "-nostdin", "-v", "error", "-y",
                "-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate={FPS}",
                "-frames:v", str(60 * FPS), "-c:v", "libx264", "-preset", "ultrafast",
                "-b:v", "6M", "-g", str(FPS), "-bf", "0", "-f", "h264", one,
            ],
            check=True,
        )  # fmt: skip
    with open(final + ".tmp", "wb") as out:
        for _ in range(minutes):
            with open(one, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    os.replace(final + ".tmp", final)
    return final


def write_timestamps(h264: str, minutes: int, workdir: str) -> None:
    """The .pts pancake would have written: the one minute's frame sizes, repeated."""
    import av

    with av.open(os.path.join(workdir, "one-minute.h264"), format="h264") as c:
        frames = [(p.size, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.size]
    text = [timestamps.header_text(time.time())]
    n = 0
    for _ in range(minutes):
        for size, key in frames:
            text.append(timestamps.entry_text(n * 1000.0 / FPS, size, key))
            n += 1
    with open(timestamps.pts_path(h264), "w") as f:
        f.write("".join(text))


def without_timestamps(h264: str) -> str:
    """A hard link to the recording under another name, so it has no .pts beside it."""
    plain = h264.replace(".h264", "-nopts.h264")
    if not os.path.exists(plain):
        os.link(h264, plain)
    return plain


def evict(path: str) -> None:
    """Drop one file's pages from the page cache (only this file: others are untouched)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(fn, output: str, cold_input: str = "") -> float:
    """Seconds ``fn`` takes to write ``output``, which the previous round left behind.

    That copy is removed first, outside the timing: overwriting it would time ext4
    freeing 700 MB (and, for a file truncated and rewritten, flushing it at close:
    auto_da_alloc), which is not the work being compared.
    """
    if os.path.exists(output):
        os.remove(output)
    if cold_input:
        evict(cold_input)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def packets(path: str) -> int:
    out = subprocess.run(
        [
            "ffprobe", "-v", "error", "-count_packets", "-select_streams", "v:0",
            "-show_entries", "stream=nb_read_packets,duration", "-of", "json", path,
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    stream = json.loads(out.stdout)["streams"][0]
    return int(stream["nb_read_packets"]), float(stream["duration"])


class _NoEarlyWriteout(writeback.WritebackPusher):
    def poll(self) -> None:
        pass


def convert_without_early_writeout(src: str, out_dir: str) -> None:
    """The built-in converter with its write-out left to the fsync at the end."""
    convert.WritebackPusher = _NoEarlyWriteout
    try:
        convert.convert_file(convert.BuiltinConverter(), src, out_dir, Fraction(FPS))
    finally:
        convert.WritebackPusher = writeback.WritebackPusher


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=int, default=15)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--cold", action="store_true", help="evict the input from the page cache before each run"
    )
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "pancake-bench"))
    args = p.parse_args()
    # one warning per run about the -nopts copy is expected; keep the table readable
    logging.basicConfig(level=logging.ERROR)
    os.makedirs(args.workdir, exist_ok=True)
    src = make_recording(args.workdir, args.minutes)
    if not os.path.exists(timestamps.pts_path(src)):
        write_timestamps(src, args.minutes, args.workdir)
    plain = without_timestamps(src)
    size_mb = os.path.getsize(src) / 1e6
    frames = args.minutes * 60 * FPS
    out_dir = os.path.join(args.workdir, "out")
    os.makedirs(out_dir, exist_ok=True)
    copy_target = os.path.join(out_dir, "copy.h264")

    def run_cp():
        subprocess.run(["cp", src, copy_target], check=True)

    def run_cp_fsync():
        # what convert_file also does: the copy is on the disk before it counts
        run_cp()
        fd = os.open(copy_target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    candidates = [("cp", run_cp, None, copy_target), ("cp+fsync", run_cp_fsync, None, copy_target)]
    for name in ("builtin", "ffmpeg", "mp4box"):
        try:
            conv = convert.select_converter(name)
        except Exception as e:  # not installed here
            print(f"{name}: skipped ({e})")
            continue
        for label, path in ((f"{name}+pts", src), (f"{name}-nopts", plain)):
            if label.endswith("+pts") and not conv.honours_timestamps:
                continue  # it would only do what -nopts does
            candidates.append(
                (
                    label,
                    lambda c=conv, p=path: convert.convert_file(c, p, out_dir, Fraction(FPS)),
                    path,
                    os.path.join(out_dir, convert.mp4_name(path)),
                )
            )
    # the default as it was before it started the mp4's write-out early (writeback.py)
    candidates.insert(
        3,
        (
            "builtin+pts,late",
            lambda: convert_without_early_writeout(src, out_dir),
            src,
            os.path.join(out_dir, convert.mp4_name(src)),
        ),
    )
    default = convert.select_converter("auto").name + "+pts"
    print(f"input: {src} ({size_mb:.0f} MB, {frames} frames); default converter: {default}")
    run_cp()  # warm the page cache (unless --cold evicts the input before each run)
    results = {}
    for _ in range(args.repeat):
        for name, fn, path, output in candidates:  # interleaved, so drift hits all alike
            results.setdefault(name, []).append(timed(fn, output, src if args.cold else ""))
            if path is not None:
                got = packets(output)
                assert got[0] == frames, (name, got)
                assert abs(got[1] - frames / FPS) < 1e-3, (name, got)
    floor = statistics.median(results["cp"])
    cache = "input evicted from the page cache" if args.cold else "input in the page cache"
    print(f"{'method':16} {'median s':>9} {'x cp':>6}   ({args.repeat} runs, {cache})")
    for name, times in results.items():
        med = statistics.median(times)
        mark = "  <- default" if name == default else ""
        print(f"{name:16} {med:9.2f} {med / floor:6.2f}{mark}")
    os.remove(copy_target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
