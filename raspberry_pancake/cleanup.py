"""Deleting old recordings without ever deleting the wrong thing.

The ``util/limit_*.py`` scripts are thin front ends to this module. Whatever the
policy (a number of files, a total size, a number of days, a free-space floor),
the same safety rules apply, because a cleanup job runs unattended for months:

* only regular files whose names are recordings (``YYYYMMDD-hhmm`` or
  ``YYYYMMDD-hhmmss``, an optional ``-N`` or ``_N`` suffix, then ``.h264`` or
  ``.mp4``) are ever deleted, and their timestamp files (the same name with
  ``.pts``, written by pancake beside each ``.h264``): a ``.pts`` goes with its
  recording, right after it, and never alone while the recording exists; one
  whose recording is gone (an orphan) is deleted too;
* symbolic links are never followed and never deleted. Below the directory named
  on the command line, every folder is opened with ``O_NOFOLLOW`` relative to its
  parent's descriptor, and files are examined and unlinked relative to their
  folder's descriptor: a folder swapped for a link while the script runs leads
  nowhere, even when root runs it over a tree another user can write;
* a file modified in the last minute may still be being written, so it is kept;
* a dry run reports what would go and touches nothing;
* every deletion is one log line.

"Oldest" means the earliest timestamp in the name, ties broken by mtime: the name
is what the recorder promised, while mtimes change when files are copied.
"""

from __future__ import annotations

import datetime
import errno
import logging
import os
import re
import stat
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple, TypeVar

from .exc import ConfigError
from .messages import recording_time

logger = logging.getLogger(__name__)

#: A file modified less than this many seconds ago is never deleted.
FRESH_SECONDS = 60.0

_SIZE = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?:(?P<unit>[KMGT])(?:I?B)?)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SUBFOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_Limit = TypeVar("_Limit")


def parse_size(text: str) -> int:
    """Bytes from '1048576', '500M', '2G', '1.5T' (K/M/G/T are powers of 1024)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"{text!r} is not a size (examples: 1048576, 500M, 2G)")
    unit = (match.group("unit") or "").upper()
    return int(float(match.group("number")) * _UNITS[unit])


def parse_count(text: str) -> int:
    """A whole number of zero or more (files or days to keep)."""
    if not text.isdigit():
        raise ConfigError(f"{text!r} is not a whole number of zero or more")
    return int(text)


def format_size(size: int) -> str:
    """A short human reading of a byte count, for log lines."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def existing_directory(path: str) -> str:
    """Check a directory named on the command line (following it if it is a link)."""
    if not os.path.isdir(path):
        raise ConfigError(f"{path}: no such directory")
    return path


def parse_pairs(
    words: Sequence[str], parse_limit: Callable[[str], _Limit]
) -> List[Tuple[str, _Limit]]:
    """Split ``dir LIMIT [dir LIMIT ...]`` into checked (directory, limit) pairs."""
    if not words or len(words) % 2:
        raise ConfigError("expected pairs of a directory and a limit, e.g. 'h264 100 mp4 100'")
    pairs = []
    for directory, limit in zip(words[::2], words[1::2]):
        pairs.append((existing_directory(directory), parse_limit(limit)))
    return pairs


