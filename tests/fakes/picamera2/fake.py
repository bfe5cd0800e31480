"""Test hook of the fake Picamera2 (not part of Picamera2): every camera made, in order."""

cameras = []


def reset() -> None:
    cameras.clear()
