"""The post-processor's end of the datagram protocol.

Binds the abstract name (which doubles as a lock: a second post-processor with the
same name cannot start), asks the kernel for each sender's credentials, and turns
datagrams into checked messages. Anything else is logged with its reason and dropped.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import struct
from typing import Optional

from .. import messages
from ..exc import AddressInUseError, ProtocolError

logger = logging.getLogger(__name__)

_CREDENTIALS = struct.Struct("iII")  # struct ucred: pid, uid, gid
_ANCILLARY_SPACE = socket.CMSG_SPACE(_CREDENTIALS.size)


def check_h264_path(path: str) -> None:
    """Raise ``ProtocolError`` unless ``path`` is an absolute path to a regular .h264 file."""
    if not os.path.isabs(path):
        raise ProtocolError(f"'h264' path is not absolute: {path!r}")
    if not path.endswith(".h264"):
        raise ProtocolError(f"'h264' path does not end in .h264: {path!r}")
    try:
        st = os.stat(path)
    except OSError as e:
        raise ProtocolError(f"'h264' file {path!r}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ProtocolError(f"'h264' path is not a regular file: {path!r}")


class Receiver:
    """The bound socket; ``receive`` is called from the main thread only."""

    def __init__(self, socket_name: str):
        self.socket_name = socket_name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # Before bind: the kernel attaches credentials only if the flag is already set
        # when a datagram is sent to us.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        try:
            self.sock.bind(messages.abstract_address(socket_name))
        except OSError as e:
            self.sock.close()
            if e.errno == errno.EADDRINUSE:
                raise AddressInUseError(
                    f"socket name {socket_name!r} is in use (is another post-processor running?)"
                ) from None
            raise
        self.sock.setblocking(False)
        self._uid = os.getuid()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
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
            message = messages.decode(data)
            if message.h264 is not None:
                check_h264_path(message.h264)
        except ProtocolError as e:
            logger.warning("dropped a bad datagram %s: %s", _preview(data), e)
            return None
        return message


def _sender_uid(ancillary) -> Optional[int]:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            if len(data) >= _CREDENTIALS.size:
                return _CREDENTIALS.unpack_from(data)[1]
    return None


def _preview(data: bytes, limit: int = 80) -> str:
    text = repr(data[:limit])
    return text + ("..." if len(data) > limit else "")
