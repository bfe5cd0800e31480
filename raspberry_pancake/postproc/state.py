"""The durable record of accepted work, in one small SQLite file.

Every state change is its own committed transaction, so a ``kill -9`` at any moment
leaves either the old or the new state. Work items are removed only after they are
done; a repeated item after a crash is harmless because every step is idempotent
(a conversion rewrites the same mp4 name, an upload overwrites the same remote name).

A full disk must not cost accepted work. On a Pi the state file usually shares the
SD card with the recordings, which fill it. So the file keeps a reserve of free
pages inside itself (written once, then left free), and the rollback journal is
kept between transactions (``journal_mode=PERSIST``) instead of being created and
deleted each time: on a full file system, new rows go into space the file already
owns. Only when the reserve is used up does a write fail, as ``StateFullError``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ..exc import StateFullError

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    h264 TEXT NOT NULL,
    detection INTEGER,              -- NULL: plain recording; 0/1: an edge clip
    accepted REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS accepted (
    h264 TEXT NOT NULL,
    identity TEXT NOT NULL,         -- device, inode and mtime of the file when accepted
    at REAL NOT NULL,
    PRIMARY KEY (h264, identity)
);
CREATE TABLE IF NOT EXISTS uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    mp4 TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    UNIQUE (destination, mp4)
);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    text TEXT NOT NULL,
    video TEXT                      -- mp4 to send, or NULL for a plain message
);
CREATE TABLE IF NOT EXISTS reserve (filler BLOB);
"""

#: Free pages the file keeps for a full disk: 64 pages of 4 KiB hold about 2,000 rows.
RESERVE_PAGES = 64
#: The reserve is only refilled when the file system has this many times its size
#: free, so that refilling never takes the last free blocks from the recorder.
RESERVE_REFILL_ROOM = 4
#: How long a path is remembered as accepted, to ignore repeated messages for it.
ACCEPTED_MEMORY_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Conversion:
    """An accepted h264 file not converted yet (a row; values are safe to share)."""

    id: int
    h264: str
    detection: Optional[bool]


@dataclass(frozen=True)
class Upload:
    """One mp4 waiting for one destination; ``next_try`` is a wall-clock time (0: now)."""

    id: int
    destination: str
    mp4: str
    attempts: int
    next_try: float = 0.0


@dataclass(frozen=True)
class Notification:
    """One message or video waiting for one Telegram chat."""

    id: int
    target: str
    text: str
    video: Optional[str]


@dataclass(frozen=True)
class Note:
    """A notification to queue: ``text``, and the ``video`` to send with it if any."""

    target: str
    text: str
    video: Optional[str] = None


@dataclass(frozen=True)
class FollowUps:
    """What a finished conversion queues: the mp4's uploads and the notifications.

    A queue that already holds its limit (``upload_limit`` per destination,
    ``notify_limit`` per chat) gets nothing.
    """

    mp4: Optional[str]  # None: the conversion failed, nothing is uploaded
    destinations: Tuple[str, ...] = ()
    upload_limit: int = 0
    notes: Tuple[Note, ...] = ()
    notify_limit: int = 0


@dataclass(frozen=True)
class Outcome:
    """What finishing a conversion queued, and what the queue bounds dropped."""

    uploads_dropped: Tuple[str, ...]
    notifications_dropped: Tuple[str, ...]


def _is_full(error: sqlite3.Error) -> bool:
    # Python 3.11 has sqlite_errorcode (13 is SQLITE_FULL); 3.9 only has the text.
    return getattr(error, "sqlite_errorcode", None) == 13 or "is full" in str(error)


