#!/usr/bin/env python3
"""Keep the newest recordings of each directory within a total size.

Arguments come in pairs, a directory and the most its recordings may take up:
plain bytes (1073741824) or a number with K, M, G or T (powers of 1024: 500M,
2G, 1.5T). Walking from the newest recording back, the first one that would go
over the limit and all older ones are deleted. Only recordings count and go;
other files, symbolic links and files written in the last minute stay.

Examples:
    # at most 4 GiB of h264 files and 8 GiB of mp4 files
    python3 util/limit_files_by_size.py h264 4G mp4 8G
    # the same limit in plain bytes, as the original project took it
    python3 util/limit_files_by_size.py h264 4294967296
    # show what would be deleted, delete nothing
    python3 util/limit_files_by_size.py --dry-run mp4 500M
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raspberry_pancake import cleanup, terminal  # noqa: E402


def main(argv=None) -> int:
    parser = terminal.ArgumentParser(
        description="Keep the newest recordings of each directory within a total size.",
        epilog="example: %(prog)s h264 4G mp4 8G",
    )
    parser.add_argument("pairs", nargs="+", metavar="dir SIZE", help="a directory and a size")
    parser.add_argument("--dry-run", action="store_true", help="only say what would go")
    parser.add_argument("--recursive", action="store_true", help="also look in subfolders")
    args = parser.parse_args(argv)
    pairs = cleanup.parse_pairs(args.pairs, cleanup.parse_size)
    terminal.configure_logging()
    deleter = cleanup.Deleter(dry_run=args.dry_run)
    for directory, max_bytes in pairs:
        cleanup.limit_by_size(directory, max_bytes, deleter, recursive=args.recursive)
    return 1 if deleter.failures else 0


if __name__ == "__main__":
    sys.exit(terminal.run(main))
