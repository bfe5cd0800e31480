"""A stub of python-prctl, which does not build without libcap headers.

Picamera2 imports it for FfmpegOutput, which starts ffmpeg with a parent-death
signal; Raspberry Pancake never uses that output, so calling it fails loudly.
"""


def set_pdeathsig(signal_number):
    raise RuntimeError("prctl is a stub here: FfmpegOutput is not available")
