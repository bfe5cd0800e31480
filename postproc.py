"""Post-processor for pancake.py: convert h264 to mp4, upload, notify (see README).

Installed as a package, the same program is `pancake-postproc`.
"""

from raspberry_pancake.entry_points import postproc

if __name__ == "__main__":
    postproc()
