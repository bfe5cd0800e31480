#!/usr/bin/env python3
"""Delete the oldest recordings until the disk has enough free space.

The last line of defence against a full SD card: whatever the other limits
say, recordings go, oldest first across all the directories given, until the
file system holding them has at least --min-free bytes free (plain bytes, or
a number with K, M, G or T, powers of 1024). Directories on different file
systems are handled per file system. Only recordings go; other files,
symbolic links and files written in the last minute stay. Exits 1 if the
target could not be reached.

Examples:
    # keep at least 1 GiB free for the recordings in h264 and mp4
    python3 util/limit_free_space.py --min-free 1G h264 mp4
    # show what would be deleted, delete nothing
    python3 util/limit_free_space.py --dry-run --min-free 2G h264 mp4
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raspberry_pancake import cleanup, terminal  # noqa: E402


def main(argv=None) -> int:
    parser = terminal.ArgumentParser(
        description="Delete the oldest recordings until the disk has SIZE free.",
        epilog="example: %(prog)s --min-free 1G h264 mp4",
    )
    parser.add_argument("--min-free", required=True, metavar="SIZE", help="e.g. 1G or 500M")
    parser.add_argument("dirs", nargs="+", metavar="dir", help="directories with recordings")
    parser.add_argument("--dry-run", action="store_true", help="only say what would go")
    parser.add_argument("--recursive", action="store_true", help="also look in subfolders")
    args = parser.parse_args(argv)
    min_free = cleanup.parse_size(args.min_free)
    dirs = [cleanup.existing_directory(d) for d in args.dirs]
    terminal.configure_logging()
    deleter = cleanup.Deleter(dry_run=args.dry_run)
    reached = cleanup.limit_free_space(dirs, min_free, deleter, recursive=args.recursive)
    return 0 if reached and not deleter.failures else 1


if __name__ == "__main__":
    sys.exit(terminal.run(main))
