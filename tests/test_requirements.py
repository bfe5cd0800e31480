"""requirements.txt's bounds are the versions the suite has run against.

An upper bound (tornado's) is below the next major release: the newest major
that CI installs from PyPI, and so tests, satisfies it.

scripts/test.sh runs the suite twice: in ``.venv`` with the newest releases from
PyPI, and in ``.venv-os``, a venv on Debian 12's own python3 packages, with
``PANCAKE_OS_PACKAGES=1``. There, every runtime requirement must be the apt
package itself, at exactly its lower bound: so the bounds say what was tested.
"""

from __future__ import annotations

import os
import re
from importlib import metadata
from typing import List, Tuple

import pytest
from packaging.version import Version

from tests.helpers import ROOT

DEBIAN_SITE = "/usr/lib/python3/dist-packages"
_REQUIREMENT = re.compile(
    r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*>=\s*([0-9][0-9A-Za-z.]*)(?:\s*,\s*<\s*([0-9][0-9.]*))?"
)


def requirement_lines() -> List[re.Match]:
    matches = []
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            match = _REQUIREMENT.fullmatch(line)
            assert match, f"requirements.txt: {line!r} is not 'name>=version' or 'name>=v,<w'"
            matches.append(match)
    return matches


def lower_bounds() -> List[Tuple[str, Version]]:
    return [(m.group(1), Version(m.group(2))) for m in requirement_lines()]


def upper_bounds() -> List[Tuple[str, Version]]:
    return [(m.group(1), Version(m.group(3))) for m in requirement_lines() if m.group(3)]


def test_every_requirement_has_a_lower_bound_that_is_met():
    bounds = lower_bounds()
    assert {name.lower() for name, _ in bounds} >= {"tornado", "numpy", "pillow", "av"}
    for name, bound in bounds:
        assert Version(metadata.version(name)) >= bound, name


@pytest.mark.skipif(
    not os.environ.get("PANCAKE_OS_PACKAGES"), reason="only in the run on Debian's packages"
)
def test_on_debian_packages_each_lower_bound_is_the_apt_package_itself():
    for name, bound in lower_bounds():
        found = metadata.distribution(name)
        where = os.path.realpath(str(found.locate_file("")))
        assert where == DEBIAN_SITE, f"{name} {found.version} comes from {where}, not apt"
        assert Version(found.version) == bound, (
            f"{name}: Debian has {found.version}; set requirements.txt's bound to it"
        )


def test_tornado_is_bounded_below_the_next_major_and_the_tested_version_is_within():
    """tornado 7 drops APIs 6.x deprecates; the bound is lifted once the suite runs on it."""
    bounds = dict(upper_bounds())
    assert "tornado" in bounds
    for name, bound in bounds.items():
        installed = Version(metadata.version(name))
        assert installed < bound, f"{name} {installed} is outside requirements.txt's <{bound}"
        assert bound == Version(f"{bound.major}"), f"{name}: bound a whole major, not {bound}"
        assert bound.major == installed.major + 1 or os.environ.get("PANCAKE_OS_PACKAGES"), (
            f"{name}: {installed} is tested, so the bound is <{installed.major + 1}"
        )
