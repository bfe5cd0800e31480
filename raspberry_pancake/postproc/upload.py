"""Upload destinations: scp (over OpenSSH) and ftp (with ncftpput).

Files go to ``remote_dir/YYYY/MM/DD`` by the date at the start of their name. Both
transports write the file under its final remote name (ncftpput through a fixed
temporary name it renames), so a transfer repeated after a crash overwrites the
same remote file instead of creating a second one.

Nothing a message carries can steer a transfer: only recordings' names (digits,
``-``, ``_`` and an extension) are ever sent, and names and directories with
control characters are refused, since a CR or LF would end an FTP command. scp
always runs its original protocol (``-O`` where the client defaults to SFTP), in
which the server's shell reads the target path; the path is quoted for that
shell, so a ``$(...)`` in ``remote_dir`` is a directory name, not a command.
Every failure says whether the server answered (``UploadError.reachable``), which
tells a file that cannot be uploaded from a server that is away.
"""

from __future__ import annotations

import functools
import logging
import os
import posixpath
import re
import shlex
import subprocess
import threading
from typing import List, Optional

from ..exc import UploadError
from ..messages import has_control_character, recording_time
from . import runner

logger = logging.getLogger(__name__)

_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})-")

#: Seconds to wait for a TCP connection or a login before calling a server dead.
CONNECT_TIMEOUT = 20

#: Generous: a Pi on a slow uplink (25 kB/s) still finishes; a hung link does not hang us.
TRANSFER_BYTES_PER_SECOND = 25e3


def dated_dir(remote_dir: str, filename: str) -> str:
    """``bak/cam1`` + ``20200624-0900.mp4`` -> ``bak/cam1/2020/06/24``.

    A name without a leading date goes to ``remote_dir`` itself.
    """
    match = _DATE.match(filename)
    if not match:
        return remote_dir
    return posixpath.join(remote_dir, *match.groups())


def _check_local(local: str) -> str:
    """The name a file will have on the server; refuse anything but a recording's mp4."""
    name = os.path.basename(local)
    if recording_time(name, ("mp4",)) is None:
        raise UploadError(f"{name!r} is not a recording's name: not sent", reachable=True)
    return name


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class Destination:
    """Where uploads go. ``upload`` is called from that destination's worker thread only."""

    kind = ""
    remote_dir = ""

    @property
    def key(self) -> str:
        """Stable identity, stored in the state file; holds no secret."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.key

    def prepare(self, remote_dir: str, stop: threading.Event) -> None:
        """Make sure ``remote_dir`` exists (once per directory per round)."""

    def upload(self, local: str, remote_dir: str, stop: threading.Event) -> None:
        raise NotImplementedError


# -- scp --------------------------------------------------------------------------------

#: What OpenSSH prints when the server was never reached or dropped us.
_SSH_UNREACHABLE = re.compile(
    r"connect to host|Connection (refused|timed out|closed|reset)|lost connection"
    r"|Could not resolve|No route to host|Network is unreachable|Permission denied \(|"
    r"Host key verification failed|timed out",
    re.IGNORECASE,
)


@functools.cache
def scp_protocol_flags() -> tuple:
    """``("-O",)`` when this scp would otherwise speak SFTP (OpenSSH 9.0 and later).

    The flag letters come from scp's own usage line, so any client is judged by
    what it accepts. Older clients (Buster, Bullseye) speak the original protocol
    without a flag.
    """
    try:
        done = subprocess.run(["scp", "-O"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ()
    letters = re.search(r"\[-([0-9A-Za-z]+)\]", done.stderr + done.stdout)
    return ("-O",) if letters and "O" in letters.group(1) else ()


def shell_path(path: str) -> str:
    """``path`` quoted for the server's POSIX shell; a leading ``~/`` keeps meaning home."""
    if path.startswith("~/"):
        return "~/" + shlex.quote(path[2:])
    return shlex.quote(path)


