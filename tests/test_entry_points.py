"""The installed commands (pyproject.toml) and the checkout's scripts, which are shims.

The package is built and installed by pip, as a user would, into a fresh venv in a
temporary folder: no network (``--no-index``), no build isolation, the
dependencies seen from the environment running these tests. Each command then
runs from outside the checkout with no PYTHONPATH, so it can only find the
installed copy.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import site
import stat
import subprocess
import sys
import time
import types
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import raspberry_pancake
from raspberry_pancake.web.auth import parse_hash
from tests.helpers import PI_H264, ROOT, Pancake
from tests.postproc.pp_helpers import Postproc, assert_mp4

SHIMS = [
    "pancake.py",
    "postproc.py",
    "util/set_password.py",
    "util/limit_days.py",
    "util/limit_files_by_number.py",
    "util/limit_files_by_size.py",
    "util/limit_free_space.py",
]
COMMANDS = {"pancake", "pancake-postproc", "pancake-set-password", "pancake-cleanup"}
#: what the build reads from a checkout; nothing else is copied, so a missing piece fails
BUILD_INPUTS = [
    "pyproject.toml",
    "README.md",
    "requirements.txt",
    "raspberry_pancake",
    "index.html",
    "login.html",
    "static",
]
HOUR = 3600


def environment() -> dict:
    """This process's environment, minus anything that would lead Python to the checkout."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def code_lines(path: str) -> int:
    """Lines holding code, leaving out the module docstring, comments and blank lines."""
    body = ast.parse(Path(path).read_text()).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    lines = set()
    for statement in body:
        for node in ast.walk(statement):
            if hasattr(node, "lineno"):
                lines.update(range(node.lineno, node.end_lineno + 1))
    return len(lines)


@pytest.mark.parametrize("shim", SHIMS)
def test_each_script_is_a_three_line_shim_into_the_package(shim):
    path = os.path.join(ROOT, shim)
    text = Path(path).read_text()
    assert code_lines(path) <= 3, text
    assert "sys.path" not in text
    assert "from raspberry_pancake.entry_points import" in text


def test_every_script_in_util_is_one_of_the_shims():
    found = {os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "util", "*.py"))}
    assert found == {s for s in SHIMS if s.startswith("util/")}


