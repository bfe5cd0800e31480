"""Recording: turns the camera's H.264 stream into files and messages.

The recorders (``continuous``, ``detection``) are pure logic run on the camera's
capture thread: they look only at frame timestamps and detection edges and answer
with instructions (``actions``) for the disk writer, which performs them on a
thread of its own. ``fanout`` is the one H.264 consumer the camera sees.
"""
