"""Test hook of the fake picamera (not part of picamera): every camera made, in order."""

cameras = []


def reset() -> None:
    cameras.clear()
