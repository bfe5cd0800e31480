"""Fixtures shared by the whole suite (plain helpers live in tests/helpers.py)."""

import pytest

from tests.helpers import Pancake


@pytest.fixture
def pancake():
    """Factory: ``pancake(*flags)`` starts pancake.py; all are stopped at teardown."""
    started = []

    def start(*args, **kwargs) -> Pancake:
        p = Pancake(*args, **kwargs)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
