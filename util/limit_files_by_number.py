#!/usr/bin/env python3
"""Keep the newest N recordings in each directory (--help says more).

Installed as a package, the same program is `pancake-cleanup files`.
"""

from raspberry_pancake.entry_points import cleanup_script

if __name__ == "__main__":
    cleanup_script("limit_files_by_number.py")