def open_folder(top: str, folders: Sequence[str] = ()) -> int:
    """A descriptor of ``top/folders...``; below ``top`` no link is followed.

    ``top`` itself is the user's choice and may be a link. Raises ``OSError``
    (``ELOOP`` or ``ENOTDIR`` when a folder on the way is a link).
    """
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in folders:
            sub = os.open(name, _SUBFOLDER_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = sub
    except BaseException:
        os.close(fd)
        raise
    return fd


def _join(top: str, folders: Sequence[str], name: str = "") -> str:
    return os.path.join(top, *folders, name) if name else os.path.join(top, *folders)


@dataclass(frozen=True)
class Recording:
    """One recording file found on disk, with what ordering and deletion need."""

    top: str
    #: Subfolders from ``top`` down to the file's folder.
    folders: Tuple[str, ...]
    name: str
    started: datetime.datetime
    mtime: float
    size: int
    #: What deleting it would give back: allocated bytes, or 0 if other hard links remain.
    frees: int
    #: (device, inode) when found: a file put in its place since is not deleted.
    identity: Tuple[int, int]
    #: The name of its timestamp file, for an .h264 that has one: deleted with it.
    timestamps: Optional[str] = None

    @property
    def path(self) -> str:
        return _join(self.top, self.folders, self.name)

    @property
    def age_key(self) -> Tuple[datetime.datetime, float, str]:
        return (self.started, self.mtime, self.path)


@dataclass(frozen=True)
class OrphanTimestamps:
    """A timestamp file found without the ``.h264`` it belongs to."""

    top: str
    folders: Tuple[str, ...]
    name: str
    identity: Tuple[int, int]

    @property
    def path(self) -> str:
        return _join(self.top, self.folders, self.name)

    @property
    def recording_name(self) -> str:
        return _recording_of(self.name)


TIMESTAMPS_EXTENSION = ".pts"


def _recording_of(timestamps_file: str) -> str:
    """``20200623-1715.pts`` -> ``20200623-1715.h264``."""
    return timestamps_file[: -len(TIMESTAMPS_EXTENSION)] + ".h264"


def timestamps_name(recording_name: str) -> Optional[str]:
    """The name of the timestamp file an ``.h264`` recording may have beside it."""
    if not recording_name.endswith(".h264"):
        return None
    return recording_name[: -len(".h264")] + TIMESTAMPS_EXTENSION


def _scan(
    top: str,
    folders: Tuple[str, ...],
    fd: int,
    recursive: bool,
    found: List[Recording],
    orphans: Optional[List[OrphanTimestamps]] = None,
) -> None:
    """Add the recordings in the folder open as ``fd`` (and below, if ``recursive``),
    each with its timestamp file; and to ``orphans``, timestamp files without one."""
    try:
        names = sorted(entry.name for entry in os.scandir(fd))
    except OSError as e:
        logger.warning("cannot read %s: %s", _join(top, folders), e.strerror)
        return
    timestamp_files = {}
    for name in names:
        if name.endswith(TIMESTAMPS_EXTENSION) and recording_time(_recording_of(name)):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                timestamp_files[name] = st
    for name in names:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:  # gone between listing and looking
            continue
        except OSError as e:
            logger.warning("cannot inspect %s: %s", _join(top, folders, name), e.strerror)
            continue
        if stat.S_ISDIR(st.st_mode):
            if not recursive:
                continue
            try:
                sub = os.open(name, _SUBFOLDER_FLAGS, dir_fd=fd)
            except OSError:  # replaced by a link (or gone) since it was looked at
                continue
            try:
                _scan(top, folders + (name,), sub, recursive, found, orphans)
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            started = recording_time(name)
            if started is not None:
                size, frees = st.st_size, _frees(st)
                pts = timestamps_name(name)
                pts_st = timestamp_files.pop(pts, None)
                if pts_st is None:
                    pts = None
                else:  # the pair goes together, so it counts together
                    size, frees = size + pts_st.st_size, frees + _frees(pts_st)
                found.append(
                    Recording(
                        top, folders, name, started, st.st_mtime, size, frees,
                        (st.st_dev, st.st_ino), pts,
                    )
                )  # fmt: skip
    if orphans is not None:
        for name, st in sorted(timestamp_files.items()):
            if _recording_of(name) not in names:
                orphans.append(OrphanTimestamps(top, folders, name, (st.st_dev, st.st_ino)))


def _frees(st: os.stat_result) -> int:
    """What deleting a file gives back: its blocks, or nothing if other links remain."""
    return st.st_blocks * 512 if st.st_nlink == 1 else 0


def find_recordings(
    directory: str, recursive: bool = False, folders: Sequence[str] = ()
) -> List[Recording]:
    """Recordings in ``directory/folders...`` (and below it if ``recursive``), oldest first.

    Links to files are skipped and links to directories are never entered.
    """
    found: List[Recording] = []
    _scan_from(directory, folders, recursive, found, None)
    found.sort(key=lambda r: r.age_key)
    return found


def find_orphan_timestamps(
    directory: str, recursive: bool = False, folders: Sequence[str] = ()
) -> List[OrphanTimestamps]:
    """Timestamp files in ``directory/folders...`` (and below) without their ``.h264``."""
    orphans: List[OrphanTimestamps] = []
    _scan_from(directory, folders, recursive, [], orphans)
    return orphans


def _scan_from(directory, folders, recursive, found, orphans) -> None:
    try:
        fd = open_folder(directory, folders)
    except OSError as e:
        logger.warning("cannot read %s: %s", _join(directory, folders), e.strerror)
        return
    try:
        _scan(directory, tuple(folders), fd, recursive, found, orphans)
    finally:
        os.close(fd)


def free_bytes(path: str) -> int:
    """Bytes an unprivileged user may still write on the file system holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * (st.f_frsize or st.f_bsize)


class Deleter:
    """Deletes recordings and empty folders, or only reports them in a dry run.

    Used from the main thread of a cleanup script. Remembers what it removed (or
    would have removed) so that a dry run can tell which folders would end empty.
    """

    def __init__(self, dry_run: bool = False, fresh_seconds: float = FRESH_SECONDS):
        self.dry_run = dry_run
        self.fresh_seconds = fresh_seconds
        self.failures = 0
        self.deleted = 0
        self.freed = 0
        self.gone: Set[str] = set()

    def delete(self, recording: Recording) -> bool:
        """Delete one recording if it is still the regular, settled file found; True if it went."""
        return self._in_folder(recording, lambda fd: self._delete_in(fd, recording))

    def delete_orphan(self, orphan: OrphanTimestamps) -> bool:
        """Delete a timestamp file whose recording is still gone, once it has settled."""
        return self._in_folder(orphan, lambda fd: self._delete_orphan_in(fd, orphan))

    def _in_folder(self, found, act: Callable[[int], bool]) -> bool:
        """``act(fd)`` on the folder of ``found`` (a Recording or an orphan), opened safely."""
        try:
            fd = open_folder(found.top, found.folders)
        except OSError as e:
            return self._cannot_open(_join(found.top, found.folders), found.path, e)
        try:
            return act(fd)
        finally:
            os.close(fd)

    def _delete_in(self, fd: int, recording: Recording) -> bool:
        path, name = recording.path, recording.name
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            logger.info("%s: already gone", path)
            return False
        except OSError as e:
            logger.error("cannot inspect %s: %s", path, e.strerror)
            self.failures += 1
            return False
        if not stat.S_ISREG(st.st_mode):
            logger.warning("keeping %s: no longer a regular file", path)
            return False
        if (st.st_dev, st.st_ino) != recording.identity:
            logger.warning("keeping %s: another file took its place", path)
            return False
        if self._fresh(path, st):
            return False
        if not self._unlink_in(fd, name, path, st.st_size):
            return False
        self.deleted += 1
        self.freed += recording.frees
        self.gone.add(path)
        if recording.timestamps is not None:
            # after the recording, so a failure in between leaves an orphan, never a
            # recording without its timestamps
            pts_path = _join(recording.top, recording.folders, recording.timestamps)
            try:
                pts = os.stat(recording.timestamps, dir_fd=fd, follow_symlinks=False)
            except OSError:
                pts = None
            if pts is not None and stat.S_ISREG(pts.st_mode):
                if self._unlink_in(fd, recording.timestamps, pts_path, pts.st_size):
                    self.gone.add(pts_path)
        return True

    def _delete_orphan_in(self, fd: int, orphan: OrphanTimestamps) -> bool:
        path = orphan.path
        try:
            st = os.stat(orphan.name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != orphan.identity:
            return False
        recording = _join(orphan.top, orphan.folders, orphan.recording_name)
        if recording not in self.gone:
            try:
                os.stat(orphan.recording_name, dir_fd=fd, follow_symlinks=False)
                return False  # a recording of that name is there (again)
            except FileNotFoundError:
                pass
            except OSError:
                return False
        if self._fresh(path, st):
            return False
        logger.info("%s has no recording beside it", path)
        if not self._unlink_in(fd, orphan.name, path, st.st_size):
            return False
        self.gone.add(path)
        return True

    def _fresh(self, path: str, st: os.stat_result) -> bool:
        """Whether a file was modified too recently to delete (and say so)."""
        age = time.time() - st.st_mtime
        if age < self.fresh_seconds:
            logger.info("keeping %s: modified %.0f s ago, it may still be written", path, age)
            return True
        return False

    def _unlink_in(self, fd: int, name: str, path: str, size: int) -> bool:
        """Delete ``name`` from the folder open as ``fd`` (or, in a dry run, say so)."""
        if self.dry_run:
            logger.info("would delete %s (%s)", path, format_size(size))
            return True
        try:
            os.unlink(name, dir_fd=fd)
        except OSError as e:
            logger.error("cannot delete %s: %s", path, e.strerror)
            self.failures += 1
            return False
        logger.info("deleted %s (%s)", path, format_size(size))
        return True

    def _cannot_open(self, folder: str, path: str, error: OSError) -> bool:
        if error.errno == errno.ENOENT:
            logger.info("%s: already gone", path)
        elif error.errno in (errno.ELOOP, errno.ENOTDIR):
            logger.warning("keeping %s: %s is no longer a real folder", path, folder)
        else:
            logger.error("cannot open %s: %s", folder, error.strerror)
            self.failures += 1
        return False

    def left_in(self, top: str, folders: Sequence[str]) -> Optional[List[str]]:
        """Names in the folder besides what we removed; None if it cannot be read."""
        folder = _join(top, folders)
        try:
            fd = open_folder(top, folders)
            try:
                names = os.listdir(fd)
            finally:
                os.close(fd)
        except OSError as e:
            logger.warning("cannot read %s: %s", folder, e.strerror)
            return None
        return sorted(n for n in names if os.path.join(folder, n) not in self.gone)

    def remove_folder(self, top: str, folders: Sequence[str]) -> bool:
        """Remove a folder that is (or in a dry run would be) empty; never a link."""
        folder = _join(top, folders)
        if self.dry_run:
            logger.info("would remove folder %s", folder)
        else:
            try:
                parent = open_folder(top, folders[:-1])
                try:
                    os.rmdir(folders[-1], dir_fd=parent)
                finally:
                    os.close(parent)
            except OSError as e:
                logger.error("cannot remove folder %s: %s", folder, e.strerror)
                self.failures += 1
                return False
            logger.info("removed folder %s", folder)
        self.gone.add(folder)
        return True


def _delete_oldest(recordings: Sequence[Recording], deleter: Deleter) -> None:
    for recording in sorted(recordings, key=lambda r: r.age_key):
        deleter.delete(recording)


def delete_orphans(
    directory: str, deleter: Deleter, recursive: bool = False, folders: Sequence[str] = ()
) -> None:
    """Delete the timestamp files left without their recording."""
    for orphan in find_orphan_timestamps(directory, recursive, folders):
        deleter.delete_orphan(orphan)


def limit_by_number(directory: str, keep: int, deleter: Deleter, recursive: bool = False):
    """Keep the newest ``keep`` recordings of ``directory``; delete the older ones."""
    recordings = find_recordings(directory, recursive)
    excess = recordings[: max(len(recordings) - keep, 0)]
    logger.info(
        "%s: %d recordings, keeping the newest %d, %d older to go",
        directory,
        len(recordings),
        keep,
        len(excess),
    )
    _delete_oldest(excess, deleter)
    delete_orphans(directory, deleter, recursive)


def limit_by_size(directory: str, max_bytes: int, deleter: Deleter, recursive: bool = False):
    """Keep the newest recordings whose sizes add up to at most ``max_bytes``."""
    recordings = find_recordings(directory, recursive)
    total = 0
    cut = 0
    for index in range(len(recordings) - 1, -1, -1):
        total += recordings[index].size
        if total > max_bytes:
            cut = index + 1
            break
    excess = recordings[:cut]
    logger.info(
        "%s: %d recordings, %s in all, limit %s, %d older to go",
        directory,
        len(recordings),
        format_size(sum(r.size for r in recordings)),
        format_size(max_bytes),
        len(excess),
    )
    _delete_oldest(excess, deleter)
    delete_orphans(directory, deleter, recursive)


def limit_free_space(
    directories: Sequence[str], min_free: int, deleter: Deleter, recursive: bool = False
) -> bool:
    """Delete the oldest recordings until each file system has ``min_free`` bytes free.

    Directories on the same file system share one pool of candidates, oldest first.
    Returns False if a target could not be reached.
    """
    by_device: Dict[int, List[str]] = {}
    for directory in directories:
        by_device.setdefault(os.stat(directory).st_dev, []).append(directory)
    results = [_free_up(group, min_free, deleter, recursive) for group in by_device.values()]
    return all(results)


def _free_up(group: Sequence[str], min_free: int, deleter: Deleter, recursive: bool) -> bool:
    """Free space on the one file system holding all of ``group``.

    Space counts as freed once a file is deleted even if ``statvfs`` does not show
    it yet (another process may still hold the file open), so a lagging kernel
    figure never makes this delete more than needed.
    """
    where = ", ".join(group)
    for directory in group:
        delete_orphans(directory, deleter, recursive)
    start = free_bytes(group[0])
    if start >= min_free:
        logger.info("%s: %s free, %s wanted", where, format_size(start), format_size(min_free))
        return True
    recordings = sorted(
        (r for directory in group for r in find_recordings(directory, recursive)),
        key=lambda r: r.age_key,
    )
    logger.info(
        "%s: %s free, %s wanted, %d recordings to choose from",
        where,
        format_size(start),
        format_size(min_free),
        len(recordings),
    )
    freed_before = deleter.freed

    def free_now() -> int:
        estimate = start + deleter.freed - freed_before
        return estimate if deleter.dry_run else max(free_bytes(group[0]), estimate)

    for recording in recordings:
        if free_now() >= min_free:
            break
        deleter.delete(recording)
    if free_now() >= min_free:
        return True
    logger.warning(
        "%s: only %s free after deleting what may be deleted, %s wanted",
        where,
        format_size(free_now()),
        format_size(min_free),
    )
    return False


_YEAR = re.compile(r"\d{4}")
_TWO_DIGITS = re.compile(r"\d{2}")


def _subfolders(top: str, folders: Tuple[str, ...], pattern: re.Pattern) -> List[Tuple[str, ...]]:
    """Real (not linked) subfolders of ``top/folders...`` whose names match ``pattern``."""
    try:
        fd = open_folder(top, folders)
    except OSError as e:
        logger.warning("cannot read %s: %s", _join(top, folders), e.strerror)
        return []
    try:
        entries = list(os.scandir(fd))
    except OSError as e:
        logger.warning("cannot read %s: %s", _join(top, folders), e.strerror)
        return []
    finally:
        os.close(fd)
    return sorted(
        folders + (e.name,)
        for e in entries
        if pattern.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
    )


def find_day_folders(top: str) -> List[Tuple[datetime.date, Tuple[str, str, str]]]:
    """The ``YYYY/MM/DD`` folders under ``top`` as (date, (YYYY, MM, DD)), oldest first.

    Links are not entered.
    """
    days = []
    for year in _subfolders(top, (), _YEAR):
        for month in _subfolders(top, year, _TWO_DIGITS):
            for day in _subfolders(top, month, _TWO_DIGITS):
                try:
                    date = datetime.date(*(int(p) for p in day))
                except ValueError:
                    continue
                days.append((date, day))
    days.sort()
    return days


def limit_days(top: str, keep: int, deleter: Deleter) -> None:
    """Keep the newest ``keep`` day folders of a ``YYYY/MM/DD`` tree under ``top``.

    In an older day folder only recordings are deleted; a folder that still holds
    anything else is kept (and said so). Month and year folders left empty go too.
    """
    days = find_day_folders(top)
    old = days[: max(len(days) - keep, 0)]
    logger.info(
        "%s: %d day folders, keeping the newest %d, %d older to go", top, len(days), keep, len(old)
    )
    touched_months = []
    for _, day in old:
        for recording in find_recordings(top, folders=day):
            deleter.delete(recording)
        delete_orphans(top, deleter, folders=day)
        left = deleter.left_in(top, day)
        if left == []:
            if deleter.remove_folder(top, day):
                touched_months.append(day[:2])
        elif left:
            logger.info(
                "keeping folder %s: it still holds %s",
                _join(top, day),
                ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else ""),
            )
    for parents in (touched_months, [m[:1] for m in touched_months]):
        for folders in sorted(set(parents)):
            if _join(top, folders) not in deleter.gone and deleter.left_in(top, folders) == []:
                deleter.remove_folder(top, folders)
