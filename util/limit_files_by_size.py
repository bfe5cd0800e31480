#!/usr/bin/env python3
"""Keep the newest recordings of each directory within a size (--help says more).

Installed as a package, the same program is `pancake-cleanup size`.
"""

from raspberry_pancake.entry_points import cleanup_script

if __name__ == "__main__":
    cleanup_script("limit_files_by_size.py")
