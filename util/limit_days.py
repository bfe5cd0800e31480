#!/usr/bin/env python3
"""Keep the newest N days of a YYYY/MM/DD tree, such as a backup server's.

Arguments come in pairs, the top of a tree (the folder holding the YYYY
folders) and how many day folders to keep. In each older day folder the
recordings are deleted and the folder is removed; a day folder that holds
anything else keeps those files and stays (the log says so). Month and year
folders left empty are removed too. Symbolic links are never followed and
files written in the last minute stay.

Examples:
    # on the backup machine: keep 30 days of each camera
    python3 util/limit_days.py bak/cam1 30 bak/cam2 30
    # show what would be deleted, delete nothing
    python3 util/limit_days.py --dry-run bakery/oven 7
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raspberry_pancake import cleanup, terminal  # noqa: E402


def main(argv=None) -> int:
    parser = terminal.ArgumentParser(
        description="Keep the newest N day folders of each YYYY/MM/DD tree.",
        epilog="example: %(prog)s bak/cam1 30",
    )
    parser.add_argument("pairs", nargs="+", metavar="dir N", help="a tree and a number of days")
    parser.add_argument("--dry-run", action="store_true", help="only say what would go")
    args = parser.parse_args(argv)
    pairs = cleanup.parse_pairs(args.pairs, cleanup.parse_count)
    terminal.configure_logging()
    deleter = cleanup.Deleter(dry_run=args.dry_run)
    for top, keep in pairs:
        cleanup.limit_days(top, keep, deleter)
    return 1 if deleter.failures else 0


if __name__ == "__main__":
    sys.exit(terminal.run(main))
