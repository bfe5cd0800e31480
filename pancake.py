#!/usr/bin/env python3
"""Raspberry Pancake camera server: live view, recording, detection (see README)."""

import sys

from raspberry_pancake.pancake_cli import main
from raspberry_pancake.terminal import run

if __name__ == "__main__":
    sys.exit(run(main, prog="pancake.py"))