class StateStore:
    """SQLite-backed queues of conversions, uploads and notifications.

    Called from the main thread (new work) and from every worker thread; ``_lock``
    serialises use of the one connection.
    """

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()  # guards self._db (one connection, many threads)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=PERSIST")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._migrate()
            with self._lock:
                self._forget_old_acceptances()
            self.keep_reserve()
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        """Add the columns a state file written by an older version lacks."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(uploads)")}
        if "next_try" not in columns:
            self._db.execute("ALTER TABLE uploads ADD COLUMN next_try REAL NOT NULL DEFAULT 0")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self):
        # Caller holds self._lock. Explicit BEGIN/COMMIT: the connection is in
        # autocommit mode so that PRAGMAs and reads never open a transaction.
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            finally:
                # SQLite itself rolls back after some errors (a full disk is one).
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
        except sqlite3.OperationalError as e:
            if _is_full(e):
                raise StateFullError(f"state file {self.path}: the disk is full") from None
            raise

    # -- the reserve for a full disk -----------------------------------------------

    def keep_reserve(self) -> None:
        """Make sure the file holds its reserve of free pages; refill it if room allows.

        Called at start and now and then from the main thread. Never raises for a
        full disk: the reserve is refilled on a later call.
        """
        with self._lock:
            free_pages = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            if free_pages >= RESERVE_PAGES // 2:
                return
            page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
            wanted = (RESERVE_PAGES - free_pages) * page_size
            try:
                st = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
                if st.f_bavail * st.f_frsize < wanted * RESERVE_REFILL_ROOM:
                    return
                # Two transactions: the second (freeing the pages) also grows the
                # kept journal to a size later transactions reuse.
                with self._transaction():
                    self._db.execute("INSERT INTO reserve VALUES (zeroblob(?))", (wanted,))
                with self._transaction():
                    self._db.execute("DELETE FROM reserve")
            except (OSError, sqlite3.Error) as e:
                logger.warning("could not refill the state file's reserve: %s", e)
                return
            logger.debug("state file reserve refilled (%s bytes)", wanted)

    # -- conversions -------------------------------------------------------------

    def add_conversion(
        self, h264: str, detection: Optional[bool], identity: str = ""
    ) -> Optional[int]:
        """Queue a conversion; None if this file (path and identity) was accepted before."""
        now = time.time()
        with self._lock, self._transaction():
            cur = self._db.execute(
                "INSERT OR IGNORE INTO accepted (h264, identity, at) VALUES (?, ?, ?)",
                (h264, identity, now),
            )
            if cur.rowcount == 0:
                return None
            cur = self._db.execute(
                "INSERT INTO conversions (h264, detection, accepted) VALUES (?, ?, ?)",
                (h264, None if detection is None else int(detection), now),
            )
            return cur.lastrowid

    def _forget_old_acceptances(self) -> None:
        # Caller holds self._lock.
        try:
            with self._transaction():
                self._db.execute(
                    "DELETE FROM accepted WHERE at < ?", (time.time() - ACCEPTED_MEMORY_SECONDS,)
                )
        except StateFullError:
            pass  # the next start tries again

    def pending_conversions(self) -> List[Conversion]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, h264, detection FROM conversions ORDER BY id"
            ).fetchall()
        return [Conversion(i, h, None if d is None else bool(d)) for i, h, d in rows]

    def finish_conversion(self, conversion_id: int, follow_ups: FollowUps) -> Outcome:
        """Atomically retire a conversion and queue what follows it.

        A destination or chat whose queue is at its limit is named in the outcome.
        """
        dropped_up, dropped_note = [], []
        mp4 = follow_ups.mp4
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM conversions WHERE id = ?", (conversion_id,))
            if mp4 is not None:
                for dest in follow_ups.destinations:
                    if self._count("uploads", "destination", dest) >= follow_ups.upload_limit:
                        dropped_up.append(dest)
                        continue
                    self._db.execute(
                        "INSERT OR IGNORE INTO uploads (destination, mp4) VALUES (?, ?)",
                        (dest, mp4),
                    )
            for note in follow_ups.notes:
                if self._count("notifications", "target", note.target) >= follow_ups.notify_limit:
                    dropped_note.append(note.target)
                    continue
                self._db.execute(
                    "INSERT INTO notifications (target, text, video) VALUES (?, ?, ?)",
                    (note.target, note.text, note.video),
                )
        return Outcome(tuple(dropped_up), tuple(dropped_note))

    # -- uploads -----------------------------------------------------------------

    def pending_uploads(self, destination: str) -> List[Upload]:
        """Every upload waiting for ``destination``, due or not, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, destination, mp4, attempts, next_try FROM uploads"
                " WHERE destination = ? ORDER BY id",
                (destination,),
            ).fetchall()
        return [Upload(*row) for row in rows]

    def upload_counts(self) -> Dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT destination, COUNT(*) FROM uploads GROUP BY destination"
            ).fetchall()
        return dict(rows)

    def upload_done(self, upload_id: int) -> None:
        """Remove an upload that succeeded, or that is given up."""
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))

    def upload_failed(self, upload_id: int, next_try: float, counted: bool = True) -> None:
        """Try again at ``next_try``; ``counted`` adds the failure to the file's attempts."""
        with self._lock, self._transaction():
            self._db.execute(
                "UPDATE uploads SET attempts = attempts + ?, next_try = ? WHERE id = ?",
                (1 if counted else 0, next_try, upload_id),
            )

    # -- notifications -----------------------------------------------------------

    def add_notification(self, target: str, text: str, limit: int) -> bool:
        """Queue a plain message; False if the target's queue is full."""
        with self._lock, self._transaction():
            if self._count("notifications", "target", target) >= limit:
                return False
            self._db.execute(
                "INSERT INTO notifications (target, text, video) VALUES (?, ?, NULL)",
                (target, text),
            )
            return True

    def next_notification(self, target: str) -> Optional[Notification]:
        with self._lock:
            row = self._db.execute(
                "SELECT id, target, text, video FROM notifications"
                " WHERE target = ? ORDER BY id LIMIT 1",
                (target,),
            ).fetchone()
        return Notification(*row) if row else None

    def notification_done(self, notification_id: int) -> None:
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM notifications WHERE id = ?", (notification_id,))

    def _count(self, table: str, column: str, value: str) -> int:
        # Caller holds self._lock; table and column are our own constants.
        return self._db.execute(
            f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (value,)
        ).fetchone()[0]
