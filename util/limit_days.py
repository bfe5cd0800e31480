#!/usr/bin/env python3
"""Keep the newest N day folders of each YYYY/MM/DD tree (--help says more).

Installed as a package, the same program is `pancake-cleanup days`.
"""

from raspberry_pancake.entry_points import cleanup_script

if __name__ == "__main__":
    cleanup_script("limit_days.py")
