"""pancake-set-password and util/set_password.py: ask for a password and write its
salted hash, mode 0600, for ``pancake.py --login``."""

from __future__ import annotations

import getpass
import os
import sys
from argparse import RawDescriptionHelpFormatter
from typing import Optional, Sequence

from .exc import ConfigError, UserError
from .terminal import ArgumentParser
from .web.auth import hash_password

MIN_LENGTH = 8
DESCRIPTION = """\
Ask for a password (twice, on a terminal) and write its salted scrypt hash, mode
0600, for pancake.py --login. From a script, give it one line on standard input:
echo "$PW" | %(prog)s password.txt"""


def read_password(stdin=None) -> str:
    """Twice on a terminal; one line from stdin otherwise (for scripts)."""
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = getpass.getpass("New password: ")
        if getpass.getpass("Repeat it: ") != first:
            raise UserError("the two passwords differ; nothing was written")
        return first
    line = stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def write_private(path: str, text: str) -> None:
    """Write through a 0600 temporary file, then rename, so no reader sees a half file."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = ArgumentParser(description=DESCRIPTION, formatter_class=RawDescriptionHelpFormatter)
    parser.add_argument(
        "file", nargs="?", default="password.txt", help="hash file to write (default: password.txt)"
    )
    args = parser.parse_args(argv)
    password = read_password()
    if len(password) < MIN_LENGTH:
        raise ConfigError(f"the password must have at least {MIN_LENGTH} characters")
    try:
        write_private(args.file, hash_password(password) + "\n")
    except OSError as e:
        raise ConfigError(f"cannot write {args.file!r}: {e.strerror}") from None
    print(f"wrote {args.file}")
    return 0