class ScpDestination(Destination):
    """``--upload-scp user@host port remote_dir``: mkdir over ssh, then ``scp -p``."""

    kind = "scp"

    def __init__(
        self, user_host: str, port: int, remote_dir: str, ssh_config: Optional[str] = None
    ):
        self.user_host = user_host
        self.port = port
        self.remote_dir = remote_dir
        self.ssh_config = ssh_config

    @property
    def key(self) -> str:
        return f"scp:{self.user_host}:{self.port}:{self.remote_dir}"

    def _common_options(self) -> List[str]:
        opts = ["-F", self.ssh_config] if self.ssh_config else []
        return opts + [
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=3",
        ]

    def mkdir_command(self, remote_dir: str) -> List[str]:
        return (
            ["ssh"]
            + self._common_options()
            + ["-p", str(self.port), self.user_host, "mkdir -p -- " + shell_path(remote_dir)]
        )

    def scp_command(self, local: str, remote_dir: str) -> List[str]:
        target = posixpath.join(remote_dir, os.path.basename(local))
        return (
            ["scp", *scp_protocol_flags(), "-p", "-q"]
            + self._common_options()
            + ["-P", str(self.port), local, f"{self.user_host}:{shell_path(target)}"]
        )

    def prepare(self, remote_dir: str, stop: threading.Event) -> None:
        result = runner.run(self.mkdir_command(remote_dir), CONNECT_TIMEOUT + 60, stop)
        if not result.ok:
            # ssh exits with 255 when the connection or the login failed; any other
            # status is mkdir's own answer, from a server that is there.
            raise UploadError(
                f"ssh mkdir {remote_dir} failed: {result.reason()}",
                reachable=result.returncode not in (255, -9),
            )

    def upload(self, local: str, remote_dir: str, stop: threading.Event) -> None:
        _check_local(local)
        result = runner.run(
            self.scp_command(local, remote_dir),
            runner.size_timeout(_size(local), TRANSFER_BYTES_PER_SECOND),
            stop,
        )
        if not result.ok:
            reachable = result.returncode != -9 and not _SSH_UNREACHABLE.search(result.stderr)
            raise UploadError(f"scp failed: {result.reason()}", reachable=reachable)


# -- ftp --------------------------------------------------------------------------------

#: ncftpput's exit codes that mean it was connected and logged in: 3 (transfer
#: failed) and 5 (could not change into the directory). The others are connection,
#: login, timeout and usage failures.
_NCFTPPUT_ANSWERED = (3, 5)


class FtpDestination(Destination):
    """``--upload-ftp host port user password remote_dir`` with ncftpput.

    The login (with the password) reaches ncftpput through an anonymous in-memory
    file (``memfd``) passed as ``-f /dev/fd/N``: nothing is written to a disk, so a
    ``kill -9`` leaves nothing behind, and the password is on no command line of
    ncftpput's.
    """

    kind = "ftp"

    def __init__(self, host: str, port: int, user: str, password: str, remote_dir: str):
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.remote_dir = remote_dir

    @property
    def key(self) -> str:
        return f"ftp:{self.user}@{self.host}:{self.port}:{self.remote_dir}"

    def command(self, login_file: str, local: str, remote_dir: str) -> List[str]:
        return [
            "ncftpput",
            "-f",
            login_file,
            "-P",
            str(self.port),
            "-t",
            str(3 * CONNECT_TIMEOUT),  # an idle timeout: a stalled server, not a slow one
            "-V",
            "-r",
            "0",  # no redial here: the worker retries with its own backoff
            "-m",
            "-T",
            ".partial.",
            remote_dir,
            local,
        ]

    def login_text(self) -> str:
        return f"host {self.host}\nuser {self.user}\npass {self.password}\n"

    def upload(self, local: str, remote_dir: str, stop: threading.Event) -> None:
        _check_local(local)
        if has_control_character(remote_dir):
            raise UploadError(f"remote directory {remote_dir!r} has a control character")
        login = os.memfd_create("ncftpput-login", os.MFD_CLOEXEC)
        try:
            os.write(login, self.login_text().encode())
            result = runner.run(
                self.command(f"/dev/fd/{login}", local, remote_dir),
                runner.size_timeout(_size(local), TRANSFER_BYTES_PER_SECOND),
                stop,
                pass_fds=(login,),
            )
        finally:
            os.close(login)
        if not result.ok:
            raise UploadError(
                f"ncftpput failed: {result.reason()}",
                reachable=result.returncode in _NCFTPPUT_ANSWERED,
            )
