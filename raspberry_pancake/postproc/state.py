"""The durable record of accepted work, in one small SQLite file.

Every state change is its own committed transaction, so a ``kill -9`` at any moment
leaves either the old or the new state. Work items are removed only after they are
done; a repeated item after a crash is harmless because every step is idempotent
(a conversion rewrites the same mp4 name, an upload overwrites the same remote name).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    h264 TEXT NOT NULL,
    detection INTEGER,              -- NULL: plain recording; 0/1: an edge clip
    accepted REAL NOT NULL
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
"""


@dataclass(frozen=True)
class Conversion:
    """An accepted h264 file not converted yet (a row; values are safe to share)."""

    id: int
    h264: str
    detection: Optional[bool]


@dataclass(frozen=True)
class Upload:
    """One mp4 waiting for one destination."""

    id: int
    destination: str
    mp4: str
    attempts: int


@dataclass(frozen=True)
class Notification:
    """One message or video waiting for one Telegram chat."""

    id: int
    target: str
    text: str
    video: Optional[str]


@dataclass(frozen=True)
class Outcome:
    """What finishing a conversion queued, and what the queue bounds dropped."""

    uploads_dropped: Tuple[str, ...]
    notifications_dropped: Tuple[str, ...]


class StateStore:
    """SQLite-backed queues of conversions, uploads and notifications.

    Called from the main thread (new work) and from every worker thread; ``_lock``
    serialises use of the one connection.
    """

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()  # guards self._db (one connection, many threads)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self):
        # Caller holds self._lock. Explicit BEGIN/COMMIT: the connection is in
        # autocommit mode so that PRAGMAs and reads never open a transaction.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- conversions -------------------------------------------------------------

    def add_conversion(self, h264: str, detection: Optional[bool]) -> int:
        with self._lock, self._transaction():
            cur = self._db.execute(
                "INSERT INTO conversions (h264, detection, accepted) VALUES (?, ?, ?)",
                (h264, None if detection is None else int(detection), time.time()),
            )
            return cur.lastrowid

    def pending_conversions(self) -> List[Conversion]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, h264, detection FROM conversions ORDER BY id"
            ).fetchall()
        return [Conversion(i, h, None if d is None else bool(d)) for i, h, d in rows]

    def finish_conversion(
        self,
        conversion_id: int,
        mp4: Optional[str],
        destinations: Sequence[str],
        upload_limit: int,
        notifications: Sequence[Tuple[str, str, Optional[str]]],
        notify_limit: int,
    ) -> Outcome:
        """Atomically retire a conversion and queue what follows it.

        ``notifications`` holds ``(target, text, video)``. A destination or target
        whose queue already holds its limit gets nothing; it is named in the outcome.
        """
        dropped_up, dropped_note = [], []
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM conversions WHERE id = ?", (conversion_id,))
            if mp4 is not None:
                for dest in destinations:
                    if self._count("uploads", "destination", dest) >= upload_limit:
                        dropped_up.append(dest)
                        continue
                    self._db.execute(
                        "INSERT OR IGNORE INTO uploads (destination, mp4) VALUES (?, ?)",
                        (dest, mp4),
                    )
            for target, text, video in notifications:
                if self._count("notifications", "target", target) >= notify_limit:
                    dropped_note.append(target)
                    continue
                self._db.execute(
                    "INSERT INTO notifications (target, text, video) VALUES (?, ?, ?)",
                    (target, text, video),
                )
        return Outcome(tuple(dropped_up), tuple(dropped_note))

    # -- uploads -----------------------------------------------------------------

    def pending_uploads(self, destination: str) -> List[Upload]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, destination, mp4, attempts FROM uploads"
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
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))

    def upload_failed(self, upload_id: int) -> None:
        with self._lock, self._transaction():
            self._db.execute(
                "UPDATE uploads SET attempts = attempts + 1 WHERE id = ?", (upload_id,)
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
