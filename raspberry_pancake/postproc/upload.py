"""Upload destinations: scp (over OpenSSH) and ftp (with ncftpput).

Files go to ``remote_dir/YYYY/MM/DD`` by the date at the start of their name. Both
transports write the file under its final remote name (ncftpput through a fixed
temporary name it renames), so a transfer repeated after a crash overwrites the
same remote file instead of creating a second one.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import shlex
import tempfile
import threading
from typing import List, Optional

from ..exc import UploadError
from . import runner

logger = logging.getLogger(__name__)

_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})-")

#: Seconds to wait for a TCP connection or a login before calling a server dead.
CONNECT_TIMEOUT = 20


def dated_dir(remote_dir: str, filename: str) -> str:
    """``bak/cam1`` + ``20200624-0900.mp4`` -> ``bak/cam1/2020/06/24``.

    A name without a leading date goes to ``remote_dir`` itself.
    """
    match = _DATE.match(filename)
    if not match:
        return remote_dir
    return posixpath.join(remote_dir, *match.groups())


#: Generous: a Pi on a slow uplink (25 kB/s) still finishes; a hung link does not hang us.
TRANSFER_BYTES_PER_SECOND = 25e3


class Destination:
    """Where uploads go. ``upload`` is called from that destination's worker thread only."""

    kind = ""

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
            + ["-p", str(self.port), self.user_host, "mkdir -p -- " + shlex.quote(remote_dir)]
        )

    def scp_command(self, local: str, remote_dir: str) -> List[str]:
        target = posixpath.join(remote_dir, os.path.basename(local))
        return (
            ["scp", "-p", "-q"]
            + self._common_options()
            + ["-P", str(self.port), local, f"{self.user_host}:{target}"]
        )

    def prepare(self, remote_dir: str, stop: threading.Event) -> None:
        result = runner.run(self.mkdir_command(remote_dir), CONNECT_TIMEOUT + 60, stop)
        if not result.ok:
            raise UploadError(f"ssh mkdir {remote_dir} failed: {result.reason()}")

    def upload(self, local: str, remote_dir: str, stop: threading.Event) -> None:
        result = runner.run(
            self.scp_command(local, remote_dir),
            runner.size_timeout(local, TRANSFER_BYTES_PER_SECOND),
            stop,
        )
        if not result.ok:
            raise UploadError(f"scp failed: {result.reason()}")


class FtpDestination(Destination):
    """``--upload-ftp host port user password remote_dir`` with ncftpput.

    The password goes into a 0600 temporary login file (``-f``), never onto the
    command line where ``ps`` would show it.
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
            "0",  # no redial here: a failed upload is retried at the next trigger
            "-m",
            "-T",
            ".partial.",
            remote_dir,
            local,
        ]

    def upload(self, local: str, remote_dir: str, stop: threading.Event) -> None:
        fd, login_file = tempfile.mkstemp(prefix="ncftp-", suffix=".cfg")  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"host {self.host}\nuser {self.user}\npass {self.password}\n")
            result = runner.run(
                self.command(login_file, local, remote_dir),
                runner.size_timeout(local, TRANSFER_BYTES_PER_SECOND),
                stop,
            )
        finally:
            os.remove(login_file)
        if not result.ok:
            raise UploadError(f"ncftpput failed: {result.reason()}")
