#!/usr/bin/env python3
"""Keep only the newest N recordings in each directory, deleting the older ones.

Arguments come in pairs, a directory and how many recordings to keep there.
Only recordings (20200623-1715.h264, 20200623-180511.mp4, ...) are counted and
deleted; other files, symbolic links and files written in the last minute stay.

Examples:
    # keep the newest 200 h264 files and the newest 400 mp4 files
    python3 util/limit_files_by_number.py h264 200 mp4 400
    # show what would be deleted, delete nothing
    python3 util/limit_files_by_number.py --dry-run h264 200
    # also look in subfolders, e.g. a YYYY/MM/DD backup tree
    python3 util/limit_files_by_number.py --recursive /srv/backup/cam1 2000
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raspberry_pancake import cleanup, terminal  # noqa: E402


def main(argv=None) -> int:
    parser = terminal.ArgumentParser(
        description="Keep the newest N recordings in each directory.",
        epilog="example: %(prog)s h264 200 mp4 400",
    )
    parser.add_argument("pairs", nargs="+", metavar="dir N", help="a directory and a count")
    parser.add_argument("--dry-run", action="store_true", help="only say what would go")
    parser.add_argument("--recursive", action="store_true", help="also look in subfolders")
    args = parser.parse_args(argv)
    pairs = cleanup.parse_pairs(args.pairs, cleanup.parse_count)
    terminal.configure_logging()
    deleter = cleanup.Deleter(dry_run=args.dry_run)
    for directory, keep in pairs:
        cleanup.limit_by_number(directory, keep, deleter, recursive=args.recursive)
    return 1 if deleter.failures else 0


if __name__ == "__main__":
    sys.exit(terminal.run(main))
