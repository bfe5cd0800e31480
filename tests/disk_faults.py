"""Real disk faults for tests: a small tmpfs, an ext4 file system on a loop device,
fsfreeze, a cgroup v1 blkio throttle, and a "power cut" snapshot of a loop device.

Every mount point lives under the test's tmp_path and every cgroup has a unique
name; each context manager undoes what it did even when the test fails (a frozen
file system is thawed first, or it could not be unmounted). They need root and
skip the test otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid

import pytest

BLKIO = "/sys/fs/cgroup/blkio"


def need_root(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mount, losetup, fsfreeze, cgroups)")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout


@contextlib.contextmanager
def tmpfs(mountpoint, size: str):
    """A tmpfs of ``size`` (e.g. "4m") mounted at ``mountpoint`` (created)."""
    need_root("mount", "umount")
    os.makedirs(mountpoint, exist_ok=True)
    run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mountpoint))
    try:
        yield str(mountpoint)
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, timeout=60)


def fill(directory, name: str = "filler", leave: int = 0) -> str:
    """Fill the file system of ``directory`` with one file, leaving about ``leave`` bytes."""
    path = os.path.join(str(directory), name)
    with open(path, "wb") as f:
        chunk = b"\0" * 65536
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    if leave:
        os.truncate(path, max(os.path.getsize(path) - leave, 0))
    return path


@contextlib.contextmanager
def loop_ext4(workdir, size_mib: int = 64):
    """An ext4 file system in an image file, on a loop device, mounted under ``workdir``.

    Yields ``(mountpoint, device, image)``.
    """
    need_root("losetup", "mkfs.ext4", "mount", "umount")
    os.makedirs(workdir, exist_ok=True)
    image = os.path.join(str(workdir), "disk.img")
    mountpoint = os.path.join(str(workdir), "mnt")
    os.makedirs(mountpoint, exist_ok=True)
    with open(image, "wb") as f:
        f.truncate(size_mib * 2**20)
    device = run("losetup", "--find", "--show", image).strip()
    mounted = False
    try:
        run("mkfs.ext4", "-q", "-F", device)
        run("mount", device, mountpoint)
        mounted = True
        yield mountpoint, device, image
    finally:
        # a frozen file system can be neither unmounted nor detached
        subprocess.run(["fsfreeze", "-u", mountpoint], check=False, capture_output=True)
        if mounted:
            subprocess.run(["umount", mountpoint], check=False, timeout=120)
        subprocess.run(["losetup", "-d", device], check=False, timeout=60)


@contextlib.contextmanager
def frozen(mountpoint):
    """fsfreeze the file system at ``mountpoint``; thawed on exit whatever happens."""
    need_root("fsfreeze")
    run("fsfreeze", "-f", str(mountpoint))
    try:
        yield
    finally:
        subprocess.run(["fsfreeze", "-u", str(mountpoint)], check=False, capture_output=True)


@contextlib.contextmanager
def blkio_throttle(device: str, write_bps: int):
    """A cgroup v1 blkio group limiting writes to ``device``; yields its cgroup.procs path.

    Buffered writes are not throttled by cgroup v1, but the write-back an fdatasync
    starts is: exactly what a slow SD card does to a recorder that syncs.
    """
    if not os.path.isdir(BLKIO):
        pytest.skip("needs the cgroup v1 blkio controller")
    major_minor = run("lsblk", "-dno", "MAJ:MIN", device).strip()
    group = os.path.join(BLKIO, f"rp-test-{uuid.uuid4().hex[:12]}")
    os.mkdir(group)
    limit = os.path.join(group, "blkio.throttle.write_bps_device")
    try:
        with open(limit, "w") as f:
            f.write(f"{major_minor} {write_bps}\n")
        yield os.path.join(group, "cgroup.procs")
    finally:
        # lift the limit first: a process stuck in a sync behind it can then end
        with contextlib.suppress(OSError), open(limit, "w") as f:
            f.write(f"{major_minor} 0\n")
        # the processes moved there have normally exited by now; move stragglers out
        try:
            with open(os.path.join(group, "cgroup.procs")) as f:
                left = f.read().split()
            for pid in left:
                with open(os.path.join(BLKIO, "cgroup.procs"), "w") as f:
                    f.write(pid)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            os.rmdir(group)


def snapshot(image: str, copy: str) -> None:
    """What a power cut would leave of a loop device: its image as the device has it now.

    Only what the file system has sent to the device is in the image; data still
    in the page cache of the file system on top is not. The copy is then repaired
    (journal replayed) as a boot after a power cut would.
    """
    need_root("e2fsck")
    shutil.copyfile(image, copy)
    result = subprocess.run(["e2fsck", "-fy", copy], capture_output=True, text=True, timeout=120)
    # 0: clean, 1: errors corrected (a replayed journal); more is a broken file system
    assert result.returncode in (0, 1), result.stdout + result.stderr


@contextlib.contextmanager
def mounted_image(image: str, mountpoint):
    """Mount a file system image through a loop device of its own."""
    need_root("losetup", "mount", "umount")
    os.makedirs(mountpoint, exist_ok=True)
    device = run("losetup", "--find", "--show", image).strip()
    mounted = False
    try:
        run("mount", device, str(mountpoint))
        mounted = True
        yield str(mountpoint)
    finally:
        if mounted:
            subprocess.run(["umount", str(mountpoint)], check=False, timeout=120)
        subprocess.run(["losetup", "-d", device], check=False, timeout=60)
