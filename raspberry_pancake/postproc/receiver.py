"""The post-processor's end of the datagram protocol: the socket.

Two kinds of address (``messages.socket_address``):

* a socket file (a name with a slash). Its directory must belong to postproc's
  user and be closed to everyone else (mode 0700), and so must every directory
  above it be safe from other users, so that nobody else can bind the name
  first, replace the file, or write to it. systemd's ``RuntimeDirectory=`` makes
  such a directory;
* an abstract name (no slash), as in the original project. Any local user can
  bind it first (postproc then exits with status 4 and pancake.py talks to the
  squatter) or write to it.

The bound socket doubles as a lock: a second post-processor on the same address
cannot start. Each datagram carries its sender's credentials; only postproc's
own user is heard. ``stop_receiving`` makes the kernel refuse new datagrams
while those already queued can still be read, so a stop loses nothing: pancake
keeps what it could not send and sends it to the next post-processor.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import struct
from typing import Optional, Tuple

from .. import messages
from ..exc import AddressInUseError, ConfigError, ProtocolError

logger = logging.getLogger(__name__)

_CREDENTIALS = struct.Struct("iII")  # struct ucred: pid, uid, gid
_ANCILLARY_SPACE = socket.CMSG_SPACE(_CREDENTIALS.size)


class Receiver:
    """The bound socket; ``receive`` is called from the main thread only."""

    def __init__(self, socket_name: str):
        self.socket_name = socket_name
        self.path: Optional[str] = None
        self._file_id: Optional[Tuple[int, int]] = None
        self._uid = os.geteuid()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            # Before bind: the kernel attaches credentials only if the flag is already
            # set when a datagram is sent to us.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            if messages.is_path_address(socket_name):
                self._bind_file(os.path.abspath(socket_name))
            else:
                self._bind_abstract(socket_name)
        except BaseException:
            self.sock.close()
            raise
        self.sock.setblocking(False)

    @property
    def description(self) -> str:
        """How the log names the address."""
        return self.path or "@" + self.socket_name

    def _bind_abstract(self, name: str) -> None:
        try:
            self.sock.bind(messages.socket_address(name))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise AddressInUseError(
                    f"socket name {name!r} is in use (is another post-processor running?)"
                ) from None
            raise

    def _bind_file(self, path: str) -> None:
        directory = os.path.dirname(path)
        if not os.path.lexists(directory):
            try:
                os.mkdir(directory, 0o700)
            except OSError as e:
                raise ConfigError(f"socket directory {directory!r}: {e.strerror}") from None
        try:
            _check_private_directory(directory, self._uid)
            if os.path.lexists(path):
                self._remove_stale(path)
        except AddressInUseError:
            raise
        except OSError as e:
            raise ConfigError(f"socket {path!r}: {e.strerror or e}") from None
        try:
            self.sock.bind(path)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise AddressInUseError(f"socket {path!r} is in use") from None
            raise ConfigError(f"cannot bind {path!r}: {e.strerror or e}") from None
        os.chmod(path, 0o600)
        st = os.lstat(path)
        self.path = path
        self._file_id = (st.st_dev, st.st_ino)

    def _remove_stale(self, path: str) -> None:
        """Remove a socket file left by a post-processor that died; refuse a live one."""
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(f"{path!r} exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect(path)
            except ConnectionRefusedError:
                os.unlink(path)  # nobody is bound to it any more
                return
        raise AddressInUseError(f"socket {path!r} is in use (is another post-processor running?)")

    def fileno(self) -> int:
        return self.sock.fileno()

    def stop_receiving(self) -> None:
        """From now on senders get an error (and keep their messages); queued ones stay."""
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError as e:
            logger.warning("could not shut the socket for reading: %s", e)

    def close(self) -> None:
        if self.path is not None:
            try:
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self._file_id:
                    os.unlink(self.path)
            except OSError:
                pass
        self.sock.close()

    def receive(self) -> Optional[messages.Message]:
        """Read one datagram; return its message, or None if it was dropped.

        Raises ``BlockingIOError`` when nothing is waiting.
        """
        data, ancillary, flags, _ = self.sock.recvmsg(messages.MAX_DATAGRAM + 1, _ANCILLARY_SPACE)
        sender = _sender_uid(ancillary)
        if sender is None:
            logger.warning("dropped a datagram without sender credentials")
            return None
        if sender != self._uid:
            logger.warning(
                "dropped a datagram from uid %s (only uid %s is accepted)", sender, self._uid
            )
            return None
        if flags & socket.MSG_TRUNC or len(data) > messages.MAX_DATAGRAM:
            logger.warning("dropped a datagram over %s bytes", messages.MAX_DATAGRAM)
            return None
        try:
            return messages.decode(data)
        except ProtocolError as e:
            logger.warning("dropped a bad datagram %s: %s", preview(data), e)
            return None


def _check_private_directory(directory: str, uid: int) -> None:
    """Refuse a socket directory another user could enter, or replace, or pre-create."""
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"socket directory {directory!r} is not a directory")
    if st.st_uid != uid:
        raise ConfigError(
            f"socket directory {directory!r} belongs to uid {st.st_uid}, not to uid {uid}"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise ConfigError(
            f"socket directory {directory!r} is open to other users"
            f" (mode {stat.S_IMODE(st.st_mode):04o}): chmod 700 it"
        )
    # Above it, nobody else may rename things: each ancestor belongs to us or root,
    # and is writable by others only with the sticky bit (as /tmp is).
    parent = os.path.dirname(directory)
    while True:
        st = os.stat(parent)
        loose = stat.S_IMODE(st.st_mode) & 0o022 and not st.st_mode & stat.S_ISVTX
        if st.st_uid not in (0, uid) or loose:
            raise ConfigError(
                f"socket directory {directory!r} lies in {parent!r}, which another user"
                " could change; choose a directory under one that only you or root can write"
            )
        if parent == "/":
            return
        parent = os.path.dirname(parent)


def _sender_uid(ancillary) -> Optional[int]:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            if len(data) >= _CREDENTIALS.size:
                return _CREDENTIALS.unpack_from(data)[1]
    return None


def preview(data: bytes, limit: int = 80) -> str:
    """A short, printable start of a datagram for a log line."""
    text = repr(data[:limit])
    return text + ("..." if len(data) > limit else "")
