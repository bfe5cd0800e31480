"""Deleting old recordings without ever deleting the wrong thing.

The ``util/limit_*.py`` scripts are thin front ends to this module. Whatever the
policy (a number of files, a total size, a number of days, a free-space floor),
the same safety rules apply, because a cleanup job runs unattended for months:

* only regular files whose names are recordings (``YYYYMMDD-hhmm`` or
  ``YYYYMMDD-hhmmss``, an optional ``-N`` or ``_N`` suffix, then ``.h264`` or
  ``.mp4``) are ever deleted;
* symbolic links are never followed and never deleted;
* a file modified in the last minute may still be being written, so it is kept;
* a dry run reports what would go and touches nothing;
* every deletion is one log line.

"Oldest" means the earliest timestamp in the name, ties broken by mtime: the name
is what the recorder promised, while mtimes change when files are copied.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import stat
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple, TypeVar

from .exc import ConfigError

logger = logging.getLogger(__name__)

#: A file modified less than this many seconds ago is never deleted.
FRESH_SECONDS = 60.0

_RECORDING_NAME = re.compile(
    r"(?P<date>\d{8})-(?P<clock>\d{4}|\d{6})(?:[-_]\d{1,9})?\.(?:h264|mp4)"
)
_SIZE = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?:(?P<unit>[KMGT])(?:I?B)?)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

_Limit = TypeVar("_Limit")


def recording_time(name: str) -> Optional[datetime.datetime]:
    """The start time encoded in a recording's file name, or None if it is not one."""
    match = _RECORDING_NAME.fullmatch(name)
    if match is None:
        return None
    date, clock = match.group("date"), match.group("clock")
    fields = [int(date[:4]), int(date[4:6]), int(date[6:])]
    fields += [int(clock[i : i + 2]) for i in range(0, len(clock), 2)]
    try:
        return datetime.datetime(*fields)
    except ValueError:  # 20201340-2599.h264 looks like a recording but is not one
        return None


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


@dataclass(frozen=True)
class Recording:
    """One recording file found on disk, with what ordering and deletion need."""

    path: str
    started: datetime.datetime
    mtime: float
    size: int
    #: What deleting it would give back: allocated bytes, or 0 if other hard links remain.
    frees: int

    @property
    def age_key(self) -> Tuple[datetime.datetime, float, str]:
        return (self.started, self.mtime, self.path)


def _recording_at(path: str) -> Optional[Recording]:
    """lstat ``path``; a Recording if it is a regular file with a recording's name."""
    started = recording_time(os.path.basename(path))
    if started is None:
        return None
    try:
        st = os.lstat(path)
    except FileNotFoundError:  # gone between listing and looking
        return None
    except OSError as e:
        logger.warning("cannot inspect %s: %s", path, e.strerror)
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    frees = st.st_blocks * 512 if st.st_nlink == 1 else 0
    return Recording(path, started, st.st_mtime, st.st_size, frees)


def find_recordings(directory: str, recursive: bool = False) -> List[Recording]:
    """Recordings in ``directory`` (and below it if ``recursive``), oldest first.

    Links to files are skipped and links to directories are never entered.
    """

    def report(error: OSError):
        logger.warning("cannot read %s: %s", error.filename, error.strerror)

    found = []
    for parent, subdirs, files in os.walk(directory, onerror=report, followlinks=False):
        for name in files:
            recording = _recording_at(os.path.join(parent, name))
            if recording is not None:
                found.append(recording)
        if not recursive:
            subdirs.clear()
    found.sort(key=lambda r: r.age_key)
    return found


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
        """Delete one recording if it is still a regular, settled file; True if it went."""
        path = recording.path
        try:
            st = os.lstat(path)
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
        age = time.time() - st.st_mtime
        if age < self.fresh_seconds:
            logger.info("keeping %s: modified %.0f s ago, it may still be written", path, age)
            return False
        if self.dry_run:
            logger.info("would delete %s (%s)", path, format_size(st.st_size))
        else:
            try:
                os.unlink(path)
            except OSError as e:
                logger.error("cannot delete %s: %s", path, e.strerror)
                self.failures += 1
                return False
            logger.info("deleted %s (%s)", path, format_size(st.st_size))
        self.deleted += 1
        self.freed += recording.frees
        self.gone.add(path)
        return True

    def left_in(self, folder: str) -> Optional[List[str]]:
        """Names in ``folder`` besides what we removed; None if it cannot be read."""
        try:
            names = os.listdir(folder)
        except OSError as e:
            logger.warning("cannot read %s: %s", folder, e.strerror)
            return None
        return sorted(n for n in names if os.path.join(folder, n) not in self.gone)

    def remove_folder(self, folder: str) -> bool:
        """Remove a folder that is (or in a dry run would be) empty."""
        if self.dry_run:
            logger.info("would remove folder %s", folder)
        else:
            try:
                os.rmdir(folder)
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


def _subfolders(folder: str, pattern: re.Pattern) -> List[str]:
    """Real (not linked) subfolders of ``folder`` whose names match ``pattern``."""
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        logger.warning("cannot read %s: %s", folder, e.strerror)
        return []
    return sorted(
        e.path for e in entries if pattern.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
    )


def find_day_folders(top: str) -> List[Tuple[datetime.date, str]]:
    """The ``YYYY/MM/DD`` folders under ``top``, oldest first; links are not entered."""
    days = []
    for year in _subfolders(top, _YEAR):
        for month in _subfolders(year, _TWO_DIGITS):
            for day in _subfolders(month, _TWO_DIGITS):
                parts = (os.path.basename(p) for p in (year, month, day))
                try:
                    date = datetime.date(*(int(p) for p in parts))
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
        for recording in find_recordings(day):
            deleter.delete(recording)
        left = deleter.left_in(day)
        if left == []:
            if deleter.remove_folder(day):
                touched_months.append(os.path.dirname(day))
        elif left:
            logger.info(
                "keeping folder %s: it still holds %s",
                day,
                ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else ""),
            )
    for parents in (touched_months, [os.path.dirname(m) for m in touched_months]):
        for folder in sorted(set(parents)):
            if folder not in deleter.gone and deleter.left_in(folder) == []:
                deleter.remove_folder(folder)
