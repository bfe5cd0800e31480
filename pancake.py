#!/usr/bin/env python3
"""Raspberry Pancake camera server: live view, recording, detection (see README).

Installed as a package, the same program is `pancake`.
"""

from raspberry_pancake.entry_points import pancake

if __name__ == "__main__":
    pancake()