@pytest.mark.parametrize("shim", [s for s in SHIMS if s.startswith("util/")])
def test_util_scripts_run_from_a_checkout_with_nothing_installed(tmp_path, shim):
    """-E: no PYTHONPATH; the checkout is not installed in the environment running this."""
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.version("raspberry-pancake")
    done = subprocess.run(
        [sys.executable, "-E", "-s", os.path.join(ROOT, shim), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {os.path.basename(shim)} ")


# -- the package, installed -------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv with the package pip-installed from a copy of the checkout's build inputs."""
    base = tmp_path_factory.mktemp("installed")
    source = base / "source"
    for name in BUILD_INPUTS:
        if os.path.isdir(os.path.join(ROOT, name)):
            shutil.copytree(
                os.path.join(ROOT, name),
                source / name,
                symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), source / name)
    venv = base / "venv"
    env = environment()
    make = [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)]
    subprocess.run(make, check=True, env=env, timeout=120)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()
    # pip, setuptools and the dependencies, from the environment running these tests
    lines = [f"import site; site.addsitedir({d!r})\n" for d in site.getsitepackages()]
    Path(purelib, "tests-environment.pth").write_text("".join(lines))
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    pip += ["--no-deps", "--no-build-isolation", "--no-index", str(source)]
    done = subprocess.run(pip, cwd=base, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return types.SimpleNamespace(
        bin=venv / "bin", python=python, purelib=purelib, env=env, base=base
    )


def run(installed, *argv, input="", cwd=None):
    command = [str(installed.bin / argv[0]), *map(str, argv[1:])]
    return subprocess.run(
        command,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd or installed.base,
        env=installed.env,
    )


def test_installed_package_is_the_venvs_copy_with_the_checkouts_version_and_bounds(installed):
    probe = (
        "import raspberry_pancake, json\n"
        "from importlib import metadata\n"
        "dist = metadata.distribution('raspberry-pancake')\n"
        "print(json.dumps([raspberry_pancake.__file__, dist.version, dist.requires,\n"
        "    sorted(e.name for e in dist.entry_points if e.group == 'console_scripts')]))\n"
    )
    done = subprocess.run(
        [installed.python, "-c", probe],
        cwd=installed.base,
        capture_output=True,
        text=True,
        env=installed.env,
        check=True,
    )
    where, version, requires, scripts = json.loads(done.stdout)
    assert where.startswith(installed.purelib + os.sep)
    assert version == raspberry_pancake.__version__
    assert set(scripts) == COMMANDS
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        wanted = [line.split("#", 1)[0].strip() for line in f]
    assert requirements(requires) == requirements(w for w in wanted if w)


def requirements(texts) -> set:
    return {(r.name.lower(), r.specifier) for r in map(Requirement, texts)}


@pytest.mark.parametrize(
    "argv, usage",
    [
        (["pancake"], "pancake"),
        (["pancake-postproc"], "pancake-postproc"),
        (["pancake-set-password"], "pancake-set-password"),
        (["pancake-cleanup"], "pancake-cleanup"),
        (["pancake-cleanup", "days"], "pancake-cleanup days"),
        (["pancake-cleanup", "files"], "pancake-cleanup files"),
        (["pancake-cleanup", "size"], "pancake-cleanup size"),
        (["pancake-cleanup", "free"], "pancake-cleanup free"),
    ],
)
def test_every_installed_command_has_help(installed, argv, usage):
    done = run(installed, *argv, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {usage} ")


def test_installed_pancake_serves_the_page_and_its_static_files(installed, tmp_path):
    cam = Pancake(
        "--camera",
        "sim",
        program=[str(installed.bin / "pancake")],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
    )
    try:
        with urllib.request.urlopen(cam.url + "/", timeout=30) as page:
            assert page.status == 200
            assert "<title>Raspberry Pancake</title>" in page.read().decode()
        with urllib.request.urlopen(cam.url + "/static/style.css", timeout=30) as css:
            assert css.read() == Path(ROOT, "static", "style.css").read_bytes()
    finally:
        code, out = cam.stop()
    assert code == 0, out


class InstalledPostproc(Postproc):
    """``pancake-postproc`` from the venv instead of the checkout's postproc.py."""

    def __init__(self, installed, tmp_path, *args):
        super().__init__(tmp_path, *args)
        self.program = str(installed.bin / "pancake-postproc")
        self.env = installed.env

    def command(self):
        return [self.program, *super().command()[2:]]


def test_installed_postproc_converts_the_pi_sample(installed, tmp_path):
    h264 = tmp_path / "h264"
    mp4 = tmp_path / "mp4"
    h264.mkdir()
    mp4.mkdir()
    recording = str(h264 / "20240102-0300.h264")
    shutil.copy(PI_H264, recording)
    pp = InstalledPostproc(installed, tmp_path, "--convert", str(mp4), "30")
    pp.args += ["--converter", "builtin"]
    pp.start()
    try:
        pp.send({"h264": recording})
        pp.wait_log("converted " + recording)
    finally:
        assert pp.stop() == 0
    assert_mp4(str(mp4 / "20240102-0300.mp4"), 116, 30, size=(1920, 1080))


def test_installed_set_password_writes_a_private_hash(installed, tmp_path):
    target = tmp_path / "pw"
    done = run(installed, "pancake-set-password", target, input="correct horse\n")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert parse_hash(target.read_text()).verify("correct horse")
    short = run(installed, "pancake-set-password", tmp_path / "other", input="short\n")
    assert short.returncode != 0
    assert short.stderr.strip().splitlines() == [
        "pancake-set-password: error: the password must have at least 8 characters"
    ]


def put(path: Path, age: float = HOUR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 1000)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_installed_cleanup_days_keeps_the_newest_day(installed, tmp_path):
    old = put(tmp_path / "cam" / "2020" / "06" / "22" / "20200622-1700.mp4")
    new = put(tmp_path / "cam" / "2020" / "06" / "23" / "20200623-1700.mp4")
    done = run(installed, "pancake-cleanup", "days", tmp_path / "cam", "1")
    assert done.returncode == 0, done.stderr
    assert new.exists() and not old.exists()
    assert not (tmp_path / "cam" / "2020" / "06" / "22").exists()


def test_installed_cleanup_files_and_size(installed, tmp_path):
    files = [put(tmp_path / "h264" / f"20200623-17{m:02}.h264") for m in range(3)]
    done = run(installed, "pancake-cleanup", "files", tmp_path / "h264", "1")
    assert done.returncode == 0, done.stderr
    assert [f.exists() for f in files] == [False, False, True]
    sized = [put(tmp_path / "mp4" / f"20200623-17{m:02}.mp4") for m in range(3)]
    done = run(installed, "pancake-cleanup", "size", "--dry-run", tmp_path / "mp4", "1500")
    assert done.returncode == 0, done.stderr
    assert all(f.exists() for f in sized)
    assert done.stdout.count(" would delete ") == 2


@pytest.mark.parametrize(
    "argv, line",
    [
        ([], "pancake-cleanup: error: the following arguments are required: COMMAND"),
        (["weekly"], "pancake-cleanup: error: argument COMMAND: invalid choice: 'weekly'"),
        (["days", "missing", "3"], "pancake-cleanup days: error: missing: no such directory"),
        (["free", "--min-free", "lots", "."], "pancake-cleanup free: error: 'lots' is not"),
    ],
)
def test_installed_cleanup_mistakes_are_one_line(installed, argv, line):
    done = run(installed, "pancake-cleanup", *argv)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), done.stderr


@pytest.mark.parametrize(
    "argv, line",
    [
        (["pancake", "--fps", "0"], "pancake: error: argument --fps"),
        (["pancake", "--camera", "sim", "--login", "/nonexistent"], "pancake: error: password"),
        (["pancake-postproc", "--convert", "/nonexistent", "30"], "pancake-postproc: error:"),
    ],
)
def test_installed_commands_name_themselves_in_their_one_line_errors(installed, argv, line):
    done = run(installed, *argv)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), done.stderr
