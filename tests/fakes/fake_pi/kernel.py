"""The kernel side of a Raspberry Pi, as far as Picamera2 reaches it from Python.

Picamera2 talks to the kernel through five standard calls: ``open()`` and
``os.open()`` on device nodes, ``os.path.exists()`` to look for them,
``fcntl.ioctl()`` and ``select.poll()``. ``Kernel.install()`` wraps those five in
this process so that the paths of the stand-in devices (``/dev/video*``,
``/dev/dma_heap/*``) reach them, and every other path, descriptor and poll goes
to the real call unchanged. Picamera2's own code runs unmodified on top.

A stand-in's file is a real descriptor (a memfd, so ``mmap``, ``dup`` and
``os.pread`` work on it as on device memory); the kernel knows a stand-in by its
file's inode, as the real one knows a device by its file, so every duplicate of
the descriptor reaches it and a descriptor number the process reuses for a real
file never does. (An inode number is only reused after every descriptor of the
memfd is closed, and only for another memfd: none but the stand-ins' here.)
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import os
import posixpath
import re
import select
import threading
import time
from collections import Counter
from typing import Callable, Dict, Optional, Tuple

#: device paths the stand-ins own: real nodes with these names are hidden
MANAGED = re.compile(r"^/dev/(video\d+|media\d+|dma_heap/.*)$")


class VirtualFile:
    """Base of an open stand-in device: one memfd, ioctls, poll readiness.

    Subclasses implement ``ioctl``; ``poll_mask`` says which of POLLIN/POLLOUT
    are ready. They call ``kernel.notify()`` whenever readiness may change.
    """

    def __init__(self, kernel: Kernel, name: str):
        self.kernel = kernel
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)

    def ioctl(self, request: int, arg):
        raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))

    def poll_mask(self) -> int:
        return 0


def os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def fault(operation: str) -> Optional[int]:
    """An errno to fail ``operation`` with, from FAKE_PI_FAULTS ("open:/dev/video11=EACCES,...")."""
    for entry in os.environ.get("FAKE_PI_FAULTS", "").split(","):
        what, _, code = entry.strip().partition("=")
        if what == operation and code:
            return getattr(errno, code)
    return None


class Kernel:
    """The stand-in devices of one process and the wrapped system calls that reach them."""

    def __init__(self, platform: str):
        self.platform = platform
        self.nodes: Dict[str, Callable[[Kernel], VirtualFile]] = {}
        # guards _files ((device, inode) -> stand-in) and opened, from any thread
        self._lock = threading.Lock()
        self._files: Dict[Tuple[int, int], VirtualFile] = {}
        #: how often each node was opened (read by the canary test)
        self.opened: Counter = Counter()
        #: notified whenever a stand-in's poll readiness may have changed
        self.changed = threading.Condition()
        self._saved = None

    # the device table

    def add_node(self, path: str, factory: Callable[[Kernel], VirtualFile]) -> None:
        self.nodes[path] = factory

    def open_node(self, path: str) -> VirtualFile:
        code = fault("open:" + path)
        if code is not None:
            raise os_error(code)
        vfile = self.nodes[path](self)
        self.register(vfile.fd, vfile)
        with self._lock:
            self.opened[path] += 1
        return vfile

    def register(self, fd: int, vfile: VirtualFile) -> None:
        stat = os.fstat(fd)
        with self._lock:
            self._files[(stat.st_dev, stat.st_ino)] = vfile

    def lookup(self, fd) -> Optional[VirtualFile]:
        """The stand-in behind a descriptor (or an object with fileno()), None for a real file."""
        try:
            stat = os.fstat(fd if isinstance(fd, int) else fd.fileno())
        except (AttributeError, ValueError, OSError):
            return None
        with self._lock:
            return self._files.get((stat.st_dev, stat.st_ino))

    def notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    # the wrapped calls

    def install(self) -> None:
        real_open, real_os_open = builtins.open, os.open
        real_exists, real_ioctl, real_poll = posixpath.exists, fcntl.ioctl, select.poll
        self._saved = (real_open, real_os_open, real_exists, real_ioctl, real_poll)
        kernel = self

        def device_path(path) -> Optional[str]:
            if isinstance(path, (str, bytes, os.PathLike)):
                text = os.fsdecode(path)
                if MANAGED.match(text):
                    return text
            return None

        def open_(file, mode="r", *args, **kwargs):
            path = device_path(file)
            if path is None:
                return real_open(file, mode, *args, **kwargs)
            if path not in kernel.nodes:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            return real_open(kernel.open_node(path).fd, mode, *args, **kwargs)

        def os_open(path, flags, mode=0o777, *, dir_fd=None):
            node = device_path(path)
            if node is None:
                return real_os_open(path, flags, mode, dir_fd=dir_fd)
            if node not in kernel.nodes:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), node)
            return kernel.open_node(node).fd

        def exists(path):
            node = device_path(path)
            return real_exists(path) if node is None else node in kernel.nodes

        def ioctl(fd, request, arg=0, mutate_flag=True):
            vfile = kernel.lookup(fd)
            if vfile is None:
                return real_ioctl(fd, request, arg, mutate_flag)
            return vfile.ioctl(request, arg)

        class KernelPoll(Poll):
            # a class, not a function: selectors.PollSelector keeps select.poll as a
            # class attribute and calls it through self, which would bind a function
            def __init__(self):
                super().__init__(kernel, real_poll())

        builtins.open, os.open, posixpath.exists = open_, os_open, exists
        fcntl.ioctl, select.poll = ioctl, KernelPoll

    def uninstall(self) -> None:
        if self._saved is None:
            return
        real_open, real_os_open, real_exists, real_ioctl, real_poll = self._saved
        builtins.open, os.open, posixpath.exists = real_open, real_os_open, real_exists
        fcntl.ioctl, select.poll = real_ioctl, real_poll
        self._saved = None


class Poll:
    """``select.poll()``: stand-in descriptors wait on the kernel, real ones on the real poll."""

    def __init__(self, kernel: Kernel, real):
        self._kernel = kernel
        self._real = real
        self._virtual: Dict[int, Tuple[VirtualFile, int]] = {}
        self._real_fds = set()

    @staticmethod
    def _fileno(fd) -> int:
        return fd if isinstance(fd, int) else fd.fileno()

    def register(self, fd, eventmask=select.POLLIN | select.POLLPRI | select.POLLOUT):
        number = self._fileno(fd)
        vfile = self._kernel.lookup(number)
        if vfile is None:
            self._real_fds.add(number)
            self._real.register(number, eventmask)
        else:
            self._virtual[number] = (vfile, eventmask)

    def modify(self, fd, eventmask):
        number = self._fileno(fd)
        if number in self._virtual:
            self._virtual[number] = (self._virtual[number][0], eventmask)
        else:
            self._real.modify(number, eventmask)

    def unregister(self, fd):
        number = self._fileno(fd)
        if self._virtual.pop(number, None) is None:
            self._real_fds.discard(number)
            self._real.unregister(number)

    def _ready(self):
        ready = []
        for number, (vfile, mask) in self._virtual.items():
            events = vfile.poll_mask() & mask
            if events:
                ready.append((number, events))
        return ready

    def poll(self, timeout=None):
        if not self._virtual:
            return self._real.poll(timeout)
        if self._real_fds:
            raise NotImplementedError("a poll mixing stand-in devices and real descriptors")
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout / 1000
        changed = self._kernel.changed
        with changed:
            while True:
                ready = self._ready()
                if ready:
                    return ready
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return []
                changed.wait(left)
