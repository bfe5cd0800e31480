"""The DMA heap (/dev/dma_heap/*) and the dma-buf descriptors it hands out.

Picamera2's DmaAllocator opens the first heap of "vidbuf_cached" and
"linux,cma" that exists, allocates each frame buffer with DMA_HEAP_IOCTL_ALLOC,
names it with DMA_BUF_SET_NAME, maps it, and brackets every CPU access with
DMA_BUF_IOCTL_SYNC. Here a buffer is a memfd of the asked size, so mapping and
reading it behave as on a Pi; the sync ioctl checks its flags and does nothing,
since this machine's memory needs no cache maintenance. Structures and ioctl
numbers are those of linux/dma-heap.h and linux/dma-buf.h.

Both Pis here have "linux,cma"; the Pi 5 also has "vidbuf_cached" (Raspberry
Pi's heap for video buffers).
"""

from __future__ import annotations

import ctypes
import errno
import os

from videodev2 import _IOW, _IOWR

from .kernel import Kernel, VirtualFile, os_error


class dma_heap_allocation_data(ctypes.Structure):
    _fields_ = [
        ("len", ctypes.c_uint64),
        ("fd", ctypes.c_uint32),
        ("fd_flags", ctypes.c_uint32),
        ("heap_flags", ctypes.c_uint64),
    ]


class dma_buf_sync(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64)]


DMA_HEAP_IOCTL_ALLOC = _IOWR("H", 0, dma_heap_allocation_data)
DMA_BUF_IOCTL_SYNC = _IOW("b", 0, dma_buf_sync)
DMA_BUF_SET_NAME = _IOW("b", 1, ctypes.c_char_p)
DMA_BUF_SYNC_RW = 3
DMA_BUF_SYNC_END = 4


class DmaBuf(VirtualFile):
    """One allocated buffer."""

    def __init__(self, kernel: Kernel, size: int):
        super().__init__(kernel, "dmabuf")
        os.ftruncate(self.fd, size)
        self.size = size
        self.name = ""

    def ioctl(self, request, arg):
        if request == DMA_BUF_IOCTL_SYNC:
            flags = dma_buf_sync.from_buffer(arg).flags
            if flags & ~(DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END) or not flags & DMA_BUF_SYNC_RW:
                raise os_error(errno.EINVAL)
            return 0
        if request == DMA_BUF_SET_NAME:
            name = arg.encode() if isinstance(arg, str) else bytes(arg)
            self.name = name.decode(errors="replace")
            return name  # what fcntl.ioctl returns for an immutable argument
        return super().ioctl(request, arg)


class DmaHeap(VirtualFile):
    """An open heap: every allocation is a new dma-buf descriptor."""

    def __init__(self, kernel: Kernel):
        super().__init__(kernel, "dma_heap")

    def ioctl(self, request, arg):
        if request != DMA_HEAP_IOCTL_ALLOC:
            return super().ioctl(request, arg)
        data = dma_heap_allocation_data.from_buffer(arg)
        if not data.len:
            raise os_error(errno.EINVAL)
        buf = DmaBuf(self.kernel, data.len)
        self.kernel.register(buf.fd, buf)
        data.fd = buf.fd
        return 0


def add_heaps(kernel: Kernel) -> None:
    kernel.add_node("/dev/dma_heap/linux,cma", DmaHeap)
    if kernel.platform == "pisp":
        kernel.add_node("/dev/dma_heap/vidbuf_cached", DmaHeap)
