"""Secrets (the FTP password, the Telegram bot token) without a command line.

Whatever stands on a command line can be read by every local user (``ps``,
``/proc/PID/cmdline``). So where a flag takes a secret, it also takes:

* ``file:PATH``: the first line of a file that only its owner may read
  (mode 0600 or 0400);
* ``credential:NAME``: a systemd credential, the file ``NAME`` in
  ``$CREDENTIALS_DIRECTORY`` (``LoadCredential=NAME:/path`` in the unit, systemd
  247 or later), which systemd makes readable by the service alone.

Anything else is the secret itself, as in the original project.
"""

from __future__ import annotations

import os
import stat
from typing import Mapping, Optional

from ..exc import ConfigError
from ..messages import has_control_character

FILE_PREFIX = "file:"
CREDENTIAL_PREFIX = "credential:"

#: A secret file is a line, not a disk image.
MAX_SECRET_BYTES = 64 * 1024


def resolve(flag: str, value: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """The secret ``value`` stands for; ``flag`` names it in error messages."""
    env = os.environ if environ is None else environ
    if value.startswith(FILE_PREFIX):
        secret = read_secret_file(flag, value[len(FILE_PREFIX) :])
    elif value.startswith(CREDENTIAL_PREFIX):
        name = value[len(CREDENTIAL_PREFIX) :]
        if not name or "/" in name or name in (".", ".."):
            raise ConfigError(f"{flag}: {value!r} is not a credential name")
        directory = env.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ConfigError(
                f"{flag}: {value!r} needs a systemd credential (LoadCredential={name}:FILE"
                " in the unit, systemd 247 or later); elsewhere use file:PATH"
            )
        secret = read_secret_file(flag, os.path.join(directory, name))
    else:
        secret = value
    if not secret:
        raise ConfigError(f"{flag}: the secret is empty")
    if has_control_character(secret):
        raise ConfigError(f"{flag}: the secret contains a control character (a line break?)")
    return secret


def read_secret_file(flag: str, path: str) -> str:
    """The first line of ``path``, which nobody but its owner may read."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"{flag}: {path!r} is not a regular file")
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                raise ConfigError(
                    f"{flag}: {path!r} can be read by other users (mode {mode:04o}):"
                    f" chmod 600 {path}"
                )
            data = f.read(MAX_SECRET_BYTES)
    except OSError as e:
        raise ConfigError(f"{flag}: cannot read {path!r}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{flag}: {path!r} is not UTF-8 text") from None
    return text.split("\n", 1)[0].rstrip("\r")
