import hashlib
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import termios
import time

import pytest

from raspberry_pancake.exc import PasswordFileError
from raspberry_pancake.web.auth import hash_password, load_password_file, parse_hash
from tests.helpers import ROOT, run_cli


def test_original_sha512_file_with_trailing_newline(tmp_path):
    path = tmp_path / "pw"
    path.write_text(hashlib.sha512(b"hunter22").hexdigest() + "\n")
    h = load_password_file(str(path))
    assert h.scheme == "sha512"
    assert h.verify("hunter22")
    assert not h.verify("hunter2")
    assert not h.verify("")


def test_original_format_in_upper_case_still_matches():
    h = parse_hash(hashlib.sha512(b"abc").hexdigest().upper())
    assert h.verify("abc")


def test_scrypt_round_trip_and_salt_differs():
    line1, line2 = hash_password("pässwörd"), hash_password("pässwörd")
    assert line1.startswith("scrypt$") and line1 != line2
    h = parse_hash(line1)
    assert h.verify("pässwörd")
    assert not h.verify("passwörd")


@pytest.mark.parametrize(
    "content",
    [
        "",
        "not a hash",
        "ab" * 63,  # 126 hex digits
        "ab" * 65,
        "zz" * 64,
        "scrypt$16384$8$1$AAAA$BBBB",  # salt and hash too short
        "scrypt$1000$8$1$" + "A" * 24 + "$" + "B" * 44,  # N not a power of two
        hashlib.sha512(b"a").hexdigest() + "\n" + hashlib.sha512(b"b").hexdigest(),
        # 1 GiB of memory a check: refused when read, not when a visitor logs in
        "scrypt$1048576$8$1$" + "A" * 24 + "$" + "B" * 44,
    ],
)
def test_malformed_hash_files_are_one_clear_error(tmp_path, content):
    path = tmp_path / "pw"
    path.write_text(content)
    with pytest.raises(PasswordFileError, match="holds no valid hash"):
        load_password_file(str(path))


def test_missing_unreadable_and_directory_files(tmp_path):
    with pytest.raises(PasswordFileError, match="does not exist"):
        load_password_file(str(tmp_path / "nope"))
    with pytest.raises(PasswordFileError, match="is a directory"):
        load_password_file(str(tmp_path))
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PasswordFileError):
        load_password_file(str(binary))


def test_set_password_from_stdin_writes_0600_scrypt(tmp_path):
    target = tmp_path / "password.txt"
    r = run_cli("util/set_password.py", str(target), input="correct horse\n")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    h = load_password_file(str(target))
    assert h.scheme == "scrypt" and h.verify("correct horse")


def test_set_password_default_file_name(tmp_path):
    r = run_cli("util/set_password.py", input="abcdefgh\n", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert load_password_file(str(tmp_path / "password.txt")).verify("abcdefgh")


def test_set_password_rejects_short_and_unwritable(tmp_path):
    for short in ("ab", "seven77", "é" * 7):
        r = run_cli("util/set_password.py", str(tmp_path / "pw"), input=short + "\n")
        assert r.returncode != 0 and "at least 8" in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "pw").exists()
    r = run_cli("util/set_password.py", str(tmp_path / "pw"), input="eight888\n")
    assert r.returncode == 0 and load_password_file(str(tmp_path / "pw")).verify("eight888")
    r = run_cli("util/set_password.py", str(tmp_path / "no" / "pw"), input="abcdefgh\n")
    assert r.returncode != 0 and "cannot write" in r.stderr and "Traceback" not in r.stderr


def _echo_is_off(fd) -> bool:
    return not termios.tcgetattr(fd)[3] & termios.ECHO


def _run_on_terminal(args, answers, timeout=30.0):
    """Run set_password.py on a pseudo-terminal, typing ``answers`` at its prompts.

    getpass turns echo off and flushes pending input before it reads, so each
    answer is typed only once the terminal's echo is off.
    """
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execv(
            sys.executable, [sys.executable, os.path.join(ROOT, "util/set_password.py"), *args]
        )
    output = b""
    pending = list(answers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        # one colon per prompt; the answers are not echoed
        answered = len(answers) - len(pending)
        if pending and output.count(b":") > answered and _echo_is_off(fd):
            os.write(fd, pending.pop(0).encode() + b"\n")
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_set_password_asks_twice_on_a_terminal(tmp_path):
    target = tmp_path / "pw"
    code, out = _run_on_terminal([str(target)], ["s3cret!!", "s3cret!!"])
    assert code == 0, out
    assert "New password" in out and "Repeat" in out
    assert load_password_file(str(target)).verify("s3cret!!")


def test_set_password_terminal_mismatch_writes_nothing(tmp_path):
    target = tmp_path / "pw"
    code, out = _run_on_terminal([str(target)], ["s3cret!!", "other!!!"])
    assert code != 0 and "differ" in out
    assert not target.exists()


def test_hash_file_made_by_set_password_unlocks_pancake_cli(tmp_path):
    """The file format the tool writes is the one pancake.py reads (not just the library)."""
    target = tmp_path / "pw"
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "util/set_password.py"), str(target)],
        input="letmein!",
        text=True,
        check=True,
        capture_output=True,
    )
    assert target.read_text().count("\n") == 1
    assert load_password_file(str(target)).verify("letmein!")
