#!/usr/bin/env python3
"""Delete the oldest recordings until the disk has enough free (--help says more).

Installed as a package, the same program is `pancake-cleanup free`.
"""

from raspberry_pancake.entry_points import cleanup_script

if __name__ == "__main__":
    cleanup_script("limit_free_space.py")
