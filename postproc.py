"""Post-processor for pancake.py: convert h264 to mp4, upload, notify. See the README."""

import sys

from raspberry_pancake.postproc.cli import main
from raspberry_pancake.terminal import run

if __name__ == "__main__":
    sys.exit(run(main, prog="postproc.py"))
