"""The converter's early write-out (``writeback.py``) against the real kernel call."""

from __future__ import annotations

import os

from raspberry_pancake.postproc.writeback import WritebackPusher


def test_write_out_starts_once_per_step_as_the_file_grows(tmp_path):
    path = tmp_path / "growing.mp4"
    with WritebackPusher(str(path), step=1 << 20) as pusher:
        pusher.poll()  # the muxer has not created the file yet: nothing to do
        with open(path, "wb") as f:
            f.write(os.urandom(512 << 10))
            f.flush()
            pusher.poll()  # half a step
            assert pusher.pushes == 0
            for _ in range(3):
                f.write(os.urandom(1 << 20))
                f.flush()
                pusher.poll()
    # each call reached the kernel and was accepted: a failed one disables the pusher
    assert pusher.pushes == 3


def test_a_symbolic_link_in_place_of_the_output_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(os.urandom(2 << 20))
    link = tmp_path / "out.mp4"
    link.symlink_to(target)
    with WritebackPusher(str(link), step=1 << 20) as pusher:
        pusher.poll()
    assert pusher.pushes == 0
