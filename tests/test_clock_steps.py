"""The wall clock set while pancake.py --camera sim records (scenarios in tests/clock_steps.py)."""

from __future__ import annotations

import shutil

import pytest

from tests import clock_steps
from tests.helpers import Pancake

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe")

FPS = 12


@pytest.fixture
def launch_sim():
    """Starts pancake.py on the sim camera; whatever is still running is stopped at teardown."""
    started = []

    def launch(*args, env=None):
        p = Pancake(
            "--camera", "sim", "--fps", str(FPS), "--resolution", "320", "240", *args, env=env
        )
        started.append(p)
        return p

    yield launch
    for p in started:
        p.stop()


def test_clock_set_forward_an_hour_starts_a_file_named_with_the_new_time(launch_sim, tmp_path):
    clock_steps.forward_step_starts_a_file_named_with_the_new_time(launch_sim, tmp_path, FPS)


def test_clock_set_back_an_hour_never_overwrites_a_file(launch_sim, tmp_path):
    clock_steps.backward_step_never_overwrites_a_file(launch_sim, tmp_path, FPS)


def test_clock_set_just_before_an_edge_keeps_the_clip_whole(launch_sim, tmp_path):
    clock_steps.step_before_an_edge_keeps_the_clip_whole(launch_sim, tmp_path, FPS)
